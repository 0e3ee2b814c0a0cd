// The load generator of flash-sale.ts, in a process of its own so that it does not share the
// service's event loop: `count` POST /api/coupons/{couponId}/issue from users firstUser…, `inFlight`
// at a time over as many keep-alive connections. HTTP/1.1 is written and read straight on the
// sockets (one request at a time per connection, answers framed by Content-Length), as wrk and
// autocannon do: a full HTTP client costs more CPU per request than the service it measures, on
// the same two cores. Prints one JSON line with the answers by status, the latencies and its own
// CPU time.
// Usage: node loadgen.ts <origin> <couponId> <firstUser> <count> <inFlight>
import { connect, type Socket } from "node:net"
import { performance } from "node:perf_hooks"

const [origin = "", couponId = "", firstUser = "1", count = "0", inFlight = "200"] = process.argv.slice(2)
const url = new URL(origin)
const total = Number(count)
const concurrency = Number(inFlight)

const latencies = new Float64Array(total)
const kinds: Array<string> = new Array(total)
const answers: Record<string, number> = {}
let next = 0

const request = (method: string, path: string, headers: string) =>
  `${method} ${path} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-length: 0\r\n${headers}\r\n`

interface Answer {
  readonly status: number
  readonly body: string
}

/** One keep-alive connection: sends a request, resolves with its answer. */
const connection = (socket: Socket) => {
  let buffered: Buffer = Buffer.alloc(0)
  let waiting: ((answer: Answer) => void) | undefined
  let failed: ((error: Error) => void) | undefined
  socket.setNoDelay(true)
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    const headEnd = buffered.indexOf("\r\n\r\n")
    if (headEnd === -1) return
    const head = buffered.subarray(0, headEnd).toString("latin1")
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)
    if (length === null) return failed?.(new Error(`answer without content-length: ${head}`))
    const end = headEnd + 4 + Number(length[1])
    if (buffered.length < end) return
    const answer = { status: Number(head.slice(9, 12)), body: buffered.subarray(headEnd + 4, end).toString() }
    buffered = buffered.subarray(end)
    const resolve = waiting
    waiting = undefined
    resolve?.(answer)
  })
  socket.on("error", (error) => failed?.(error))
  socket.on("close", () => failed?.(new Error("the server closed a connection")))
  return (text: string) =>
    new Promise<Answer>((resolve, reject) => {
      waiting = resolve
      failed = reject
      socket.write(text)
    })
}

const open = () =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) }, () => resolve(socket))
    socket.once("error", reject)
  })

const worker = async (send: (text: string) => Promise<Answer>) => {
  for (let i = next++; i < total; i = next++) {
    const started = performance.now()
    const { body, status } = await send(
      request("POST", `/api/coupons/${couponId}/issue`, `x-user-id: ${Number(firstUser) + i}\r\n`)
    )
    latencies[i] = performance.now() - started
    const answer = `${status} ${(JSON.parse(body) as { readonly _tag?: string })._tag ?? "Accepted"}`
    answers[answer] = (answers[answer] ?? 0) + 1
    kinds[i] = answer
  }
}

// Open the connections (and let each carry one request that changes nothing) before the clock
// starts, as a load balancer's pool would have them.
const sockets = await Promise.all(Array.from({ length: concurrency }, open))
const senders = sockets.map(connection)
await Promise.all(
  senders.map((send) => send(request("GET", "/api/coupons/999999999/issue-status", "x-user-id: 1\r\n")))
)
const cpuBefore = process.cpuUsage()
const started = performance.now()
const startedAt = Date.now()
await Promise.all(senders.map(worker))
const elapsedMs = performance.now() - started
const cpu = process.cpuUsage(cpuBefore)
for (const socket of sockets) socket.destroy()

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
