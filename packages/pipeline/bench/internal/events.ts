import * as Migrator from "@effect/sql/Migrator"
import { SqlClient } from "@effect/sql/SqlClient"
import { TestKafka } from "@kpipe/testing"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Topic } from "../../src/index.ts"
import type { BenchConfig } from "./config.ts"

export class BenchEvent extends Schema.Class<BenchEvent>("BenchEvent")({
  type: Schema.tag("BenchEvent"),
  version: Schema.Literal(1).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1 as const)),
  eventId: Schema.UUID,
  key: Schema.String,
  /** Epoch ms, taken just before the appending transaction begins. */
  appendedAt: Schema.Number,
  data: Schema.Struct({ amount: Schema.Number, note: Schema.String })
}) {}

/** `name` lets another process (a consumer started by the bench) open the topic the bench made. */
export const benchTopic = (prefix: string, partitions: number, name = TestKafka.uniqueName(prefix)) => {
  return Topic.make({
    name,
    partitions,
    retention: "1 hour",
    schema: BenchEvent,
    key: (event) => event.key,
    deadLetter: { name: `${name}.DLT`, retention: "1 hour" }
  })
}
export type BenchTopic = ReturnType<typeof benchTopic>

export const makeEvents = (
  count: number,
  config: Pick<BenchConfig, "keys" | "keysPerTransaction">,
  note = "benchmark payload"
) => {
  const appendedAt = Date.now()
  const keys = Array.from(
    { length: Math.min(count, config.keysPerTransaction) },
    () => `account-${Math.floor(Math.random() * config.keys)}`
  )
  return Array.from({ length: count }, (_, i) =>
    new BenchEvent({
      eventId: crypto.randomUUID(),
      key: keys[i % keys.length]!,
      appendedAt,
      data: { amount: Math.round(Math.random() * 100_000) / 100, note }
    }))
}

export const benchMigrations = {
  table: "kpipe_bench_migrations",
  loader: Migrator.fromRecord({
    "0001_bench_applied": Effect.flatMap(SqlClient, (sql) =>
      sql`
        CREATE TABLE bench_applied (
          consumer_group TEXT NOT NULL,
          event_id TEXT NOT NULL,
          message_key TEXT NOT NULL,
          appended_at DOUBLE PRECISION NOT NULL,
          applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )`)
  })
}

export class BenchFailure extends Data.TaggedError("BenchFailure")<{ readonly message: string }> {}
