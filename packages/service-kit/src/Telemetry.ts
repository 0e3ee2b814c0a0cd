import * as Otlp from "@effect/opentelemetry/Otlp"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

/**
 * Traces, metrics and logs over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. the Jaeger of
 * docker/compose.yaml on http://127.0.0.1:4318); nothing is exported when it is unset.
 */
export const layer = (serviceName: string): Layer.Layer<never> =>
  Layer.unwrapEffect(
    Config.option(Config.string("OTEL_EXPORTER_OTLP_ENDPOINT")).pipe(
      Effect.orElseSucceed(() => Option.none<string>()),
      Effect.map(Option.match({
        onNone: () => Layer.empty,
        onSome: (baseUrl) =>
          Otlp.layerJson({ baseUrl, resource: { serviceName } }).pipe(Layer.provide(NodeHttpClient.layerUndici))
      }))
    )
  )
