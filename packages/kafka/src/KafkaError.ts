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

/** The send named topics the broker does not have (kafkajs itself would retry such a send forever). */
export class TopicsNotFound extends Data.TaggedError("TopicsNotFound")<{ readonly topics: ReadonlyArray<string> }> {
  override get message(): string {
    return `topics not found on the broker: ${this.topics.join(", ")}`
  }
}

// A broker's verdict on the records themselves: sending them again can never succeed. Anything
// else that kafkajs reports as non-retriable (an exhausted reconnect, a timeout) is about the way
// to the broker, not about the records.
const recordRejections = new Set([
  "MESSAGE_TOO_LARGE",
  "RECORD_LIST_TOO_LARGE",
  "INVALID_RECORD",
  "INVALID_TIMESTAMP",
  "INVALID_TOPIC_EXCEPTION",
  "TOPIC_AUTHORIZATION_FAILED",
  "POLICY_VIOLATION",
  "UNSUPPORTED_COMPRESSION_TYPE"
])

const causes = function*(cause: unknown, depth = 0): Generator<unknown> {
  if (cause === undefined || cause === null || depth > 8) return
  yield cause
  if (typeof cause !== "object") return
  const { cause: inner, errors, originalError } = cause as {
    cause?: unknown
    errors?: unknown
    originalError?: unknown
  }
  if (inner !== cause) yield* causes(inner, depth + 1)
  if (originalError !== cause) yield* causes(originalError, depth + 1)
  if (Array.isArray(errors)) { for (const error of errors) yield* causes(error, depth + 1) }
}

/** Whether any cause in `error`'s chain is a kafkajs error of one of `types`. */
const hasCauseOf = (types: ReadonlySet<string>) => (error: KafkaError): boolean => {
  for (const cause of causes(error.cause)) {
    const type = (cause as { type?: unknown }).type
    if (typeof type === "string" && types.has(type)) return true
  }
  return false
}

/**
 * Whether the broker rejected the records themselves (too large, invalid, topic not authorized):
 * the only failures after which a record is to be set aside. Connection loss, exhausted retries and
 * timeouts are not, however kafkajs labels them.
 */
export const rejectsRecords: (error: KafkaError) => boolean = hasCauseOf(recordRejections)

// The broker no longer accepts this producer id's sequence numbers: a write it took was given up as
// failed (its answer lost), so kafkajs reuses those numbers, or the broker lost the producer's state.
const producerStateLosses = new Set([
  "OUT_OF_ORDER_SEQUENCE_NUMBER",
  "UNKNOWN_PRODUCER_ID",
  "INVALID_PRODUCER_EPOCH",
  "INVALID_PRODUCER_ID_MAPPING"
])

/**
 * Whether the broker refused the producer's sequence numbers: no send of this producer id can
 * succeed any more, a new producer id can.
 */
export const losesProducerState: (error: KafkaError) => boolean = hasCauseOf(producerStateLosses)

const membershipLosses = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "UNKNOWN_MEMBER_ID",
  "FENCED_INSTANCE_ID"
])

/**
 * Whether the group coordinator answered that this member must rejoin (a rebalance started, the
 * member's generation is over, or it was evicted): whatever it is working on may be revoked.
 */
export const endsMembership: (error: KafkaError) => boolean = hasCauseOf(membershipLosses)

/** The topics a send named that do not exist (empty for any other failure). */
export const missingTopics = (error: KafkaError): ReadonlyArray<string> =>
  error.cause instanceof TopicsNotFound ? error.cause.topics : []
