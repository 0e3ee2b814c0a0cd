import * as Metric from "effect/Metric"

export const appliedTotal = Metric.counter("kpipe_consumer_applied_total", { incremental: true })
export const duplicatesTotal = Metric.counter("kpipe_consumer_duplicates_total", { incremental: true })
export const retriesTotal = Metric.counter("kpipe_consumer_retries_total", { incremental: true })
export const blockedRetriesTotal = Metric.counter("kpipe_consumer_blocked_retries_total", {
  description:
    "Attempts retried because the database or the broker was away; the partition waits, nothing is dead-lettered",
  incremental: true
})
export const deadLetteredTotal = Metric.counter("kpipe_consumer_dead_lettered_total", { incremental: true })

export const publishedTotal = Metric.counter("kpipe_outbox_published_total", {
  description: "Outbox rows published to Kafka",
  incremental: true
})
export const failedTotal = Metric.counter("kpipe_outbox_failed_total", {
  description: "Outbox rows that can never be published; their key waits behind them",
  incremental: true
})
export const backlog = Metric.gauge("kpipe_outbox_backlog", { description: "Outbox rows waiting to be published" })
export const oldestPendingSeconds = Metric.gauge("kpipe_outbox_oldest_pending_seconds", {
  description: "Age of the oldest outbox row waiting to be published"
})
export const claimFailuresTotal = Metric.counter("kpipe_outbox_claim_failures_total", {
  description: "Relay claims that could not publish (broker or database away, connection lost); retried with backoff",
  incremental: true
})
export const claimStallsTotal = Metric.counter("kpipe_outbox_claim_stalls_total", {
  description:
    "Reports of a relay claim still waiting for the broker or the database (after 10 s, then every 30 s); kafkajs retries an unanswered send without end",
  incremental: true
})
