import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import { createTransport } from "nodemailer"
import { Config } from "./Config.ts"

/** The message did not go out; `unavailable` when the server could not be reached or said it is not available. */
export class MailError extends Data.TaggedError("MailError")<{
  readonly message: string
  readonly unavailable: boolean
}> {}

// nodemailer's codes for a server it could not reach or lost, and the SMTP replies that say the
// server itself is not available for now (421 service not available, 451 local error in processing).
// 450 and 452 are about one mailbox (busy, full): waiting for it would hold every later notification
// of the partition, so they go through the retry policy and then the dead-letter topic.
const unreachable = new Set(["ECONNECTION", "ETIMEDOUT", "ESOCKET", "EDNS"])

const isUnavailable = (error: unknown) =>
  (Predicate.hasProperty(error, "code") && typeof error.code === "string" && unreachable.has(error.code)) ||
  (Predicate.hasProperty(error, "responseCode") && (error.responseCode === 421 || error.responseCode === 451))

export interface Mail {
  readonly to: string
  readonly subject: string
  readonly text: string
  /** The same for every attempt of one message, so a receiver can tell a repeat. */
  readonly messageId: string
}

/** E-mail over real SMTP (`SMTP_HOST`:`SMTP_PORT`) through nodemailer. */
export class Mailer extends Effect.Service<Mailer>()("@kpipe/order-service/Mailer", {
  scoped: Effect.gen(function*() {
    const config = yield* Config
    const transport = yield* Effect.acquireRelease(
      Effect.sync(() =>
        createTransport({
          host: config.smtpHost,
          port: config.smtpPort,
          secure: false,
          ignoreTLS: true,
          pool: true,
          maxConnections: config.smtpConnections,
          connectionTimeout: 5_000,
          socketTimeout: 10_000
        })
      ),
      (transport) => Effect.sync(() => transport.close())
    )

    const send = Effect.fn("Mailer.send")(function*(mail: Mail) {
      yield* Effect.tryPromise({
        try: () =>
          transport.sendMail({
            from: config.mailFrom,
            to: mail.to,
            subject: mail.subject,
            text: mail.text,
            messageId: mail.messageId
          }),
        catch: (error) =>
          new MailError({
            message: error instanceof Error ? error.message : String(error),
            unavailable: isUnavailable(error)
          })
      })
    })

    return { send } as const
  })
}) {}
