import { SeedTopics } from "@kpipe/contracts"
import { Admin } from "@kpipe/kafka"
import * as TopicAdmin from "@kpipe/pipeline/TopicAdmin"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** The topics auth-service produces to, under `TOPIC_PREFIX`. */
export const resolve = Effect.all({
  members: ServiceTopics.resolve(SeedTopics.memberEvents),
  logins: ServiceTopics.resolve(SeedTopics.loginEvents)
})

/**
 * Creates both topics (and their dead-letter topics) when missing, at startup; the admin
 * connection it needs is closed again right after.
 */
export const layerCreate = Layer.effectDiscard(
  resolve.pipe(
    Effect.flatMap((topics) => TopicAdmin.create([topics.members, topics.logins])),
    Effect.provide(Admin.layer)
  )
)
