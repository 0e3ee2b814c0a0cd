const dayMs = 86_400_000

/** The UTC day of an instant, `YYYY-MM-DD`. */
export const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/** The Monday (UTC) of an instant's ISO week, `YYYY-MM-DD`: what PostgreSQL's `date_trunc('week', …)` gives. */
export const weekOf = (ms: number) => {
  const midnight = Math.floor(ms / dayMs) * dayMs
  const sinceMonday = (new Date(midnight).getUTCDay() + 6) % 7
  return dayOf(midnight - sinceMonday * dayMs)
}

export type Period = "day" | "week"

export const startOf = (period: Period, ms: number) => period === "day" ? dayOf(ms) : weekOf(ms)
