import { OrderModels } from "@kpipe/contracts"
import { ConsumerSettings, Replica, ServiceConfig } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { readFileSync } from "node:fs"

/** The login to the SMTP server (`SMTP_USER`, `SMTP_PASSWORD`). */
export interface SmtpAuth {
  readonly user: string
  readonly password: Redacted.Redacted
}

/** `SMTP_STARTTLS`: whether a plain SMTP connection is upgraded to TLS. */
export type StartTls = "opportunistic" | "required" | "never"

/**
 * The SMTP server's login and TLS when they are not set: no login, STARTTLS when the server offers
 * it (the local `MailCatcher` does not), certificates verified.
 */
export const smtpDefaults: {
  readonly smtpAuth: Option.Option<SmtpAuth>
  readonly smtpSecure: boolean
  readonly smtpStartTls: StartTls
  readonly smtpTlsCa: Option.Option<string>
  readonly smtpTlsRejectUnauthorized: boolean
} = {
  smtpAuth: Option.none(),
  smtpSecure: false,
  smtpStartTls: "opportunistic",
  smtpTlsCa: Option.none<string>(),
  smtpTlsRejectUnauthorized: true
}

/** Everything order-service reads from the environment. */
export const config = EffectConfig.all({
  port: ServiceConfig.port(Replica.port(3030)),
  databaseUrl: ServiceConfig.databaseUrl("kpipe_order"),
  maxQuantity: EffectConfig.integer("ORDER_MAX_QUANTITY").pipe(
    EffectConfig.validate({
      message: `ORDER_MAX_QUANTITY must be 1 to ${OrderModels.maxQuantity}`,
      validation: (n) => n >= 1 && n <= OrderModels.maxQuantity
    }),
    EffectConfig.withDefault(OrderModels.maxQuantity),
    EffectConfig.withDescription("Most units one order may ask for; more is answered 400 InvalidQuantity")
  ),
  smtpHost: EffectConfig.string("SMTP_HOST").pipe(
    EffectConfig.withDefault("127.0.0.1"),
    EffectConfig.withDescription("SMTP server the confirmation and cancellation e-mails go to")
  ),
  smtpPort: EffectConfig.port("SMTP_PORT").pipe(
    EffectConfig.withDefault(2525),
    EffectConfig.withDescription("SMTP server port")
  ),
  smtpConnections: EffectConfig.integer("SMTP_MAX_CONNECTIONS").pipe(
    EffectConfig.validate({ message: "SMTP_MAX_CONNECTIONS must be 1 or more", validation: (n) => n >= 1 }),
    EffectConfig.withDefault(10),
    EffectConfig.withDescription(
      "SMTP connections kept open at most; each carries one message at a time, a handful of round trips long"
    )
  ),
  smtpAuth: EffectConfig.all({
    user: EffectConfig.option(EffectConfig.nonEmptyString("SMTP_USER")).pipe(
      EffectConfig.withDescription("User name the service logs in to the SMTP server with (AUTH); no login when unset")
    ),
    password: EffectConfig.option(EffectConfig.redacted("SMTP_PASSWORD")).pipe(
      EffectConfig.withDescription("Password of SMTP_USER")
    )
  }).pipe(
    // One without the other would fail every e-mail (or log in with an empty password): refuse it at start.
    EffectConfig.mapOrFail(({ password, user }): Either.Either<Option.Option<SmtpAuth>, ConfigError.ConfigError> => {
      if (Option.isSome(user) && Option.isSome(password)) {
        return Either.right(Option.some({ user: user.value, password: password.value }))
      }
      if (Option.isNone(user) && Option.isNone(password)) return Either.right(Option.none())
      return Either.left(ConfigError.MissingData(
        [Option.isNone(user) ? "SMTP_USER" : "SMTP_PASSWORD"],
        "SMTP_USER and SMTP_PASSWORD are set together or not at all"
      ))
    })
  ),
  smtpSecure: EffectConfig.boolean("SMTP_SECURE").pipe(
    EffectConfig.withDefault(smtpDefaults.smtpSecure),
    EffectConfig.withDescription(
      "TLS from the first byte (implicit TLS, usually port 465) instead of plain SMTP that may upgrade with STARTTLS"
    )
  ),
  smtpStartTls: EffectConfig.literal("opportunistic", "required", "never")("SMTP_STARTTLS").pipe(
    EffectConfig.withDefault(smtpDefaults.smtpStartTls),
    EffectConfig.withDescription(
      "STARTTLS on a plain connection: opportunistic (when the server offers it), required (no e-mail over an " +
        "unencrypted connection) or never"
    )
  ),
  smtpTlsCa: EffectConfig.option(EffectConfig.nonEmptyString("SMTP_TLS_CA_FILE")).pipe(
    EffectConfig.withDescription("PEM file of the CA that signed the SMTP server's certificate (a private CA)"),
    EffectConfig.mapOrFail((path): Either.Either<Option.Option<string>, ConfigError.ConfigError> => {
      if (Option.isNone(path)) return Either.right(Option.none())
      try {
        return Either.right(Option.some(readFileSync(path.value, "utf8")))
      } catch (error) {
        return Either.left(ConfigError.InvalidData(["SMTP_TLS_CA_FILE"], `cannot read ${path.value}: ${String(error)}`))
      }
    })
  ),
  smtpTlsRejectUnauthorized: EffectConfig.boolean("SMTP_TLS_REJECT_UNAUTHORIZED").pipe(
    EffectConfig.withDefault(smtpDefaults.smtpTlsRejectUnauthorized),
    EffectConfig.withDescription(
      "Verify the SMTP server's certificate and host name (false only for a relay with a self-signed certificate)"
    )
  ),
  mailFrom: EffectConfig.string("MAIL_FROM").pipe(
    EffectConfig.withDefault("orders@kpipe.test"),
    EffectConfig.withDescription("Sender address of the e-mails")
  ),
  smsUrl: EffectConfig.url("SMS_URL").pipe(
    // Any other scheme would fail every send in undici, each SMS then refused and dead-lettered.
    EffectConfig.validate({
      message: "SMS_URL must be an http: or https: URL",
      validation: (url) => url.protocol === "http:" || url.protocol === "https:"
    }),
    EffectConfig.withDefault(new URL("http://127.0.0.1:2526/sms")),
    EffectConfig.withDescription("The SMS provider's endpoint; a message is POSTed to it as JSON")
  ),
  smsToken: EffectConfig.redacted("SMS_TOKEN").pipe(
    // It goes into a header: a line break would fail every SMS, so refuse it at start.
    EffectConfig.validate({
      message: "SMS_TOKEN must be printable characters only (it is sent in the Authorization header)",
      validation: (token) => /^[\x21-\x7e]+$/.test(Redacted.value(token))
    }),
    EffectConfig.withDefault(Redacted.make("local-sms-token")),
    EffectConfig.withDescription("Bearer token for the SMS provider")
  ),
  smsTimeout: EffectConfig.duration("SMS_TIMEOUT").pipe(
    // Zero would turn undici's timeouts off: a silent provider would hold its notifications for good.
    EffectConfig.validate({
      message: "SMS_TIMEOUT must be at least 1 millisecond",
      validation: (duration) => Duration.toMillis(duration) >= 1
    }),
    EffectConfig.withDefault(Duration.seconds(10)),
    EffectConfig.withDescription(
      "How long the SMS provider may take to accept the connection, and then to answer; then it is unavailable"
    )
  ),
  attentionErrorAfter: EffectConfig.duration("ATTENTION_ERROR_AFTER").pipe(
    EffectConfig.withDefault(Duration.seconds(30)),
    EffectConfig.withDescription(
      "How long a dead letter whose order cannot be marked NEEDS_ATTENTION waits before each failed try is logged at Error"
    )
  ),
  consumer: ConsumerSettings.config()
})

export type Values = EffectConfig.Config.Success<typeof config>

export class Config extends Context.Tag("@kpipe/order-service/Config")<Config, Values>() {}

export const layer = (values: Values): Layer.Layer<Config> => Layer.succeed(Config, values)

export const layerFromEnv = Layer.effect(Config, Effect.map(config, (values) => values))

const roleNames = ["api", "relay", "orders", "inventory", "notifications"] as const

export type Roles = { readonly [Role in typeof roleNames[number]]: boolean }

/** `ORDER_ROLES`: what this process runs; the parts can be deployed as processes of their own. */
export const roles: EffectConfig.Config<Roles> = EffectConfig.string("ORDER_ROLES").pipe(
  EffectConfig.withDefault(roleNames.join(",")),
  EffectConfig.mapOrFail((text) => {
    const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "")
    const unknown = names.filter((name) => !(roleNames as ReadonlyArray<string>).includes(name))
    return unknown.length > 0 || names.length === 0
      ? Either.left(ConfigError.InvalidData([], `ORDER_ROLES must list some of ${roleNames.join(", ")}, got "${text}"`))
      : Either.right(Object.fromEntries(roleNames.map((role) => [role, names.includes(role)])) as Roles)
  }),
  EffectConfig.withDescription(
    "What this process runs, comma-separated: api (HTTP), relay (the outbox relay), orders (confirmations, " +
      "cancellations, dead-letter monitors), inventory (reservations), notifications (e-mail and SMS)"
  )
)
