import { OrderModels } from "@kpipe/contracts"
import { ConsumerSettings, Replica, ServiceConfig } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
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
