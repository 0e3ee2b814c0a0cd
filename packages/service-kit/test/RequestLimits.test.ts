import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { AdminAuth } from "@kpipe/contracts/Admin"
import { JsonBody as JsonBodyTag } from "@kpipe/contracts/JsonBody"
import { AdminToken, HttpServe, JsonBody, RequestLimits } from "@kpipe/service-kit"
import { RawHttp } from "@kpipe/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as net from "node:net"

class Note extends Schema.Class<Note>("Note")({ text: Schema.String }) {}

class NotesApi extends HttpApi.make("notes")
  .add(
    HttpApiGroup.make("notes")
      .add(HttpApiEndpoint.post("add", "/notes").setPayload(Note).addSuccess(Note))
      .middleware(JsonBodyTag)
  )
  .add(HttpApiGroup.make("admin").add(HttpApiEndpoint.del("clear", "/admin/notes")).middleware(AdminAuth))
{}

const adminToken = "a-test-admin-token"
const maxBodyBytes = 1024

const NotesLive = HttpApiBuilder.api(NotesApi).pipe(
  Layer.provide(
    HttpApiBuilder.group(
      NotesApi,
      "notes",
      (handlers) => handlers.handle("add", ({ payload }) => Effect.succeed(payload))
    )
  ),
  Layer.provide(HttpApiBuilder.group(NotesApi, "admin", (handlers) => handlers.handle("clear", () => Effect.void))),
  Layer.provide(Layer.merge(JsonBody.layer, AdminToken.layer(Redacted.make(adminToken))))
)

const env = ConfigProvider.fromMap(
  new Map([
    ["HTTP_MAX_BODY_BYTES", String(maxBodyBytes)],
    ["HTTP_MAX_HEADER_BYTES", "2048"],
    ["HTTP_REQUEST_TIMEOUT", "1 second"]
  ])
)

/** The API served as services serve theirs: `HttpServe`'s server and its HttpApi middleware. */
const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(RequestLimits.layerRouteNotFound),
  Layer.provide(NotesLive),
  Layer.provideMerge(HttpServe.layerTest()),
  Layer.provide(Layer.setConfigProvider(env))
)

const port = Effect.map(HttpServer.HttpServer, (server) => (server.address as HttpServer.TcpAddress).port)

const send = (request: RawHttp.RawRequest) => Effect.flatMap(port, (port) => RawHttp.exchange(port, request))

const json = [["Content-Type", "application/json"]] as const

describe("RequestLimits and AdminToken on HttpServe's server", () => {
  it.layer(ServerLive, { timeout: "30 seconds" })((it) => {
    it.effect("a body over the limit is a typed 413, declared or chunked, and a body within it is served", () =>
      Effect.gen(function*() {
        const big = JSON.stringify({ text: "x".repeat(maxBodyBytes * 64) })
        const declared = yield* send({ method: "POST", path: "/notes", headers: json, body: big })
        assert.deepStrictEqual([declared.status, declared.tag], [413, "PayloadTooLarge"])
        assert.strictEqual(declared.headers["connection"], "close")
        const chunked = yield* send({
          method: "POST",
          path: "/notes",
          headers: json,
          body: big,
          chunked: true,
          chunkSize: 256
        })
        assert.deepStrictEqual([chunked.status, chunked.tag], [413, "PayloadTooLarge"])
        const small = yield* send({
          method: "POST",
          path: "/notes",
          headers: json,
          body: JSON.stringify({ text: "hi" }),
          chunked: true
        })
        assert.deepStrictEqual([small.status, small.body], [200, { text: "hi" }])
        // The fast path of a route without JsonBody is refused too, before any handler.
        const admin = yield* send({ method: "DELETE", path: "/admin/notes", body: big })
        assert.deepStrictEqual([admin.status, admin.tag], [413, "PayloadTooLarge"])
      }))

    it.effect("headers over the limit, malformed HTTP, unknown routes and slow bodies get typed answers", () =>
      Effect.gen(function*() {
        const headers = yield* send({ method: "GET", path: "/notes", headers: [["X-Big", "y".repeat(4096)]] })
        assert.deepStrictEqual([headers.status, headers.tag], [431, "HeadersTooLarge"])
        const unknown = yield* send({ method: "GET", path: "/nothing/here" })
        assert.deepStrictEqual([unknown.status, unknown.tag], [404, "RouteNotFound"])
        const wrongMethod = yield* send({ method: "PUT", path: "/notes" })
        assert.deepStrictEqual([wrongMethod.status, wrongMethod.tag], [404, "RouteNotFound"])
        const malformed = yield* send({ method: "GET", path: "/notes HTTP/9\u0000" })
        assert.deepStrictEqual([malformed.status, malformed.tag], [400, "MalformedRequest"])

        // A body announced but never sent: the request times out (HTTP_REQUEST_TIMEOUT = 1 s).
        const slow = yield* Effect.flatMap(port, (port) =>
          Effect.async<string>((resume) => {
            const socket = net.connect({ host: "127.0.0.1", port })
            let text = ""
            socket.on("data", (chunk) => text += chunk.toString())
            socket.on("close", () => resume(Effect.succeed(text)))
            socket.on("error", () => {})
            socket.write(
              "POST /notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            return Effect.sync(() => socket.destroy())
          }))
        assert.match(slow, /^HTTP\/1\.1 408/)
        assert.include(slow, "\"_tag\":\"RequestTimeout\"")
      }))

    it.effect("admin endpoints need the bearer token", () =>
      Effect.gen(function*() {
        const none = yield* send({ method: "DELETE", path: "/admin/notes" })
        assert.deepStrictEqual([none.status, none.tag], [401, "Unauthorized"])
        const wrong = yield* send({
          method: "DELETE",
          path: "/admin/notes",
          headers: [["Authorization", "Bearer nope"]]
        })
        assert.deepStrictEqual([wrong.status, wrong.tag], [401, "Unauthorized"])
        const right = yield* send({
          method: "DELETE",
          path: "/admin/notes",
          headers: [["Authorization", `Bearer ${adminToken}`]]
        })
        assert.strictEqual(right.status, 204)
      }))
  })

  it.effect("ADMIN_TOKEN is required outside development mode; in it a missing one is random", () =>
    Effect.gen(function*() {
      const read = (entries: ReadonlyArray<readonly [string, string]>) =>
        Effect.either(Effect.withConfigProvider(AdminToken.config, ConfigProvider.fromMap(new Map(entries))))
      const missing = yield* read([])
      assert.isTrue(Either.isLeft(missing))
      assert.include(String(Either.getLeft(missing).pipe((e) => e._tag === "Some" ? e.value : "")), "ADMIN_TOKEN")
      assert.isTrue(Either.isLeft(yield* read([["KPIPE_ENV", "production"], ["ADMIN_TOKEN", ""]])))
      assert.isTrue(Either.isLeft(yield* read([["KPIPE_ENV", "staging"]])))
      const given = yield* read([["ADMIN_TOKEN", "secret"]])
      assert.strictEqual(Either.isRight(given) && Redacted.value(given.right), "secret")
      assert.notInclude(String(Either.isRight(given) && given.right), "secret")
      const first = yield* read([["KPIPE_ENV", "development"]])
      const second = yield* read([["KPIPE_ENV", "development"]])
      assert.isTrue(Either.isRight(first) && Either.isRight(second))
      if (Either.isRight(first) && Either.isRight(second)) {
        assert.isAtLeast(Redacted.value(first.right).length, 40)
        assert.notStrictEqual(Redacted.value(first.right), Redacted.value(second.right))
      }
      assert.isTrue(AdminToken.matches(Redacted.make("abc"), Redacted.make("abc")))
      assert.isFalse(AdminToken.matches(Redacted.make("abc"), Redacted.make("abcd")))
    }))
})
