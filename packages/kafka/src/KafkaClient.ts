import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import { Kafka, type KafkaConfig, logLevel as KafkaLogLevel, type SASLOptions } from "kafkajs"
import { readFileSync } from "node:fs"
import { makeLogCreator } from "./internal/logging.ts"
import { authenticationFailure, TokenError } from "./KafkaError.ts"

/** TLS to the brokers. Without `ca`, Node's list of public CAs is trusted (what managed clusters need). */
export interface SslConfig {
  /** PEM of the CA(s) that signed the brokers' certificates, for a private CA. */
  readonly ca?: string | undefined
  /** PEM client certificate, for brokers that authenticate clients by certificate (mutual TLS). */
  readonly cert?: string | undefined
  /** PEM private key of `cert`. */
  readonly key?: Redacted.Redacted<string> | undefined
  /** Passphrase of an encrypted `key`. */
  readonly passphrase?: Redacted.Redacted<string> | undefined
  /** Default true; false accepts any certificate (never in production). */
  readonly rejectUnauthorized?: boolean | undefined
}

export type SaslConfig =
  | {
    readonly mechanism: "plain" | "scram-sha-256" | "scram-sha-512"
    readonly username: string
    readonly password: Redacted.Redacted<string>
  }
  | {
    readonly mechanism: "oauthbearer"
    /**
     * Runs at every (re)authentication and yields the bearer token (a JWT). A failure fails the
     * connection with `KafkaError` reason `Authentication`.
     */
    readonly token: Effect.Effect<Redacted.Redacted<string>, unknown>
  }

export interface KafkaClientConfig {
  readonly brokers: ReadonlyArray<string>
  readonly clientId: string
  readonly connectionTimeout?: number | undefined
  /** kafkajs's timeout of the SASL handshake (default 10000 ms). */
  readonly authenticationTimeout?: number | undefined
  readonly requestTimeout?: number | undefined
  /** kafkajs's retries for connecting and for admin requests (default 10). */
  readonly retries?: number | undefined
  /** kafkajs messages below this level are dropped; the rest go to the Effect logger. */
  readonly logLevel?: LogLevel.Literal | undefined
  /** `true`: TLS with Node's trusted CAs; an object: TLS with a private CA and/or a client certificate. */
  readonly ssl?: boolean | SslConfig | undefined
  readonly sasl?: SaslConfig | undefined
}

/** The configured kafkajs instance that the producer, consumer and admin Layers connect through. */
export class KafkaClient extends Context.Tag("@kpipe/kafka/KafkaClient")<KafkaClient, {
  readonly kafka: Kafka
  readonly config: KafkaClientConfig
}>() {}

/**
 * Where `layerFromEnv` gets OAUTHBEARER tokens (`KAFKA_SASL_MECHANISM=oauthbearer`) from, e.g. an
 * OIDC client-credentials request. Without it, `KAFKA_SASL_OAUTHBEARER_TOKEN` is used as is.
 */
export class OAuthBearer extends Context.Tag("@kpipe/kafka/OAuthBearer")<OAuthBearer, {
  readonly token: Effect.Effect<Redacted.Redacted<string>, unknown>
}>() {}

const kafkaLogLevels: Record<LogLevel.Literal, KafkaLogLevel> = {
  All: KafkaLogLevel.DEBUG,
  Trace: KafkaLogLevel.DEBUG,
  Debug: KafkaLogLevel.DEBUG,
  Info: KafkaLogLevel.INFO,
  Warning: KafkaLogLevel.WARN,
  Error: KafkaLogLevel.ERROR,
  Fatal: KafkaLogLevel.ERROR,
  None: KafkaLogLevel.NOTHING
}

const toSsl = (ssl: KafkaClientConfig["ssl"]): KafkaConfig["ssl"] => {
  if (ssl === undefined || typeof ssl === "boolean") return ssl
  return {
    rejectUnauthorized: ssl.rejectUnauthorized ?? true,
    ...(ssl.ca !== undefined ? { ca: [ssl.ca] } : {}),
    ...(ssl.cert !== undefined ? { cert: ssl.cert } : {}),
    ...(ssl.key !== undefined ? { key: Redacted.value(ssl.key) } : {}),
    ...(ssl.passphrase !== undefined ? { passphrase: Redacted.value(ssl.passphrase) } : {})
  }
}

const toSasl = (sasl: SaslConfig, runtime: Runtime.Runtime<never>): SASLOptions => {
  switch (sasl.mechanism) {
    case "oauthbearer": {
      // kafkajs gives up at once on its SASL authentication error; any other rejection would be retried.
      const token = sasl.token.pipe(
        Effect.map((value) => ({ value: Redacted.value(value) })),
        Effect.catchAllCause((cause) =>
          Effect.die(authenticationFailure(
            "SASL OAUTHBEARER: the token provider failed",
            new TokenError({ cause: Cause.squash(cause) })
          ))
        )
      )
      return {
        mechanism: "oauthbearer",
        oauthBearerProvider: () =>
          Runtime.runPromiseExit(runtime)(token).then((exit) => {
            if (Exit.isSuccess(exit)) return exit.value
            throw Cause.squash(exit.cause)
          })
      }
    }
    case "plain":
      return { mechanism: "plain", username: sasl.username, password: Redacted.value(sasl.password) }
    case "scram-sha-256":
      return { mechanism: "scram-sha-256", username: sasl.username, password: Redacted.value(sasl.password) }
    case "scram-sha-512":
      return { mechanism: "scram-sha-512", username: sasl.username, password: Redacted.value(sasl.password) }
  }
}

/**
 * kafkajs settings `make` uses when the config leaves them out. kafkajs never closes a connection
 * whose request timed out: a request the broker will never answer (a blackholed path, a frozen
 * broker) holds its client up to `requestTimeout` even after the broker is back, so that bounds the
 * recovery. The requests that may legitimately wait carry their own longer timeout (Fetch
 * `maxWaitTime` + 100 ms, JoinGroup `rebalanceTimeout` + 5 s; kafkajs takes the larger), the others
 * are answered in milliseconds by a healthy broker; a produce held by a slow follower past it is
 * retried, which the idempotent producer deduplicates. `maxRetryTime` caps the wait between two
 * attempts, so the idempotent producer, which retries without limit, tries again within a second of
 * the broker answering again (with a 5 s cap its waits grew past 4 s through a 30 s outage). Ten
 * `retries` keep a bounded retry of a refused connection going ~9 s, as 5 retries up to 5 s did; one
 * of requests that time out gives up after about 11 × `requestTimeout`.
 */
export const defaults = {
  connectionTimeout: 3_000,
  requestTimeout: 3_000,
  retries: 10,
  maxRetryTime: 1_000
} as const

export const make = Effect.fnUntraced(function*(config: KafkaClientConfig) {
  const runtime = yield* Effect.runtime<never>()
  const ssl = toSsl(config.ssl)
  const kafka = new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    connectionTimeout: config.connectionTimeout ?? defaults.connectionTimeout,
    requestTimeout: config.requestTimeout ?? defaults.requestTimeout,
    retry: { retries: config.retries ?? defaults.retries, maxRetryTime: defaults.maxRetryTime },
    logLevel: kafkaLogLevels[config.logLevel ?? "Warning"],
    logCreator: makeLogCreator(runtime),
    ...(ssl !== undefined ? { ssl } : {}),
    ...(config.sasl !== undefined ? { sasl: toSasl(config.sasl, runtime) } : {}),
    ...(config.authenticationTimeout !== undefined ? { authenticationTimeout: config.authenticationTimeout } : {})
  })
  return KafkaClient.of({ kafka, config })
})

export const layer = (config: KafkaClientConfig): Layer.Layer<KafkaClient> => Layer.effect(KafkaClient, make(config))

export const layerConfig = (
  config: Config.Config.Wrap<KafkaClientConfig>
): Layer.Layer<KafkaClient, ConfigError.ConfigError> =>
  Layer.effect(KafkaClient, Effect.flatMap(Config.unwrap(config), make))

const pemFile = (name: string, description: string) =>
  Config.option(Config.nonEmptyString(name)).pipe(
    Config.withDescription(description),
    Config.mapOrFail((path): Either.Either<Option.Option<string>, ConfigError.ConfigError> => {
      if (Option.isNone(path)) return Either.right(Option.none())
      try {
        return Either.right(Option.some(readFileSync(path.value, "utf8")))
      } catch (error) {
        return Either.left(ConfigError.InvalidData([name], `cannot read ${path.value}: ${String(error)}`))
      }
    })
  )

/** TLS settings from `KAFKA_SSL` and the `KAFKA_SSL_*` files; `undefined` when TLS is off. */
export const sslConfig: Config.Config<boolean | SslConfig | undefined> = Config.all({
  enabled: Config.option(Config.boolean("KAFKA_SSL")).pipe(
    Config.withDescription("TLS to the brokers (default: on when any KAFKA_SSL_* file is set)")
  ),
  ca: pemFile("KAFKA_SSL_CA_FILE", "PEM file of the CA that signed the brokers' certificates (a private CA)"),
  cert: pemFile("KAFKA_SSL_CERT_FILE", "PEM client certificate, for brokers that require one (mutual TLS)"),
  key: pemFile("KAFKA_SSL_KEY_FILE", "PEM private key of KAFKA_SSL_CERT_FILE"),
  passphrase: Config.option(Config.redacted("KAFKA_SSL_KEY_PASSWORD")).pipe(
    Config.withDescription("passphrase of an encrypted KAFKA_SSL_KEY_FILE")
  ),
  rejectUnauthorized: Config.boolean("KAFKA_SSL_REJECT_UNAUTHORIZED").pipe(
    Config.withDefault(true),
    Config.withDescription("verify the brokers' certificates and host names (only ever false for a local test)")
  )
}).pipe(Config.map(({ ca, cert, enabled, key, passphrase, rejectUnauthorized }) => {
  const files = Option.isSome(ca) || Option.isSome(cert) || Option.isSome(key)
  if (!Option.getOrElse(enabled, () => files)) return undefined
  if (!files && rejectUnauthorized && Option.isNone(passphrase)) return true
  return {
    ca: Option.getOrUndefined(ca),
    cert: Option.getOrUndefined(cert),
    key: Option.getOrUndefined(Option.map(key, Redacted.make)),
    passphrase: Option.getOrUndefined(passphrase),
    rejectUnauthorized
  }
}))

const makeSaslConfig = (provider: Option.Option<OAuthBearer["Type"]>): Config.Config<SaslConfig | undefined> =>
  Config.all({
    mechanism: Config.option(
      Config.literal("plain", "scram-sha-256", "scram-sha-512", "oauthbearer")("KAFKA_SASL_MECHANISM").pipe(
        Config.withDescription("SASL mechanism: plain, scram-sha-256, scram-sha-512 or oauthbearer (default: no SASL)")
      )
    ),
    username: Config.option(
      Config.nonEmptyString("KAFKA_SASL_USERNAME").pipe(Config.withDescription("SASL user name"))
    ),
    password: Config.option(Config.redacted("KAFKA_SASL_PASSWORD").pipe(Config.withDescription("SASL password"))),
    token: Config.option(
      Config.redacted("KAFKA_SASL_OAUTHBEARER_TOKEN").pipe(
        Config.withDescription("a fixed OAUTHBEARER token, used when no OAuthBearer token provider is given")
      )
    )
  }).pipe(Config.mapOrFail(({ mechanism, password, token, username }): Either.Either<
    SaslConfig | undefined,
    ConfigError.ConfigError
  > => {
    if (Option.isNone(mechanism)) return Either.right(undefined)
    if (mechanism.value === "oauthbearer") {
      if (Option.isSome(provider)) return Either.right({ mechanism: "oauthbearer", token: provider.value.token })
      return Option.match(token, {
        onNone: () =>
          Either.left(ConfigError.MissingData(
            ["KAFKA_SASL_OAUTHBEARER_TOKEN"],
            "KAFKA_SASL_MECHANISM=oauthbearer needs an OAuthBearer token provider or KAFKA_SASL_OAUTHBEARER_TOKEN"
          )),
        onSome: (value) => Either.right({ mechanism: "oauthbearer" as const, token: Effect.succeed(value) })
      })
    }
    if (Option.isNone(username)) {
      return Either.left(ConfigError.MissingData(["KAFKA_SASL_USERNAME"], `${mechanism.value} needs a user name`))
    }
    if (Option.isNone(password)) {
      return Either.left(ConfigError.MissingData(["KAFKA_SASL_PASSWORD"], `${mechanism.value} needs a password`))
    }
    return Either.right({ mechanism: mechanism.value, username: username.value, password: password.value })
  }))

const makeFromEnv = (provider: Option.Option<OAuthBearer["Type"]>): Config.Config<KafkaClientConfig> =>
  Config.all({
    brokers: Config.array(Config.nonEmptyString(), "KAFKA_BROKERS").pipe(
      Config.withDefault(["127.0.0.1:9092"]),
      Config.withDescription("comma-separated bootstrap brokers")
    ),
    clientId: Config.nonEmptyString("KAFKA_CLIENT_ID").pipe(
      Config.withDefault("kpipe"),
      Config.withDescription("client id the brokers see")
    ),
    logLevel: Config.literal("All", "Trace", "Debug", "Info", "Warning", "Error", "Fatal", "None")("KAFKA_LOG_LEVEL")
      .pipe(
        Config.withDefault("Warning" as const),
        Config.withDescription("level from which kafkajs logs reach the Effect logger")
      ),
    ssl: sslConfig,
    sasl: makeSaslConfig(provider)
  })

/** SASL settings from `KAFKA_SASL_*` (OAUTHBEARER with the fixed `KAFKA_SASL_OAUTHBEARER_TOKEN`). */
export const saslConfig: Config.Config<SaslConfig | undefined> = makeSaslConfig(Option.none())

/** Everything `layerFromEnv` reads without an `OAuthBearer` service; the README's configuration table lists it. */
export const fromEnv: Config.Config<KafkaClientConfig> = makeFromEnv(Option.none())

/**
 * `KAFKA_BROKERS` (comma-separated, default `127.0.0.1:9092`), `KAFKA_CLIENT_ID`, `KAFKA_LOG_LEVEL`,
 * TLS from `KAFKA_SSL*` and SASL from `KAFKA_SASL_*`. With `KAFKA_SASL_MECHANISM=oauthbearer`, an
 * `OAuthBearer` service in the context supplies the tokens.
 */
export const layerFromEnv: Layer.Layer<KafkaClient, ConfigError.ConfigError> = Layer.effect(
  KafkaClient,
  Effect.serviceOption(OAuthBearer).pipe(
    Effect.flatMap((provider) => makeFromEnv(provider)),
    Effect.flatMap(make)
  )
)
