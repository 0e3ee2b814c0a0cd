import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, spawn } from "node:child_process"

export class ServiceProcessError extends Data.TaggedError("ServiceProcessError")<{
  readonly name: string
  readonly message: string
}> {}

export interface ServiceProcess {
  readonly name: string
  readonly child: ChildProcess
  /** The port from the service's `Listening on http://127.0.0.1:<port>` line, when it serves HTTP. */
  readonly port: number | undefined
  readonly baseUrl: string
  /** Everything the process printed so far. */
  readonly output: () => string
  readonly exited: Effect.Effect<number | null>
  /** SIGTERM and wait (the graceful path); SIGKILL after `timeout`. */
  readonly stop: Effect.Effect<number | null>
  /** SIGKILL: a crash, no finalizers. */
  readonly kill: Effect.Effect<void>
}

export interface Options {
  /** The service's name as it logs `<name> ready`. */
  readonly name: string
  /** Its entry point, e.g. `packages/auth-service/src/main.ts` as an absolute path. */
  readonly entry: string
  readonly env: Readonly<Record<string, string>>
  readonly readyTimeout?: Duration.DurationInput | undefined
  /** Node's own flags, e.g. `--cpu-prof` (NODE_OPTIONS refuses some). */
  readonly execArgv?: ReadonlyArray<string> | undefined
}

/**
 * Runs a service as a real process for the life of the scope (SIGKILL on release if still
 * running), resolving once it logged `<name> ready`. Spawns Node itself rather than through pnpm,
 * so signals reach the service and not a wrapper.
 */
export const start = (options: Options): Effect.Effect<ServiceProcess, ServiceProcessError, Scope.Scope> =>
  Effect.gen(function*() {
    let output = ""
    const exited = yield* Deferred.make<number | null>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(process.execPath, [...(options.execArgv ?? []), options.entry], {
          env: { ...process.env, ...options.env },
          stdio: ["ignore", "pipe", "pipe"]
        })
        child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
        child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()))
        child.on("exit", (code) => Deferred.unsafeDone(exited, Effect.succeed(code)))
        return child
      }),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    yield* Effect.gen(function*() {
      while (!output.includes(`${options.name} ready`)) {
        if (yield* Deferred.isDone(exited)) {
          return yield* new ServiceProcessError({
            name: options.name,
            message: `exited before it was ready:\n${output}`
          })
        }
        yield* Effect.sleep("50 millis")
      }
    }).pipe(
      Effect.timeoutFail({
        duration: options.readyTimeout ?? "60 seconds",
        onTimeout: () => new ServiceProcessError({ name: options.name, message: `not ready in time:\n${output}` })
      })
    )
    const port = Number(/Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1] ?? Number.NaN)
    const stop = Effect.suspend(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      return Deferred.await(exited).pipe(
        Effect.timeout("30 seconds"),
        Effect.catchTag("TimeoutException", () => Effect.sync(() => child.kill("SIGKILL")).pipe(Effect.as(null)))
      )
    })
    return {
      name: options.name,
      child,
      port: Number.isNaN(port) ? undefined : port,
      baseUrl: `http://127.0.0.1:${Number.isNaN(port) ? 0 : port}`,
      output: () => output,
      exited: Deferred.await(exited),
      stop,
      kill: Effect.sync(() => void child.kill("SIGKILL")).pipe(Effect.zipRight(Deferred.await(exited)), Effect.asVoid)
    }
  })
