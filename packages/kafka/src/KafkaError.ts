import * as Data from "effect/Data"
import kafkajs from "kafkajs"

// kafkajs spreads its error classes into `module.exports`, which Node's ESM loader cannot see as
// named exports.
const { KafkaJSError } = kafkajs

/**
 * Every failure of the Kafka client, classified once at the adapter boundary. `retriable` is the
 * broker's (or kafkajs's) own verdict, so retry policies never have to inspect `cause`.
 */
export class KafkaError extends Data.TaggedError("KafkaError")<{
  readonly reason: "Configure" | "Connect" | "Send" | "Commit" | "Heartbeat" | "Subscribe" | "Run" | "Admin"
  readonly retriable: boolean
  readonly cause: unknown
}> {
  override get message(): string {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `Kafka ${this.reason} failed: ${detail}`
  }
}

export const fromCause = (reason: KafkaError["reason"]) => (cause: unknown): KafkaError =>
  new KafkaError({ reason, retriable: cause instanceof KafkaJSError ? cause.retriable : false, cause })
