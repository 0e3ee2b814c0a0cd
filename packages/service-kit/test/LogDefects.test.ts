import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Health, HttpServe, Prometheus } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

class BrokenApi extends HttpApi.make("broken").add(
  HttpApiGroup.make("broken")
    .add(HttpApiEndpoint.get("broken", "/broken").addSuccess(Schema.String))
    .add(HttpApiEndpoint.get("fine", "/fine").addSuccess(Schema.String))
) {}

const BrokenLive = HttpApiBuilder.api(BrokenApi).pipe(
  Layer.provide(HttpApiBuilder.group(BrokenApi, "broken", (handlers) =>
    handlers
      .handle("broken", () => Effect.die(new Error("a bug in the handler")))
      .handle("fine", () => Effect.succeed("fine"))))
)

const errors: Array<{ readonly message: string; readonly path: unknown }> = []
const recorder = Logger.make(({ annotations, logLevel, message }) => {
  if (logLevel._tag !== "Error") return
  errors.push({
    message: String(Array.isArray(message) ? message[0] : message),
    path: Option.getOrUndefined(HashMap.get(annotations, "http.path"))
  })
})

const ServerLive = HttpServe.layer({ defaultPort: Config.succeed(0), logRequests: false }).pipe(
  Layer.provide(BrokenLive),
  Layer.provide(Prometheus.layer("broken-service")),
  Layer.provide(Health.layer("broken-service")),
  Layer.provide(Layer.merge(Logger.replace(Logger.defaultLogger, recorder), Logger.minimumLogLevel(LogLevel.Error)))
)

describe("HttpServe without request logs", () => {
  it.layer(ServerLive, { timeout: "30 seconds" })((it) => {
    it.effect("logs a request that died at Error, with its path; a good answer logs nothing", () =>
      Effect.gen(function*() {
        const server = yield* HttpServer.HttpServer
        const origin = `http://127.0.0.1:${(server.address as HttpServer.TcpAddress).port}`
        const status = (path: string) => Effect.promise(() => fetch(`${origin}${path}`).then((r) => r.status))
        assert.strictEqual(yield* status("/fine"), 200)
        assert.deepStrictEqual(errors, [])
        assert.strictEqual(yield* status("/broken?token=secret"), 500)
        assert.deepStrictEqual(errors, [{ message: "A request failed with a defect; answered 500", path: "/broken" }])
      }))
  })
})
