export * as MetricsModel from "./MetricsModel.ts"
export * as MetricsStore from "./MetricsStore.ts"
export * as Migrations from "./Migrations.ts"
