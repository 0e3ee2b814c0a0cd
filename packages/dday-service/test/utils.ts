import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { SqlClient } from "@effect/sql/SqlClient"
import { AuthApi, DDayApi } from "@kpipe/contracts"
import { SeedTopics } from "@kpipe/contracts"
import { App, Config, Migrations, Workers } from "@kpipe/dday-service"
import { Ids, MemberEvents } from "@kpipe/events"
import { Admin } from "@kpipe/kafka"
import { RetryPolicy, Topic, TopicAdmin } from "@kpipe/pipeline"
import { Database } from "@kpipe/sql"
import { Eventually, ServiceProcess, TestKafka, TestLogging } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"

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
    const topic: Workers.MemberTopic = Topic.prefixed(SeedTopics.memberEvents, prefix)
    yield* Effect.flatMap(Admin.Admin, (admin) => admin.createTopics(TopicAdmin.specs([topic])))
    return { prefix, topic, group: `${prefix}d-day-service` }
  })

/** A database of its own for one service process, dropped afterwards. */
export const scratchDatabase = (label: string) =>
  Effect.gen(function*() {
    const server = yield* Database.url
    const name = `kpipe_test_${label}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`
    yield* Effect.addFinalizer(() =>
      Database.onServer(server, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(
        Effect.ignoreLogged
      )
    )
    return Database.withDatabase(Redacted.value(server), name)
  })

const authMain = fileURLToPath(new URL("../../auth-service/src/main.ts", import.meta.url))

/**
 * The real auth-service, as its own process on a free port and a fresh database, with a client
 * of its `AuthApi`. Its outbox relay publishes under `TOPIC_PREFIX = prefix` with `relay`, and
 * under a prefix no test reads otherwise.
 */
export const startAuthService = (options: { readonly prefix: string; readonly relay?: boolean }) =>
  Effect.gen(function*() {
    const auth = yield* ServiceProcess.start({
      name: "auth-service",
      entry: authMain,
      env: {
        DATABASE_URL: yield* scratchDatabase("auth"),
        PORT: "0",
        TOPIC_PREFIX: options.relay === true ? options.prefix : `${options.prefix}unread.`
      }
    })
    // The client lives as long as the caller's scope, as the process does.
    const http = yield* Layer.build(NodeHttpClient.layerUndici)
    const members = yield* memberClient(auth.baseUrl).pipe(Effect.provide(http))
    return { baseUrl: auth.baseUrl, members }
  })

/**
 * auth-service's members at `baseUrl`, as each member's own client: the session token of a
 * member's sign-in goes with its updates and deletion.
 */
export const memberClient = (baseUrl: string) =>
  Effect.gen(function*() {
    const tokens = new Map<number, string>()
    const client = (yield* HttpApiClient.make(AuthApi.AuthApi, {
      baseUrl,
      transformClient: HttpClient.mapRequest((request) => {
        const token = tokens.get(Number(/\/api\/members\/(\d+)/.exec(request.url)?.[1]))
        return token === undefined ? request : HttpClientRequest.bearerToken(request, token)
      })
    })).members
    return {
      signIn: (payload: AuthApi.SignInRequest) =>
        client.signIn({ payload }).pipe(
          Effect.tap((response) => tokens.set(response.member.memberId, Redacted.value(response.session.token)))
        ),
      updateProfile: (memberId: Ids.MemberId, payload: ConstructorParameters<typeof AuthApi.UpdateProfileRequest>[0]) =>
        client.updateProfile({ path: { memberId }, payload: new AuthApi.UpdateProfileRequest(payload) }),
      delete: (memberId: Ids.MemberId) => client.deleteMember({ path: { memberId } })
    }
  })

/** d-day-service's API as the gateway calls it: `X-User-Id` is the member the path names. */
export const gatewayClient = (options: { readonly baseUrl?: string } = {}) =>
  HttpApiClient.make(DDayApi.DDayApi, {
    ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}),
    transformClient: HttpClient.mapRequest((request) => {
      const memberId = /\/api\/members\/(\d+)/.exec(request.url)?.[1]
      return memberId === undefined ? request : HttpClientRequest.setHeader(request, "x-user-id", memberId)
    })
  })

/** The member-sync consumer, fetching unknown members from `authUrl`. */
export const startMemberSync = (options: {
  readonly topic: Workers.MemberTopic
  readonly group: string
  readonly authUrl: string
  readonly retry?: RetryPolicy.RetryPolicy
}) =>
  Layer.build(
    Workers.memberEventsConsumer({
      topic: options.topic,
      groupId: options.group,
      retry: options.retry ?? fastRetry,
      kafka: TestKafka.fastConsumer
    }).pipe(
      Layer.provide(App.services),
      Layer.provide(Layer.merge(NodeHttpClient.layerUndici, Config.layerFromEnv))
    )
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
