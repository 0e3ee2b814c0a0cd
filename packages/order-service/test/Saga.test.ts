import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import { Ids } from "@kpipe/events"
import * as BigDecimal from "effect/BigDecimal"
import * as Effect from "effect/Effect"
import { emailOf, phoneOf } from "../src/internal/contacts.ts"
import { newProduct, newUser, place, Receivers, settled, stockOf, TestLive } from "./utils.ts"

layer(TestLive("order-saga"), { timeout: "120 seconds", excludeTestServices: true })("order saga", (it) => {
  it.effect("an order in stock is confirmed, its stock reserved once, and the customer told by e-mail and SMS", () =>
    Effect.gen(function*() {
      const productId = yield* newProduct(5, "12.50")
      const userId = newUser()
      const placed = yield* place(userId, productId, 2)
      assert.strictEqual(placed.status, "PENDING")
      assert.strictEqual(BigDecimal.format(placed.amount), "25")
      const order = yield* settled(userId, placed.orderId)
      assert.strictEqual(order.status, "CONFIRMED")
      assert.strictEqual(order.reason, null)
      assert.strictEqual(yield* stockOf(productId), 3)

      const { mail, sms } = yield* Receivers
      const mails = mail.received().filter((m) => m.to.includes(emailOf(Ids.UserId.make(userId))))
      assert.strictEqual(mails.length, 1)
      assert.strictEqual(mails[0]!.subject, `Order ${placed.orderId} confirmed`)
      assert.include(mails[0]!.raw, "is confirmed")
      const texts = sms.received().filter((s) => s.to === phoneOf(Ids.UserId.make(userId)))
      assert.strictEqual(texts.length, 1)
      assert.include(texts[0]!.text, `Order ${placed.orderId} confirmed`)

      const sql = yield* SqlClient
      const reservations = yield* sql`SELECT 1 FROM inventory_reservations WHERE order_id = ${placed.orderId}`
      assert.strictEqual(reservations.length, 1)
    }))

  it.effect("an order beyond the stock is cancelled with the reason, holds no stock, and gets a cancellation", () =>
    Effect.gen(function*() {
      const productId = yield* newProduct(1)
      const userId = newUser()
      const placed = yield* place(userId, productId, 3)
      const order = yield* settled(userId, placed.orderId)
      assert.strictEqual(order.status, "CANCELLED")
      assert.strictEqual(order.reason, "OUT_OF_STOCK")
      assert.strictEqual(yield* stockOf(productId), 1)

      const { mail, sms } = yield* Receivers
      const mails = mail.received().filter((m) => m.to.includes(emailOf(Ids.UserId.make(userId))))
      assert.deepStrictEqual(mails.map((m) => m.subject), [`Order ${placed.orderId} cancelled`])
      assert.include(mails[0]!.raw, "out of stock")
      assert.strictEqual(sms.received().filter((s) => s.to === phoneOf(Ids.UserId.make(userId))).length, 1)

      const sql = yield* SqlClient
      const failures = yield* sql`SELECT 1 FROM kpipe_failed_events`
      assert.strictEqual(failures.length, 0, "out of stock is neither retried nor dead-lettered")
    }))
})
