import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { assert, describe, it } from "@effect/vitest"
import { FastRoute } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { IncomingMessage } from "node:http"

class Created extends Schema.Class<Created>("Created")({ id: Schema.Int }) {}
class Missing
  extends Schema.TaggedError<Missing>()("Missing", { id: Schema.Number }, HttpApiSchema.annotations({ status: 404 }))
{}
class Busy
  extends Schema.TaggedError<Busy>()("Busy", { retryAfter: Schema.Number }, HttpApiSchema.annotations({ status: 503 }))
{}

const endpoint = HttpApiEndpoint.post("make", "/things/:id")
  .addSuccess(Created, { status: 201 })
  .addError(Missing)
  .addError(Busy)

const request = (url: string) => ({ url, headers: {}, method: "POST" }) as unknown as IncomingMessage

const route = FastRoute.make(endpoint, {
  match: (request) => {
    const id = /^\/things\/(\d+)$/.exec(request.url ?? "")?.[1]
    return id === undefined ? undefined : Number(id)
  },
  handle: (id) =>
    id === 1
      ? Effect.succeed(new Created({ id }))
      : id === 2
      ? Effect.fail(new Missing({ id }))
      : id === 3
      ? Effect.fail(new Busy({ retryAfter: 5 }))
      : id === 5
      ? Effect.succeed(new Created({ id: Number.NaN }, { disableValidation: true }))
      : Effect.die("a bug")
})

const answer = (url: string) => route.route(request(url)) ?? Effect.succeed("not taken" as const)

describe("FastRoute", () => {
  it.effect("encodes success and each error with the endpoint's schemas and statuses", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* answer("/things/1"), { status: 201, body: JSON.stringify({ id: 1 }) })
      assert.deepStrictEqual(yield* answer("/things/2"), {
        status: 404,
        body: JSON.stringify({ id: 2, _tag: "Missing" })
      })
      assert.deepStrictEqual(yield* answer("/things/3"), {
        status: 503,
        body: JSON.stringify({ retryAfter: 5, _tag: "Busy" })
      })
    }))

  it.effect("answers a defect (or a value it cannot encode) with a bare 500, and leaves requests it does not match to the HttpApi", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* answer("/things/4"), { status: 500, body: "" })
      // A value its own schema refuses cannot be encoded: still an answer, 500.
      assert.deepStrictEqual(yield* answer("/things/5"), { status: 500, body: "" })
      assert.strictEqual(yield* answer("/things/abc"), "not taken")
      assert.strictEqual(yield* answer("/things/1?x=1"), "not taken")
    }))
})
