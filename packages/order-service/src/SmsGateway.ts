import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Agent } from "undici"
import { Config } from "./Config.ts"

/** The SMS did not go out; `unavailable` when the provider could not be reached or said it is not available. */
export class SmsError extends Data.TaggedError("SmsError")<{
  readonly message: string
  readonly unavailable: boolean
}> {}

// A provider that is away or overloaded, as opposed to one that refused this message.
const unavailableStatuses = new Set([429, 502, 503, 504])

const isUnavailable = (error: HttpClientError.HttpClientError) =>
  (error instanceof HttpClientError.RequestError && error.reason === "Transport") ||
  (error instanceof HttpClientError.ResponseError && unavailableStatuses.has(error.response.status))

// A transport error says only "Transport error (POST …)": undici's cause tells a timeout from a refusal.
const messageOf = (error: HttpClientError.HttpClientError) =>
  error instanceof HttpClientError.RequestError && error.cause instanceof Error
    ? `${error.message}: ${error.cause.message}`
    : error.message

export interface Sms {
  readonly to: string
  readonly text: string
  /** The same for every attempt of one message; sent as `Idempotency-Key`. */
  readonly messageId: string
}

/**
 * SMS through the provider's HTTP endpoint (`SMS_URL`, bearer `SMS_TOKEN`): any answer but 2xx is a
 * failure; no connection, no answer within `SMS_TIMEOUT` (to connect, then again to answer), 429 and
 * 502-504 say the provider is unavailable.
 */
export class SmsGateway extends Effect.Service<SmsGateway>()("@kpipe/order-service/SmsGateway", {
  scoped: Effect.gen(function*() {
    const config = yield* Config
    // Effect's undici client turns undici's timeouts off per request and leaves them to an
    // `Effect.timeout`, which cost ~100 µs of CPU a request, a third of it: put undici's back.
    const timeout = Duration.toMillis(config.smsTimeout)
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => new Agent({ connectTimeout: timeout })),
      (agent) => Effect.tryPromise(() => agent.destroy()).pipe(Effect.ignoreLogged)
    )
    const timed = agent.compose((dispatch) => (options, handler) =>
      dispatch({ ...options, headersTimeout: timeout, bodyTimeout: timeout }, handler)
    )
    const client = NodeHttpClient.makeUndici(timed).pipe(HttpClient.filterStatusOk)
    const url = config.smsUrl.toString()

    const send = Effect.fn("SmsGateway.send")(function*(sms: Sms) {
      // Two strings: nothing JSON.stringify could fail on.
      const request = HttpClientRequest.post(url).pipe(
        HttpClientRequest.bearerToken(Redacted.value(config.smsToken)),
        HttpClientRequest.setHeader("idempotency-key", sms.messageId),
        HttpClientRequest.bodyUnsafeJson({ to: sms.to, text: sms.text })
      )
      yield* client.execute(request).pipe(
        Effect.mapError((error) => new SmsError({ message: messageOf(error), unavailable: isUnavailable(error) }))
      )
    })

    return { send } as const
  })
}) {}
