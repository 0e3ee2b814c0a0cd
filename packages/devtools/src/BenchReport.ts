// Printing a benchmark's report: lines, numbers in en-US, right-aligned tables.
import * as Effect from "effect/Effect"

export const print = (line = "") => Effect.sync(() => process.stdout.write(`${line}\n`))
export const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a"
export const ms = (n: number) => `${fmt(n, n < 10 ? 2 : 0)} ms`
export const rate = (count: number, wallMs: number) => `${fmt(count / (wallMs / 1000))} events/s`

export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, indent = "    ") => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    indent + cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  return Effect.forEach(
    [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)],
    (text) => print(text.trimEnd()),
    { discard: true }
  )
}

/** A markdown table (first column left-aligned, the others right-aligned), as one string. */
export const markdownTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((text, i) => i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!)).join(" | ")} |`
  return [
    line(header),
    `|${widths.map((w, i) => i === 0 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`).join("|")}|`,
    ...rows.map(line)
  ].join("\n")
}
