import * as NodeCommandExecutor from "@effect/platform-node/NodeCommandExecutor"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"

export class ServiceProcessError extends Data.TaggedError("ServiceProcessError")<{
  readonly name: string
  readonly reason: "Spawn" | "Exited" | "NotReady"
  readonly message: string
}> {}

/** How a process ended: its exit code, or the signal that ended it. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/** A running process; the scope it was spawned in ends it. */
export interface Handle {
  readonly name: string
  readonly pid: number
  /** Everything the process printed so far (stdout and stderr, line by line). */
  readonly output: () => string
  readonly lines: () => ReadonlyArray<string>
  readonly isRunning: Effect.Effect<boolean>
  readonly exitStatus: Effect.Effect<ExitStatus>
  /** The exit code once it ended (`null` when a signal ended it). */
  readonly exited: Effect.Effect<number | null>
  /** Sends `signal` without waiting: SIGSTOP and SIGCONT freeze and thaw it, SIGTERM asks it to stop. */
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** SIGTERM and wait (the graceful path); SIGKILL after `stopTimeout`. */
  readonly stop: Effect.Effect<number | null>
  /** SIGKILL (a crash, no finalizers) and wait until it is gone. */
  readonly kill: Effect.Effect<void>
  /** Succeeds once the readiness condition held; fails when the process exits first or after `readyTimeout`. */
  readonly awaitReady: Effect.Effect<void, ServiceProcessError>
}

export interface ServiceProcess extends Handle {
  /** The port from the service's `Listening on http://127.0.0.1:<port>` line, when it serves HTTP. */
  readonly port: number | undefined
  readonly baseUrl: string
}

export interface Options {
  /** The service's name; by default it is ready once it logged `<name> ready`. */
  readonly name: string
  /** Its entry point (a `.ts` or `.js` file, absolute path), run by this Node. */
  readonly entry: string
  readonly args?: ReadonlyArray<string> | undefined
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Node's own flags, e.g. `--cpu-prof` (NODE_OPTIONS refuses some). */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /**
   * When it is ready: a line containing this text (default `<name> ready`), a line matching this
   * pattern, an effect polled until it answers `true`, or `false` for "as soon as it runs".
   */
  readonly ready?: string | RegExp | Effect.Effect<boolean, unknown> | false | undefined
  readonly readyTimeout?: Duration.DurationInput | undefined
  readonly stopTimeout?: Duration.DurationInput | undefined
  /** Each line as it arrives, e.g. to relay it with a prefix. */
  readonly onLine?: ((line: string) => void) | undefined
  /**
   * Whether it stops once this process is gone (`KPIPE_EXIT_WITH_PARENT`, which `ServiceMain` and
   * `pnpm run services` honour; default true): a test or supervisor killed with SIGKILL leaves no
   * service behind in its process group.
   */
  readonly exitWithParent?: boolean | undefined
  /** Whether `output`/`lines` keep what it printed (default true); a long-running relay does not need to. */
  readonly keepOutput?: boolean | undefined
}

const ExecutorLive = NodeCommandExecutor.layer.pipe(Layer.provide(NodeFileSystem.layer))

const signalOf = (error: { readonly message: string }) => /signal: (\w+)/.exec(error.message)?.[1] ?? null

/**
 * Runs `node [execArgv] entry [args]` for the life of the scope through `@effect/platform`'s
 * `Command`, in a process group of its own (so a terminal's Ctrl-C reaches only the caller, which
 * decides how to stop it). Output is collected line by line. The scope SIGKILLs it if it still runs;
 * call `stop` first for the graceful path.
 */
export const spawn = (options: Options): Effect.Effect<Handle, ServiceProcessError, Scope.Scope> =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const keep = options.keepOutput ?? true
    const readyLine = yield* Deferred.make<void>()
    const ready = options.ready ?? `${options.name} ready`
    const matches = typeof ready === "string"
      ? (line: string) => line.includes(ready)
      : ready instanceof RegExp
      ? (line: string) => ready.test(line)
      : () => false
    const command = Command.make(process.execPath, ...(options.execArgv ?? []), options.entry, ...(options.args ?? []))
      .pipe(Command.env({ KPIPE_EXIT_WITH_PARENT: String(options.exitWithParent ?? true), ...options.env }))
    const proc = yield* Command.start(command).pipe(
      Effect.provide(ExecutorLive),
      Effect.mapError((error) =>
        new ServiceProcessError({ name: options.name, reason: "Spawn", message: `could not start: ${error.message}` })
      )
    )
    const collect = (stream: Stream.Stream<Uint8Array, unknown>) =>
      stream.pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.runForEach((line) =>
          Effect.sync(() => {
            if (keep) lines.push(line)
            options.onLine?.(line)
            if (matches(line)) Deferred.unsafeDone(readyLine, Effect.void)
          })
        ),
        Effect.ignore
      )
    const drained = yield* Effect.all([collect(proc.stdout), collect(proc.stderr)], { concurrency: 2 }).pipe(
      Effect.forkScoped
    )
    const exited = yield* Deferred.make<ExitStatus>()
    yield* proc.exitCode.pipe(
      Effect.map((code): ExitStatus => ({ code, signal: null })),
      Effect.catchAll((error) => Effect.succeed<ExitStatus>({ code: null, signal: signalOf(error) })),
      // Lines printed just before the exit are collected before anyone hears of it.
      Effect.zipLeft(drained.await.pipe(Effect.timeout("2 seconds"), Effect.ignore)),
      Effect.flatMap((status) => Deferred.succeed(exited, status)),
      Effect.forkScoped
    )
    const exitStatus = Deferred.await(exited)
    const running = Effect.orElseSucceed(proc.isRunning, () => false)
    const sendSignal = (signal: NodeJS.Signals) =>
      Effect.whenEffect(
        Effect.sync(() => {
          try {
            process.kill(proc.pid, signal)
          } catch {
            // already gone
          }
        }),
        running
      ).pipe(Effect.asVoid)
    const kill = Effect.zipRight(sendSignal("SIGKILL"), exitStatus).pipe(Effect.asVoid)
    const stop = sendSignal("SIGTERM").pipe(
      // The wait alone interruptible: in a finalizer (uninterruptible) the timeout still ends it.
      Effect.zipRight(Effect.interruptible(exitStatus)),
      Effect.timeout(options.stopTimeout ?? "30 seconds"),
      Effect.map((status) => status.code),
      Effect.catchTag("TimeoutException", () => Effect.as(kill, null))
    )
    // Runs before Command's own release (SIGTERM to the group, then waiting without a deadline).
    yield* Effect.addFinalizer(() => kill)

    const output = () => lines.length === 0 ? "" : `${lines.join("\n")}\n`
    const condition = Effect.isEffect(ready)
      ? (ready as Effect.Effect<boolean, unknown>).pipe(
        Effect.orElseSucceed(() => false),
        Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (ok) => ok }),
        Effect.asVoid
      )
      : ready === false
      ? Effect.void
      : Deferred.await(readyLine)
    const awaitReady = Effect.raceFirst(
      condition,
      Effect.flatMap(exitStatus, ({ code, signal }) =>
        new ServiceProcessError({
          name: options.name,
          reason: "Exited",
          message: `exited (${code ?? signal}) before it was ready:\n${output()}`
        }))
    ).pipe(
      Effect.timeoutFail({
        duration: options.readyTimeout ?? "60 seconds",
        onTimeout: () =>
          new ServiceProcessError({
            name: options.name,
            reason: "NotReady",
            message: `not ready in time:\n${output()}`
          })
      })
    )
    return {
      name: options.name,
      pid: proc.pid,
      output,
      lines: () => lines,
      isRunning: running,
      exitStatus,
      exited: Effect.map(exitStatus, (status) => status.code),
      signal: sendSignal,
      stop,
      kill,
      awaitReady
    } satisfies Handle
  })

/** `spawn`, then waits until it is ready; reads its HTTP port from its `Listening on` line. */
export const start = (options: Options): Effect.Effect<ServiceProcess, ServiceProcessError, Scope.Scope> =>
  Effect.gen(function*() {
    const handle = yield* spawn(options)
    yield* handle.awaitReady
    const port = Option.fromNullable(/Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(handle.output())?.[1]).pipe(
      Option.map(Number),
      Option.getOrUndefined
    )
    return { ...handle, port, baseUrl: `http://127.0.0.1:${port ?? 0}` }
  })

const anyPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Ports `freePort` answered before: the system hands a port out again as soon as it is closed. */
const handedOut = new Set<number>()

/**
 * A port nothing listens on right now, for a service to be started on, and never one this process
 * was given before: ports taken one after the other for services started later would otherwise
 * repeat (two services of `pnpm run services` were given the same port, and one failed to start).
 */
export const freePort: Effect.Effect<number> = Effect.flatMap(anyPort, (port) =>
  Effect.suspend(() => {
    if (handedOut.has(port)) return freePort
    handedOut.add(port)
    return Effect.succeed(port)
  }))

const isFree = (port: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const server = createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen(port, "127.0.0.1", () => server.close(() => resume(Effect.succeed(true))))
  })

/** Where the system takes the local ports of outgoing connections from (Linux's default when unknown). */
const ephemeralStart = Effect.sync(() => {
  try {
    const start = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    return Number.isInteger(start) && start > 1024 ? start : 32768
  } catch {
    return 32768
  }
})

/**
 * `size` consecutive ports nothing listens on, for a set of services whose ports are derived from
 * one another (a replica's port plus one, an ops port plus an offset); the first is returned. Taken
 * below the range the system hands out for outgoing connections: a derived port in it can be held
 * by any connection's local end (account-service's second replica found its ops port in use).
 */
export const freePortBlock = (size: number): Effect.Effect<number> =>
  Effect.flatMap(ephemeralStart, (end) =>
    Effect.suspend(() => {
      const lowest = 10_000
      const base = lowest + Math.floor(Math.random() * (end - size - lowest))
      const ports = Array.from({ length: size }, (_, i) => base + i)
      if (ports.some((port) => handedOut.has(port))) return freePortBlock(size)
      return Effect.forEach(ports, isFree).pipe(
        Effect.flatMap((free) => {
          if (!free.every(Boolean)) return freePortBlock(size)
          for (const port of ports) handedOut.add(port)
          return Effect.succeed(base)
        })
      )
    }))

/** Node's `CommandExecutor`, for callers that run a `Command` to completion. */
export const executorLayer: Layer.Layer<CommandExecutor.CommandExecutor> = ExecutorLive
