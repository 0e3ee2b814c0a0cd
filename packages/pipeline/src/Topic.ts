/** The pure description of a topic lives in `@kpipe/topic` (no Kafka client needed); creating it is `TopicAdmin`. */
export * from "@kpipe/topic/Topic"
