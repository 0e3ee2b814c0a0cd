// The limit: what the broker takes from Kafka's own Java tools (kafka-tools 3.9.1), with our record
// size, acks=all and an idempotent producer, on topics shaped like ours.
import { BenchReport } from "@kpipe/devtools"
import { TestKafka } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Jvm from "./Jvm.ts"
import * as Progress from "./Progress.ts"
import type { Percentiles } from "./Results.ts"
import { type CompareConfig, createTopic } from "./Workload.ts"

export interface Limit {
  /** ProducerPerformance, unthrottled: records/s. */
  readonly produceRate: number
  /** ConsumerPerformance over those records: records/s while fetching. */
  readonly consumeRate: number
  /** ProducerPerformance at each offered rate: send → acknowledged by the broker. */
  readonly latency: ReadonlyMap<number, Percentiles>
  /** EndToEndLatency: produce → consume, one record at a time (it prints no p95 or max). */
  readonly endToEnd: { readonly p50: number; readonly p99: number; readonly p999: number }
}

const brokers = () => process.env.KAFKA_BROKERS ?? "127.0.0.1:9092"

const number = (line: string, pattern: RegExp, what: string) => {
  const match = pattern.exec(line)
  if (match === null) throw new Error(`${what}: no match for ${pattern} in: ${line}`)
  return Number(match[1])
}

/** "N records sent, R records/sec (…), A ms avg latency, M ms max latency, P ms 50th, P ms 95th, P ms 99th, …" */
export const parseProducer = (lines: ReadonlyArray<string>) => {
  const line = lines.findLast((l) => l.includes("records sent")) ?? ""
  return {
    rate: number(line, /([\d.]+) records\/sec/, "ProducerPerformance"),
    latency: {
      p50: number(line, /(\d+) ms 50th/, "ProducerPerformance"),
      p95: number(line, /(\d+) ms 95th/, "ProducerPerformance"),
      p99: number(line, /(\d+) ms 99th/, "ProducerPerformance"),
      max: number(line, /([\d.]+) ms max latency/, "ProducerPerformance")
    }
  }
}

/** The CSV line under ConsumerPerformance's header; `fetch.nMsg.sec` leaves the group join out. */
export const parseConsumer = (lines: ReadonlyArray<string>) => {
  const header = lines.findIndex((l) => l.startsWith("start.time"))
  const names = (lines[header] ?? "").split(",").map((s) => s.trim())
  const values = (lines[header + 1] ?? "").split(",").map((s) => s.trim())
  const rate = Number(values[names.indexOf("fetch.nMsg.sec")])
  if (!Number.isFinite(rate)) throw new Error(`ConsumerPerformance: no rate in ${lines.join("\n")}`)
  return rate
}

/** "Percentiles: 50th = 1, 99th = 12, 99.9th = 20" */
export const parseEndToEnd = (lines: ReadonlyArray<string>) => {
  const line = lines.findLast((l) => l.startsWith("Percentiles")) ?? ""
  return {
    p50: number(line, /50th = (\d+)/, "EndToEndLatency"),
    p99: number(line, /99th = (\d+)/, "EndToEndLatency"),
    p999: number(line, /99\.9th = (\d+)/, "EndToEndLatency")
  }
}

const producerPerformance = (cp: string, topic: string, records: number, throughput: number, recordBytes: number) =>
  Jvm.runToEnd(cp, "org.apache.kafka.tools.ProducerPerformance", [
    "--topic",
    topic,
    "--num-records",
    String(records),
    "--record-size",
    String(recordBytes),
    "--throughput",
    String(throughput),
    "--producer-props",
    `bootstrap.servers=${brokers()}`,
    "acks=all",
    "enable.idempotence=true"
  ]).pipe(Effect.flatMap((lines) => Effect.try(() => parseProducer(lines))))

export const run = (config: CompareConfig, created: Array<string>) =>
  Effect.gen(function*() {
    const cp = yield* Jvm.classpath("kafka-tools")
    const topic = (prefix: string, partitions = config.base.partitions) =>
      createTopic(TestKafka.uniqueName(prefix), partitions, created)

    yield* BenchReport.print("The limit: Kafka's own tools (kafka-tools 3.9.1), acks=all, idempotent producer")
    const drainTopic = yield* topic("compare-limit")
    const produce = yield* Progress.during(
      `ProducerPerformance, ${BenchReport.fmt(config.events)} records unthrottled`,
      () => "running",
      producerPerformance(cp, drainTopic, config.events, -1, config.recordBytes)
    )
    yield* BenchReport.print(`  ProducerPerformance unthrottled: ${BenchReport.fmt(produce.rate)} records/s`)
    const consumeRate = yield* Progress.during(
      "ConsumerPerformance over those records",
      () => "running",
      Jvm.runToEnd(cp, "org.apache.kafka.tools.ConsumerPerformance", [
        "--bootstrap-server",
        brokers(),
        "--topic",
        drainTopic,
        "--messages",
        String(config.events),
        "--group",
        TestKafka.uniqueName("compare-limit"),
        "--timeout",
        "60000"
      ]).pipe(Effect.flatMap((lines) => Effect.try(() => parseConsumer(lines))))
    )
    yield* BenchReport.print(`  ConsumerPerformance: ${BenchReport.fmt(consumeRate)} records/s (fetching)`)

    const latency = new Map<number, Percentiles>()
    for (const rate of config.rates) {
      const result = yield* Progress.during(
        `ProducerPerformance at ${BenchReport.fmt(rate)} records/s for ${config.seconds} s`,
        () => "running",
        Effect.flatMap(
          topic(`compare-limit-${rate}`),
          (name) => producerPerformance(cp, name, rate * config.seconds, rate, config.recordBytes)
        )
      )
      latency.set(rate, result.latency)
      yield* BenchReport.print(
        `  ProducerPerformance at ${BenchReport.fmt(rate)}/s: send → acknowledged p50 ${
          BenchReport.ms(result.latency.p50)
        }, p95 ${BenchReport.ms(result.latency.p95)}, p99 ${BenchReport.ms(result.latency.p99)}, max ${
          BenchReport.ms(result.latency.max)
        }`
      )
    }

    const endToEnd = yield* Progress.during(
      `EndToEndLatency, ${BenchReport.fmt(config.endToEndMessages)} round trips`,
      () => "running",
      Effect.flatMap(topic("compare-limit-e2e", 1), (name) =>
        Jvm.runToEnd(cp, "org.apache.kafka.tools.EndToEndLatency", [
          brokers(),
          name,
          String(config.endToEndMessages),
          "all",
          String(config.recordBytes)
        ]).pipe(Effect.flatMap((lines) => Effect.try(() => parseEndToEnd(lines)))))
    )
    yield* BenchReport.print(
      `  EndToEndLatency (produce → consume, one at a time): p50 ${BenchReport.ms(endToEnd.p50)}, p99 ${
        BenchReport.ms(endToEnd.p99)
      }, p99.9 ${BenchReport.ms(endToEnd.p999)}`
    )
    yield* BenchReport.print()
    return { produceRate: produce.rate, consumeRate, latency, endToEnd } satisfies Limit
  })
