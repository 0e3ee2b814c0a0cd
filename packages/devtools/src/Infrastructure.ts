import * as Command from "@effect/platform/Command"
import type * as PgClient from "@effect/sql-pg/PgClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Redis } from "@kpipe/redis"
import { Database } from "@kpipe/sql"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { Kafka, logLevel } from "kafkajs"
import { fileURLToPath } from "node:url"
import { executorLayer } from "./ServiceProcess.ts"

/** A component the tests need is not there; `message` says what to run. */
export class InfrastructureError extends Data.TaggedError("InfrastructureError")<{
  readonly component: "Kafka" | "PostgreSQL" | "Redis"
  readonly message: string
}> {}

const kafkaScript = fileURLToPath(new URL("../../../scripts/kafka/kafka.sh", import.meta.url))

const hint = {
  Kafka:
    "Start the local broker with `pnpm kafka start` (needs Java 17 and Maven), or `docker compose -f docker/compose.yaml up -d kafka`, or point KAFKA_BROKERS at a running broker.",
  PostgreSQL:
    "Start PostgreSQL (`pg_ctlcluster 15 main start`), or `docker compose -f docker/compose.yaml up -d postgres`, or point DATABASE_URL at a running server.",
  Redis:
    "Start Redis (`redis-server --daemonize yes`), or `docker compose -f docker/compose.yaml up -d redis`, or point REDIS_URL at a running server."
} as const

export const kafkaBrokers = Config.option(Config.array(Config.nonEmptyString(), "KAFKA_BROKERS"))

/** A real metadata round trip, not just an open port. */
export const kafkaReachable = (brokers: ReadonlyArray<string>) =>
  Effect.acquireUseRelease(
    Effect.sync(() =>
      new Kafka({ brokers: [...brokers], connectionTimeout: 1_000, retry: { retries: 0 }, logLevel: logLevel.NOTHING })
        .admin()
    ),
    (admin) =>
      Effect.tryPromise(async () => {
        await admin.connect()
        return (await admin.describeCluster()).brokers.length > 0
      }),
    (admin) => Effect.tryPromise(() => admin.disconnect()).pipe(Effect.ignore)
  ).pipe(Effect.timeout("5 seconds"), Effect.orElseSucceed(() => false))

const runKafkaScript = (command: "start" | "stop") =>
  Command.make("bash", kafkaScript, command).pipe(
    Command.stdout("inherit"),
    Command.stderr("inherit"),
    Command.exitCode,
    Effect.map((code) => code === 0),
    Effect.orElseSucceed(() => false),
    Effect.provide(executorLayer)
  )

/**
 * Makes sure a broker answers. With `KAFKA_BROKERS` set, that broker must already run; otherwise
 * the local one on 127.0.0.1:9092 is used, and started here when it is down.
 */
export const ensureKafka = Effect.gen(function*() {
  const configured = yield* kafkaBrokers
  const brokers = Option.getOrElse(configured, () => ["127.0.0.1:9092"])
  if (yield* kafkaReachable(brokers)) return { startedHere: false }
  if (Option.isSome(configured)) {
    return yield* new InfrastructureError({
      component: "Kafka",
      message: `No Kafka broker answers at KAFKA_BROKERS=${brokers.join(",")}. ${hint.Kafka}`
    })
  }
  if ((yield* runKafkaScript("start")) && (yield* kafkaReachable(brokers))) return { startedHere: true }
  return yield* new InfrastructureError({
    component: "Kafka",
    message: `No Kafka broker answers at 127.0.0.1:9092 and the local one could not be started. ${hint.Kafka}`
  })
})

export const stopLocalKafka = runKafkaScript("stop")

const onServer = <A>(f: (sql: PgClient.PgClient, database: string) => Effect.Effect<A, SqlError>) =>
  Effect.flatMap(
    Database.url,
    (url) => Database.onServer(url, (sql) => f(sql, decodeURIComponent(new URL(Redacted.value(url)).pathname.slice(1))))
  )

const postgresUnreachable = (error: SqlError | ConfigError.ConfigError) =>
  new InfrastructureError({
    component: "PostgreSQL",
    message: `PostgreSQL is not reachable (${error.message}). ${hint.PostgreSQL}`
  })

export const checkPostgres = onServer((sql) => sql`SELECT 1`).pipe(Effect.asVoid, Effect.mapError(postgresUnreachable))

/** Creates the `DATABASE_URL` database when the server does not have it yet; says whether it did. */
export const ensureDatabase = Effect.flatMap(Database.url, Database.ensureExists).pipe(
  Effect.mapError(postgresUnreachable)
)

export const checkRedis = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  yield* redis.use((client) => client.ping())
}).pipe(
  Effect.provide(Redis.layerFromEnv),
  Effect.mapError((error) =>
    new InfrastructureError({ component: "Redis", message: `Redis is not reachable (${error.message}). ${hint.Redis}` })
  )
)
