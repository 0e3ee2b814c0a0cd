import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import { Redis as IORedis } from "ioredis"

export class RedisError extends Data.TaggedError("RedisError")<{
  readonly reason: "Connect" | "Command"
  readonly cause: unknown
}> {
  override get message(): string {
    return `Redis ${this.reason} failed: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

export interface RedisConfig {
  readonly url: Redacted.Redacted
  readonly connectTimeout?: Duration.DurationInput | undefined
}

export class Redis extends Context.Tag("@kpipe/redis/Redis")<Redis, {
  readonly client: IORedis
  /** Runs one or more commands; a failure of any is a typed `RedisError`. */
  readonly use: <A>(f: (client: IORedis) => Promise<A>) => Effect.Effect<A, RedisError>
}>() {}

export const make = Effect.fnUntraced(function*(config: RedisConfig) {
  const runtime = yield* Effect.runtime<never>()
  let everConnected = false
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const client = new IORedis(Redacted.value(config.url), {
        lazyConnect: true,
        connectTimeout: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
        maxRetriesPerRequest: 2
      })
      // Without a listener ioredis prints every error to stderr itself. A failed first connect is
      // already the typed result of `make`, so only later connection errors are logged.
      client.on("error", (error) => {
        if (client.status !== "connecting" || everConnected) {
          Runtime.runFork(runtime)(Effect.logWarning("Redis connection error", error))
        }
      })
      client.once("ready", () => {
        everConnected = true
      })
      return client
    }).pipe(
      Effect.tap((client) =>
        Effect.tryPromise({
          try: () => client.connect(),
          catch: (cause) => new RedisError({ reason: "Connect", cause })
        }).pipe(Effect.tapError(() => Effect.sync(() => client.disconnect())))
      )
    ),
    (client) =>
      Effect.tryPromise(() => client.quit()).pipe(
        Effect.timeoutOption(Duration.seconds(2)),
        Effect.ensuring(Effect.sync(() => client.disconnect())),
        Effect.ignore,
        Effect.interruptible
      )
  )
  const use = <A>(f: (client: IORedis) => Promise<A>) =>
    Effect.tryPromise({ try: () => f(client), catch: (cause) => new RedisError({ reason: "Command", cause }) })
  return Redis.of({ client, use })
})

export const layer = (config: RedisConfig): Layer.Layer<Redis, RedisError> => Layer.scoped(Redis, make(config))

export const layerConfig = (
  config: Config.Config.Wrap<RedisConfig>
): Layer.Layer<Redis, RedisError | ConfigError.ConfigError> =>
  Layer.scoped(Redis, Effect.flatMap(Config.unwrap(config), make))

/** `REDIS_URL`, default `redis://127.0.0.1:6379`. */
export const layerFromEnv: Layer.Layer<Redis, RedisError | ConfigError.ConfigError> = layerConfig({
  url: Config.redacted("REDIS_URL").pipe(Config.withDefault(Redacted.make("redis://127.0.0.1:6379")))
})
