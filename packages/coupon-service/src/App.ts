import * as Layer from "effect/Layer"
import { CouponIssuer } from "./CouponIssuer.ts"
import { CouponStore } from "./CouponStore.ts"
import * as Http from "./Http.ts"
import { IssuePublisher } from "./IssuePublisher.ts"
import { Reconciliation } from "./Reconciliation.ts"
import { ReservationRecovery } from "./ReservationRecovery.ts"
import { StockReservations } from "./StockReservations.ts"
import * as Topics from "./Topics.ts"
import * as Workers from "./Workers.ts"

/** The database and Redis sides of a sale. */
const stores = Layer.mergeAll(CouponStore.Default, StockReservations.Default)

/**
 * The `api` role: the HttpApi handlers (`HttpApi.Api`, to serve; `Http.fastRoute` needs the
 * `CouponIssuer` it provides too) and the request path (reservations, publisher, rebuilds,
 * reconciliation). Does not create the topics (`layer` does).
 */
export const api = Http.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(CouponIssuer.Default, Reconciliation.Default)),
  Layer.provideMerge(Layer.mergeAll(IssuePublisher.Default, ReservationRecovery.Default)),
  Layer.provideMerge(stores)
)

/** The `consumer` role: the consumer groups (`Workers`). Does not create the topics (`layer` does). */
export const consumer = Workers.layer.pipe(Layer.provide(stores))

/**
 * coupon-service but the HTTP server: both roles, the topics created first. Needs `Config`, a
 * migrated database (`Database.layer`), Redis (`StockReservations.layerRedis`), Kafka (`KafkaClient`,
 * `Admin`) and an `AlertSink`.
 */
export const layer = Layer.mergeAll(api, consumer).pipe(Layer.provide(Topics.layer))
