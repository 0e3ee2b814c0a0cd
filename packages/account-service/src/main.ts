import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Admin, KafkaClient } from "@kpipe/kafka"
import { HttpServe, Telemetry } from "@kpipe/service-kit"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as AccountService from "./AccountService.ts"
import * as Replica from "./Replica.ts"

const HttpLive = HttpServe.layer({
  defaultPort: Config.map(Replica.replica, (replica) => Replica.basePort + replica)
})

const KafkaLive = Admin.layer.pipe(Layer.provideMerge(KafkaClient.layerFromEnv))

const AppLive = HttpLive.pipe(
  Layer.provideMerge(AccountService.layer),
  Layer.provide(Layer.mergeAll(KafkaLive, AccountService.DatabaseLive))
)

const MainLive = Layer.unwrapEffect(
  Effect.map(Replica.replica, (replica) =>
    Layer.effectDiscard(Effect.logInfo("account-service ready")).pipe(
      Layer.provide(AppLive),
      Layer.provide(Telemetry.layer("account-service")),
      Layer.annotateLogs({ service: "account-service", replica })
    ))
)

Layer.launch(MainLive).pipe(NodeRuntime.runMain)
