/** The `q` quantile (0–1) of ascending `sorted` values, nearest rank; NaN when there are none. */
export const percentile = (sorted: ArrayLike<number>, q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

export const sortedOf = (values: Iterable<number>) => Float64Array.from(values).sort()
