import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
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

// The server refusing the service rather than the message: our login (nodemailer's EAUTH; 535 bad
// credentials, 534 mechanism too weak), a login or TLS it requires first (530, 538), or TLS that
// could not be set up (ETLS: STARTTLS refused or missing under `required`, a certificate not
// trusted). Every message would meet it until the deployment is fixed, as the SMS provider's
// 401 and 407: the events wait instead of each being refused and dead-lettered.
const deploymentCodes = new Set(["EAUTH", "ENOAUTH", "ETLS"])
const deploymentReplies = new Set([530, 534, 535, 538])

const codeOf = (error: unknown) =>
  Predicate.hasProperty(error, "code") && typeof error.code === "string" ? error.code : undefined

const replyOf = (error: unknown) =>
  Predicate.hasProperty(error, "responseCode") && typeof error.responseCode === "number"
    ? error.responseCode
    : undefined

/** What a failed send says: the server unreachable or away, our deployment refused, or the message refused. */
export const classify = (error: unknown): "unavailable" | "deployment" | "refused" => {
  const code = codeOf(error)
  const reply = replyOf(error)
  if (code !== undefined && deploymentCodes.has(code)) return "deployment"
  if (reply !== undefined && deploymentReplies.has(reply)) return "deployment"
  if (code !== undefined && unreachable.has(code)) return "unavailable"
  return reply === 421 || reply === 451 ? "unavailable" : "refused"
}

export interface Mail {
  readonly to: string
  readonly subject: string
  readonly text: string
  /** The same for every attempt of one message, so a receiver can tell a repeat. */
  readonly messageId: string
}

/**
 * E-mail over real SMTP (`SMTP_HOST`:`SMTP_PORT`) through nodemailer: implicit TLS with
 * `SMTP_SECURE`, otherwise STARTTLS per `SMTP_STARTTLS`; a login with `SMTP_USER` and
 * `SMTP_PASSWORD` when set. A server that cannot be reached, answers 421 or 451, refuses the login
 * or the TLS (530, 534, 535, 538, EAUTH, ETLS) is unavailable: the message waits for it.
 */
export class Mailer extends Effect.Service<Mailer>()("@kpipe/order-service/Mailer", {
  scoped: Effect.gen(function*() {
    const config = yield* Config
    const server = `${config.smtpHost}:${config.smtpPort}`
    const login = Option.getOrUndefined(config.smtpAuth)
    const transport = yield* Effect.acquireRelease(
      Effect.sync(() =>
        createTransport({
          host: config.smtpHost,
          port: config.smtpPort,
          secure: config.smtpSecure,
          // `opportunistic`: STARTTLS when the server offers it, and on in plaintext (without
          // logging in: nodemailer sends no credentials then) when the server then refuses it.
          ignoreTLS: config.smtpStartTls === "never",
          requireTLS: config.smtpStartTls === "required",
          opportunisticTLS: config.smtpStartTls === "opportunistic",
          tls: {
            rejectUnauthorized: config.smtpTlsRejectUnauthorized,
            ...(Option.isSome(config.smtpTlsCa) ? { ca: config.smtpTlsCa.value } : {})
          },
          ...(login !== undefined ? { auth: { user: login.user, pass: Redacted.value(login.password) } } : {}),
          pool: true,
          maxConnections: config.smtpConnections,
          connectionTimeout: 5_000,
          socketTimeout: 10_000
        })
      ),
      (transport) => Effect.sync(() => transport.close())
    )

    const failure = (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error)
      const kind = classify(error)
      return new MailError({
        message: kind === "deployment"
          ? `SMTP server ${server} refused the service's login or TLS (${message}); every e-mail waits until ` +
            "SMTP_USER, SMTP_PASSWORD, SMTP_SECURE, SMTP_STARTTLS or SMTP_TLS_* are fixed"
          : message,
        unavailable: kind !== "refused"
      })
    }

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
        catch: failure
      })
    })

    return { send } as const
  })
}) {}
