import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"
import * as Effect from "effect/Effect"

/** The topics auth-service produces to, under `TOPIC_PREFIX`. */
export const resolve = Effect.all({
  members: ServiceTopics.resolve(SeedTopics.memberEvents),
  logins: ServiceTopics.resolve(SeedTopics.loginEvents)
})

/** Creates both topics (and their dead-letter topics) when missing, at startup. */
export const layer = ServiceTopics.layerCreate([SeedTopics.memberEvents, SeedTopics.loginEvents])
