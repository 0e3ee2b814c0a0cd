import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { createTransport } from "nodemailer"
import { Config } from "./Config.ts"

export class MailError extends Data.TaggedError("MailError")<{ readonly message: string }> {}

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
        catch: (error) => new MailError({ message: error instanceof Error ? error.message : String(error) })
      })
    })

    return { send } as const
  })
}) {}
