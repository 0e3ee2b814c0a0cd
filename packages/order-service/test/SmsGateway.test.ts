import { assert, describe, it } from "@effect/vitest"
import { ConsumerSettings } from "@kpipe/service-kit"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createServer, type RequestListener } from "node:http"
import * as Config from "../src/Config.ts"
import * as SmsCatcher from "../src/SmsCatcher.ts"
import { SmsGateway } from "../src/SmsGateway.ts"

const token = "gateway-test-token"

const gatewayFor = (url: string, smsTimeout: Duration.Duration) =>
  Layer.build(SmsGateway.Default.pipe(Layer.provide(Config.layer({
    port: 0,
    databaseUrl: Redacted.make("postgres://unused"),
    maxQuantity: 100,
    smtpHost: "127.0.0.1",
    smtpPort: 1,
    smtpConnections: 1,
    mailFrom: "orders@kpipe.test",
    smsUrl: new URL(url),
    smsToken: Redacted.make(token),
    smsTimeout,
    consumer: ConsumerSettings.defaults
  })))).pipe(Effect.map(Context.get(SmsGateway)))

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
  it.live("sends the message with its token and idempotency key; 503 is unavailable, 500 refuses it", () =>
    Effect.gen(function*() {
      const catcher = yield* SmsCatcher.make({ token })
      const gateway = yield* gatewayFor(catcher.url, Duration.seconds(10))
      yield* gateway.send(sms)
      assert.deepStrictEqual(catcher.received(), [{ to: sms.to, text: sms.text, idempotencyKey: sms.messageId }])
      catcher.failNext(1, sms.to, 503)
      assert.isTrue((yield* Effect.flip(gateway.send(sms))).unavailable)
      catcher.failNext(1, sms.to, 500)
      assert.isFalse((yield* Effect.flip(gateway.send(sms))).unavailable)
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
          return { unavailable: error.unavailable, took: performance.now() - start }
        })
      for (const url of [silent.url, gone.url]) {
        const { took, unavailable } = yield* outcome(url)
        assert.isTrue(unavailable, url)
        assert.isBelow(took, 3_000, `${url} failed after ${took.toFixed(0)} ms`)
      }
      const { took } = yield* outcome(silent.url)
      assert.isAtLeast(took, 250, "waited for the timeout")
    }).pipe(Effect.scoped))
})
