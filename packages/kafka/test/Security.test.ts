import { assert, describe, layer } from "@effect/vitest"
import { Admin, Consumer, KafkaClient, Producer } from "@kpipe/kafka"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import { readFileSync } from "node:fs"
import * as LocalKafka from "../../../scripts/kafka/LocalKafka.ts"

// The SASL_SSL broker of scripts/kafka/secure.sh: started here when it is not running (CI starts it
// beforehand), with the CA, certificates and SCRAM/PLAIN user the script generated.
const SecureBroker = Layer.scopedDiscard(LocalKafka.ensure(LocalKafka.secure))

const uniqueName = (prefix: string) => `${prefix}-${crypto.randomUUID()}`

const settings = Effect.map(LocalKafka.credentials(), (env) => ({
  username: env["KAFKA_SASL_USERNAME"]!,
  password: Redacted.make(env["KAFKA_SASL_PASSWORD"]!),
  ca: readFileSync(env["KAFKA_SSL_CA_FILE"]!, "utf8"),
  env
}))

const client = (overrides: Partial<KafkaClient.KafkaClientConfig>) =>
  KafkaClient.layer({
    brokers: LocalKafka.secure.brokers,
    clientId: "security-test",
    connectionTimeout: 3_000,
    ...overrides
  })

/** An unsecured JWT (alg "none"), which the local broker's built-in OAUTHBEARER validator accepts. */
const unsecuredJwt = (subject: string) => {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url")
  const now = Math.floor(Date.now() / 1000)
  return `${encode({ alg: "none" })}.${encode({ sub: subject, iat: now, exp: now + 600 })}.`
}

/** A topic created, one record produced and read back in a consumer group: the whole client surface. */
const roundTrip = Effect.gen(function*() {
  const admin = yield* Admin.Admin
  const topic = uniqueName("secure")
  yield* admin.createTopics([{ name: topic, partitions: 1 }])
  yield* Effect.flatMap(
    Producer.Producer,
    (producer) => producer.send({ topic, messages: [{ key: "k", value: "over TLS" }] })
  )
  const received = yield* Queue.unbounded<Consumer.ConsumerRecord>()
  yield* Effect.scoped(Effect.gen(function*() {
    yield* Consumer.run(
      {
        groupId: uniqueName("secure-group"),
        topics: [topic],
        sessionTimeout: 6_000,
        rebalanceTimeout: 10_000,
        heartbeatInterval: 500,
        maxWaitTimeInMs: 100
      },
      (record) => Queue.offer(received, record)
    )
    const record = yield* Queue.take(received)
    assert.strictEqual(record.value?.toString(), "over TLS")
  }))
  yield* admin.deleteTopics([topic])
  return (yield* admin.describeCluster).brokers.length
}).pipe(Effect.timeout("30 seconds"))

const clientLayers = <E>(clientLayer: Layer.Layer<KafkaClient.KafkaClient, E>) =>
  Layer.mergeAll(Admin.layer, Producer.layer()).pipe(Layer.provideMerge(clientLayer))

/** Connecting with `clientLayer` fails: the error, and how long it took. */
const connectFailure = <E>(clientLayer: Layer.Layer<KafkaClient.KafkaClient, E>) =>
  Admin.layer.pipe(Layer.provide(clientLayer), Layer.build, Effect.scoped, Effect.flip, Effect.timed)

layer(SecureBroker, { timeout: 120_000, excludeTestServices: true })("TLS and SASL (real SASL_SSL broker)", (it) => {
  for (const mechanism of ["plain", "scram-sha-256", "scram-sha-512"] as const) {
    it.effect(`SASL ${mechanism} over TLS with the private CA: create, produce, consume`, () =>
      Effect.gen(function*() {
        const { ca, password, username } = yield* settings
        const brokers = yield* roundTrip.pipe(
          Effect.provide(clientLayers(client({ ssl: { ca }, sasl: { mechanism, username, password } })))
        )
        assert.strictEqual(brokers, 1)
      }), { timeout: 60_000 })
  }

  it.effect("OAUTHBEARER takes its token from an Effect, at every connection", () =>
    Effect.gen(function*() {
      const { ca } = yield* settings
      let calls = 0
      const token = Effect.sync(() => {
        calls++
        return Redacted.make(unsecuredJwt("kpipe"))
      })
      yield* roundTrip.pipe(
        Effect.provide(clientLayers(client({ ssl: { ca }, sasl: { mechanism: "oauthbearer", token } })))
      )
      assert.isAbove(calls, 0)
    }), { timeout: 60_000 })

  it.effect(
    "layerFromEnv: KAFKA_SSL_CA_FILE, SCRAM credentials and an OAuthBearer service",
    () =>
      Effect.gen(function*() {
        const { env } = yield* settings
        const common = {
          KAFKA_BROKERS: LocalKafka.secure.brokers.join(","),
          KAFKA_SSL_CA_FILE: env["KAFKA_SSL_CA_FILE"]!
        }
        const fromMap = (map: Record<string, string>) =>
          Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ ...common, ...map }))))
        const scram = KafkaClient.layerFromEnv.pipe(
          Layer.provide(fromMap({
            KAFKA_SASL_MECHANISM: "scram-sha-512",
            KAFKA_SASL_USERNAME: env["KAFKA_SASL_USERNAME"]!,
            KAFKA_SASL_PASSWORD: env["KAFKA_SASL_PASSWORD"]!
          }))
        )
        assert.strictEqual(yield* roundTrip.pipe(Effect.provide(clientLayers(scram))), 1)

        const bearer = Layer.succeed(KafkaClient.OAuthBearer, {
          token: Effect.sync(() => Redacted.make(unsecuredJwt("kpipe")))
        })
        const oauth = KafkaClient.layerFromEnv.pipe(
          Layer.provide(Layer.merge(fromMap({ KAFKA_SASL_MECHANISM: "oauthbearer" }), bearer))
        )
        const cluster = yield* Effect.flatMap(Admin.Admin, (admin) => admin.describeCluster).pipe(
          Effect.provide(Admin.layer.pipe(Layer.provide(oauth)))
        )
        assert.strictEqual(cluster.brokers.length, 1)

        const missing = yield* KafkaClient.layerFromEnv.pipe(
          Layer.provide(fromMap({ KAFKA_SASL_MECHANISM: "scram-sha-256", KAFKA_SASL_USERNAME: "kpipe" })),
          Layer.build,
          Effect.scoped,
          Effect.flip
        )
        assert.strictEqual(missing._tag, "ConfigError")
        assert.include(String(missing), "KAFKA_SASL_PASSWORD")
      }),
    { timeout: 60_000 }
  )

  it.effect("a client certificate signed by the CA opens the mutual-TLS listener", () =>
    Effect.gen(function*() {
      const { ca, env } = yield* settings
      const cluster = yield* Effect.flatMap(Admin.Admin, (admin) => admin.describeCluster).pipe(
        Effect.provide(Admin.layer.pipe(Layer.provide(
          client({
            brokers: [LocalKafka.secureCertificateBroker],
            ssl: {
              ca,
              cert: readFileSync(env["KAFKA_SSL_CERT_FILE"]!, "utf8"),
              key: Redacted.make(readFileSync(env["KAFKA_SSL_KEY_FILE"]!, "utf8"))
            }
          })
        )))
      )
      assert.strictEqual(cluster.brokers.length, 1)
    }), { timeout: 60_000 })

  it.effect(
    "a wrong password fails at once with a typed, non-retriable Authentication error",
    () =>
      Effect.gen(function*() {
        const { ca, username } = yield* settings
        for (const mechanism of ["plain", "scram-sha-256", "scram-sha-512"] as const) {
          const [elapsed, error] = yield* connectFailure(
            client({ ssl: { ca }, sasl: { mechanism, username, password: Redacted.make("wrong-password") } })
          )
          assert.strictEqual(error._tag, "KafkaError")
          assert.strictEqual(error.reason, "Authentication", error.message)
          assert.isFalse(error.retriable)
          assert.match(error.message, /Authentication failed: .*(Invalid username or password|Authentication failed)/i)
          // No retries: kafkajs's 5 connection retries with backoff would take several seconds.
          assert.isBelow(Duration.toMillis(elapsed), 3_000)
        }
      }),
    { timeout: 60_000 }
  )

  it.effect(
    "a failing token provider and an untrusted broker certificate are Authentication errors too",
    () =>
      Effect.gen(function*() {
        const { ca, password, username } = yield* settings
        // Node's default CAs do not include the script's private CA.
        const [, certificateError] = yield* connectFailure(
          client({ ssl: true, retries: 1, sasl: { mechanism: "plain", username, password } })
        )
        assert.strictEqual(certificateError.reason, "Authentication", certificateError.message)
        assert.include(certificateError.message, "certificate")

        const [, providerError] = yield* connectFailure(
          client({ ssl: { ca }, sasl: { mechanism: "oauthbearer", token: Effect.fail("identity provider down") } })
        )
        assert.strictEqual(providerError.reason, "Authentication")
        assert.include(providerError.message, "token provider failed")
      }),
    { timeout: 60_000 }
  )
})

describe("TLS and SASL configuration", () => {
  layer(Layer.empty)((it) => {
    it.effect("KAFKA_SSL_CA_FILE that cannot be read is a ConfigError naming the variable", () =>
      Effect.gen(function*() {
        const error = yield* KafkaClient.layerFromEnv.pipe(
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["KAFKA_SSL_CA_FILE", "/nope.pem"]])))),
          Layer.build,
          Effect.scoped,
          Effect.flip
        )
        assert.strictEqual(error._tag, "ConfigError")
        assert.include(String(error), "KAFKA_SSL_CA_FILE")
      }))

    it.effect("secrets stay redacted; oauthbearer needs a token provider or a fixed token", () =>
      Effect.gen(function*() {
        const read = (entries: Record<string, string>) =>
          Effect.withConfigProvider(KafkaClient.fromEnv, ConfigProvider.fromMap(new Map(Object.entries(entries))))
        const scram = yield* read({
          KAFKA_SSL: "true",
          KAFKA_SASL_MECHANISM: "scram-sha-256",
          KAFKA_SASL_USERNAME: "app",
          KAFKA_SASL_PASSWORD: "s3cret"
        })
        assert.strictEqual(scram.ssl, true)
        assert.notInclude(JSON.stringify(scram), "s3cret")
        assert.notInclude(String(scram.sasl?.mechanism === "scram-sha-256" && scram.sasl.password), "s3cret")
        if (scram.sasl?.mechanism === "scram-sha-256") assert.strictEqual(Redacted.value(scram.sasl.password), "s3cret")

        const plain = yield* read({})
        assert.strictEqual(plain.ssl, undefined)
        assert.strictEqual(plain.sasl, undefined)

        const error = yield* Effect.flip(read({ KAFKA_SASL_MECHANISM: "oauthbearer" }))
        assert.include(String(error), "KAFKA_SASL_OAUTHBEARER_TOKEN")
      }))
  })
})
