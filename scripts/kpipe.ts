// The operator's CLI for one service database (DATABASE_URL) and its brokers (KAFKA_BROKERS):
// failures, redrive, park/restore, FAILED outbox rows, consumer lag, and the topics' live settings
// against the registry. `pnpm kpipe --help`.
// Exit codes: 0 done; 1 usage or infrastructure error; 2 nothing found / the selection changed
// since the dry-run; 3 a redrive that did not finish (canary failed again, cancelled, failed);
// 4 topics differ from the registry.
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SeedTopics } from "@kpipe/contracts"
import { Admin, KafkaClient, Producer } from "@kpipe/kafka"
import { PipelineMigrations, Redrive, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database, Migrations } from "@kpipe/sql"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { readFileSync } from "node:fs"

const exitCodes = { notFound: 2, unfinished: 3, topicsDiffer: 4 } as const

const DatabaseLive = Migrations.layerAll([PipelineMigrations.migrations], Database.layer)
const KafkaLive = Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(KafkaClient.layerFromEnv))

const json = Options.boolean("json").pipe(Options.withDescription("Print JSON for scripts instead of a table"))
const actor = Options.text("actor").pipe(
  Options.withDefault(process.env["KPIPE_ACTOR"] ?? process.env["USER"] ?? "cli"),
  Options.withDescription("Who acts, for the audit log (KPIPE_ACTOR or USER)")
)

const optionalText = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))

const selection = Options.all({
  ids: optionalText("ids", "Failure ids, comma separated"),
  topic: optionalText("topic", "Original topic"),
  consumerGroup: optionalText("group", "Consumer group"),
  errorTag: optionalText("error", "Error tag"),
  eventType: optionalText("type", "Event type"),
  eventId: optionalText("event-id", "Event id"),
  key: optionalText("key", "Record key"),
  from: Options.date("from").pipe(Options.optional, Options.withDescription("Recorded at or after (ISO date)")),
  to: Options.date("to").pipe(Options.optional, Options.withDescription("Recorded before (ISO date)"))
})

type SelectionArgs = typeof selection extends Options.Options<infer A> ? A : never

const toSelection = (s: SelectionArgs): Redrive.Selection => {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(s) as Array<[string, Option.Option<string | Date>]>) {
    if (Option.isNone(value)) continue
    const v = value.value
    out[name] = name === "ids"
      ? String(v).split(",").map((id) => id.trim()).filter((id) => id !== "")
      : v instanceof Date
      ? DateTime.unsafeFromDate(v)
      : v
  }
  return out as Redrive.Selection
}

const setExitCode = (code: number) =>
  Effect.sync(() => {
    process.exitCode = code
  })

const print = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const printJson = (value: unknown) => print(JSON.stringify(value, null, 2))

const cell = (value: unknown) =>
  value === null || value === undefined ? "" : value instanceof Date ? value.toISOString() : String(value)

/** A plain aligned table of `columns` of `rows`. */
const table = (rows: ReadonlyArray<object>, columns: ReadonlyArray<string>) => {
  if (rows.length === 0) return print("(none)")
  const cells = rows.map((row) => columns.map((c) => cell((row as Record<string, unknown>)[c]).replace(/\s+/g, " ")))
  const widths = columns.map((c, i) => Math.min(60, Math.max(c.length, ...cells.map((r) => r[i]!.length))))
  const line = (values: ReadonlyArray<string>) =>
    values.map((v, i) => (v.length > widths[i]! ? `${v.slice(0, widths[i]! - 1)}…` : v.padEnd(widths[i]!))).join("  ")
  return print([line(columns), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n"))
}

const output = (asJson: boolean, value: ReadonlyArray<object>, columns: ReadonlyArray<string>) =>
  asJson ? printJson(value) : table(value, columns)

const failuresList = Command.make(
  "list",
  {
    selection,
    json,
    status: optionalText("status", "OPEN (default), PARKED, REDRIVEN, RESOLVED"),
    limit: Options.integer("limit").pipe(Options.withDefault(100))
  },
  (args) =>
    Effect.flatMap(
      Redrive.list({ ...toSelection(args.selection), ...statusOf(args.status) }, args.limit),
      (rows) =>
        output(args.json, rows, [
          "id",
          "topic",
          "consumerGroup",
          "key",
          "eventType",
          "errorTag",
          "errorMessage",
          "attempts",
          "status",
          "createdAt"
        ])
    )
).pipe(Command.withDescription("Failures, newest first"))

const statusOf = (status: Option.Option<string>): { status?: Redrive.FailureStatus } =>
  Option.match(status, {
    onNone: () => ({}),
    onSome: (s) => ({ status: s.toUpperCase() as Redrive.FailureStatus })
  })

const failuresShow = Command.make(
  "show",
  { id: Args.text({ name: "id" }), json },
  (args) =>
    Redrive.inspect(args.id).pipe(
      Effect.flatMap((detail) =>
        args.json ? printJson(detail) : print(
          [
            `failure ${detail.id} (${detail.status}${detail.statusReason ? `: ${detail.statusReason}` : ""})`,
            `topic      ${detail.topic} [${detail.partition}] @ ${detail.offset}   dead-letter topic ${detail.deadLetterTopic}`,
            `group      ${detail.consumerGroup}`,
            `event      ${detail.eventType ?? "?"} ${detail.eventId ?? "(undecodable)"}   key ${detail.key ?? ""}`,
            `error      ${detail.errorTag}: ${detail.errorMessage}`,
            `attempts   ${detail.attempts} (${detail.firstAttemptAt.toISOString()} … ${detail.lastAttemptAt.toISOString()})`,
            `trace      ${detail.traceId ?? "-"}`,
            `headers    ${JSON.stringify(detail.headers)}`,
            `payload    ${JSON.stringify(detail.payload._tag === "Json" ? detail.payload.value : detail.payload)}`,
            ...(detail.errorStack ? [`stack\n${detail.errorStack}`] : []),
            `history    ${detail.history.map((h) => `${h.action}#${h.operationId} ${h.outcome}`).join(", ") || "-"}`
          ].join("\n")
        )
      )
    )
).pipe(Command.withDescription("One failure in full: payload, headers, error, attempts, trace id, history"))

const failuresGroups = Command.make("groups", { selection, json }, (args) =>
  Effect.flatMap(
    Redrive.groups(toSelection(args.selection)),
    (rows) =>
      output(args.json, rows, [
        "topic",
        "consumerGroup",
        "errorTag",
        "eventType",
        "count",
        "firstSeen",
        "lastSeen",
        "sampleId",
        "sampleError"
      ])
  )).pipe(Command.withDescription("OPEN failures grouped by topic, group, error tag and event type"))

const failuresEdit = Command.make(
  "edit",
  {
    id: Args.text({ name: "id" }),
    payload: Options.file("payload").pipe(Options.withDescription("A JSON file with the edited event")),
    allowEdit: Options.boolean("allow-edit").pipe(
      Options.withDescription("Required: the edited event goes out as a NEW event id linked to the old one")
    ),
    actor,
    json
  },
  (args) =>
    Effect.gen(function*() {
      const text = yield* Effect.try(() => readFileSync(args.payload, "utf8"))
      const payload = yield* Effect.try(() => JSON.parse(text) as unknown)
      const result = yield* Redrive.editAndRedrive(args.id, payload, { actor: args.actor, allowEdit: args.allowEdit })
      yield* args.json
        ? printJson(result)
        : print(`sent as event ${result.eventId}; failure ${args.id} resolved (operation ${result.operationId})`)
    }).pipe(
      Effect.catchTag("EditRefused", (error) => report(error.message, exitCodes.notFound)),
      Effect.provide(KafkaLive)
    )
).pipe(Command.withDescription("Send an edited copy of a failure's event as a new event id (needs --allow-edit)"))

const failures = Command.make("failures").pipe(
  Command.withDescription("Dead-lettered events recorded in kpipe_failed_events"),
  Command.withSubcommands([failuresList, failuresShow, failuresGroups, failuresEdit])
)

/** `50/s`, `300/m` or `50` (per second). */
const parseRate = (text: string): number => {
  const match = /^(\d+(?:\.\d+)?)(?:\/(s|m))?$/.exec(text.trim())
  if (match === null) throw new Error(`--rate: expected N/s or N/m, got ${text}`)
  return Number(match[1]) / (match[2] === "m" ? 60 : 1)
}

const progressLine = (p: Redrive.Progress) => {
  const done = p.redriven + p.skipped
  const width = 30
  const filled = p.total === 0 ? width : Math.round((done / p.total) * width)
  const canary = p.canary
    ? ` canary ${p.canary.applied}/${p.canary.size} applied, ${p.canary.failedAgain} failed again`
    : ""
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${p.total} ${p.phase}${canary}`
}

const redrive = Command.make(
  "redrive",
  {
    selection,
    json,
    actor,
    dryRun: Options.boolean("dry-run").pipe(
      Options.withDescription("Only count what would be redriven, with a cutoff")
    ),
    fromDryRun: optionalText("from-dry-run", "Redrive exactly the failures of this dry-run id"),
    rate: optionalText("rate", "Most records per second: 50/s, 300/m"),
    canary: Options.integer("canary").pipe(
      Options.optional,
      Options.withDescription("Redrive N first and stop if any fails again")
    ),
    batch: Options.integer("batch").pipe(Options.optional, Options.withDescription("Records per transaction (100)")),
    expect: Options.integer("expect").pipe(
      Options.optional,
      Options.withDescription("Refuse unless the selection has this many failures")
    )
  },
  (args) =>
    Effect.gen(function*() {
      if (args.dryRun) {
        const dry = yield* Redrive.dryRun(toSelection(args.selection), args.actor)
        if (args.json) return yield* printJson(dry)
        yield* print(`dry-run ${dry.dryRunId}: ${dry.count} failures, cutoff ${dry.cutoff.toISOString()}`)
        yield* table(dry.targetTopics, ["topic", "count"])
        return yield* print(`redrive them with: pnpm kpipe redrive --from-dry-run ${dry.dryRunId}`)
      }
      // Every redrive starts from an audited dry-run, whose target topics must exist: a send to a
      // missing topic would wait for it forever.
      const dryRunId = Option.isSome(args.fromDryRun)
        ? args.fromDryRun.value
        : (yield* Redrive.dryRun(toSelection(args.selection), args.actor)).dryRunId
      const source = { dryRunId }
      const existing = new Set(yield* Effect.flatMap(Admin.Admin, (admin) => admin.listTopics))
      const targets = yield* Redrive.dryRunTopics(dryRunId)
      const missing = targets.filter((topic) => !existing.has(topic))
      if (missing.length > 0) {
        return yield* report(`redrive: target topics do not exist: ${missing.join(", ")}`, exitCodes.notFound)
      }
      const result = yield* Effect.scoped(Effect.gen(function*() {
        const operation = yield* Redrive.start(source, {
          actor: args.actor,
          ratePerSecond: Option.getOrUndefined(Option.map(args.rate, parseRate)),
          canary: Option.getOrUndefined(args.canary),
          batchSize: Option.getOrUndefined(args.batch),
          expectedCount: Option.getOrUndefined(args.expect)
        })
        if (!args.json) {
          yield* Effect.sync(() =>
            process.stderr.write(
              `redrive ${operation.operationId}: ${operation.dryRun.count} failures, cutoff ${operation.dryRun.cutoff.toISOString()}\n`
            )
          )
          yield* operation.progress.changes.pipe(
            Stream.runForEach((p) =>
              Effect.sync(() =>
                process.stderr.write(process.stderr.isTTY ? `\r${progressLine(p)}` : `${progressLine(p)}\n`)
              )
            ),
            Effect.forkScoped
          )
        }
        return yield* operation.await
      }))
      if (args.json) yield* printJson(result)
      else {yield* print(
          `\n${result.status}: ${result.redriven} redriven, ${result.skipped} skipped of ${result.total}${
            result.reason ? ` (${result.reason})` : ""
          }`
        )}
      if (result.status !== "SUCCEEDED") yield* setExitCode(exitCodes.unfinished)
    }).pipe(Effect.provide(KafkaLive))
).pipe(Command.withDescription("Send failures back to their original topics, applied once (dry-run first)"))

const park = Command.make(
  "park",
  { selection, json, actor, reason: Options.text("reason").pipe(Options.withDescription("Why, for the audit log")) },
  (args) =>
    Effect.flatMap(
      Redrive.park(toSelection(args.selection), args.actor, args.reason),
      (result) =>
        args.json ? printJson(result) : print(`parked ${result.count} failures (operation ${result.operationId})`)
    )
).pipe(Command.withDescription("Archive OPEN failures with a reason"))

const restore = Command.make(
  "restore",
  { selection, json, actor },
  (args) =>
    Effect.flatMap(
      Redrive.restore(toSelection(args.selection), args.actor),
      (result) =>
        args.json ? printJson(result) : print(`restored ${result.count} failures (operation ${result.operationId})`)
    )
).pipe(
  Command.withDescription("Make parked failures OPEN again")
)

const outboxIds = Args.text({ name: "id" }).pipe(Args.atLeast(1))

const outbox = Command.make("outbox").pipe(
  Command.withDescription("FAILED outbox rows"),
  Command.withSubcommands([
    Command.make(
      "failed",
      { json, limit: Options.integer("limit").pipe(Options.withDefault(100)) },
      (args) =>
        Effect.flatMap(Redrive.outboxFailed(args.limit), (rows) =>
          output(args.json, rows, [
            "id",
            "topic",
            "messageKey",
            "eventType",
            "eventId",
            "attempts",
            "waiting",
            "lastError",
            "createdAt"
          ]))
    ),
    Command.make(
      "retry",
      { ids: outboxIds, json, actor },
      (args) =>
        Effect.flatMap(Redrive.outboxRetry(args.ids, args.actor), (result) =>
          Effect.zipRight(
            args.json ? printJson(result) : print(`${result.count} of ${args.ids.length} rows sent again`),
            result.count < args.ids.length ? setExitCode(exitCodes.notFound) : Effect.void
          ))
    ),
    Command.make(
      "skip",
      { ids: outboxIds, json, actor },
      (args) =>
        Effect.flatMap(Redrive.outboxSkip(args.ids, args.actor), (result) =>
          Effect.zipRight(
            args.json ? printJson(result) : print(`${result.count} of ${args.ids.length} rows skipped`),
            result.count < args.ids.length ? setExitCode(exitCodes.notFound) : Effect.void
          ))
    )
  ])
)

const lag = Command.make(
  "lag",
  {
    json,
    group: Options.text("group").pipe(Options.repeated, Options.withDescription("Consumer group (repeatable)")),
    topic: Options.text("topic").pipe(Options.repeated, Options.withDescription("Topic (repeatable)"))
  },
  (args) =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const rows: Array<
        { group: string; topic: string; partition: number; committed: string; end: string; lag: number }
      > = []
      for (const topic of args.topic) {
        const ends = yield* admin.endOffsets(topic)
        for (const group of args.group) {
          const committed = yield* admin.committedOffsets(group, topic)
          for (const end of ends) {
            const at = committed.find((c) => c.partition === end.partition)?.offset ?? "-1"
            const from = Number(at) < 0 ? Number(end.low) : Number(at)
            rows.push({
              group,
              topic,
              partition: end.partition,
              committed: at,
              end: end.high,
              lag: Number(end.high) - from
            })
          }
        }
      }
      yield* output(args.json, rows, ["group", "topic", "partition", "committed", "end", "lag"])
    }).pipe(Effect.provide(KafkaLive))
).pipe(Command.withDescription("Consumer lag per group and partition"))

const audit = Command.make(
  "audit",
  {
    json,
    limit: Options.integer("limit").pipe(Options.withDefault(20)),
    id: Args.text({ name: "operation" }).pipe(Args.optional)
  },
  (args) =>
    Option.match(args.id, {
      onNone: () =>
        Effect.flatMap(Redrive.auditLog(args.limit), (rows) =>
          output(
            args.json,
            rows.map((r) => ({ ...r, result: JSON.stringify(r.result), selection: JSON.stringify(r.selection) })),
            [
              "id",
              "action",
              "actor",
              "startedAt",
              "status",
              "selection",
              "result"
            ]
          )),
      onSome: (id) =>
        Effect.flatMap(Redrive.auditEvents(id), (rows) =>
          output(args.json, rows, ["at", "outcome", "failureId", "outboxId", "eventId", "detail"]))
    })
).pipe(Command.withDescription("The audit log, or one operation's per-event outcomes"))

const cancel = Command.make(
  "cancel",
  { id: Args.text({ name: "operation" }) },
  (args) =>
    Effect.flatMap(Redrive.requestCancel(args.id), (asked) =>
      asked
        ? print(`asked redrive ${args.id} to stop after its current batch`)
        : Effect.zipRight(print(`no running redrive ${args.id}`), setExitCode(exitCodes.notFound)))
).pipe(
  Command.withDescription("Stop a running redrive (in any process) after its current batch")
)

const topicsVerify = Command.make(
  "verify",
  {
    json,
    prefix: Options.text("prefix").pipe(
      Options.withDefault(process.env["TOPIC_PREFIX"] ?? ""),
      Options.withDescription("Put before every topic name, as the services' TOPIC_PREFIX (default: TOPIC_PREFIX)")
    )
  },
  (args) =>
    Effect.gen(function*() {
      const topics = SeedTopics.all.map((topic) => Topic.prefixed(topic, args.prefix))
      const mismatches = yield* TopicAdmin.verify(topics)
      if (args.json) yield* printJson({ topics: topics.length, mismatches })
      else if (mismatches.length === 0) yield* print(`${topics.length} topics and their dead-letter topics as declared`)
      else yield* table(mismatches, ["topic", "setting", "expected", "actual"])
      if (mismatches.length > 0) yield* setExitCode(exitCodes.topicsDiffer)
    }).pipe(Effect.provide(KafkaLive))
).pipe(
  Command.withDescription(
    "Compare the live topics (partitions, replication factor, min ISR, retention, cleanup policy) with the registry; exit 4 when they differ"
  )
)

const topics = Command.make("topics").pipe(
  Command.withDescription("The seed systems' topics on this cluster"),
  Command.withSubcommands([topicsVerify])
)

const needsDatabase = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>) =>
  Command.provide(command, DatabaseLive)

const kpipe = Command.make("kpipe").pipe(
  Command.withDescription("Operate a kpipe service: failures, redrive, park/restore, outbox, lag, audit, topics."),
  Command.withSubcommands([
    needsDatabase(failures),
    needsDatabase(redrive),
    needsDatabase(park),
    needsDatabase(restore),
    needsDatabase(outbox),
    lag,
    needsDatabase(audit),
    needsDatabase(cancel),
    topics
  ])
)

const cli = Command.run(kpipe, { name: "pnpm kpipe", version: "0.1.0" })

cli(process.argv).pipe(
  Effect.catchIf(ValidationError.isValidationError, () => setExitCode(1)),
  Effect.catchTags({
    NotFound: (error) => report(error.message, exitCodes.notFound),
    SelectionChanged: (error) => report(error.message, exitCodes.notFound)
  }),
  Effect.catchAll((error) => report(error.message, 1)),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)

function report(message: string, code: number) {
  return Effect.sync(() => {
    process.stderr.write(`kpipe: ${message}\n`)
    process.exitCode = code
  })
}
