import { OutboxRelay } from "@kpipe/pipeline"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Config } from "./Config.ts"

/**
 * What runs in the background: the outbox relay (per-key commit order to `catalog-events` and
 * `order-events`), its backlog and oldest-age gauges, and the cleanup of published rows.
 */
export const layer = Layer.unwrapEffect(Effect.map(Config, (config) =>
  OutboxRelay.layer({
    batchSize: config.relayBatchSize,
    concurrency: config.relayConcurrency,
    pollInterval: config.relayPollInterval,
    retention: config.outboxRetention
  })))
