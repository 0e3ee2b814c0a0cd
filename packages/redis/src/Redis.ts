import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import { type ChainableCommander, Redis as IORedis, ReplyError } from "ioredis"

// Error replies with which Redis says it cannot serve now (loading its data, a busy script, a replica
// left read-only by a failover, out of memory, ...), not that the command or the data is wrong.
const unavailableReplies = new Set([
  "LOADING",
  "BUSY",
  "READONLY",
  "MASTERDOWN",
  "TRYAGAIN",
  "CLUSTERDOWN",
  "OOM",
  "MISCONF"
])

export class RedisError extends Data.TaggedError("RedisError")<{
  /**
   * `Timeout`: no reply within the command timeout; the command may still run. `Lost`: the
   * connection was lost after the command was written; it may have run. `Command`: Redis answered
   * with an error, or the command was never sent.
   */
  readonly reason: "Connect" | "Command" | "Timeout" | "Lost"
  readonly cause: unknown
}> {
  override get message(): string {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return this.reason === "Timeout"
      ? `Redis did not answer in time: ${cause}`
      : `Redis ${this.reason} failed: ${cause}`
  }

  /**
   * Whether Redis is away or says it cannot serve now, so that waiting can fix it: every failure but
   * Redis's error reply to the command itself (a script's error, a wrong type), unless that reply is
   * one of not serving now (`LOADING`, `BUSY`, `READONLY`, `OOM`, ...).
   */
  get unavailable(): boolean {
    if (this.reason !== "Command" || !(this.cause instanceof ReplyError)) return true
    // A reply starts with its error code ("WRONGTYPE Operation against a key ...").
    return unavailableReplies.has((this.cause as Error).message.split(" ", 1)[0]!)
  }
}

export interface RedisConfig {
  readonly url: Redacted.Redacted
  readonly connectTimeout?: Duration.DurationInput | undefined
  /**
   * How long a command waits for its reply (default 2 s) before it fails with reason `Timeout`, and
   * how long a connection with commands outstanding may stay silent before it is dropped and opened
   * again.
   */
  readonly commandTimeout?: Duration.DurationInput | undefined
}

/** The default `commandTimeout`. */
export const defaultCommandTimeout = Duration.seconds(2)

const timedOut = "Command timed out"
const replyLost = "Connection lost before the reply; the command may have run"

const commandError = (cause: unknown) =>
  new RedisError({
    reason: !(cause instanceof Error)
      ? "Command"
      : cause.message === timedOut
      ? "Timeout"
      : cause.message === replyLost
      ? "Lost"
      : "Command",
    cause
  })

/**
 * `promise`, or a timeout `millis` after the call: a command may wait unwritten for a connection,
 * or behind the auto-pipelined batch ahead of it.
 */
const timed = <A>(promise: Promise<A>, millis: number) =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(timedOut)), millis)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

export class Redis extends Context.Tag("@kpipe/redis/Redis")<Redis, {
  readonly client: IORedis
  /** How long a call (`use`, a script) waits for its replies before it fails with reason `Timeout`. */
  readonly commandTimeout: Duration.Duration
  /** Runs one or more commands; a failure of any is a typed `RedisError`. */
  readonly use: <A>(f: (client: IORedis) => Promise<A>) => Effect.Effect<A, RedisError>
  /**
   * Sends what `f` adds to a pipeline in one round trip. The replies in order, or the first failed
   * one as a `RedisError` (the other commands have run).
   */
  readonly pipeline: (f: (pipeline: ChainableCommander) => void) => Effect.Effect<ReadonlyArray<unknown>, RedisError>
}>() {}

export const make = Effect.fnUntraced(function*(config: RedisConfig) {
  const runtime = yield* Effect.runtime<never>()
  let everConnected = false
  const commandTimeout = Duration.decode(config.commandTimeout ?? defaultCommandTimeout)
  const timeoutMillis = Duration.toMillis(commandTimeout)
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const client = new IORedis(Redacted.value(config.url), {
        lazyConnect: true,
        connectTimeout: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
        maxRetriesPerRequest: 2,
        // A connection to a Redis that stops answering (stopped, partitioned) is dropped, and the
        // commands on it fail (see "close"): TCP notices a dead peer only after many minutes, and a
        // reply lost on a connection kept would leave every later reply matched to the wrong command.
        // The same as the command timeout: a caller hears `Timeout` or, if the drop comes first, `Lost`.
        socketTimeout: timeoutMillis,
        // A command written to a connection that was lost fails (it may have run) rather than being
        // sent again on the next one, possibly after its caller was told it failed: that caller
        // decides what an unknown outcome means.
        autoResendUnfulfilledCommands: false
      })
      // At once: ioredis would leave them unsettled, and the auto-pipelined commands queued behind
      // them unsent, until their timeout.
      client.on("close", () => {
        for (let item = client.commandQueue.shift(); item !== undefined; item = client.commandQueue.shift()) {
          item.command.reject(new Error(replyLost))
        }
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
        // Only the call interruptible: on an interrupted fiber, around the whole it ends at once.
        Effect.interruptible,
        Effect.timeoutOption(Duration.seconds(2)),
        Effect.ensuring(Effect.sync(() => client.disconnect())),
        Effect.ignore
      )
  )
  const use = <A>(f: (client: IORedis) => Promise<A>) =>
    Effect.tryPromise({ try: () => timed(f(client), timeoutMillis), catch: commandError })
  const pipeline = (f: (pipeline: ChainableCommander) => void) =>
    use(async (client) => {
      const pipeline = client.pipeline()
      f(pipeline)
      const replies = (await pipeline.exec()) ?? []
      const failed = replies.find(([error]) => error !== null)
      if (failed !== undefined) throw failed[0]
      return replies.map(([, reply]) => reply)
    })
  return Redis.of({ client, commandTimeout, use, pipeline })
})

export const layer = (config: RedisConfig): Layer.Layer<Redis, RedisError> => Layer.scoped(Redis, make(config))

export const layerConfig = (
  config: Config.Config.Wrap<RedisConfig>
): Layer.Layer<Redis, RedisError | ConfigError.ConfigError> =>
  Layer.scoped(Redis, Effect.flatMap(Config.unwrap(config), make))

/** `REDIS_URL`, default `redis://127.0.0.1:6379`; `REDIS_COMMAND_TIMEOUT`, default 2 seconds. */
export const layerFromEnv: Layer.Layer<Redis, RedisError | ConfigError.ConfigError> = layerConfig({
  url: Config.redacted("REDIS_URL").pipe(Config.withDefault(Redacted.make("redis://127.0.0.1:6379"))),
  commandTimeout: Config.duration("REDIS_COMMAND_TIMEOUT").pipe(
    Config.withDefault(defaultCommandTimeout),
    Config.withDescription("How long a Redis command waits for its reply before it fails")
  )
})

/** A Lua script, defined once per client as a command of its own (ioredis `defineCommand`). */
export interface ScriptOptions {
  /** The command's name on the client; must not be a command ioredis already has. */
  readonly name: string
  readonly numberOfKeys: number
  readonly lua: string
  readonly readOnly?: boolean | undefined
}

/**
 * Runs the script with its keys and arguments. ioredis sends EVALSHA and, when the server has lost
 * the script (a restart, `SCRIPT FLUSH`), the script itself; alone, in a pipeline or auto-pipelined.
 */
export interface Script<A = unknown> {
  (keys: ReadonlyArray<string>, args?: ReadonlyArray<string | number>): Effect.Effect<A, RedisError>
  readonly options: ScriptOptions
  /** Adds a call to a pipeline, e.g. the one `Redis.pipeline` sends. */
  readonly queue: (
    pipeline: ChainableCommander,
    keys: ReadonlyArray<string>,
    args?: ReadonlyArray<string | number>
  ) => void
}

type Commands = Record<string, (...args: ReadonlyArray<string | number>) => Promise<unknown>>

const defined = new WeakMap<IORedis, Map<string, string>>()

const define = (client: IORedis, options: ScriptOptions) => {
  let scripts = defined.get(client)
  if (scripts === undefined) {
    scripts = new Map()
    defined.set(client, scripts)
  }
  const lua = scripts.get(options.name)
  if (lua === options.lua) return
  if (lua !== undefined || options.name in client) {
    throw new Error(`Redis.script: "${options.name}" is already a command of this client`)
  }
  client.defineCommand(options.name, {
    numberOfKeys: options.numberOfKeys,
    lua: options.lua,
    ...(options.readOnly === true ? { readOnly: true } : {})
  })
  scripts.set(options.name, options.lua)
}

/**
 * Defines `options.lua` on the client as the command `options.name` (once: defining the same script
 * again returns another handle on it) and returns the function that runs it.
 */
export const script = <A = unknown>(options: ScriptOptions): Effect.Effect<Script<A>, never, Redis> =>
  Effect.map(Redis, ({ client, commandTimeout }) => {
    define(client, options)
    const timeoutMillis = Duration.toMillis(commandTimeout)
    const wrongKeys = (keys: ReadonlyArray<string>) =>
      keys.length === options.numberOfKeys
        ? undefined
        : `Redis.script ${options.name}: ${options.numberOfKeys} keys expected, got ${keys.length}`
    const argsOf = (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => {
      const wrong = wrongKeys(keys)
      if (wrong !== undefined) throw new Error(wrong)
      return [...keys, ...args]
    }
    const run = (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number> = []) => {
      const wrong = wrongKeys(keys)
      return wrong !== undefined ? Effect.dieMessage(wrong) : Effect.tryPromise({
        try: () => timed((client as unknown as Commands)[options.name]!(...keys, ...args) as Promise<A>, timeoutMillis),
        catch: commandError
      })
    }
    const queue = (
      pipeline: ChainableCommander,
      keys: ReadonlyArray<string>,
      args: ReadonlyArray<string | number> = []
    ) => {
      ;(pipeline as unknown as Commands)[options.name]!(...argsOf(keys, args))
    }
    return Object.assign(run, { options, queue })
  })
