import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as net from "node:net"

export interface Answer {
  readonly status: number
  /** The JSON body, `undefined` when empty. */
  readonly body: unknown
  /** The body's `_tag` (an HttpApi error's class), if it has one. */
  readonly tag: string | undefined
}

/**
 * A request the typed client cannot make: any method and path, any body as JSON text (malformed
 * too) and any headers, through the `HttpClient` in context. The answer comes back as sent.
 */
export const request = (
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE",
  path: string,
  body?: string,
  headers?: Readonly<Record<string, string>>
) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(method)(path)
    if (headers !== undefined) request = HttpClientRequest.setHeaders(request, headers)
    if (body !== undefined) request = HttpClientRequest.bodyText(request, body, "application/json")
    const response = yield* http.execute(request)
    const text = yield* response.text
    const parsed: unknown = text === "" ? undefined : JSON.parse(text)
    const tag = typeof parsed === "object" && parsed !== null && "_tag" in parsed && typeof parsed._tag === "string"
      ? parsed._tag
      : undefined
    return { status: response.status, body: parsed, tag } satisfies Answer
  })

export interface RawRequest {
  readonly method: string
  /** Sent as is: unicode, spaces or control characters too. */
  readonly path: string
  /** In order, names repeated as given (duplicated headers). `Host` and `Connection: close` are added. */
  readonly headers?: ReadonlyArray<readonly [string, string]> | undefined
  /** Sent with `Content-Length` unless `chunked`, then in chunks of `chunkSize` bytes. */
  readonly body?: string | Buffer | undefined
  readonly chunked?: boolean | undefined
  readonly chunkSize?: number | undefined
}

export interface RawAnswer extends Answer {
  readonly headers: Readonly<Record<string, string>>
}

const parseAnswer = (bytes: Buffer): RawAnswer => {
  const split = bytes.indexOf("\r\n\r\n")
  if (split < 0) throw new Error(`No HTTP answer: ${JSON.stringify(bytes.toString("latin1").slice(0, 200))}`)
  const [statusLine, ...lines] = bytes.subarray(0, split).toString("latin1").split("\r\n")
  const status = Number(statusLine!.split(" ")[1])
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  let body = bytes.subarray(split + 4)
  if (headers["transfer-encoding"] === "chunked") {
    const parts: Array<Buffer> = []
    let at = 0
    for (;;) {
      const end = body.indexOf("\r\n", at)
      const size = parseInt(body.subarray(at, end).toString("latin1"), 16)
      if (!(size > 0)) break
      parts.push(body.subarray(end + 2, end + 2 + size))
      at = end + 2 + size + 2
    }
    body = Buffer.concat(parts)
  } else if (headers["content-length"] !== undefined) {
    body = body.subarray(0, Number(headers["content-length"]))
  }
  const text = body.toString("utf8")
  let parsed: unknown = undefined
  try {
    parsed = text === "" ? undefined : JSON.parse(text)
  } catch {
    parsed = text
  }
  const tag = typeof parsed === "object" && parsed !== null && "_tag" in parsed && typeof parsed._tag === "string"
    ? parsed._tag
    : undefined
  return { status, headers, body: parsed, tag }
}

/**
 * A request written byte for byte on a TCP connection to 127.0.0.1:`port`, for what no HTTP client
 * sends: duplicated headers, raw unicode in the path, chunked bodies, malformed lines. The answer is
 * read until the server closes the connection (`Connection: close` is sent); the write may fail
 * half-way (the server refused the body early) and the answer still counts.
 */
export const exchange = (port: number, request: RawRequest, timeout: Duration.DurationInput = "10 seconds") =>
  Effect.async<RawAnswer, Error>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    const received: Array<Buffer> = []
    let done = false
    const finish = (error?: Error) => {
      if (done) return
      done = true
      socket.destroy()
      const bytes = Buffer.concat(received)
      if (bytes.length > 0) {
        try {
          return resume(Effect.succeed(parseAnswer(bytes)))
        } catch (parseError) {
          return resume(Effect.fail(parseError as Error))
        }
      }
      resume(Effect.fail(error ?? new Error("The connection closed without an answer")))
    }
    socket.on("data", (chunk) => received.push(chunk))
    socket.on("end", () => finish())
    socket.on("close", () => finish())
    socket.on("error", (error) => {
      // EPIPE / ECONNRESET while writing a body the server refused: keep what was answered.
      if (received.length > 0 || (error as NodeJS.ErrnoException).code === "EPIPE") return
      finish(error)
    })
    socket.on("connect", () => {
      const body = request.body === undefined
        ? undefined
        : typeof request.body === "string"
        ? Buffer.from(request.body)
        : request.body
      const lines = [`${request.method} ${request.path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, "Connection: close"]
      for (const [name, value] of request.headers ?? []) lines.push(`${name}: ${value}`)
      if (body !== undefined) {
        lines.push(request.chunked === true ? "Transfer-Encoding: chunked" : `Content-Length: ${body.length}`)
      }
      socket.write(Buffer.from(lines.join("\r\n") + "\r\n\r\n", "utf8"))
      if (body === undefined) return
      if (request.chunked !== true) {
        socket.write(body)
        return
      }
      const size = request.chunkSize ?? 16 * 1024
      for (let at = 0; at < body.length; at += size) {
        const chunk = body.subarray(at, at + size)
        socket.write(`${chunk.length.toString(16)}\r\n`)
        socket.write(chunk)
        socket.write("\r\n")
      }
      socket.write("0\r\n\r\n")
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`No answer within ${Duration.format(timeout)}`)
    })
  )
