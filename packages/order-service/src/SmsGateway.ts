import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Config } from "./Config.ts"

export class SmsError extends Data.TaggedError("SmsError")<{ readonly message: string }> {}

export interface Sms {
  readonly to: string
  readonly text: string
  /** The same for every attempt of one message; sent as `Idempotency-Key`. */
  readonly messageId: string
}

/** SMS through the provider's HTTP endpoint (`SMS_URL`, bearer `SMS_TOKEN`): any answer but 2xx is a failure. */
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
        Effect.mapError((error) => new SmsError({ message: "message" in error ? error.message : error._tag }))
      )
    })

    return { send } as const
  })
}) {}
