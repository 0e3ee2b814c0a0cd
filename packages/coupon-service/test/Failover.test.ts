import { SqlClient } from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Admin, KafkaClient } from "@kpipe/kafka"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AssignerProtocol, Partitioners } from "kafkajs"
import * as App from "../src/App.ts"
import { Config } from "../src/Config.ts"
import * as Topics from "../src/Topics.ts"
import {
  createCoupon,
  eventually,
  issue,
  issuedUsers,
  issueStatus,
  reconciliation,
  RequestPathLive,
  startProcess,
  tally,
  testEnv
} from "./utils.ts"

const partitionOf = (key: string, partitions: number) =>
  Partitioners.DefaultPartitioner()({
    topic: "",
    partitionMetadata: Array.from({ length: partitions }, (_, partitionId) => ({
      partitionId,
      leader: 0,
      partitionErrorCode: 0,
      replicas: [],
      isr: []
    })),
    message: { key, value: null }
  })

const { env, provider } = testEnv({ CONSUMER_BATCH_SIZE: "1" })

describe("a consumer replica dies", () => {
  it.live(
    "SIGKILL mid-stream: its partitions move to the survivor, and no coupon is lost or issued twice",
    () =>
      Effect.gen(function*() {
        const config = yield* Config
        const sql = yield* SqlClient
        const admin = yield* Admin.Admin
        yield* Layer.build(Topics.layer)

        // Enough coupons that every partition (hence both replicas) has requests to apply.
        const coupons: Array<number> = []
        while (new Set(coupons.map((id) => partitionOf(String(id), config.topics.requests.partitions))).size < 3) {
          coupons.push((yield* createCoupon(150)).couponId)
        }

        // A whole second replica (its API, its consumers), as its own process.
        const replica = yield* startProcess(env, { REPLICA: "1", KAFKA_CLIENT_ID: "coupon-replica-1" })
        // The survivor joins the same group; both now own partitions.
        yield* Layer.build(App.consumer)
        yield* eventually(Effect.map(admin.describeGroup(config.topics.issueGroup), (group) =>
          group.state === "Stable" && group.memberIds.length === 2))

        const requests = coupons.flatMap((couponId) =>
          Array.from({ length: 170 }, (_, i) => ({ couponId, userId: couponId * 1_000 + i }))
        )
        const answers = yield* Effect.forEach(
          requests,
          (request) =>
            Effect.map(issue(request.couponId, request.userId), (answer) => ({ ...request, answer })),
          { concurrency: 100 }
        )
        const accepted = answers.filter(({ answer }) => answer.tag === "Accepted")
        assert.deepStrictEqual(tally(answers.map(({ answer }) => answer)), {
          Accepted: coupons.length * 150,
          CouponSoldOut: coupons.length * 20
        })

        const applied = Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM user_coupons`,
          (rows) => rows[0]!.n
        )
        // Which partitions the replica owns, and that they still have requests to apply when it dies.
        const kafkaAdmin = yield* Effect.acquireRelease(
          Effect.flatMap(KafkaClient.KafkaClient, ({ kafka }) => {
            const client = kafka.admin()
            return Effect.as(Effect.promise(() => client.connect()), client)
          }),
          (client) => Effect.promise(() => client.disconnect())
        )
        const { groups } = yield* Effect.promise(() => kafkaAdmin.describeGroups([config.topics.issueGroup]))
        const member = groups[0]!.members.find((m) => m.clientId === "coupon-replica-1")!
        const owned = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)!
          .assignment[config.topics.requests.name]!
        assert.isAbove(owned.length, 0)
        const unapplied = Effect.promise(async () => {
          const ends = await kafkaAdmin.fetchTopicOffsets(config.topics.requests.name)
          const [committed] = await kafkaAdmin.fetchOffsets({
            groupId: config.topics.issueGroup,
            topics: [config.topics.requests.name]
          })
          return owned.filter((partition) =>
            Number(committed!.partitions.find((p) => p.partition === partition)?.offset ?? -1) <
              Number(ends.find((p) => p.partition === partition)!.high)
          )
        })

        yield* eventually(Effect.map(applied, (n) => n >= accepted.length / 10))
        yield* replica.kill
        const atKill = yield* applied
        assert.isBelow(atKill, accepted.length, "the replica was killed after everything was applied")
        assert.isAbove((yield* unapplied).length, 0, "the replica's partitions were done when it was killed")

        yield* eventually(Effect.map(applied, (n) => n >= accepted.length), "90 seconds")
        // Every request's offset committed by the group: nothing more can be applied after this.
        const lagging = Effect.flatMap(admin.endOffsets(config.topics.requests.name), (ends) =>
          Effect.map(
            admin.committedOffsets(config.topics.issueGroup, config.topics.requests.name),
            (offsets) =>
              ends.filter(({ high, low, partition }) =>
                Number(high) > Number(low) &&
                Number(offsets.find((o) => o.partition === partition)?.offset ?? -1) < Number(high)
              ).length
          ))
        yield* eventually(Effect.map(lagging, (n) => n === 0), "60 seconds", "every request's offset committed")
        assert.strictEqual(yield* applied, accepted.length)
        const [claims] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM kpipe_processed_events WHERE consumer_group = ${config.topics.issueGroup}`
        assert.strictEqual(claims!.n, accepted.length)

        for (const couponId of coupons) {
          const winners = accepted.filter((request) => request.couponId === couponId).map(({ userId }) => userId)
          assert.deepStrictEqual([...(yield* issuedUsers(couponId))].sort(), winners.sort())
          const [row] = yield* sql<
            { issuedQuantity: number }
          >`SELECT issued_quantity FROM coupons WHERE id = ${couponId}`
          assert.strictEqual(row!.issuedQuantity, winners.length)
          const states = yield* Effect.forEach(winners, (userId) => issueStatus(couponId, userId), { concurrency: 50 })
          assert.isTrue(states.every((state) => state.body["status"] === "ISSUED"))
          const report = yield* reconciliation(couponId)
          assert.strictEqual(report.body["consistent"], true, JSON.stringify(report.body))
          assert.deepStrictEqual([report.body["inFlight"], report.body["lagging"]], [0, 0])
        }
      }).pipe(Effect.scoped, Effect.provide(RequestPathLive), Effect.withConfigProvider(provider)),
    { timeout: 180_000 }
  )
})
