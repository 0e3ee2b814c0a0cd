import type { Consumer } from "@kpipe/kafka"
import * as Config from "effect/Config"

/** The consumer timings a service reads from the environment; the rest of `ConsumerOptions` is the service's own. */
export interface ConsumerSettings extends
  Pick<
    Consumer.ConsumerOptions,
    "sessionTimeout" | "heartbeatInterval" | "rebalanceTimeout" | "maxWaitTimeInMs" | "minBytes" | "instanceId"
  >
{
  readonly sessionTimeout: number
  readonly heartbeatInterval: number
  readonly rebalanceTimeout: number
  readonly maxWaitTimeInMs: number
  readonly minBytes: number
  readonly instanceId: string | undefined
}

/** Tuned for quick failover: a dead replica is evicted after 10 s and its partitions move on. */
export const defaults: ConsumerSettings = {
  sessionTimeout: 10_000,
  heartbeatInterval: 1_000,
  rebalanceTimeout: 20_000,
  maxWaitTimeInMs: 500,
  minBytes: 1,
  instanceId: undefined
}

const positive = (name: string, fallback: number, description: string) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

/**
 * `KAFKA_SESSION_TIMEOUT_MS`, `KAFKA_HEARTBEAT_INTERVAL_MS`, `KAFKA_REBALANCE_TIMEOUT_MS`, `KAFKA_MAX_WAIT_MS`,
 * `KAFKA_MIN_BYTES`, `KAFKA_CONSUMER_INSTANCE_ID`; a service may change the defaults.
 */
export const config = (overrides: Partial<ConsumerSettings> = {}): Config.Config<ConsumerSettings> => {
  const fallback = { ...defaults, ...overrides }
  return Config.all({
    sessionTimeout: positive(
      "KAFKA_SESSION_TIMEOUT_MS",
      fallback.sessionTimeout,
      "How long a silent consumer stays in its group before its partitions move to the others"
    ),
    heartbeatInterval: positive("KAFKA_HEARTBEAT_INTERVAL_MS", fallback.heartbeatInterval, "Heartbeat interval"),
    rebalanceTimeout: positive(
      "KAFKA_REBALANCE_TIMEOUT_MS",
      fallback.rebalanceTimeout,
      "How long members have to rejoin during a rebalance"
    ),
    maxWaitTimeInMs: positive(
      "KAFKA_MAX_WAIT_MS",
      fallback.maxWaitTimeInMs,
      "Longest a fetch waits on the broker for KAFKA_MIN_BYTES"
    ),
    minBytes: positive("KAFKA_MIN_BYTES", fallback.minBytes, "Bytes a fetch waits for (up to KAFKA_MAX_WAIT_MS)"),
    instanceId: Config.string("KAFKA_CONSUMER_INSTANCE_ID").pipe(
      Config.option,
      Config.map((id) => id._tag === "Some" && id.value !== "" ? id.value : fallback.instanceId),
      Config.withDescription(
        "This replica's identity across restarts, unique among the live replicas (e.g. the pod's name): a restarted consumer removes the member its crash left in the group and joins at once instead of waiting for its session to time out"
      )
    )
  })
}
