// Listens on the port it is given, beside the fault proxy (SO_REUSEPORT), and never accepts: once
// listening it never returns to the event loop, so with its backlog of one filled the kernel drops
// every later SYN (FaultProxy's `unreachable`). It ends with the process that started it.
import * as net from "node:net"

const server = net.createServer()
server.on("error", (error) => {
  process.stderr.write(`syn sink: ${String(error)}\n`)
  process.exit(1)
})
server.listen({ port: Number(process.argv[2]), host: "127.0.0.1", backlog: 1, reusePort: true }, () => {
  process.stdout.write("syn sink listening\n")
  const parent = process.ppid
  const nothing = new Int32Array(new SharedArrayBuffer(4))
  while (process.ppid === parent) Atomics.wait(nothing, 0, 0, 500)
  process.exit(0)
})
