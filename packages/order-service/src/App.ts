import * as Layer from "effect/Layer"
import * as Http from "./Http.ts"
import { Inventory } from "./Inventory.ts"
import { Mailer } from "./Mailer.ts"
import { Notifications } from "./Notifications.ts"
import { Orders } from "./Orders.ts"
import { SmsGateway } from "./SmsGateway.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

const services = Layer.mergeAll(Orders.Default, Inventory.Default, Notifications.Default).pipe(
  Layer.provide(Layer.mergeAll(Mailer.Default, SmsGateway.Default))
)

const domain = services.pipe(Layer.provideMerge(Topics.layer))

/**
 * The `api` role: the HttpApi's handlers (`HttpApi.Api`, to serve; `Http.fastRoute` needs the
 * `Orders` it provides too), the topics created.
 */
export const api = Http.layer.pipe(Layer.provideMerge(domain))

/** The workers of `roles` (see `Workers.roles`), the topics created. */
export const workers = (roles: Workers.WorkerRoles) => Workers.roles(roles).pipe(Layer.provide(domain))

/**
 * order-service: the HttpApi's handlers and the background workers, with the domain provided and
 * the topics created. Needs only infrastructure: the database, Kafka (client and admin), an
 * `AlertSink` and the `Config`.
 */
export const layer = Layer.mergeAll(Http.layer, Workers.layer).pipe(
  Layer.provideMerge(services),
  Layer.provideMerge(Topics.layer)
)
