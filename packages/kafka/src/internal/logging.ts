import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import { type logCreator, logLevel } from "kafkajs"

const toEffect = (level: logLevel, message: string) => {
  switch (level) {
    case logLevel.ERROR:
    case logLevel.NOTHING:
      return Effect.logError(message)
    case logLevel.WARN:
      return Effect.logWarning(message)
    case logLevel.INFO:
      return Effect.logInfo(message)
    case logLevel.DEBUG:
      return Effect.logDebug(message)
  }
}

// kafkajs logs every failed request, connection attempt and send at ERROR, also the ones it
// then retries by itself; whatever is not recovered surfaces as a typed KafkaError, so these are detail.
const retriedByKafkajs = new Set(["Connection", "BrokerPool", "Producer"])

/** kafkajs logs synchronously from its own callbacks; route them through the Effect logger. */
export const makeLogCreator =
  (runtime: Runtime.Runtime<never>): logCreator => () => ({ label, level, log, namespace }) => {
    const { message, timestamp: _timestamp, logger: _logger, ...extra } = log
    const effectiveLevel = retriedByKafkajs.has(namespace) ? logLevel.DEBUG : level
    Runtime.runSync(runtime)(
      toEffect(effectiveLevel, message).pipe(Effect.annotateLogs({ ...extra, kafkajs: namespace ?? "Kafka", label }))
    )
  }
