import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as net from "node:net"
import * as UnansweredTimeout from "../src/internal/unansweredTimeout.ts"

/** A server that echoes what it is sent while `answering`, and says nothing otherwise. */
const server = Effect.gen(function*() {
  const answering = { value: true }
  const listener = yield* Effect.acquireRelease(
    Effect.sync(() =>
      net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.on("data", (chunk) => answering.value && socket.write(chunk))
        socket.on("error", () => {})
      })
    ),
    (listener) => Effect.sync(() => listener.close())
  )
  yield* Effect.async<void>((resume) => {
    listener.listen(0, "127.0.0.1", () => resume(Effect.void))
  })
  return { port: (listener.address() as net.AddressInfo).port, answering }
})

/** The watched socket, connected, and what happened to it. */
const connect = (port: number, millis: number, options?: { readonly ssl?: unknown }) =>
  Effect.async<{ readonly socket: net.Socket; readonly errors: Array<Error>; closed: () => boolean }>((resume) => {
    const socket = UnansweredTimeout.socket(millis, options)
    const errors: Array<Error> = []
    let closed = false
    socket.on("error", (error) => errors.push(error))
    socket.on("close", () => {
      closed = true
    })
    socket.connect(port, "127.0.0.1", () => resume(Effect.succeed({ socket, errors, closed: () => closed })))
  })

describe("UnansweredTimeout.socket (plain TCP)", () => {
  it.scopedLive("closes a connection whose request got no answer, with an error naming the setting", () =>
    Effect.gen(function*() {
      const { answering, port } = yield* server
      const { closed, errors, socket } = yield* connect(port, 200)
      socket.write("ping")
      yield* Effect.sleep("400 millis")
      assert.isFalse(closed(), "answered: kept")
      answering.value = false
      socket.write("ping")
      yield* Effect.sleep("500 millis")
      assert.isTrue(closed())
      assert.include(String(errors[0]), "PG_ANSWER_TIMEOUT")
    }))

  it.scopedLive("keeps a connection that sent nothing since the last answer", () =>
    Effect.gen(function*() {
      const { port } = yield* server
      const { closed, socket } = yield* connect(port, 200)
      yield* Effect.sleep("500 millis")
      assert.isFalse(closed(), "nothing sent yet")
      socket.write("ping")
      yield* Effect.sleep("500 millis")
      assert.isFalse(closed(), "answered, then idle")
      socket.destroy()
    }))

  it.scopedLive("closes an ended connection whose last words got no answer without an error", () =>
    Effect.gen(function*() {
      const { answering, port } = yield* server
      const { closed, errors, socket } = yield* connect(port, 200)
      answering.value = false
      // pg's end(): Terminate, which the server never answers, then end; its client may have no
      // error listener left by then (the LISTEN client's is removed first).
      socket.end("X")
      yield* Effect.sleep("500 millis")
      assert.isTrue(closed())
      assert.deepStrictEqual(errors, [])
    }))

  it.scopedLive("leaves TLS connections alone (their reads happen inside TLS), as pg decides TLS", () =>
    Effect.gen(function*() {
      const { answering, port } = yield* server
      answering.value = false
      for (const ssl of [{}, true, { rejectUnauthorized: false }]) {
        const { closed, socket } = yield* connect(port, 100, { ssl })
        socket.write("ping")
        yield* Effect.sleep("300 millis")
        assert.isFalse(closed(), `ssl ${JSON.stringify(ssl)}`)
        socket.destroy()
      }
      for (const ssl of [false, undefined, null, ""]) {
        const { closed, socket } = yield* connect(port, 100, { ssl })
        socket.write("ping")
        yield* Effect.sleep("300 millis")
        assert.isTrue(closed(), `ssl ${JSON.stringify(ssl)}`)
      }
    }))
})
