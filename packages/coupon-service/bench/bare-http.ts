// The yardstick of flash-sale.ts: a bare node:http server that answers every request with a fixed
// 202, so the coupon API's throughput under the same load generator reads as a share of what Node's
// HTTP alone does on this machine. Usage: node bare-http.ts <port>
import { createServer } from "node:http"

const body = JSON.stringify({ status: "PENDING" })
const port = Number(process.argv[2] ?? "0")

const server = createServer({ keepAliveTimeout: 60_000 }, (request, response) => {
  request.resume()
  request.on("end", () => {
    response.writeHead(202, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
    response.end(body)
  })
})
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`Listening on http://127.0.0.1:${port}\nbare-http ready\n`)
})
process.once("SIGTERM", () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
})
