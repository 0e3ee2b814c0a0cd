export * as Infrastructure from "./Infrastructure.ts"
export * as TestDatabase from "./TestDatabase.ts"
export * as TestKafka from "./TestKafka.ts"
