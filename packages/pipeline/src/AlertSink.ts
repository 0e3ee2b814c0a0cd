import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"

export interface Alert {
  readonly title: string
  readonly severity: "warning" | "critical"
  readonly details: Readonly<Record<string, string | number | undefined>>
}

/** Where operators hear about failures (the seeds' Slack / e-mail). An alert that cannot be delivered is logged, never fatal. */
export class AlertSink extends Context.Tag("@kpipe/pipeline/AlertSink")<AlertSink, {
  readonly alert: (alert: Alert) => Effect.Effect<void>
}>() {}

const logAlert = (alert: Alert) =>
  (alert.severity === "critical" ? Effect.logError(alert.title) : Effect.logWarning(alert.title)).pipe(
    Effect.annotateLogs({ alert: true, ...alert.details })
  )

/** Alerts as structured log lines. */
export const layerLog: Layer.Layer<AlertSink> = Layer.succeed(AlertSink, AlertSink.of({ alert: logAlert }))

/** Alerts POSTed as JSON to `url` (e.g. a Slack incoming webhook), retried briefly, and always logged too. */
export const layerWebhook = (url: string): Layer.Layer<AlertSink, never, HttpClient.HttpClient> =>
  Layer.effect(
    AlertSink,
    Effect.gen(function*() {
      const client = (yield* HttpClient.HttpClient).pipe(HttpClient.filterStatusOk)
      const alert = (alert: Alert) =>
        Effect.zipRight(
          logAlert(alert),
          HttpClientRequest.post(url).pipe(
            HttpClientRequest.bodyJson({ text: alert.title, ...alert }),
            Effect.flatMap(client.execute),
            Effect.scoped,
            Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.intersect(Schedule.recurs(3)))),
            Effect.catchAll((error) => Effect.logError("Alert webhook failed", error))
          )
        ).pipe(Effect.withSpan("AlertSink.alert"))
      return AlertSink.of({ alert })
    })
  )

/** `ALERT_WEBHOOK_URL` set: webhook; unset: log. */
export const layerConfig: Layer.Layer<AlertSink, ConfigError.ConfigError, HttpClient.HttpClient> = Layer.unwrapEffect(
  Effect.map(
    Config.option(Config.url("ALERT_WEBHOOK_URL")),
    Option.match({ onNone: () => layerLog, onSome: (url) => layerWebhook(url.toString()) })
  )
)
