// Listens on the port it is given and never accepts: once listening it never returns to the event
// loop, so with its backlog of one filled the kernel drops every later SYN (FaultProxy's
// `unreachable`). It ends with the process that started it.
import * as net from "node:net"

const port = Number(process.argv[2])
const server = net.createServer()
let tries = 0
const listen = () =>
  server.listen({ port, host: "127.0.0.1", backlog: 1 }, () => {
    process.stdout.write("syn sink listening\n")
    const parent = process.ppid
    const nothing = new Int32Array(new SharedArrayBuffer(4))
    while (process.ppid === parent) Atomics.wait(nothing, 0, 0, 500)
    process.exit(0)
  })
// The port's last listener closes its socket on its next turn of the event loop: tried again until then.
server.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EADDRINUSE" && ++tries < 100) {
    setTimeout(listen, 10)
    return
  }
  process.stderr.write(`syn sink: ${String(error)}\n`)
  process.exit(1)
})
listen()
