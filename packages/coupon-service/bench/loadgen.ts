// The load generator of flash-sale.ts, in a process of its own so that it does not share the
// service's event loop: `count` POST /api/coupons/{couponId}/issue from users firstUser…, `inFlight`
// at a time over as many keep-alive connections (undici Pool). Prints one JSON line with the answers
// by status, the latencies and its own CPU time.
// Usage: node loadgen.ts <origin> <couponId> <firstUser> <count> <inFlight>
import { performance } from "node:perf_hooks"
import { Pool } from "undici"

const [origin = "", couponId = "", firstUser = "1", count = "0", inFlight = "200"] = process.argv.slice(2)
const total = Number(count)
const concurrency = Number(inFlight)
const pool = new Pool(origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 })
const path = `/api/coupons/${couponId}/issue`

const latencies = new Float64Array(total)
const kinds: Array<string> = new Array(total)
const answers: Record<string, number> = {}
let next = 0

const worker = async () => {
  for (let i = next++; i < total; i = next++) {
    const started = performance.now()
    const response = await pool.request({
      path,
      method: "POST",
      headers: { "x-user-id": String(Number(firstUser) + i) }
    })
    const body = await response.body.json() as { readonly _tag?: string }
    latencies[i] = performance.now() - started
    const answer = `${response.statusCode} ${body._tag ?? "Accepted"}`
    answers[answer] = (answers[answer] ?? 0) + 1
    kinds[i] = answer
  }
}

// Open the connections before the clock starts, as a load balancer's pool would have them (with a GET:
// a HEAD answered with a body leaves undici's connection waiting, which once cost seconds of tail latency).
await Promise.all(
  Array.from(
    { length: concurrency },
    () => pool.request({ path: "/", method: "GET" }).then((r) => r.body.dump())
  )
)
const cpuBefore = process.cpuUsage()
const started = performance.now()
const startedAt = Date.now()
await Promise.all(Array.from({ length: concurrency }, worker))
const elapsedMs = performance.now() - started
const cpu = process.cpuUsage(cpuBefore)
await pool.close()

process.stdout.write(
  JSON.stringify({
    startedAt,
    elapsedMs,
    answers,
    latencies: Array.from(latencies),
    kinds,
    cpuMs: (cpu.user + cpu.system) / 1000
  }) + "\n"
)
