import { OrderModels } from "@kpipe/contracts"
import { ConsumerSettings, Replica, ServiceConfig } from "@kpipe/service-kit"
import * as EffectConfig from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

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
