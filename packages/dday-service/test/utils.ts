import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServer from "@effect/platform/HttpServer"
import { SqlClient } from "@effect/sql/SqlClient"
import { Members, MembersHttp, Migrations as AuthMigrations } from "@kpipe/auth-service"
import { AuthApi } from "@kpipe/contracts"
import { SeedTopics } from "@kpipe/contracts"
import { DDayService, MemberSync, Migrations } from "@kpipe/dday-service"
import { Ids, MemberEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { OutboxRelay, RetryPolicy, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { Eventually, TestKafka, TestLogging } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"

export const TestLive = Layer.mergeAll(TestKafka.layer, Database.layerTest(Migrations.all)).pipe(
  Layer.provideMerge(TestLogging.layer)
)

export const fastRetry = RetryPolicy.make({ initialDelay: "20 millis", factor: 2, maxRetries: 3 })

/** Config from `values`, then from the environment. */
export const withConfig = (values: Record<string, string>) =>
  Effect.withConfigProvider(
    ConfigProvider.fromMap(new Map(Object.entries(values))).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
  )

/** A member topic and consumer group of this test alone. */
export const isolated = (name: string) =>
  Effect.gen(function*() {
    const prefix = `${TestKafka.uniqueName(name)}.`
    const topic: MemberSync.MemberTopic = Topic.prefixed(SeedTopics.memberEvents, prefix)
    yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
    return { prefix, topic, group: `${prefix}d-day-service` }
  })

/**
 * The real auth-service (its `Members`, HTTP API and migrations) on a free port and a fresh database of
 * its own; with `relay`, also its outbox relay publishing to `TOPIC_PREFIX = prefix`.
 */
export const startAuthService = (options: { readonly prefix: string; readonly relay?: boolean }) =>
  Effect.gen(function*() {
    const AuthLive = Layer.mergeAll(
      HttpApiBuilder.serve().pipe(
        Layer.provide(MembersHttp.ApiLive),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
      ),
      options.relay === true ? OutboxRelay.layer({ pollInterval: "200 millis" }) : Layer.empty
    ).pipe(
      Layer.provideMerge(Members.Members.Default),
      Layer.provideMerge(Database.layerTest(AuthMigrations.all))
    )
    const context = yield* Layer.build(AuthLive).pipe(withConfig({ TOPIC_PREFIX: options.prefix }))
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    return {
      baseUrl: `http://127.0.0.1:${port}`,
      members: Context.get(context, Members.Members),
      sql: Context.get(context, SqlClient)
    }
  })

/** The member-sync consumer, fetching unknown members from `authUrl`. */
export const startMemberSync = (options: {
  readonly topic: MemberSync.MemberTopic
  readonly group: string
  readonly authUrl: string
  readonly retry?: RetryPolicy.RetryPolicy
}) =>
  Layer.build(
    MemberSync.layer({
      topic: options.topic,
      groupId: options.group,
      retry: options.retry ?? fastRetry,
      kafka: TestKafka.fastConsumer
    }).pipe(Layer.provide(DDayService.ServicesLive), Layer.provide(NodeHttpClient.layerUndici))
  ).pipe(withConfig({ AUTH_SERVICE_URL: options.authUrl, AUTH_TIMEOUT_MS: "1000" }))

/** No one listens here: connections are refused at once. */
export const closedUrl = "http://127.0.0.1:9"

export const eventually = Eventually.eventually

export const processed = (group: string) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ eventId: string; outcome: string }>`
      SELECT event_id, outcome FROM kpipe_processed_events WHERE consumer_group = ${group} ORDER BY processed_at`)

export const processedCount = (group: string) => Effect.map(processed(group), (rows) => rows.length)

export const reference = (memberId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ nickname: string; email: string | null; status: string; sourceUpdatedAt: Date }>`
      SELECT nickname, email, status, source_updated_at FROM member_references WHERE member_id = ${memberId}`
  ).pipe(
    Effect.map((rows) => rows[0])
  )

export const ddayCount = (memberId: number) =>
  Effect.flatMap(
    SqlClient,
    (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM ddays WHERE member_id = ${memberId}`
  ).pipe(
    Effect.map((rows) => rows[0]!.n)
  )

const at = (millis: number) => DateTime.unsafeMake(millis)
const eventId = () => Ids.EventId.make(crypto.randomUUID())

export const created = (memberId: number, time: number, nickname: string, email?: string) =>
  new MemberEvents.MemberCreated({
    eventId: eventId(),
    memberId: Ids.MemberId.make(memberId),
    occurredAt: at(time),
    nickname,
    ...(email !== undefined ? { email: MemberEvents.Email.make(email) } : {})
  })

export const updated = (
  memberId: number,
  time: number,
  nickname: string,
  changedFields: ReadonlyArray<MemberEvents.ChangedField> = ["nickname"]
) =>
  new MemberEvents.MemberUpdated({
    eventId: eventId(),
    memberId: Ids.MemberId.make(memberId),
    occurredAt: at(time),
    nickname,
    changedFields
  })

export const deleted = (memberId: number, time: number) =>
  new MemberEvents.MemberDeleted({
    eventId: eventId(),
    memberId: Ids.MemberId.make(memberId),
    occurredAt: at(time),
    deletedAt: at(time)
  })

export const readTopic = (topic: string, count: number) => TestKafka.readTopic(topic, count, "0 millis")

export const signIn = (subject: string, nickname: string, email?: string) =>
  new AuthApi.SignInRequest({ provider: "google", subject, nickname, ...(email !== undefined ? { email } : {}) })
