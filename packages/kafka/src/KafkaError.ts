import * as Data from "effect/Data"
import kafkajs from "kafkajs"

// kafkajs spreads its error classes into `module.exports`, which Node's ESM loader cannot see as
// named exports.
const { KafkaJSConnectionError, KafkaJSError, KafkaJSSASLAuthenticationError } = kafkajs

/** An OAUTHBEARER token provider failed; the connection attempt fails as an authentication error. */
export class TokenError extends Data.TaggedError("TokenError")<{ readonly cause: unknown }> {
  override get message(): string {
    return `OAUTHBEARER token provider failed: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/** kafkajs's own SASL failure, which it never retries. */
export const authenticationFailure = (message: string, cause: unknown): Error =>
  // Its typings declare no constructor arguments; the class takes (message, { cause }).
  new (KafkaJSSASLAuthenticationError as unknown as new(message: string, options: { cause: unknown }) => Error)(
    message,
    { cause }
  )

// Node's codes for a broker certificate that cannot be trusted: retrying never helps.
const certificateCodes = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID"
])

const isAuthentication = (cause: unknown): boolean =>
  cause instanceof KafkaJSSASLAuthenticationError ||
  (cause instanceof KafkaJSConnectionError && certificateCodes.has(String((cause as { code?: unknown }).code))) ||
  (cause instanceof KafkaJSError && cause.cause !== undefined && isAuthentication(cause.cause))

/**
 * Every failure of the Kafka client, classified once at the adapter boundary. `retriable` is the
 * broker's (or kafkajs's) own verdict, so retry policies never have to inspect `cause`.
 * `Authentication` (rejected SASL credentials or token, an untrusted broker certificate) is never
 * retriable, whatever the operation was.
 */
export class KafkaError extends Data.TaggedError("KafkaError")<{
  readonly reason:
    | "Configure"
    | "Connect"
    | "Authentication"
    | "Send"
    | "Commit"
    | "Heartbeat"
    | "Subscribe"
    | "Run"
    | "Admin"
  readonly retriable: boolean
  readonly cause: unknown
}> {
  override get message(): string {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `Kafka ${this.reason} failed: ${detail}`
  }
}

export const fromCause = (reason: KafkaError["reason"]) => (cause: unknown): KafkaError =>
  isAuthentication(cause)
    ? new KafkaError({ reason: "Authentication", retriable: false, cause })
    : new KafkaError({ reason, retriable: cause instanceof KafkaJSError ? cause.retriable : false, cause })
