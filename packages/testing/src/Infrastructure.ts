/** Re-exported from `@kpipe/devtools`, where scripts take it from too. */
export * from "@kpipe/devtools/Infrastructure"
