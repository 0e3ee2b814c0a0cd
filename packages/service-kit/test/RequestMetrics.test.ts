import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { FastRoute, Health, HttpServe, Prometheus } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

class Created extends Schema.Class<Created>("Created")({ id: Schema.Int }) {}
class Missing
  extends Schema.TaggedError<Missing>()("Missing", { id: Schema.Number }, HttpApiSchema.annotations({ status: 404 }))
{}

const make = HttpApiEndpoint.post("make", "/things/:id")
  .setPath(Schema.Struct({ id: Schema.NumberFromString }))
  .addSuccess(Created, { status: 201 })
  .addError(Missing)

class ThingsApi extends HttpApi.make("things").add(HttpApiGroup.make("things").add(make)) {}

const handle = (id: number) => id === 404 ? Effect.fail(new Missing({ id })) : Effect.succeed(new Created({ id }))

const ThingsLive = HttpApiBuilder.api(ThingsApi).pipe(
  Layer.provide(
    HttpApiBuilder.group(ThingsApi, "things", (handlers) => handlers.handle("make", ({ path }) => handle(path.id)))
  )
)

// `/things/{id}` exactly; with a query string the request goes to the HttpApi router.
const route = FastRoute.make(make, {
  match: (request) => {
    const id = /^\/things\/(\d+)$/.exec(request.url ?? "")?.[1]
    return id === undefined ? undefined : Number(id)
  },
  handle
})

/** The server as services run it: fast route, HttpApi middleware, health and the Prometheus scrape. */
const ServerLive = HttpServe.layer({
  defaultPort: Config.succeed(0),
  logRequests: false,
  fastRoutes: Effect.succeed([route])
}).pipe(
  Layer.provide(ThingsLive),
  Layer.provide(Prometheus.layer("things-service")),
  Layer.provide(Health.layer("things-service"))
)

const origin = Effect.map(
  HttpServer.HttpServer,
  (server) => `http://127.0.0.1:${(server.address as HttpServer.TcpAddress).port}`
)

const post = (path: string) =>
  Effect.flatMap(origin, (origin) => Effect.promise(() => fetch(`${origin}${path}`, { method: "POST" }))).pipe(
    Effect.map((response) => response.status)
  )

/** The `http_server_request_duration_seconds` series of the scrape: `suffix{labels}` → value. */
const scrape = Effect.flatMap(origin, (origin) =>
  Effect.promise(async () => {
    const text = await (await fetch(`${origin}/metrics`)).text()
    const series = new Map<string, number>()
    for (const line of text.split("\n")) {
      const match = /^http_server_request_duration_seconds(_\w+)\{([^}]*)\} (\S+)$/.exec(line)
      if (match === null) continue
      const le = /,?le="([^"]*)"/.exec(match[2]!)
      const rest = le === null ? match[2]! : match[2]!.replace(le[0], "")
      series.set(`${match[1]}{${rest}}${le === null ? "" : ` le=${le[1]}`}`, Number(match[3]))
    }
    return series
  }))

const labels = (status: number) => `{method="POST",route="/things/:id",status="${status}"}`

describe("HttpServe's request-duration histogram", () => {
  it.layer(ServerLive, { timeout: "30 seconds" })((it) => {
    it.effect("counts fast-route and HttpApi answers by method, route template and status in the scrape", () =>
      Effect.gen(function*() {
        const before = yield* scrape
        const was = (key: string) => before.get(key) ?? 0
        assert.deepStrictEqual(
          [
            yield* post("/things/1"),
            yield* post("/things/2"),
            yield* post("/things/404"),
            yield* post("/things/3?via=api"),
            yield* post("/things/404?via=api")
          ],
          [201, 201, 404, 201, 404]
        )
        const after = yield* scrape
        const added = (key: string) => (after.get(key) ?? 0) - was(key)
        // Two fast-route answers and one through the HttpApi for 201, one of each for 404.
        assert.strictEqual(added(`_count${labels(201)}`), 3)
        assert.strictEqual(added(`_count${labels(404)}`), 2)
        // Every answer is in the last bucket (10 s); local answers take well under a second.
        assert.strictEqual(added(`_bucket${labels(201)} le=10`), 3)
        assert.strictEqual(added(`_bucket${labels(201)} le=1`), 3)
        assert.isAbove(added(`_sum${labels(201)}`), 0)
      }))
  })
})
