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

const request = (method: string, path: string, headers: string) =>
  `${method} ${path} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-length: 0\r\n${headers}\r\n`

/** The `_tag` of an error answer, without parsing the whole body. */
const tagOf = (body: Buffer) => {
  const at = body.indexOf("\"_tag\":\"")
  return at === -1 ? "Accepted" : body.toString("latin1", at + 8, body.indexOf("\"", at + 8))
}

/**
 * One keep-alive connection: `send` writes a request, `onAnswer` hears each answer (status and
 * body). Callbacks rather than a promise per request keep the generator's own cost low.
 */
const connection = (
  socket: Socket,
  onAnswer: (status: number, body: Buffer) => void,
  onError: (error: Error) => void
) => {
  let buffered: Buffer = Buffer.alloc(0)
  socket.setNoDelay(true)
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    while (true) {
      const headEnd = buffered.indexOf("\r\n\r\n")
      if (headEnd === -1) return
      const head = buffered.toString("latin1", 0, headEnd)
      const length = /\r\ncontent-length: *(\d+)/i.exec(head)
      if (length === null) return onError(new Error(`answer without content-length: ${head}`))
      const end = headEnd + 4 + Number(length[1])
      if (buffered.length < end) return
      const body = buffered.subarray(headEnd + 4, end)
      buffered = buffered.subarray(end)
      onAnswer(Number(head.slice(9, 12)), body)
    }
  })
  socket.on("error", onError)
  socket.on("close", () => onError(new Error("the server closed a connection")))
  return (text: string) => socket.write(text)
}

const open = () =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) }, () => resolve(socket))
    socket.once("error", reject)
  })

const issue = (user: number) => request("POST", `/api/coupons/${couponId}/issue`, `x-user-id: ${user}\r\n`)

/** Runs `count` requests, `inFlight` at a time: each connection sends its next one when its answer arrives. */
const run = (
  sockets: ReadonlyArray<Socket>,
  count: number,
  next: (i: number) => string,
  record: (i: number, status: number, body: Buffer) => void
) =>
  new Promise<void>((resolve, reject) => {
    let started = 0
    let done = 0
    for (const socket of sockets) {
      let current = -1
      let sentAt = 0
      const send = connection(socket, (status, body) => {
        latencies[current] = performance.now() - sentAt
        record(current, status, body)
        if (++done === count) return resolve()
        if (started < count) start()
      }, (error) => done < count && reject(error))
      const start = () => {
        current = started++
        sentAt = performance.now()
        send(next(current))
      }
      if (started < count) start()
    }
  })

// Open the connections (and let each carry one request that changes nothing) before the clock
// starts, as a load balancer's pool would have them.
const sockets = await Promise.all(Array.from({ length: concurrency }, open))
await run(
  sockets,
  concurrency,
  () => request("GET", "/api/coupons/999999999/issue-status", "x-user-id: 1\r\n"),
  () => {}
)
for (const socket of sockets) socket.removeAllListeners("data").removeAllListeners("close").removeAllListeners("error")
const cpuBefore = process.cpuUsage()
const started = performance.now()
const startedAt = Date.now()
await run(sockets, total, (i) => issue(Number(firstUser) + i), (i, status, body) => {
  const answer = `${status} ${tagOf(body)}`
  answers[answer] = (answers[answer] ?? 0) + 1
  kinds[i] = answer
})
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
