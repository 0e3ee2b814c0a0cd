/**
 * `text` as PostgreSQL's `text` and `jsonb` can hold it: NUL (which neither takes: "invalid byte
 * sequence", "unsupported Unicode escape sequence") as U+FFFD. A decode error quotes the record's
 * raw bytes (a binary payload starting with 0x00 on a JSON topic), a header can carry any string.
 */
export const pgText = (text: string): string => text.includes("\u0000") ? text.replaceAll("\u0000", "\uFFFD") : text

/** `headers` as a `jsonb` value: names and values through `pgText`. */
export const pgHeaders = (headers: Readonly<Record<string, string>>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(headers).map(([name, value]) => [pgText(name), pgText(value)])))
