export * as Topic from "./Topic.ts"
