import { assert, describe, it } from "@effect/vitest"
import { Admin } from "@kpipe/kafka"
import { OpsEndpoints, ServiceProcess } from "@kpipe/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { fileURLToPath } from "node:url"
import { Config } from "../src/Config.ts"
import * as Topics from "../src/Topics.ts"
import {
  createCoupon,
  eventually,
  issue,
  issuedUsers,
  issueStatus,
  RequestPathLive,
  startProcess,
  testEnv
} from "./utils.ts"

const entry = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const { env, provider } = testEnv()

describe("COUPON_ROLES splits the API from the consumers", () => {
  it.live(
    "an api-only process takes requests without joining the group; a consumer-only process issues them and serves only health and metrics",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const admin = yield* Admin.Admin
        yield* Layer.build(Topics.layer)
        const coupon = yield* createCoupon(10)

        const consumer = yield* startProcess(env, { REPLICA: "1", COUPON_ROLES: "consumer" })
        const api = yield* startProcess(env, { REPLICA: "2", COUPON_ROLES: "api" })
        yield* eventually(
          Effect.map(admin.describeGroup(config.topics.issueGroup), (group) =>
            group.state === "Stable" && group.memberIds.length === 1)
        )

        // One request through the api-only process, one through this process's request path.
        const viaProcess = yield* Effect.promise(() =>
          fetch(`${api.baseUrl}/api/coupons/${coupon.couponId}/issue`, {
            method: "POST",
            headers: { "x-user-id": "7" }
          })
        )
        const viaHere = yield* issue(coupon.couponId, 8)
        assert.deepStrictEqual([viaProcess.status, viaHere.status], [202, 202])

        yield* eventually(Effect.map(issuedUsers(coupon.couponId), (users) =>
          users.size === 2))
        assert.deepStrictEqual([...(yield* issuedUsers(coupon.couponId))].sort(), [7, 8])
        const states = yield* Effect.forEach([7, 8], (userId) => issueStatus(coupon.couponId, userId))
        assert.deepStrictEqual(states.map((state) => state.body["status"]), ["ISSUED", "ISSUED"])
        // The consumer-only process serves no API, but answers probes and scrapes on its port.
        yield* eventually(
          Effect.map(
            OpsEndpoints.probe(consumer.baseUrl, `/api/coupons/${coupon.couponId}`),
            OpsEndpoints.servesOperationsOnly
          )
        )
        // Still only the consumer process in the group: the api-only one never joined.
        const group = yield* admin.describeGroup(config.topics.issueGroup)
        assert.strictEqual(group.memberIds.length, 1)

        assert.deepStrictEqual(yield* Effect.all([api.stop, consumer.stop]), [0, 0])
      }).pipe(Effect.scoped, Effect.provide(RequestPathLive), Effect.withConfigProvider(provider)),
    { timeout: 120_000 }
  )

  it.live("an unknown role stops the process before it starts anything", () =>
    Effect.gen(function*() {
      const error = yield* ServiceProcess.start({
        name: "coupon-service",
        entry,
        env: { ...env, PORT: "0", COUPON_ROLES: "api,worker" }
      }).pipe(Effect.flip)
      assert.include(error.message, "COUPON_ROLES must list api and/or consumer")
    }).pipe(Effect.scoped), { timeout: 60_000 })
})
