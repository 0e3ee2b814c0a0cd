import { SeedTopics } from "@kpipe/contracts"
import * as Topic from "@kpipe/pipeline/Topic"
import { ServiceTopics } from "@kpipe/service-kit"

export type IssueTopic = typeof SeedTopics.couponIssueRequests

/** The service's topic and consumer groups under `prefix` (`TOPIC_PREFIX`, read by `Config`). */
export const named = (prefix: string) => ({
  /** `coupon-issue-requests`, and its dead-letter topic `coupon-issue-dlq`. */
  requests: Topic.prefixed(SeedTopics.couponIssueRequests, prefix),
  issueGroup: `${prefix}coupon-issue-group`,
  dlqMonitorGroup: `${prefix}coupon-issue-dlq-monitor-group`,
  dlqReleaseGroup: `${prefix}coupon-issue-dlq-release-group`
})

export type Names = ReturnType<typeof named>

/** Creates the requests topic and its dead-letter topic under `TOPIC_PREFIX` when missing, at startup. */
export const layer = ServiceTopics.layerCreate([SeedTopics.couponIssueRequests])
