export * as Infrastructure from "./Infrastructure.ts"
export * as ServiceProcess from "./ServiceProcess.ts"
export * as TestKafka from "./TestKafka.ts"
export * as TestLogging from "./TestLogging.ts"
