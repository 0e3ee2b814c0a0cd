import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import { clientAs, newProduct, newUser, raw, TestLive } from "./utils.ts"

/** Orders and `OrderCreated` events written for `userId` (later events of the saga share the key). */
const writesOf = (userId: number) =>
  Effect.flatMap(SqlClient, (sql) =>
    sql<{ orders: number; events: number }>`
      SELECT (SELECT count(*)::int FROM orders WHERE user_id = ${userId}) AS orders,
             (SELECT count(*)::int FROM kpipe_outbox WHERE message_key = ${
      String(userId)
    } AND event_type = 'OrderCreated')
               AS events`).pipe(
      Effect.map((rows) => rows[0]!)
    )

const body = (productId: number, quantity: number) => JSON.stringify({ productId, quantity })

layer(TestLive("order-api"), { timeout: "120 seconds", excludeTestServices: true })("order API", (it) => {
  it.effect("bad inputs are answered with typed 4xx, and nothing is written", () =>
    Effect.gen(function*() {
      const productId = yield* newProduct(10)
      const userId = newUser()
      const cases: ReadonlyArray<readonly [string, ReturnType<typeof raw>, number, string | undefined]> = [
        ["unknown product", raw("POST", "/api/orders", { userId, body: body(999_999, 1) }), 404, "ProductNotFound"],
        ["quantity 0", raw("POST", "/api/orders", { userId, body: body(productId, 0) }), 400, "InvalidQuantity"],
        [
          "negative quantity",
          raw("POST", "/api/orders", { userId, body: body(productId, -2) }),
          400,
          "InvalidQuantity"
        ],
        [
          "quantity over the limit",
          raw("POST", "/api/orders", { userId, body: body(productId, 101) }),
          400,
          "InvalidQuantity"
        ],
        [
          "fractional quantity",
          raw("POST", "/api/orders", { userId, body: body(productId, 1.5) }),
          400,
          "HttpApiDecodeError"
        ],
        [
          "malformed JSON",
          raw("POST", "/api/orders", { userId, body: "{\"productId\": 1," }),
          400,
          "HttpApiDecodeError"
        ],
        [
          "missing field",
          raw("POST", "/api/orders", { userId, body: JSON.stringify({ productId }) }),
          400,
          "HttpApiDecodeError"
        ],
        ["missing user", raw("POST", "/api/orders", { body: body(productId, 1) }), 401, "MissingUserId"],
        [
          "malformed user",
          raw("POST", "/api/orders", { userId: "abc", body: body(productId, 1) }),
          400,
          "InvalidUserId"
        ],
        [
          "empty key",
          raw("POST", "/api/orders", { userId, body: body(productId, 1), headers: { "idempotency-key": "" } }),
          400,
          "HttpApiDecodeError"
        ],
        ["unknown order", raw("GET", "/api/orders/424242", { userId }), 404, "OrderNotFound"],
        ["malformed order id", raw("GET", "/api/orders/abc", { userId }), 400, "HttpApiDecodeError"],
        ["orders without user", raw("GET", "/api/users/me/orders"), 401, "MissingUserId"],
        ["page size over 100", raw("GET", "/api/users/me/orders?pageSize=101", { userId }), 400, "HttpApiDecodeError"]
      ]
      for (const [name, request, status, tag] of cases) {
        const answer = yield* request
        assert.strictEqual(answer.status, status, name)
        assert.strictEqual(answer.tag, tag, name)
      }
      assert.deepStrictEqual(yield* writesOf(userId), { orders: 0, events: 0 })
    }))

  it.effect("an Idempotency-Key gives the same order for the same body, and 422 for another, even when racing", () =>
    Effect.gen(function*() {
      const productId = yield* newProduct(100)
      const userId = newUser()
      const headers = { "idempotency-key": "order-once" }
      const answers = yield* Effect.forEach(
        Array.from({ length: 5 }),
        () => raw("POST", "/api/orders", { userId, body: body(productId, 2), headers }),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(answers.map((a) => a.status), [201, 201, 201, 201, 201])
      assert.strictEqual(new Set(answers.map((a) => a.body!.orderId)).size, 1)
      const other = yield* raw("POST", "/api/orders", { userId, body: body(productId, 3), headers })
      assert.strictEqual(other.status, 422)
      assert.strictEqual(other.tag, "IdempotencyKeyReused")
      // Reused for a product that does not exist: still the key's answer, not 404.
      const unknown = yield* raw("POST", "/api/orders", { userId, body: body(999_999_999, 2), headers })
      assert.deepStrictEqual([unknown.status, unknown.tag], [422, "IdempotencyKeyReused"])
      assert.deepStrictEqual(yield* writesOf(userId), { orders: 1, events: 1 })
      // Another user may use the same key for an order of their own.
      const otherUser = newUser()
      const theirs = yield* raw("POST", "/api/orders", { userId: otherUser, body: body(productId, 3), headers })
      assert.strictEqual(theirs.status, 201)
    }))

  it.effect("concurrent orders share transactions, and each is answered on its own: unknown products 404, keys once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const productId = yield* newProduct(1000, "2.50")
      const users = Array.from({ length: 20 }, () => newUser())
      const requests = [
        ...users.map((userId) => ({ userId, body: body(productId, 2), headers: {} })),
        // The same user twice without a key: two orders.
        { userId: users[0]!, body: body(productId, 2), headers: {} },
        { userId: users[1]!, body: body(999_999_999, 1), headers: {} },
        ...Array.from(
          { length: 3 },
          () => ({ userId: users[2]!, body: body(productId, 1), headers: { "idempotency-key": "k" } })
        )
      ]
      const answers = yield* Effect.forEach(requests, (request) => raw("POST", "/api/orders", request), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(answers.map((a) => a.status), [...Array(21).fill(201), 404, 201, 201, 201])
      assert.strictEqual(answers[21]!.tag, "ProductNotFound")
      const placed = answers.filter((a) => a.status === 201)
      answers.slice(0, 21).forEach((answer, i) => {
        assert.strictEqual(answer.body!.userId, requests[i]!.userId)
        assert.strictEqual(answer.body!.amount, "5")
      })
      assert.strictEqual(new Set(placed.map((a) => a.body!.orderId)).size, 22)
      assert.strictEqual(new Set(answers.slice(22).map((a) => a.body!.orderId)).size, 1)
      const rows = yield* sql<{ orders: number; transactions: number; events: number }>`
        SELECT count(*)::int AS orders, count(DISTINCT created_at)::int AS transactions,
               (SELECT count(*)::int FROM kpipe_outbox WHERE event_type = 'OrderCreated'
                  AND (payload->>'orderId')::bigint IN (SELECT order_id FROM orders WHERE product_id = ${productId}))
                 AS events
        FROM orders WHERE product_id = ${productId}`
      assert.strictEqual(rows[0]!.orders, 22)
      assert.strictEqual(rows[0]!.events, 22)
      // An order's created_at is its transaction's start: orders placed together committed together.
      assert.isBelow(rows[0]!.transactions, 22)
    }))

  it.effect("a user sees their own orders, newest first and paged, and not other users' orders", () =>
    Effect.gen(function*() {
      const productId = yield* newProduct(100, "3.30")
      const userId = newUser()
      const client = yield* clientAs(userId)
      const placed = []
      for (let quantity = 1; quantity <= 3; quantity++) {
        placed.push(yield* raw("POST", "/api/orders", { userId, body: body(productId, quantity) }))
      }
      assert.deepStrictEqual(placed.map((a) => a.body!.amount), ["3.3", "6.6", "9.9"])
      const page1 = yield* client.orders.myOrders({ urlParams: { page: 1, pageSize: 2 } })
      const page2 = yield* client.orders.myOrders({ urlParams: { page: 2, pageSize: 2 } })
      assert.strictEqual(page1.total, 3)
      assert.deepStrictEqual(
        [...page1.items, ...page2.items].map((o) => o.quantity),
        [3, 2, 1]
      )
      const stranger = yield* raw("GET", `/api/orders/${placed[0]!.body!.orderId}`, { userId: newUser() })
      assert.strictEqual(stranger.status, 404)
      const products = yield* raw("GET", "/api/products")
      assert.strictEqual(products.status, 200)
    }))
})

// An app of its own: orders of concurrent requests share a transaction, so ending this test's
// session would also fail the orders other tests place at that moment.
layer(TestLive("order-api-session-ended"), { timeout: "120 seconds", excludeTestServices: true })(
  "order API, a database session ended",
  (it) => {
    it.effect("an order whose database session is ended mid-transaction is a typed 503, not a 500", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const productId = yield* newProduct(10)
        const userId = newUser()
        const headers = { "idempotency-key": "held" }
        // Another transaction holds the same (user, key): the order's INSERT waits on it, and its session is ended
        // there, so the INSERT fails and so does the ROLLBACK on the dead connection (a defect in @effect/sql).
        const inserted = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const holder = yield* sql.withTransaction(
          sql`INSERT INTO orders (user_id, product_id, quantity, unit_price, amount, idempotency_key)
            VALUES (${userId}, ${productId}, 1, 1, 1, 'held')`.pipe(
            Effect.zipRight(Deferred.succeed(inserted, undefined)),
            Effect.zipRight(Deferred.await(release))
          )
        ).pipe(Effect.fork)
        // Held before the order is sent: otherwise the order's INSERT could come first and not wait.
        yield* Deferred.await(inserted)
        const answer = yield* raw("POST", "/api/orders", { userId, body: body(productId, 1), headers }).pipe(
          Effect.fork
        )
        const waiting = sql<{ pid: number }>`
        SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO orders%'`
        const blocked = yield* waiting.pipe(
          Effect.flatMap((rows) => rows.length > 0 ? Effect.succeed(rows[0]!.pid) : Effect.fail("not waiting yet")),
          Effect.retry({ schedule: Schedule.spaced("50 millis") }),
          Effect.timeout("10 seconds")
        )
        yield* sql`SELECT pg_terminate_backend(${blocked})`
        const { status, tag } = yield* Fiber.join(answer)
        assert.deepStrictEqual([status, tag], [503, "ServiceUnavailable"])
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(holder)
      }))
  }
)
