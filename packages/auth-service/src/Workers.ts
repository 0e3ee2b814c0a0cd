import { Producer } from "@kpipe/kafka"
import { OutboxRelay } from "@kpipe/pipeline"
import * as Layer from "effect/Layer"

/** The outbox relay: publishes committed member and login events, each key's in commit order. */
export const layer = OutboxRelay.layer().pipe(Layer.provide(Producer.layer()))
