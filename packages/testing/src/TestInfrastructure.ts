import { Infrastructure } from "@kpipe/devtools"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"

/** Where the tests' Kafka, PostgreSQL and Redis come from. */
export type Source = "local" | "testcontainers"

export const source: Config.Config<Source> = Config.literal("local", "testcontainers")("KPIPE_INFRA").pipe(
  Config.withDefault("local" as const),
  Config.withDescription(
    "local: the machine's broker, PostgreSQL and Redis (the broker is started when down); testcontainers: containers started for the run (needs a Docker engine)"
  )
)

/** The connection settings the tests run with, as the environment variables the code reads. */
export interface Settings {
  readonly source: Source
  readonly env: {
    readonly KAFKA_BROKERS: string
    readonly DATABASE_URL: string
    readonly REDIS_URL: string
  }
}

export class TestInfrastructure
  extends Context.Tag("@kpipe/testing/TestInfrastructure")<TestInfrastructure, Settings>()
{}

export class TestInfrastructureError extends Data.TaggedError("TestInfrastructureError")<{
  readonly message: string
}> {}

/** How one source provides its settings; what it started stops with the scope. */
export type Provider = Effect.Effect<Settings, TestInfrastructureError, Scope.Scope>

const redisUrl = Config.string("REDIS_URL").pipe(Config.withDefault("redis://127.0.0.1:6379"))

/**
 * The machine's components: the broker named by `KAFKA_BROKERS` (or the local one, started when
 * down and stopped with the scope), PostgreSQL at `DATABASE_URL`, Redis at `REDIS_URL`. Every
 * missing component is reported, each with the command to run.
 */
export const local: Provider = Effect.gen(function*() {
  const [kafka, postgres, redis] = yield* Effect.all([
    Effect.either(Infrastructure.ensureKafka),
    Effect.either(Infrastructure.checkPostgres),
    Effect.either(Infrastructure.checkRedis)
  ], { concurrency: "unbounded" })
  if (kafka._tag === "Right" && kafka.right.startedHere) {
    yield* Effect.addFinalizer(() => Infrastructure.stopLocalKafka)
  }
  const failures = [kafka, postgres, redis].flatMap((result) => result._tag === "Left" ? [String(result.left)] : [])
  if (failures.length > 0) return yield* new TestInfrastructureError({ message: failures.join("\n") })
  const brokers = yield* Infrastructure.kafkaBrokers
  return {
    source: "local" as const,
    env: {
      KAFKA_BROKERS: Option.getOrElse(brokers, () => ["127.0.0.1:9092"]).join(","),
      DATABASE_URL: Redacted.value(yield* Database.url),
      REDIS_URL: yield* redisUrl
    }
  }
}).pipe(
  Effect.catchTag("ConfigError", (error) => new TestInfrastructureError({ message: error.toString() }))
)

const images = {
  kafka: "confluentinc/cp-kafka:7.9.1",
  postgres: "postgres:15",
  redis: "redis:7"
} as const

const container = <A extends { readonly stop: () => Promise<unknown> }>(what: string, start: () => Promise<A>) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: start,
      catch: (cause) =>
        new TestInfrastructureError({
          message: `Could not start the ${what} container (KPIPE_INFRA=testcontainers needs a Docker engine): ${
            String(cause)
          }`
        })
    }),
    (started) =>
      Effect.tryPromise(() => started.stop()).pipe(
        Effect.catchAll((error) => Effect.logWarning(`Stopping the ${what} container failed`, error))
      )
  )

/**
 * Kafka, PostgreSQL and Redis in containers of their own for the run (the testcontainers modules,
 * loaded only on this path), removed with the scope. Settings as in docker/compose.yaml: no topic
 * auto-creation, trust-free `postgres` superuser, Redis without persistence.
 */
export const testcontainers: Provider = Effect.gen(function*() {
  const [{ KafkaContainer }, { PostgreSqlContainer }, { RedisContainer }] = yield* Effect.tryPromise({
    try: () =>
      Promise.all([
        import("@testcontainers/kafka"),
        import("@testcontainers/postgresql"),
        import("@testcontainers/redis")
      ]),
    catch: (cause) => new TestInfrastructureError({ message: `testcontainers could not be loaded: ${String(cause)}` })
  })
  const [kafka, postgres, redis] = yield* Effect.all([
    container("Kafka", () =>
      new KafkaContainer(images.kafka).withKraft().withEnvironment({
        KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false",
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: "0"
      }).start()),
    container(
      "PostgreSQL",
      () =>
        new PostgreSqlContainer(images.postgres).withDatabase("kpipe").withUsername("postgres").withPassword(
          "postgres"
        ).start()
    ),
    container("Redis", () => new RedisContainer(images.redis).withCommand(["redis-server", "--save", ""]).start())
  ], { concurrency: "unbounded" })
  return {
    source: "testcontainers" as const,
    env: {
      KAFKA_BROKERS: `${kafka.getHost()}:${kafka.getMappedPort(9093)}`,
      DATABASE_URL: postgres.getConnectionUri(),
      REDIS_URL: redis.getConnectionUrl()
    }
  }
})

/** The one place the source is chosen: `KPIPE_INFRA` (default `local`) picks the provider. */
export const select = (providers: Readonly<Record<Source, Provider>>): Provider =>
  Effect.flatMap(
    Effect.mapError(source, (error) => new TestInfrastructureError({ message: error.toString() })),
    (chosen) => providers[chosen]
  )

export const layer: Layer.Layer<TestInfrastructure, TestInfrastructureError> = Layer.scoped(
  TestInfrastructure,
  select({ local, testcontainers })
)
