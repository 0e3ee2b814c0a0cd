export * as Redis from "./Redis.ts"
