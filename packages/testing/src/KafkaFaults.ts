import { KafkaClient } from "@kpipe/kafka"
import type { KafkaClientConfig } from "@kpipe/kafka/KafkaClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { Kafka, logLevel } from "kafkajs"
import * as net from "node:net"
import * as FaultProxy from "./FaultProxy.ts"

/** The first broker of `KAFKA_BROKERS` (default the local one). */
export const firstBroker: Effect.Effect<{ readonly host: string; readonly port: number }> = Config.array(
  Config.nonEmptyString(),
  "KAFKA_BROKERS"
).pipe(
  Config.withDefault(["127.0.0.1:9092"]),
  Effect.orElseSucceed(() => ["127.0.0.1:9092"]),
  Effect.map((brokers) => {
    const [host, port] = brokers[0]!.split(":")
    return { host: host!, port: Number(port ?? 9092) }
  })
)

/** A fault proxy in front of the first broker of `KAFKA_BROKERS`; closed with the scope. */
export const proxy: Effect.Effect<FaultProxy.FaultProxy, FaultProxy.FaultProxyError, Scope.Scope> = Effect.flatMap(
  firstBroker,
  FaultProxy.make
)

/**
 * A `KafkaClient` whose every broker connection goes through `proxy`, whatever address the broker
 * advertises (a single-node cluster: the proxy's target is that node). Faults then hit this
 * client's producers, consumers and admins only; the broker itself and everyone else's clients
 * are untouched.
 */
export const layerThrough = (
  through: FaultProxy.FaultProxy,
  config: Partial<Omit<KafkaClientConfig, "brokers">> = {}
): Layer.Layer<KafkaClient.KafkaClient> =>
  Layer.sync(KafkaClient.KafkaClient, () => {
    const clientConfig: KafkaClientConfig = {
      brokers: [`${through.host}:${through.port}`],
      clientId: config.clientId ?? "kpipe-faults",
      connectionTimeout: config.connectionTimeout ?? 3_000,
      requestTimeout: config.requestTimeout ?? 30_000,
      retries: config.retries ?? 5
    }
    const kafka = new Kafka({
      clientId: clientConfig.clientId,
      brokers: [...clientConfig.brokers],
      connectionTimeout: clientConfig.connectionTimeout!,
      requestTimeout: clientConfig.requestTimeout!,
      retry: { retries: clientConfig.retries! },
      // kafkajs logs every failed attempt; the faults are on purpose, what matters surfaces as KafkaError.
      logLevel: logLevel.NOTHING,
      socketFactory: ({ onConnect }) => {
        const socket = net.connect({ host: through.host, port: through.port }, onConnect)
        socket.setKeepAlive(true, 1_000)
        return socket
      }
    })
    return KafkaClient.KafkaClient.of({ kafka, config: clientConfig })
  })
