import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Config } from "./Config.ts"

/** The SMS did not go out; `unavailable` when the provider could not be reached or said it is not available. */
export class SmsError extends Data.TaggedError("SmsError")<{
  readonly message: string
  readonly unavailable: boolean
}> {}

// A provider that is away or overloaded, as opposed to one that refused this message.
const unavailableStatuses = new Set([429, 502, 503, 504])

const isUnavailable = (error: { readonly _tag: string }) =>
  error._tag === "TimeoutException" ||
  (error instanceof HttpClientError.RequestError && error.reason === "Transport") ||
  (error instanceof HttpClientError.ResponseError && unavailableStatuses.has(error.response.status))

export interface Sms {
  readonly to: string
  readonly text: string
  /** The same for every attempt of one message; sent as `Idempotency-Key`. */
  readonly messageId: string
}

/**
 * SMS through the provider's HTTP endpoint (`SMS_URL`, bearer `SMS_TOKEN`): any answer but 2xx is a
 * failure; no answer, a timeout, 429 and 502-504 say the provider is unavailable.
 */
export class SmsGateway extends Effect.Service<SmsGateway>()("@kpipe/order-service/SmsGateway", {
  effect: Effect.gen(function*() {
    const config = yield* Config
    const client = (yield* HttpClient.HttpClient).pipe(HttpClient.filterStatusOk)
    const url = config.smsUrl.toString()

    const send = Effect.fn("SmsGateway.send")(function*(sms: Sms) {
      yield* HttpClientRequest.post(url).pipe(
        HttpClientRequest.bearerToken(Redacted.value(config.smsToken)),
        HttpClientRequest.setHeader("idempotency-key", sms.messageId),
        HttpClientRequest.bodyJson({ to: sms.to, text: sms.text }),
        Effect.flatMap(client.execute),
        Effect.timeout("10 seconds"),
        Effect.scoped,
        Effect.mapError((error) =>
          new SmsError({ message: "message" in error ? error.message : error._tag, unavailable: isUnavailable(error) })
        )
      )
    })

    return { send } as const
  })
}) {}
