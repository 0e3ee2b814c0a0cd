export * as HttpServe from "./HttpServe.ts"
export * as JsonBody from "./JsonBody.ts"
export * as ServiceTopics from "./ServiceTopics.ts"
export * as Telemetry from "./Telemetry.ts"
