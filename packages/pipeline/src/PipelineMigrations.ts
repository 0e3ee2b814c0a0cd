import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import type { Migrations } from "@kpipe/sql"
import * as Effect from "effect/Effect"

/** Keys are spread over this many shards; a relay claims whole shards, so it is also the most relays that can work at once. */
export const outboxShards = 64

const createOutbox = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE FUNCTION kpipe_outbox_shard(topic TEXT, message_key TEXT) RETURNS INT
    LANGUAGE SQL IMMUTABLE PARALLEL SAFE
    RETURN (hashtext(topic || E'\\x1f' || message_key) & 2147483647) % ${sql.literal(String(outboxShards))}`
  yield* sql`
    CREATE TABLE kpipe_outbox_keys (
      topic TEXT NOT NULL,
      message_key TEXT NOT NULL,
      last_seq BIGINT NOT NULL,
      PRIMARY KEY (topic, message_key)
    )`
  yield* sql`CREATE TABLE kpipe_outbox_shards (shard INT PRIMARY KEY)`
  yield* sql`INSERT INTO kpipe_outbox_shards SELECT generate_series(0, ${sql.literal(String(outboxShards - 1))})`
  yield* sql`
    CREATE TABLE kpipe_outbox (
      id BIGSERIAL PRIMARY KEY,
      topic TEXT NOT NULL,
      message_key TEXT NOT NULL,
      seq BIGINT NOT NULL,
      shard INT NOT NULL,
      event_id TEXT NOT NULL,
      event_type TEXT NOT NULL,
      schema_version INT NOT NULL,
      payload JSONB NOT NULL,
      headers JSONB NOT NULL DEFAULT '{}',
      status TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'PUBLISHED', 'FAILED', 'SKIPPED')),
      attempts INT NOT NULL DEFAULT 0,
      last_error TEXT,
      created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      published_at TIMESTAMPTZ,
      UNIQUE (topic, message_key, seq)
    )`
  yield* sql`CREATE INDEX kpipe_outbox_pending ON kpipe_outbox (shard, topic, message_key, seq) WHERE status = 'PENDING'`
  yield* sql`CREATE INDEX kpipe_outbox_failed ON kpipe_outbox (topic, message_key) WHERE status = 'FAILED'`
  yield* sql`CREATE INDEX kpipe_outbox_done ON kpipe_outbox (published_at) WHERE status IN ('PUBLISHED', 'SKIPPED')`
})

const createConsumerTables = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`
    CREATE TABLE kpipe_processed_events (
      consumer_group TEXT NOT NULL,
      event_id TEXT NOT NULL,
      topic TEXT NOT NULL,
      partition INT NOT NULL,
      "offset" BIGINT NOT NULL,
      outcome TEXT NOT NULL CHECK (outcome IN ('APPLIED', 'DEAD_LETTERED')),
      processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      PRIMARY KEY (consumer_group, event_id)
    )`
  yield* sql`
    CREATE TABLE kpipe_failed_events (
      id BIGSERIAL PRIMARY KEY,
      consumer_group TEXT NOT NULL,
      topic TEXT NOT NULL,
      partition INT NOT NULL,
      "offset" BIGINT NOT NULL,
      message_key BYTEA,
      payload BYTEA,
      headers JSONB NOT NULL,
      event_id TEXT,
      event_type TEXT,
      error_tag TEXT NOT NULL,
      error_message TEXT NOT NULL,
      error_stack TEXT,
      attempts INT NOT NULL,
      first_attempt_at TIMESTAMPTZ NOT NULL,
      last_attempt_at TIMESTAMPTZ NOT NULL,
      dead_letter_topic TEXT NOT NULL,
      status TEXT NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'REDRIVEN', 'RESOLVED')),
      created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      UNIQUE (consumer_group, topic, partition, "offset")
    )`
})

/**
 * A dead letter is recorded (with its claim) in the consumer's transaction and sent to its topic
 * after COMMIT; until it was sent it waits here, so a redelivery sends what a crash left unsent.
 * Once sent it moves to `kpipe_failed_events`.
 */
const deadLetterAfterCommit = Effect.gen(function*() {
  const sql = yield* SqlClient
  // The failed-events row as it will be, plus what a resend needs.
  yield* sql`CREATE TABLE kpipe_dead_letters_unsent (LIKE kpipe_failed_events INCLUDING DEFAULTS)`
  yield* sql`ALTER TABLE kpipe_dead_letters_unsent ADD COLUMN original_timestamp TEXT NOT NULL,
    ADD PRIMARY KEY (consumer_group, topic, partition, "offset")`
  yield* sql`CREATE INDEX kpipe_dead_letters_unsent_event ON kpipe_dead_letters_unsent (consumer_group, event_id)`
})

const createRedriveTables = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`ALTER TABLE kpipe_failed_events DROP CONSTRAINT kpipe_failed_events_status_check`
  yield* sql`
    ALTER TABLE kpipe_failed_events
      ADD CONSTRAINT kpipe_failed_events_status_check CHECK (status IN ('OPEN', 'REDRIVEN', 'RESOLVED', 'PARKED')),
      ADD COLUMN status_reason TEXT,
      ADD COLUMN status_changed_at TIMESTAMPTZ,
      ADD COLUMN operation_id BIGINT`
  yield* sql`CREATE INDEX kpipe_failed_events_status ON kpipe_failed_events (status, created_at)`
  yield* sql`
    CREATE TABLE kpipe_ops_audit (
      id BIGSERIAL PRIMARY KEY,
      action TEXT NOT NULL,
      actor TEXT NOT NULL,
      started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
      finished_at TIMESTAMPTZ,
      selection JSONB,
      cutoff TIMESTAMPTZ,
      dry_run JSONB,
      options JSONB,
      status TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'STOPPED')),
      progress JSONB NOT NULL DEFAULT '{}',
      result JSONB,
      cancel_requested BOOLEAN NOT NULL DEFAULT false
    )`
  yield* sql`
    CREATE TABLE kpipe_ops_audit_events (
      id BIGSERIAL PRIMARY KEY,
      audit_id BIGINT NOT NULL REFERENCES kpipe_ops_audit (id),
      failure_id BIGINT,
      outbox_id BIGINT,
      event_id TEXT,
      outcome TEXT NOT NULL,
      detail TEXT,
      at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )`
  yield* sql`CREATE INDEX kpipe_ops_audit_events_audit ON kpipe_ops_audit_events (audit_id)`
})

/**
 * A key's `seq` is unique among its pending rows only: a published row is never ordered against
 * anything again. The table-wide UNIQUE (topic, message_key, seq) index took an entry for every new
 * version of a row, and a relay marking 1,000 rows PUBLISHED spent about half its UPDATE there (a
 * random leaf per key, and a check of the old version for each): 25-31 ms against 15-21 ms per 1,000
 * on the 2-core development VM. The pending index, unique now, guards what the ordering needs.
 */
const pendingSeqUnique = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`CREATE UNIQUE INDEX kpipe_outbox_pending_seq ON kpipe_outbox (shard, topic, message_key, seq)
    WHERE status = 'PENDING'`
  yield* sql`DROP INDEX kpipe_outbox_pending`
  yield* sql`ALTER INDEX kpipe_outbox_pending_seq RENAME TO kpipe_outbox_pending`
  yield* sql`ALTER TABLE kpipe_outbox DROP CONSTRAINT kpipe_outbox_topic_message_key_seq_key`
})

/**
 * `HELD`: a pending row behind a FAILED row of its key, moved out of the pending index so that claims
 * no longer read past it (a FAILED row with 100,000 rows behind it cost every claim of its shard ~30 ms).
 * Released with the FAILED row (retry or skip).
 */
const outboxHeld = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`ALTER TABLE kpipe_outbox DROP CONSTRAINT kpipe_outbox_status_check`
  yield* sql`ALTER TABLE kpipe_outbox ADD CONSTRAINT kpipe_outbox_status_check
    CHECK (status IN ('PENDING', 'HELD', 'PUBLISHED', 'FAILED', 'SKIPPED'))`
  yield* sql`CREATE INDEX kpipe_outbox_held ON kpipe_outbox (topic, message_key, seq) WHERE status = 'HELD'`
})

/**
 * A redrive asks, for each failure it takes, whether an earlier one of its key (group, topic) still
 * waits; without an index that read every failure of the group and topic, per failure: 22,000 of
 * them took 92 s. A failure's history in the console reads its audit events by `failure_id`.
 * A failure of a redriven copy takes its place in its key's order from the failure it was redriven
 * from (`order_partition`, `order_offset`; see `DeadLetter.recordFailure`), not from the copy's
 * offset, which comes after every other failure of the key.
 */
const failureIndexes = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`ALTER TABLE kpipe_failed_events ADD COLUMN order_partition INT, ADD COLUMN order_offset BIGINT`
  yield* sql`
    CREATE INDEX kpipe_failed_events_waiting ON kpipe_failed_events
      (consumer_group, topic, ${sql.literal(waitingKey("message_key"))}, partition, "offset")
      WHERE status IN ('OPEN', 'PARKED')`
  yield* sql`CREATE INDEX kpipe_ops_audit_events_failure ON kpipe_ops_audit_events (failure_id)`
})

/**
 * A failure's key as `kpipe_failed_events_waiting` holds it: a record without a key counts as the
 * empty key (both go to any partition, so their order is not a key's order anyway).
 */
export const waitingKey = (column: string) => `coalesce(${column}, ''::bytea)`

/** Where the failures of `alias` stand in their key's order: `(partition, offset)`, a copy's from its origin. */
export const orderPosition = (alias: string) =>
  `(coalesce(${alias}.order_partition, ${alias}.partition), coalesce(${alias}.order_offset, ${alias}."offset"))`

/** The pipeline's tables, with their own migration history so an app can embed them beside its own. */
export const migrations: Migrations.MigrationsOptions = {
  table: "kpipe_pipeline_migrations",
  loader: Migrator.fromRecord({
    "0001_outbox": createOutbox,
    "0002_consumer": createConsumerTables,
    "0003_dead_letter_after_commit": deadLetterAfterCommit,
    "0004_redrive": createRedriveTables,
    "0005_pending_seq_unique": pendingSeqUnique,
    "0006_outbox_held": outboxHeld,
    "0007_failure_indexes": failureIndexes
  })
}
