import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"
import { AdminAuth } from "./Admin.ts"
import * as Decimal from "./Decimal.ts"
import { ServiceUnavailable } from "./ServiceUnavailable.ts"
import { noControlCharacters } from "./Text.ts"

/**
 * The admin API every service can serve beside its own (`OpsServer` in service-kit): failures from
 * the dead-letter flow, their redrive, park and restore, FAILED outbox rows, and the audit log.
 * Every endpoint takes the service's admin token (`ADMIN_TOKEN`, the contracts' `Admin.AdminAuth`) as a
 * bearer token.
 */

export const FailureStatus = Schema.Literal("OPEN", "REDRIVEN", "RESOLVED", "PARKED")

/**
 * The id of a failure, an operation or an outbox row (a PostgreSQL bigserial), as decimal text.
 * Anything else is a 400 here: the database would refuse it, and that was answered 500.
 */
export const RowId = Schema.String.pipe(
  Schema.pattern(/^[1-9][0-9]{0,17}$/, { message: () => "expected an id: decimal digits, at most 18" })
).annotations({ identifier: "RowId" })

/** A filter or a name as the database keeps it: a NUL would be refused there (and answered 503). */
const FilterText = Schema.String.pipe(noControlCharacters)

/** Rows a listing returns at most. */
export const maxLimit = 1_000

/** Which failures an action is about; every field narrows it. */
export class Selection extends Schema.Class<Selection>("Selection")({
  ids: Schema.optionalWith(Schema.Array(RowId), { exact: true }),
  topic: Schema.optionalWith(FilterText, { exact: true }),
  consumerGroup: Schema.optionalWith(FilterText, { exact: true }),
  errorTag: Schema.optionalWith(FilterText, { exact: true }),
  eventType: Schema.optionalWith(FilterText, { exact: true }),
  eventId: Schema.optionalWith(FilterText, { exact: true }),
  key: Schema.optionalWith(FilterText, { exact: true }),
  from: Schema.optionalWith(Schema.DateTimeUtc, { exact: true }),
  to: Schema.optionalWith(Schema.DateTimeUtc, { exact: true })
}) {}

/** The same filters as URL parameters, plus the status (OPEN by default) and a limit. */
export const SelectionParams = Schema.Struct({
  topic: Schema.optional(FilterText),
  consumerGroup: Schema.optional(FilterText),
  errorTag: Schema.optional(FilterText),
  eventType: Schema.optional(FilterText),
  eventId: Schema.optional(FilterText),
  key: Schema.optional(FilterText),
  status: Schema.optional(FailureStatus),
  limit: Schema.optional(Decimal.FromString.pipe(Schema.between(1, maxLimit)))
})

export class FailureGroup extends Schema.Class<FailureGroup>("FailureGroup")({
  topic: Schema.String,
  consumerGroup: Schema.String,
  errorTag: Schema.String,
  eventType: Schema.NullOr(Schema.String),
  count: Schema.Number,
  firstSeen: Schema.Date,
  lastSeen: Schema.Date,
  sampleId: Schema.String,
  sampleError: Schema.String
}) {}

const summaryFields = {
  id: Schema.String,
  topic: Schema.String,
  consumerGroup: Schema.String,
  partition: Schema.Number,
  offset: Schema.String,
  key: Schema.NullOr(Schema.String),
  eventId: Schema.NullOr(Schema.String),
  eventType: Schema.NullOr(Schema.String),
  errorTag: Schema.String,
  errorMessage: Schema.String,
  attempts: Schema.Number,
  status: FailureStatus,
  createdAt: Schema.Date
}

export class FailureSummary extends Schema.Class<FailureSummary>("FailureSummary")(summaryFields) {}

export class FailureDetail extends Schema.Class<FailureDetail>("FailureDetail")({
  ...summaryFields,
  payload: Schema.Union(
    Schema.TaggedStruct("Json", { value: Schema.Unknown }),
    Schema.TaggedStruct("Raw", { base64: Schema.String }),
    Schema.TaggedStruct("Empty", {})
  ),
  headers: Schema.Record({ key: Schema.String, value: Schema.String }),
  errorStack: Schema.NullOr(Schema.String),
  firstAttemptAt: Schema.Date,
  lastAttemptAt: Schema.Date,
  deadLetterTopic: Schema.String,
  statusReason: Schema.NullOr(Schema.String),
  traceId: Schema.optional(Schema.String),
  history: Schema.Array(Schema.Struct({
    operationId: Schema.String,
    action: Schema.String,
    outcome: Schema.String,
    at: Schema.Date
  }))
}) {}

export class DryRun extends Schema.Class<DryRun>("DryRun")({
  dryRunId: Schema.String,
  count: Schema.Number,
  targetTopics: Schema.Array(Schema.Struct({ topic: Schema.String, count: Schema.Number })),
  cutoff: Schema.Date
}) {}

export class DryRunRequest extends Schema.Class<DryRunRequest>("DryRunRequest")({
  selection: Selection,
  actor: Schema.optional(FilterText)
}) {}

export class RedriveRequest extends Schema.Class<RedriveRequest>("RedriveRequest")({
  /** Redrives exactly the failures of this dry-run that are still OPEN. */
  dryRunId: RowId,
  actor: Schema.optional(FilterText),
  ratePerSecond: Schema.optional(Schema.Number.pipe(Schema.positive())),
  canary: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  /** At most 1,000 (`Redrive.maxBatchSize`). */
  batchSize: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000))),
  expectedCount: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
}) {}

export class OperationStarted extends Schema.Class<OperationStarted>("OperationStarted")({
  operationId: Schema.String
}) {}

export class Operation extends Schema.Class<Operation>("Operation")({
  id: Schema.String,
  action: Schema.String,
  actor: Schema.String,
  startedAt: Schema.Date,
  finishedAt: Schema.NullOr(Schema.Date),
  selection: Schema.Unknown,
  cutoff: Schema.NullOr(Schema.Date),
  dryRun: Schema.Unknown,
  options: Schema.Unknown,
  status: Schema.String,
  progress: Schema.Unknown,
  result: Schema.Unknown
}) {}

export class OperationEvent extends Schema.Class<OperationEvent>("OperationEvent")({
  failureId: Schema.NullOr(Schema.String),
  outboxId: Schema.NullOr(Schema.String),
  eventId: Schema.NullOr(Schema.String),
  outcome: Schema.String,
  detail: Schema.NullOr(Schema.String),
  at: Schema.Date
}) {}

export class ParkRequest extends Schema.Class<ParkRequest>("ParkRequest")({
  selection: Selection,
  reason: FilterText.pipe(Schema.minLength(1)),
  actor: Schema.optional(FilterText)
}) {}

export class RestoreRequest extends Schema.Class<RestoreRequest>("RestoreRequest")({
  selection: Selection,
  actor: Schema.optional(FilterText)
}) {}

export class ActionResult extends Schema.Class<ActionResult>("ActionResult")({
  operationId: Schema.String,
  count: Schema.Number
}) {}

export class OutboxRow extends Schema.Class<OutboxRow>("OutboxRow")({
  id: Schema.String,
  topic: Schema.String,
  messageKey: Schema.String,
  eventId: Schema.String,
  eventType: Schema.String,
  attempts: Schema.Number,
  lastError: Schema.NullOr(Schema.String),
  createdAt: Schema.Date,
  /** Rows of its key waiting behind it: a retry or skip lets them go. */
  waiting: Schema.Number
}) {}

export class OutboxRequest extends Schema.Class<OutboxRequest>("OutboxRequest")({
  ids: Schema.Array(RowId).pipe(Schema.minItems(1), Schema.maxItems(maxLimit)),
  actor: Schema.optional(FilterText)
}) {}

export class Health extends Schema.Class<Health>("Health")({
  outboxPending: Schema.Number,
  outboxFailed: Schema.Number,
  oldestPendingSeconds: Schema.NullOr(Schema.Number),
  openFailures: Schema.Number,
  deadLettersLast5m: Schema.Number,
  deadLettersLast1h: Schema.Number
}) {}

export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { what: Schema.String, id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class SelectionChanged extends Schema.TaggedError<SelectionChanged>()(
  "SelectionChanged",
  { expected: Schema.Number, actual: Schema.Number },
  HttpApiSchema.annotations({ status: 409 })
) {}

const id = Schema.Struct({ id: RowId })

export class OpsGroup extends HttpApiGroup.make("ops")
  .add(
    HttpApiEndpoint.get("health", "/ops/health").addSuccess(Health)
      .annotate(
        OpenApi.Description,
        "Outbox backlog and its oldest age, open failures, dead letters in the last 5 min and hour."
      )
  )
  .add(
    HttpApiEndpoint.get("groups", "/ops/failures/groups").setUrlParams(SelectionParams).addSuccess(
      Schema.Array(FailureGroup)
    ).annotate(OpenApi.Description, "Failures grouped by topic, consumer group, error tag and event type.")
  )
  .add(
    HttpApiEndpoint.get("failures", "/ops/failures").setUrlParams(SelectionParams).addSuccess(
      Schema.Array(FailureSummary)
    )
  )
  .add(
    HttpApiEndpoint.get("failure", "/ops/failures/:id").setPath(id).addSuccess(FailureDetail).addError(NotFound)
      .annotate(OpenApi.Description, "One failure: payload, headers, error and stack, attempts, trace id, history.")
  )
  .add(
    HttpApiEndpoint.post("dryRun", "/ops/redrive/dry-run").setPayload(DryRunRequest).addSuccess(DryRun)
      .annotate(OpenApi.Description, "Counts what a redrive would take, with a cutoff taken now; audited.")
  )
  .add(
    HttpApiEndpoint.post("redrive", "/ops/redrive").setPayload(RedriveRequest)
      .addSuccess(OperationStarted, { status: 202 })
      .addError(NotFound)
      .addError(SelectionChanged)
      .annotate(OpenApi.Description, "Starts redriving a dry-run's failures; follow it at /ops/operations/{id}.")
  )
  .add(HttpApiEndpoint.get("operations", "/ops/operations").addSuccess(Schema.Array(Operation)))
  .add(
    HttpApiEndpoint.get("operation", "/ops/operations/:id").setPath(id).addSuccess(
      Schema.Struct({ operation: Operation, events: Schema.Array(OperationEvent) })
    ).addError(NotFound).annotate(
      OpenApi.Description,
      `An operation and its first ${maxLimit} events, by failure or row.`
    )
  )
  .add(
    HttpApiEndpoint.post("cancel", "/ops/operations/:id/cancel").setPath(id).addSuccess(
      Schema.Struct({ cancelled: Schema.Boolean })
    )
  )
  .add(HttpApiEndpoint.post("park", "/ops/park").setPayload(ParkRequest).addSuccess(ActionResult))
  .add(HttpApiEndpoint.post("restore", "/ops/restore").setPayload(RestoreRequest).addSuccess(ActionResult))
  .add(HttpApiEndpoint.get("outboxFailed", "/ops/outbox/failed").addSuccess(Schema.Array(OutboxRow)))
  .add(HttpApiEndpoint.post("outboxRetry", "/ops/outbox/retry").setPayload(OutboxRequest).addSuccess(ActionResult))
  .add(HttpApiEndpoint.post("outboxSkip", "/ops/outbox/skip").setPayload(OutboxRequest).addSuccess(ActionResult))
  .addError(ServiceUnavailable)
  .middleware(AdminAuth)
{}

export class OpsApi extends HttpApi.make("ops").add(OpsGroup) {}
