import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as Effect from "effect/Effect"

export const eventIdHeader = "kpipe-event-id"
export const eventTypeHeader = "kpipe-event-type"
export const eventVersionHeader = "kpipe-event-version"

export const eventHeaders = (eventId: string, eventType: string, version: number) => ({
  [eventIdHeader]: eventId,
  [eventTypeHeader]: eventType,
  [eventVersionHeader]: String(version)
})

/** The W3C `traceparent` of the current span, if there is one. */
export const traceHeaders: Effect.Effect<Record<string, string>> = Effect.currentSpan.pipe(
  Effect.map((span) => {
    const { traceparent } = HttpTraceContext.toHeaders(span)
    return traceparent === undefined ? {} : { traceparent }
  }),
  Effect.orElseSucceed(() => ({}))
)

/** On a copy a redrive sent: the id of the failed-events row it came from. */
export const redrivenFromHeader = "kpipe-redriven-from"
