import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as net from "node:net"
import { fileURLToPath } from "node:url"
import * as ServiceProcess from "./ServiceProcess.ts"

/**
 * What the proxy does to the traffic between clients and the target:
 * - `pass`: forwards both ways;
 * - `cut`: resets every open connection and refuses new ones (a network cut, a crashed host);
 * - `blackhole`: keeps connections open and accepts new ones, but nothing arrives either way (a
 *   frozen process, a dropped route: the client only learns of it by its own timeouts);
 * - `unreachable`: as `blackhole`, and new connections are not accepted either: their SYNs go
 *   unanswered (a host gone, a dropped route), so connecting waits for the client's own timeout or
 *   the kernel's retries (about two minutes on Linux); they connect once the fault ends;
 * - `freeze`: keeps connections open and accepts new ones, and holds what is sent either way until
 *   the fault changes, then delivers it in order (a process stopped with SIGSTOP: what it was sent
 *   waits in its sockets and is answered once it runs again, including requests the client gave up
 *   on; a connection closed meanwhile is closed through at once, and what was held for it dropped);
 * - `delay`: forwards both ways, each chunk `millis` late;
 * - `dropResponses`: forwards requests to the target and swallows its answers (the request may
 *   well have been applied).
 */
export type Fault =
  | { readonly _tag: "pass" }
  | { readonly _tag: "cut" }
  | { readonly _tag: "blackhole" }
  | { readonly _tag: "unreachable" }
  | { readonly _tag: "freeze" }
  | { readonly _tag: "delay"; readonly millis: number }
  | { readonly _tag: "dropResponses" }

export const pass: Fault = { _tag: "pass" }
export const cut: Fault = { _tag: "cut" }
export const blackhole: Fault = { _tag: "blackhole" }
export const unreachable: Fault = { _tag: "unreachable" }
export const freeze: Fault = { _tag: "freeze" }
export const dropResponses: Fault = { _tag: "dropResponses" }
export const delay = (duration: Duration.DurationInput): Fault => ({
  _tag: "delay",
  millis: Duration.toMillis(Duration.decode(duration))
})

export class FaultProxyError extends Data.TaggedError("FaultProxyError")<{ readonly cause: unknown }> {
  override get message() {
    return `The fault proxy could not listen: ${String(this.cause)}`
  }
}

export interface FaultProxy {
  /** The proxy's own address: point the client here instead of at the target. */
  readonly host: string
  readonly port: number
  readonly set: (fault: Fault) => Effect.Effect<void>
  /** `fault` while `effect` runs, then `pass` again, whatever happens. */
  readonly during: <A, E, R>(fault: Fault, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Connections accepted since the proxy started. */
  readonly connections: Effect.Effect<number>
  /** Connections open through the proxy now. */
  readonly open: Effect.Effect<number>
  /** Chunks the clients sent since the proxy started, forwarded or not (a request is one or a few). */
  readonly clientChunks: Effect.Effect<number>
}

type Direction = "request" | "response"

interface Pair {
  readonly client: net.Socket
  readonly upstream: net.Socket
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target`, for faults a real deployment sees (a database
 * failover, a cut link, a frozen broker) without touching the target itself. Closed, and every
 * connection through it reset, when the scope closes.
 */
export const make = (target: { readonly host: string; readonly port: number }): Effect.Effect<
  FaultProxy,
  FaultProxyError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    let fault: Fault = pass
    let accepted = 0
    let clientChunks = 0
    const pairs = new Set<Pair>()
    const held: Array<{ readonly to: net.Socket; readonly chunk: Buffer; readonly direction: Direction }> = []

    const forward = (from: net.Socket, to: net.Socket, direction: Direction) => {
      from.on("data", (chunk: Buffer) => {
        if (direction === "request") clientChunks += 1
        switch (fault._tag) {
          case "pass":
            to.write(chunk)
            return
          case "delay":
            setTimeout(() => to.destroyed || to.write(chunk), fault.millis)
            return
          case "dropResponses":
            if (direction === "request") to.write(chunk)
            return
          case "freeze":
            held.push({ to, chunk, direction })
            return
          case "blackhole":
          case "unreachable":
          case "cut":
            return
        }
      })
    }

    const server = net.createServer((client) => {
      accepted += 1
      if (fault._tag === "cut") {
        client.resetAndDestroy()
        return
      }
      const upstream = net.connect(target.port, target.host)
      const pair: Pair = { client, upstream }
      pairs.add(pair)
      const close = () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
      forward(client, upstream, "request")
      forward(upstream, client, "response")
    })

    // SO_REUSEPORT: while `unreachable` changes hands, the proxy and the sink listen side by side.
    const listen = (port: number) =>
      Effect.async<number, FaultProxyError>((resume) => {
        const failed = (cause: unknown) => resume(Effect.fail(new FaultProxyError({ cause })))
        server.once("error", failed)
        server.listen({ port, host: "127.0.0.1", reusePort: true }, () => {
          server.off("error", failed)
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      })
    const port = yield* listen(0)

    // While `unreachable`, the port belongs to a process that listens and never accepts, with its
    // backlog of one filled, so the kernel drops every SYN that arrives. It listens before the proxy
    // stops, and the proxy listens again before it goes, so no connection is refused meanwhile.
    let sink: Scope.CloseableScope | undefined
    const acceptConnections = Effect.suspend(() => {
      const scope = sink
      sink = undefined
      return Effect.zipRight(
        server.listening ? Effect.void : Effect.orDie(listen(port)),
        scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
      )
    })
    // A switch that fails or is interrupted leaves the proxy listening, under the fault it had.
    const dropConnections = (was: Fault) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        sink = scope
        // Interruptible, even where `set` runs as an acquire (`during`): the waits inside end by
        // interrupting what lost (a ready line against an exit), which an uninterruptible region would
        // wait on for good.
        yield* Effect.gen(function*() {
          yield* startSynSink(port)
          // Not waiting for `close`: that comes once every connection through the proxy has ended.
          server.close()
          yield* fillBacklog(port)
        }).pipe(Scope.extend(scope), Effect.interruptible)
      }).pipe(
        Effect.onError(() =>
          Effect.zipRight(
            Effect.sync(() => {
              fault = was
            }),
            acceptConnections
          )
        ),
        Effect.orDie
      )

    const set = (next: Fault) =>
      Effect.suspend(() => {
        const was = fault
        fault = next
        // What a freeze held goes on as the next fault would have let it: all of it on `pass` and
        // `delay`, the requests only on `dropResponses`, none of it into a cut or a blackhole.
        if (next._tag !== "freeze") {
          for (const { chunk, direction, to } of held.splice(0)) {
            const delivered = next._tag === "pass" || next._tag === "delay" ||
              (next._tag === "dropResponses" && direction === "request")
            if (delivered && !to.destroyed) to.write(chunk)
          }
        }
        if (next._tag === "cut") {
          for (const { client, upstream } of pairs) {
            client.resetAndDestroy()
            upstream.destroy()
          }
          pairs.clear()
        }
        if (next._tag === "unreachable" && was._tag !== "unreachable") return dropConnections(was)
        if (next._tag !== "unreachable" && was._tag === "unreachable") return acceptConnections
        return Effect.void
      }).pipe(Effect.zipRight(Effect.logInfo(`Fault proxy → ${target.host}:${target.port}: ${next._tag}`)))

    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        sink === undefined ? Effect.void : Scope.close(sink, Exit.void),
        Effect.async<void>((resume) => {
          for (const { client, upstream } of pairs) {
            client.destroy()
            upstream.destroy()
          }
          server.close(() => resume(Effect.void))
        })
      )
    )

    return {
      host: "127.0.0.1",
      port,
      set,
      during: (next, effect) => Effect.acquireUseRelease(set(next), () => effect, () => set(pass)),
      connections: Effect.sync(() => accepted),
      open: Effect.sync(() => pairs.size),
      clientChunks: Effect.sync(() => clientChunks)
    } satisfies FaultProxy
  })

/** A process listening on `port` beside the proxy that never accepts (`internal/synSinkMain.ts`). */
const startSynSink = (port: number): Effect.Effect<void, FaultProxyError, Scope.Scope> =>
  ServiceProcess.spawn({
    name: "syn sink",
    entry: fileURLToPath(new URL("internal/synSinkMain.ts", import.meta.url)),
    args: [String(port)],
    ready: "syn sink listening",
    readyTimeout: "10 seconds"
  }).pipe(
    Effect.tap((sink) => sink.awaitReady),
    Effect.asVoid,
    Effect.mapError((cause) => new FaultProxyError({ cause }))
  )

/** Two connections, once the sink alone listens: its backlog of one is full, and later SYNs are dropped. */
const fillBacklog = (port: number): Effect.Effect<void, FaultProxyError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<net.Socket, FaultProxyError>((resume) => {
      const filler = net.connect(port, "127.0.0.1")
      filler.once("connect", () => resume(Effect.succeed(filler)))
      filler.once("error", (cause) => resume(Effect.fail(new FaultProxyError({ cause }))))
      return Effect.sync(() => filler.destroy())
    }).pipe(
      Effect.timeoutFail({
        duration: "5 seconds",
        onTimeout: () => new FaultProxyError({ cause: "the SYN sink's backlog took fewer than two connections" })
      })
    ),
    (filler) => Effect.sync(() => filler.destroy())
  ).pipe(Effect.repeatN(1), Effect.asVoid)
