import * as HttpServer from "@effect/platform/HttpServer"
import { assert, layer } from "@effect/vitest"
import { FastRoute } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { request } from "node:http"
import { newProduct, newUser, TestLive } from "./utils.ts"

/**
 * One `POST /api/orders` as `userId`: with a `Content-Length` the fast route takes it, chunked
 * (no declared length) it goes to the HttpApi. Status and body text.
 */
const post = (port: number, userId: number, body: string, chunked: boolean, key?: string) =>
  Effect.async<{ readonly status: number; readonly body: string }, Error>((resume) => {
    const req = request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/api/orders",
      headers: {
        "content-type": "application/json",
        "x-user-id": String(userId),
        ...(key === undefined ? {} : { "idempotency-key": key }),
        ...(chunked ? { "transfer-encoding": "chunked" } : { "content-length": Buffer.byteLength(body) })
      }
    }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on(
        "end",
        () => resume(Effect.succeed({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }))
      )
    })
    req.on("error", (error) => resume(Effect.fail(error)))
    req.end(body)
  })

const servedFast = Effect.map(Metric.value(FastRoute.served("POST", "/api/orders")), (state) => state.count)

layer(TestLive("order-fast-route"), { timeout: "120 seconds", excludeTestServices: true })("order fast route", (it) => {
  it.effect("answers POST /api/orders as the HttpApi does, word for word, for good and bad bodies", () =>
    Effect.gen(function*() {
      const server = yield* HttpServer.HttpServer
      const port = (server.address as HttpServer.TcpAddress).port
      const productId = yield* newProduct(100)
      const bodies = [
        JSON.stringify({ productId: 999_999, quantity: 1 }),
        JSON.stringify({ productId, quantity: 0 }),
        JSON.stringify({ productId, quantity: 101 }),
        JSON.stringify({ productId, quantity: 1.5 }),
        JSON.stringify({ productId, quantity: "2" }),
        JSON.stringify({ productId }),
        JSON.stringify([productId, 1]),
        "null",
        " ",
        "{\"productId\": 1,",
        "{\"productId\": 1, \"quantity\": 1} trailing"
      ]
      for (const body of bodies) {
        const before = yield* servedFast
        const fast = yield* post(port, newUser(), body, false)
        const taken = (yield* servedFast) - before
        const router = yield* post(port, newUser(), body, true)
        assert.strictEqual(taken, 1, `the fast route took ${body}`)
        assert.strictEqual(yield* servedFast, before + 1, `the HttpApi took ${body} chunked`)
        assert.deepStrictEqual(fast, router, body)
        assert.isAtLeast(fast.status, 400, body)
      }

      // A good order: 201 either way, the same order but for its id and times.
      const good = JSON.stringify({ productId, quantity: 2 })
      const before = yield* servedFast
      const [fast, router] = [yield* post(port, newUser(), good, false), yield* post(port, newUser(), good, true)]
      assert.strictEqual((yield* servedFast) - before, 1, "the fast route took the good order once")
      assert.deepStrictEqual([fast.status, router.status], [201, 201])
      const comparable = (text: string) => {
        const { createdAt: _c, orderId: _o, updatedAt: _u, userId: _us, ...rest } = JSON.parse(text) as Record<
          string,
          unknown
        >
        return rest
      }
      assert.deepStrictEqual(comparable(fast.body), comparable(router.body))
      assert.deepStrictEqual(Object.keys(JSON.parse(fast.body)).sort(), Object.keys(JSON.parse(router.body)).sort())

      // An Idempotency-Key: the same order again for the same body, 422 for another, either way.
      const other = JSON.stringify({ productId, quantity: 3 })
      const keyed = (chunked: boolean) =>
        Effect.gen(function*() {
          const userId = newUser()
          const key = `fast-route-${chunked}-${userId}`
          const first = yield* post(port, userId, good, chunked, key)
          const again = yield* post(port, userId, good, chunked, key)
          const reused = yield* post(port, userId, other, chunked, key)
          assert.strictEqual(first.status, 201)
          assert.deepStrictEqual(again, first, `chunked: ${chunked}`)
          return { status: reused.status, tag: (JSON.parse(reused.body) as { _tag: string })._tag }
        })
      const beforeKeyed = yield* servedFast
      const fastReuse = yield* keyed(false)
      assert.strictEqual((yield* servedFast) - beforeKeyed, 3, "the fast route took the keyed requests")
      assert.deepStrictEqual(fastReuse, yield* keyed(true))
      assert.deepStrictEqual(fastReuse, { status: 422, tag: "IdempotencyKeyReused" })
    }))
})
