import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { Agent, errors, request } from "undici"
import { Config } from "./Config.ts"

/** The SMS did not go out; `unavailable` when the provider could not be reached or said it is not available. */
export class SmsError extends Data.TaggedError("SmsError")<{
  readonly message: string
  readonly unavailable: boolean
}> {}

// A provider that is away or overloaded, as opposed to one that refused this message; and 401, 407
// and 408: our token (or proxy credentials) refused, or the request timed out at the provider, which
// every message would meet alike until the deployment or the provider is fixed: waiting beats
// dead-lettering every notification meanwhile.
const unavailableStatuses = new Set([401, 407, 408, 429, 502, 503, 504])

// A refused connection to a name with two addresses is an AggregateError with an empty message.
const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { readonly code?: unknown }).code
  const message = error.message || error.name
  return typeof code === "string" && !message.includes(code) ? `${message} (${code})` : message
}

export interface Sms {
  readonly to: string
  readonly text: string
  /** The same for every attempt of one message; sent as `Idempotency-Key`. */
  readonly messageId: string
}

/**
 * SMS through the provider's HTTP endpoint (`SMS_URL`, bearer `SMS_TOKEN`): any answer but 2xx is a
 * failure; no connection, no answer within `SMS_TIMEOUT` (to connect, then again to answer), 401,
 * 407, 408, 429 and 502-504 say the provider is unavailable.
 */
export class SmsGateway extends Effect.Service<SmsGateway>()("@kpipe/order-service/SmsGateway", {
  scoped: Effect.gen(function*() {
    const config = yield* Config
    // undici takes whole milliseconds only: a fractional timeout would fail every send.
    const timeout = Math.ceil(Duration.toMillis(config.smsTimeout))
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => new Agent({ connectTimeout: timeout, headersTimeout: timeout, bodyTimeout: timeout })),
      (agent) => Effect.tryPromise(() => agent.destroy()).pipe(Effect.ignoreLogged)
    )
    const url = config.smsUrl.toString()
    const spanOptions = { kind: "client", attributes: { "server.address": config.smsUrl.hostname } } as const
    const authorization = `Bearer ${Redacted.value(config.smsToken)}`

    // undici's own request, not @effect/platform's HttpClient over it: the client's request and
    // response models and its span cost twice the CPU of the request itself (0.35-0.39 against
    // 0.17-0.18 ms an SMS, measured 6,000 sends at 32 at once), a tenth of the notifications'.
    const send = Effect.fn("SmsGateway.send", spanOptions)(function*(sms: Sms) {
      const span = yield* Effect.option(Effect.currentSpan)
      const headers: Record<string, string> = {
        ...(Option.isSome(span) ? HttpTraceContext.toHeaders(span.value) : {}),
        authorization,
        "content-type": "application/json",
        "idempotency-key": sms.messageId
      }
      yield* Effect.annotateCurrentSpan({ "http.request.method": "POST", "url.full": url })
      // Two strings: nothing JSON.stringify could fail on.
      const body = JSON.stringify({ to: sms.to, text: sms.text })
      const status = yield* Effect.tryPromise({
        try: async (signal) => {
          const response = await request(url, { method: "POST", dispatcher: agent, headers, body, signal })
          await response.body.dump()
          return response.statusCode
        },
        // No answer (refused, reset, a timeout): undici's message and code say which. A request
        // undici will not send (a bad header value) is ours to fix, not the provider's absence.
        catch: (error) =>
          new SmsError({
            message: `POST ${url}: ${describe(error)}`,
            unavailable: !(error instanceof errors.InvalidArgumentError)
          })
      })
      yield* Effect.annotateCurrentSpan("http.response.status_code", status)
      if (status < 200 || status > 299) {
        return yield* new SmsError({
          message: `POST ${url}: the provider answered ${status}`,
          unavailable: unavailableStatuses.has(status)
        })
      }
    })

    return { send } as const
  })
}) {}
