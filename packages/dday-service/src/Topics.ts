import { SeedTopics } from "@kpipe/contracts"
import { ServiceTopics } from "@kpipe/service-kit"

/** Creates `member-events` and its dead-letter topic under `TOPIC_PREFIX` when missing, at startup. */
export const layer = ServiceTopics.layerCreate([SeedTopics.memberEvents])
