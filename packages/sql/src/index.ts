export * as Database from "./Database.ts"
export * as Migrations from "./Migrations.ts"
