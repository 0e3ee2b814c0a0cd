import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { SMTPServer } from "smtp-server"

export interface ReceivedMail {
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly subject: string
  readonly messageId: string
  /** The whole message as received (headers and body). */
  readonly raw: string
}

export interface MailCatcher {
  readonly port: number
  /** What it received so far, in arrival order. */
  readonly received: () => ReadonlyArray<ReceivedMail>
  /**
   * Refuses the next `count` messages to `to` at RCPT TO with `responseCode` (default 421: the
   * service is not available), for tests.
   */
  readonly failNext: (count: number, to: string, responseCode?: number) => void
}

const header = (raw: string, name: string) =>
  new RegExp(`^${name}:\\s*(.*)$`, "im").exec(raw.split(/\r?\n\r?\n/, 1)[0] ?? "")?.[1]?.trim() ?? ""

/**
 * A local SMTP server (npm `smtp-server`) that accepts every message and keeps it, for tests and
 * `pnpm run services`: what order-service sent over real SMTP can be read back.
 */
export const make = (
  options: { readonly port?: number | undefined; readonly onMail?: ((mail: ReceivedMail) => void) | undefined } = {}
): Effect.Effect<MailCatcher, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const received: Array<ReceivedMail> = []
    const failures = new Map<string, { readonly count: number; readonly responseCode: number }>()
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onRcptTo(address, _session, callback) {
        const failing = failures.get(address.address)
        if (failing === undefined || failing.count === 0) return callback()
        failures.set(address.address, { ...failing, count: failing.count - 1 })
        callback(Object.assign(new Error("Service not available, try again later"), {
          responseCode: failing.responseCode
        }))
      },
      onData(stream, session, callback) {
        const chunks: Array<Buffer> = []
        stream.on("data", (chunk: Buffer) => chunks.push(chunk))
        stream.on("end", () => {
          const raw = Buffer.concat(chunks).toString("utf8")
          const mail: ReceivedMail = {
            from: session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address,
            to: session.envelope.rcptTo.map((address) => address.address),
            subject: header(raw, "Subject"),
            messageId: header(raw, "Message-ID"),
            raw
          }
          received.push(mail)
          options.onMail?.(mail)
          callback()
        })
      }
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number, Error>((resume) => {
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen(options.port ?? 0, "127.0.0.1", () => {
          // smtp-server reports a client's failed connection (e.g. a reset) as the server's `error`:
          // it concerns that client only, and with no listener it would end the process.
          server.on("error", () => {})
          const address = server.server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
    )
    return {
      port,
      received: () => [...received],
      failNext: (count, to, responseCode = 421) => void failures.set(to, { count, responseCode })
    }
  })
