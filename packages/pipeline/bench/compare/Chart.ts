// The comparison as one SVG: latency percentiles per run (log scale) beside throughput per system,
// from the same rows as the table.
import { BenchReport } from "@kpipe/devtools"
import type { Row } from "./Report.ts"

const colors = { p50: "#4e79a7", p95: "#59a14f", p99: "#f28e2b", max: "#e15759" } as const
const percentileKeys = ["p50", "p95", "p99", "max"] as const
const esc = (text: string) => text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")

const short = (row: Row) => {
  const text = `${row.label} ${
    row.measure.replace("ProducerPerformance ", "").replace(": commit → ", " → ").replace("on the topic", "topic")
      .replace(
        ": send → acknowledged",
        " → acked"
      )
      .replace(": produce → consume, one at a time", " (one at a time)")
  }`
  return text.length > 36 ? `${text.slice(0, 35)}…` : text
}

export const svg = (title: string, rows: ReadonlyArray<Row>) => {
  const latency = rows.filter((r) => r.latency !== undefined)
  const throughput = rows.filter((r) => r.rate !== undefined)
  const width = 1200
  const height = 520
  const top = 60
  const bottom = 170
  const plotHeight = height - top - bottom
  const parts: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`
  ]

  // Left: latency percentiles, log scale.
  const left = { x: 60, w: 700 }
  const values = latency.flatMap((r) => percentileKeys.map((k) => r.latency?.[k] ?? Number.NaN)).filter((v) => v > 0)
  const maxMs = Math.max(10, ...values)
  const decades = Math.ceil(Math.log10(maxMs))
  const y = (ms: number) => top + plotHeight - (Math.log10(Math.max(ms, 1)) / decades) * plotHeight
  parts.push(
    `<text x="${left.x + left.w / 2}" y="${
      top - 18
    }" text-anchor="middle" font-size="13">latency per event, ms (log scale)</text>`
  )
  for (let d = 0; d <= decades; d++) {
    const ms = 10 ** d
    parts.push(
      `<line x1="${left.x}" x2="${left.x + left.w}" y1="${y(ms)}" y2="${y(ms)}" stroke="#ddd"/>`,
      `<text x="${left.x - 6}" y="${y(ms) + 4}" text-anchor="end">${BenchReport.fmt(ms)}</text>`
    )
  }
  const group = left.w / Math.max(1, latency.length)
  const bar = Math.min(14, (group - 8) / 4)
  latency.forEach((row, i) => {
    const x0 = left.x + i * group + (group - bar * 4) / 2
    percentileKeys.forEach((k, j) => {
      const v = row.latency?.[k]
      if (v === undefined || !Number.isFinite(v)) return
      const yTop = y(v)
      parts.push(
        `<rect x="${x0 + j * bar}" y="${yTop}" width="${bar - 1}" height="${top + plotHeight - yTop}" fill="${
          colors[k]
        }"><title>${esc(`${row.system} ${row.measure} ${k}: ${BenchReport.ms(v)}`)}</title></rect>`
      )
    })
    const cx = left.x + i * group + group / 2
    parts.push(
      `<text transform="translate(${cx},${top + plotHeight + 8}) rotate(40)" text-anchor="start">${
        esc(short(row))
      }</text>`
    )
  })
  percentileKeys.forEach((k, j) => {
    parts.push(
      `<rect x="${left.x + j * 70}" y="${height - 22}" width="12" height="12" fill="${colors[k]}"/>`,
      `<text x="${left.x + j * 70 + 16}" y="${height - 12}">${k}</text>`
    )
  })

  // Right: throughput, linear scale, with the ratio to the limit.
  const right = { x: 820, w: 250 }
  const maxRate = Math.max(1, ...throughput.map((r) => r.rate!))
  const rowHeight = Math.min(44, plotHeight / Math.max(1, throughput.length))
  parts.push(
    `<text x="${right.x + right.w / 2}" y="${
      top - 18
    }" text-anchor="middle" font-size="13">throughput draining the backlog, events/s</text>`
  )
  throughput.forEach((row, i) => {
    const yy = top + i * rowHeight
    const w = (row.rate! / maxRate) * right.w
    parts.push(
      `<text x="${right.x}" y="${yy + 11}">${esc(`${row.label}: ${row.measure}`)}</text>`,
      `<rect x="${right.x}" y="${yy + 15}" width="${w}" height="${rowHeight * 0.4}" fill="${
        row.system === "limit" ? "#9c9c9c" : row.system.startsWith("kpipe") ? "#4e79a7" : "#b07aa1"
      }"/>`,
      `<text x="${right.x + w + 4}" y="${yy + 15 + rowHeight * 0.3}">${
        esc(
          `${BenchReport.fmt(row.rate!)}${
            row.rateRatio === undefined ? "" : ` (×${BenchReport.fmt(row.rateRatio, 2)})`
          }`
        )
      }</text>`
    )
  })
  parts.push("</svg>")
  return parts.join("\n")
}
