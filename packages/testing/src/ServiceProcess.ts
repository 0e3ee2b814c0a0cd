/** Re-exported from `@kpipe/devtools`, where scripts and benches take it from too. */
export * from "@kpipe/devtools/ServiceProcess"
