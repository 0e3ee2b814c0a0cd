import { SqlClient } from "@effect/sql/SqlClient"
import { Database } from "@kpipe/sql"
import { FaultProxy } from "@kpipe/testing"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
const t0 = Date.now()
const log = (m: string) => Effect.sync(() => console.log(((Date.now() - t0) / 1000).toFixed(2), m))
const prog = Effect.gen(function*() {
  const proxy = yield* FaultProxy.make({ host: "127.0.0.1", port: 5432 })
  const url = `postgres://postgres@127.0.0.1:${proxy.port}/postgres`
  const ctx = yield* Layer.build(
    Database.layerConfig(Config.succeed(Redacted.make(url))).pipe(
      Layer.provide(
        Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map([["PG_ANSWER_TIMEOUT", "1 second"], ["PG_MAX_CONNECTIONS", "2"]]))
        )
      )
    )
  )
  const sql = Context.get(ctx, SqlClient)
  yield* log("pool ready")
  yield* log("first " + JSON.stringify(yield* sql`SELECT pg_backend_pid() AS pid`))
  yield* proxy.set(FaultProxy.cut)
  yield* log("cut " + JSON.stringify(yield* Effect.either(sql`SELECT pg_backend_pid() AS pid`)).slice(0, 100))
  yield* proxy.set(FaultProxy.unreachable)
  yield* log("unreachable set")
}).pipe(Effect.scoped)
Effect.runPromise(prog).then(() => process.exit(0), (e) => {
  console.log(e)
  process.exit(1)
})
