import { CouponEvents, LoginEvents, MemberEvents, OrderEvents, ProductMetricsEvents } from "@kpipe/events"
import * as Topic from "@kpipe/topic/Topic"

/** S1: member lifecycle, auth-service → d-day-service. */
export const memberEvents = Topic.make({
  name: "member-events",
  partitions: 3,
  retention: "7 days",
  schema: MemberEvents.MemberEvent,
  key: (event) => String(event.memberId),
  deadLetter: { name: "member-events.DLT", partitions: 1, retention: "30 days" }
})

/** S0: logins, consumed by account-service. */
export const loginEvents = Topic.make({
  name: "auth.login.events",
  partitions: 3,
  retention: "7 days",
  schema: LoginEvents.LoginSucceeded,
  key: (event) => String(event.accountId),
  deadLetter: { name: "auth.login.events.DLT", retention: "30 days" }
})

/** S2: orders; keyed by user so that one user's orders stay in order. */
export const orderCreated = Topic.make({
  name: "order.created",
  partitions: 3,
  retention: "7 days",
  schema: OrderEvents.OrderCreated,
  key: (event) => String(event.userId),
  deadLetter: { name: "order.created.dlt", retention: "30 days" }
})

/** S2: the compensation for an order whose stock ran out. */
export const inventoryFailed = Topic.make({
  name: "order.inventory-failed",
  partitions: 3,
  retention: "7 days",
  schema: OrderEvents.InventoryFailed,
  key: (event) => String(event.userId),
  deadLetter: { name: "order.inventory-failed.dlt", retention: "30 days" }
})

/** S2: the inventory consumer reserved an order's stock. */
export const inventoryReserved = Topic.make({
  name: "order.inventory-reserved",
  partitions: 3,
  retention: "7 days",
  schema: OrderEvents.InventoryReserved,
  key: (event) => String(event.userId),
  deadLetter: { name: "order.inventory-reserved.dlt", retention: "30 days" }
})

/** S2: an order CONFIRMED or CANCELLED, for the customer's notifications; keyed by user like the order. */
export const orderStatus = Topic.make({
  name: "order.status",
  partitions: 3,
  retention: "7 days",
  schema: OrderEvents.OrderStatusChanged,
  key: (event) => String(event.userId),
  deadLetter: { name: "order.status.dlt", retention: "30 days" }
})

/** S3: likes and views, aggregated into product metrics. */
export const catalogEvents = Topic.make({
  name: "catalog-events",
  partitions: 3,
  retention: "7 days",
  schema: ProductMetricsEvents.CatalogEvent,
  key: (event) => String(event.productId),
  deadLetter: { name: "catalog-events-dlq", retention: "30 days" }
})

/** S3: order lifecycle, aggregated into product sales. */
export const orderEvents = Topic.make({
  name: "order-events",
  partitions: 3,
  retention: "7 days",
  schema: ProductMetricsEvents.OrderEvent,
  key: (event) => String(event.orderId),
  deadLetter: { name: "order-events-dlq", retention: "30 days" }
})

/** S4: first-come-first-served coupon requests. */
export const couponIssueRequests = Topic.make({
  name: "coupon-issue-requests",
  partitions: 3,
  retention: "7 days",
  schema: CouponEvents.CouponIssueRequested,
  key: (event) => String(event.couponId),
  deadLetter: { name: "coupon-issue-dlq", partitions: 1, retention: "30 days" }
})

export const all: ReadonlyArray<Topic.Any> = [
  memberEvents,
  loginEvents,
  orderCreated,
  inventoryFailed,
  inventoryReserved,
  orderStatus,
  catalogEvents,
  orderEvents,
  couponIssueRequests
]
