import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { OrderModels } from "@kpipe/contracts"
import { Ids } from "@kpipe/events"
import { Database } from "@kpipe/sql"
import { TestLogging } from "@kpipe/testing"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Config from "../src/Config.ts"
import * as Migrations from "../src/Migrations.ts"
import { Orders } from "../src/Orders.ts"
import * as Topics from "../src/Topics.ts"
import { newProduct, newUser } from "./utils.ts"

const OrdersAlone = Orders.Default.pipe(
  Layer.provide(Layer.effect(Topics.OrderTopics, Topics.resolve)),
  Layer.provide(Layer.effect(Config.Config, Config.config))
)

describe("order-service stopping", () => {
  it.live(
    "an order whose COMMIT is in flight when Orders stops is answered with the order, as committed",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const productId = yield* newProduct(10)
        // A deferred constraint trigger runs at COMMIT: each COMMIT of an order takes a second.
        yield* sql`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
        'BEGIN PERFORM pg_sleep(1); RETURN NULL; END'`
        yield* sql`CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON orders
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`
        const scope = yield* Scope.make()
        const orders = Context.get(yield* Layer.buildWithScope(OrdersAlone, scope), Orders)
        const userId = Ids.UserId.make(newUser())
        const placing = yield* Effect.fork(
          orders.place(
            userId,
            new OrderModels.PlaceOrderRequest({ productId: Ids.ProductId.make(productId), quantity: 1 }),
            Option.some("stop-during-commit")
          )
        )
        yield* Effect.sleep("300 millis")
        yield* Scope.close(scope, Exit.void)
        const answer = yield* Fiber.await(placing)
        const rows = yield* sql<{ orderId: string }>`SELECT order_id FROM orders WHERE user_id = ${userId}`
        assert.lengthOf(rows, 1, "the order committed")
        assert.isTrue(Exit.isSuccess(answer), `answered ${Exit.isFailure(answer) ? answer.cause : ""}`)
        if (Exit.isSuccess(answer)) assert.strictEqual(answer.value.orderId, Number(rows[0]!.orderId))
      }).pipe(Effect.provide(Database.layerTest(Migrations.all)), Effect.provide(TestLogging.layer)),
    { timeout: 60_000 }
  )
})
