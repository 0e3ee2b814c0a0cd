import { Database } from "@kpipe/sql"
import * as AuthMigrations from "./Migrations.ts"

export const defaultUrl = "postgres://postgres@127.0.0.1:5432/kpipe_auth"

/** The pool on `DATABASE_URL`, its database created if missing and migrated (outbox tables, then members and sessions). */
export const layer = Database.layerMigrated(defaultUrl, AuthMigrations.all)
