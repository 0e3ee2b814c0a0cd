import { OrderModels } from "@kpipe/contracts"
import { ConsumerSettings, Replica, ServiceConfig } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"

/** Everything order-service reads from the environment. */
export const config = Config.all({
  port: ServiceConfig.port(Replica.port(3030)),
  databaseUrl: ServiceConfig.databaseUrl("kpipe_order"),
  maxQuantity: Config.integer("ORDER_MAX_QUANTITY").pipe(
    Config.validate({
      message: `ORDER_MAX_QUANTITY must be 1 to ${OrderModels.maxQuantity}`,
      validation: (n) => n >= 1 && n <= OrderModels.maxQuantity
    }),
    Config.withDefault(OrderModels.maxQuantity),
    Config.withDescription("Most units one order may ask for; more is answered 400 InvalidQuantity")
  ),
  smtpHost: Config.string("SMTP_HOST").pipe(
    Config.withDefault("127.0.0.1"),
    Config.withDescription("SMTP server the confirmation and cancellation e-mails go to")
  ),
  smtpPort: Config.port("SMTP_PORT").pipe(Config.withDefault(2525), Config.withDescription("SMTP server port")),
  smtpConnections: Config.integer("SMTP_MAX_CONNECTIONS").pipe(
    Config.validate({ message: "SMTP_MAX_CONNECTIONS must be 1 or more", validation: (n) => n >= 1 }),
    Config.withDefault(10),
    Config.withDescription(
      "SMTP connections kept open at most; each carries one message at a time, a handful of round trips long"
    )
  ),
  mailFrom: Config.string("MAIL_FROM").pipe(
    Config.withDefault("orders@kpipe.test"),
    Config.withDescription("Sender address of the e-mails")
  ),
  smsUrl: Config.url("SMS_URL").pipe(
    Config.withDefault(new URL("http://127.0.0.1:2526/sms")),
    Config.withDescription("The SMS provider's endpoint; a message is POSTed to it as JSON")
  ),
  smsToken: Config.redacted("SMS_TOKEN").pipe(
    Config.withDefault(Redacted.make("local-sms-token")),
    Config.withDescription("Bearer token for the SMS provider")
  ),
  consumer: ConsumerSettings.config()
})

export type OrderConfig = Config.Config.Success<typeof config>

export class OrderServiceConfig extends Context.Tag("@kpipe/order-service/Config")<OrderServiceConfig, OrderConfig>() {}

export const layer = (values: OrderConfig): Layer.Layer<OrderServiceConfig> => Layer.succeed(OrderServiceConfig, values)

export const layerFromEnv = Layer.effect(OrderServiceConfig, Effect.map(config, (values) => values))

const roleNames = ["api", "relay", "orders", "inventory", "notifications"] as const

export type Roles = { readonly [Role in typeof roleNames[number]]: boolean }

/** `ORDER_ROLES`: what this process runs; the parts can be deployed as processes of their own. */
export const roles: Config.Config<Roles> = Config.string("ORDER_ROLES").pipe(
  Config.withDefault(roleNames.join(",")),
  Config.mapOrFail((text) => {
    const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "")
    const unknown = names.filter((name) => !(roleNames as ReadonlyArray<string>).includes(name))
    return unknown.length > 0 || names.length === 0
      ? Either.left(ConfigError.InvalidData([], `ORDER_ROLES must list some of ${roleNames.join(", ")}, got "${text}"`))
      : Either.right(Object.fromEntries(roleNames.map((role) => [role, names.includes(role)])) as Roles)
  }),
  Config.withDescription(
    "What this process runs, comma-separated: api (HTTP), relay (the outbox relay), orders (confirmations, " +
      "cancellations, dead-letter monitors), inventory (reservations), notifications (e-mail and SMS)"
  )
)
