import { KafkaError, missingTopics, rejectsRecords } from "@kpipe/kafka/KafkaError"
import * as Predicate from "effect/Predicate"

// SQLSTATE classes of a server or link that is away or overloaded, not of a statement that is wrong:
// 08 connection exception, 53 insufficient resources, 57P admin shutdown / cannot connect now,
// 58 system error.
const transientClasses = ["08", "53", "57P", "58"]

// Codes that say nothing about the statement either: 25006, a write on a server that takes none (a
// primary demoted by a failover, a standby); 40001 and 40P01, a transaction chosen to roll back
// because of others running beside it (serialization failure, deadlock), which the next attempt
// does not meet; 55P03, a lock another session held past the server's `lock_timeout`, and 57014,
// a statement cancelled (the server's `statement_timeout` on a busy server, or an operator's
// `pg_cancel_backend`). Waiting is right: with retries used up they would dead-letter a sound event.
const timeoutCodes = new Set(["55P03", "57014"])
const transientCodes = new Set(["25006", "40001", "40P01", ...timeoutCodes])

// Node's codes for a socket that could not reach the server or lost it (node-postgres passes them on).
const networkCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN"
])

/**
 * Whether `error` is the server's own timeout (55P03 `lock_timeout`, 57014 `statement_timeout`):
 * infrastructure, yet a run of many records may meet it only for its size, so it is split rather
 * than tried again whole.
 */
export const isServerTimeout = (error: unknown): boolean => {
  if (!Predicate.isTagged(error, "SqlError")) return false
  const code = sqlCode((error as { readonly cause?: unknown }).cause)
  return code !== undefined && timeoutCodes.has(code)
}

const sqlCode = (cause: unknown) =>
  Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : undefined

/**
 * Whether `error` says the infrastructure is away (database unreachable, connection lost, database
 * refusing connections, broker unreachable), as opposed to something wrong with the event or the
 * handler's statement. Such failures are retried until the infrastructure is back, never dead-lettered.
 */
export const isInfrastructure = (error: unknown): boolean => {
  if (error instanceof KafkaError) {
    return error.retriable || (!rejectsRecords(error) && missingTopics(error).length === 0)
  }
  if (Predicate.isTagged(error, "SqlError")) {
    const cause = (error as { readonly cause?: unknown }).cause
    const code = sqlCode(cause)
    // node-postgres reports a socket that ended with no code at all ("Connection terminated
    // unexpectedly"); a statement it could not even build (a parameter that does not serialize)
    // throws a TypeError, also with no code, and that is the event's or the handler's fault.
    if (code === undefined) return !(cause instanceof TypeError || cause instanceof RangeError)
    if (
      networkCodes.has(code) || transientCodes.has(code) || transientClasses.some((prefix) => code.startsWith(prefix))
    ) {
      return true
    }
    const message = cause instanceof Error ? cause.message : ""
    return code === "55000" && message.includes("not currently accepting connections")
  }
  return false
}
