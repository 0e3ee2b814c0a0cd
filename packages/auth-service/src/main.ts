import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { KafkaClient, Producer } from "@kpipe/kafka"
import { OutboxRelay } from "@kpipe/pipeline"
import { HttpServe, Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as AuthDatabase from "./AuthDatabase.ts"
import * as AuthTopics from "./AuthTopics.ts"
import { Members } from "./Members.ts"
import { ApiLive } from "./MembersHttp.ts"

const HttpLive = HttpServe.layer({ defaultPort: Config.succeed(3001) }).pipe(Layer.provide(ApiLive))

const RelayLive = OutboxRelay.layer().pipe(Layer.provide(Producer.layer()))

const Ready = Layer.effectDiscard(Effect.logInfo("auth-service ready"))

const MainLive = Ready.pipe(
  Layer.provide(Layer.mergeAll(HttpLive, RelayLive)),
  Layer.provide(Members.Default),
  Layer.provide(AuthTopics.layerCreate),
  Layer.provide(Layer.mergeAll(AuthDatabase.layer, KafkaClient.layerFromEnv)),
  Layer.provide(Telemetry.layer("auth-service"))
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
