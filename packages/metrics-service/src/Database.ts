import { Database } from "@kpipe/sql"
import * as Migrations from "./Migrations.ts"

export const defaultUrl = "postgres://postgres@127.0.0.1:5432/kpipe_metrics"

/** The pool on `DATABASE_URL` (default `kpipe_metrics`), the database created when missing and migrated. */
export const layer = Database.layerMigrated(defaultUrl, Migrations.all)
