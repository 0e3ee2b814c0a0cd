import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Tracer from "effect/Tracer"
import { createServer, type RequestListener } from "node:http"
import * as Config from "../src/Config.ts"
import * as SmsCatcher from "../src/SmsCatcher.ts"
import { SmsGateway } from "../src/SmsGateway.ts"
import { values } from "./config.ts"

const token = "gateway-test-token"

const configLayer = (url: string, overrides: Partial<Config.Values> = {}) =>
  Config.layer(values({ smsUrl: new URL(url), smsToken: Redacted.make(token), ...overrides }))

const gatewayFor = (url: string, smsTimeout: Duration.Duration) =>
  Layer.build(SmsGateway.Default.pipe(Layer.provide(configLayer(url, { smsTimeout })))).pipe(
    Effect.map(Context.get(SmsGateway))
  )

/** A provider answering with `listener`, on a port of its own, closed with the scope. */
const provider = (listener: RequestListener) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
      const server = createServer(listener)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        resume(Effect.succeed({
          url: `http://127.0.0.1:${port}/sms`,
          close: () => {
            server.closeAllConnections()
            server.close()
          }
        }))
      })
    }),
    ({ close }) => Effect.sync(close)
  )

const sms = { to: "+10000000001", text: "Order 1 confirmed.", messageId: "<1@t>" }

describe("SmsGateway", () => {
  it.live("sends the message with its token and idempotency key; 401, 407, 408, 429 and 502-504 say unavailable, other answers refuse it", () =>
    Effect.gen(function*() {
      const catcher = yield* SmsCatcher.make({ token })
      const gateway = yield* gatewayFor(catcher.url, Duration.seconds(10))
      yield* gateway.send(sms)
      assert.deepStrictEqual(catcher.received(), [{ to: sms.to, text: sms.text, idempotencyKey: sms.messageId }])
      const refused = (status: number) =>
        Effect.sync(() => catcher.failNext(1, sms.to, status)).pipe(
          Effect.zipRight(Effect.flip(gateway.send(sms))),
          Effect.map((error) => [status, error.unavailable] as const)
        )
      assert.deepStrictEqual(yield* Effect.forEach([401, 407, 408, 429, 500, 502, 503, 504, 400, 403], refused), [
        [401, true],
        [407, true],
        [408, true],
        [429, true],
        [500, false],
        [502, true],
        [503, true],
        [504, true],
        [400, false],
        [403, false]
      ])
    }).pipe(Effect.scoped))

  it.live("a provider that does not answer within SMS_TIMEOUT, or is not there, is unavailable", () =>
    Effect.gen(function*() {
      const silent = yield* provider(() => {})
      const gone = yield* provider(() => {})
      gone.close()
      const outcome = (url: string) =>
        Effect.gen(function*() {
          const gateway = yield* gatewayFor(url, Duration.millis(300))
          const start = performance.now()
          const error = yield* Effect.flip(gateway.send(sms))
          return { unavailable: error.unavailable, message: error.message, took: performance.now() - start }
        })
      for (const [url, why] of [[silent.url, "Headers Timeout"], [gone.url, "ECONNREFUSED"]] as const) {
        const { message, took, unavailable } = yield* outcome(url)
        assert.isTrue(unavailable, url)
        assert.include(message, why)
        assert.isBelow(took, 3_000, `${url} failed after ${took.toFixed(0)} ms`)
      }
      const { took } = yield* outcome(silent.url)
      assert.isAtLeast(took, 250, "waited for the timeout")
    }).pipe(Effect.scoped))

  it.live("the request carries its client span as W3C traceparent, in the sender's trace", () =>
    Effect.gen(function*() {
      const traceparents: Array<string | undefined> = []
      const { url } = yield* provider((request, response) => {
        traceparents.push(request.headers.traceparent as string | undefined)
        request.resume()
        request.on("end", () => response.writeHead(202).end())
      })
      const gateway = yield* gatewayFor(url, Duration.seconds(10))
      const native = yield* Effect.tracer
      const spans: Array<Tracer.Span> = []
      const recording = Tracer.make({
        span: (...args) => {
          const span = native.span(...args)
          spans.push(span)
          return span
        },
        context: native.context
      })
      const parent = yield* gateway.send(sms).pipe(
        Effect.zipRight(Effect.currentSpan),
        Effect.withSpan("notify"),
        Effect.withTracer(recording)
      )
      const sent = spans.find((span) => span.name === "SmsGateway.send")
      assert.isDefined(sent)
      assert.strictEqual(sent.kind, "client")
      assert.strictEqual(sent.attributes.get("server.address"), "127.0.0.1")
      assert.strictEqual(sent.attributes.get("http.response.status_code"), 202)
      assert.strictEqual(sent.traceId, parent.traceId)
      assert.deepStrictEqual(traceparents, [`00-${parent.traceId}-${sent.spanId}-01`])
    }).pipe(Effect.scoped))

  it.live("a fractional SMS_TIMEOUT is rounded up to whole milliseconds (undici takes no fractions)", () =>
    Effect.gen(function*() {
      const catcher = yield* SmsCatcher.make({ token })
      const gateway = yield* gatewayFor(catcher.url, Duration.millis(2_000.5))
      yield* gateway.send(sms)
      assert.strictEqual(catcher.received().length, 1)
    }).pipe(Effect.scoped))

  it.live("a request undici will not send (a token with a line break) is refused, not unavailable", () =>
    Effect.gen(function*() {
      const catcher = yield* SmsCatcher.make({ token })
      const gateway = yield* Layer.build(SmsGateway.Default.pipe(Layer.provide(configLayer(catcher.url, {
        smsToken: Redacted.make("broken\r\ntoken")
      })))).pipe(Effect.map(Context.get(SmsGateway)))
      const error = yield* Effect.flip(gateway.send(sms))
      assert.isFalse(error.unavailable, error.message)
      assert.strictEqual(catcher.received().length, 0)
    }).pipe(Effect.scoped))

  it.effect("an SMS_TOKEN with a line break or a space is refused at start, without showing it", () =>
    Effect.gen(function*() {
      for (const bad of ["secret\r\nX-Injected: 1", "two words", ""]) {
        const error = yield* Effect.flip(
          Config.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["SMS_TOKEN", bad]]))))
        )
        assert.include(String(error), "SMS_TOKEN must be printable characters only")
        if (bad !== "") assert.notInclude(String(error), bad.slice(0, 6))
      }
    }))

  it.effect("an SMS_URL that is not http: or https: is refused at start", () =>
    Effect.gen(function*() {
      for (const bad of ["ftp://sms.example/send", "file:///tmp/sms"]) {
        const error = yield* Effect.flip(
          Config.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["SMS_URL", bad]]))))
        )
        assert.include(String(error), "SMS_URL must be an http: or https: URL")
      }
    }))

  it.effect("SMS_TIMEOUT of zero is refused at start (it would turn the timeouts off)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Config.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["SMS_TIMEOUT", "0 millis"]]))))
      )
      assert.include(String(error), "SMS_TIMEOUT must be at least 1 millisecond")
    }))
})
