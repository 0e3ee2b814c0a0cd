import { Database } from "@kpipe/sql"
import * as Migrations from "./Migrations.ts"

export const defaultUrl = "postgres://postgres@127.0.0.1:5432/kpipe_order"

/** The pool on `DATABASE_URL` (default `kpipe_order`), the database created if missing and migrated. */
export const layer = Database.layerMigrated(defaultUrl, Migrations.all)
