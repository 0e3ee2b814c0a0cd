import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Command from "@effect/platform/Command"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SMTPServer, type SMTPServerOptions } from "smtp-server"
import * as Config from "../src/Config.ts"
import * as MailCatcher from "../src/MailCatcher.ts"
import { Mailer } from "../src/Mailer.ts"
import { values } from "./config.ts"

/** A relay's view of one message it took. */
interface Taken {
  readonly subject: string
  /** Over TLS (implicit or STARTTLS). */
  readonly secure: boolean
  /** Who logged in, if anyone. */
  readonly user: string | undefined
}

/** An `smtp-server` with `options` on a port of its own, closed with the scope; keeps what it took. */
const relay = (options: SMTPServerOptions): Effect.Effect<
  { readonly port: number; readonly taken: Array<Taken> },
  Error,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const taken: Array<Taken> = []
    const server = new SMTPServer({
      logger: false,
      ...options,
      onData(stream, session, callback) {
        const chunks: Array<Buffer> = []
        stream.on("data", (chunk: Buffer) => chunks.push(chunk))
        stream.on("end", () => {
          const subject = /^Subject:\s*(.*)$/im.exec(Buffer.concat(chunks).toString("utf8"))?.[1]?.trim() ?? ""
          taken.push({ subject, secure: session.secure, user: session.user as string | undefined })
          callback()
        })
      }
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number, Error>((resume) => {
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen(0, "127.0.0.1", () => {
          // A client's failed TLS handshake is reported as the server's `error`: it concerns that client.
          server.on("error", () => {})
          const address = server.server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
    )
    return { port, taken }
  })

/** A self-signed certificate for 127.0.0.1 (openssl), its key, and the directory they are in. */
const selfSigned = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "kpipe-smtp-tls-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const openssl = Command.make(
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    join(dir, "key.pem"),
    "-out",
    join(dir, "cert.pem"),
    "-days",
    "2",
    "-subj",
    "/CN=kpipe-test-relay",
    "-addext",
    "subjectAltName=IP:127.0.0.1"
  )
  const code = yield* Command.exitCode(openssl)
  assert.strictEqual(Number(code), 0, "openssl could not make a self-signed certificate")
  return {
    dir,
    key: readFileSync(join(dir, "key.pem"), "utf8"),
    cert: readFileSync(join(dir, "cert.pem"), "utf8")
  }
}).pipe(Effect.orDie, Effect.provide(NodeContext.layer))

const mailerFor = (port: number, settings: Partial<Config.Values> = {}) =>
  Layer.build(Mailer.Default.pipe(Layer.provide(Config.layer(values({ smtpPort: port, ...settings }))))).pipe(
    Effect.map(Context.get(Mailer))
  )

const login = (user: string, password: string) => Option.some({ user, password: Redacted.make(password) })

/** What became of one e-mail: sent, waiting for the server (`unavailable`), or refused. */
const outcome = (port: number, settings: Partial<Config.Values>, subject: string) =>
  Effect.flatMap(
    mailerFor(port, settings),
    (mailer) =>
      mailer.send({ to: "user-1@customers.kpipe.test", subject, text: "hi", messageId: `<${subject}@t>` }).pipe(
        Effect.as("sent"),
        Effect.catchTag("MailError", (error) => Effect.succeed(error.unavailable ? "waits" : "refused"))
      )
  )

/** Fails a MAIL FROM on a plain connection with 530, as a relay requiring STARTTLS does. */
const startTlsFirst: SMTPServerOptions["onMailFrom"] = (_address, session, callback) =>
  session.secure
    ? callback()
    : callback(Object.assign(new Error("Must issue a STARTTLS command first"), { responseCode: 530 }))

describe("Mailer against a relay that requires a login or TLS", () => {
  it.live("a login required: with SMTP_USER and SMTP_PASSWORD the e-mail goes out; without, or wrong, it waits", () =>
    Effect.gen(function*() {
      const server = yield* relay({
        authOptional: false,
        allowInsecureAuth: true,
        disabledCommands: ["STARTTLS"],
        onAuth(auth, _session, callback) {
          if (auth.username === "orders" && auth.password === "s3cret") return callback(null, { user: "orders" })
          callback(new Error("Invalid username or password"))
        }
      })
      const outcomes = [
        yield* outcome(server.port, { smtpAuth: login("orders", "s3cret") }, "right"),
        yield* outcome(server.port, {}, "none"), // 530 authentication required
        yield* outcome(server.port, { smtpAuth: login("orders", "wrong") }, "wrong") // 535
      ]
      assert.deepStrictEqual(outcomes, ["sent", "waits", "waits"])
      assert.deepStrictEqual(server.taken, [{ subject: "right", secure: false, user: "orders" }])

      const refused = yield* mailerFor(server.port, { smtpAuth: login("orders", "wrong") }).pipe(
        Effect.flatMap((mailer) =>
          mailer.send({ to: "a@customers.kpipe.test", subject: "s", text: "t", messageId: "<m>" })
        ),
        Effect.flip
      )
      assert.include(refused.message, "535")
      assert.include(refused.message, "SMTP_PASSWORD")
    }).pipe(Effect.scoped))

  it.live("STARTTLS: used when offered (certificate checked against SMTP_TLS_CA_FILE), waits when it cannot be had", () =>
    Effect.gen(function*() {
      const tls = yield* selfSigned
      const server = yield* relay({ key: tls.key, cert: tls.cert, authOptional: true, onMailFrom: startTlsFirst })
      const trusted = { smtpTlsCa: Option.some(tls.cert) }
      const outcomes = [
        yield* outcome(server.port, trusted, "opportunistic"),
        yield* outcome(server.port, { ...trusted, smtpStartTls: "required" }, "required"),
        yield* outcome(server.port, { smtpTlsRejectUnauthorized: false }, "unverified"),
        yield* outcome(server.port, {}, "untrusted"), // ETLS: a self-signed certificate
        yield* outcome(server.port, { ...trusted, smtpStartTls: "never" }, "never") // 530 STARTTLS first
      ]
      assert.deepStrictEqual(outcomes, ["sent", "sent", "sent", "waits", "waits"])
      assert.deepStrictEqual(server.taken.map((taken) => [taken.subject, taken.secure]), [
        ["opportunistic", true],
        ["required", true],
        ["unverified", true]
      ])

      // A server without STARTTLS (the local MailCatcher): plain SMTP unless it is required.
      const local = yield* MailCatcher.make()
      const plain = [
        yield* outcome(local.port, {}, "local"),
        yield* outcome(local.port, { smtpStartTls: "required" }, "local required")
      ]
      assert.deepStrictEqual(plain, ["sent", "waits"])
      assert.deepStrictEqual(local.received().map((mail) => mail.subject), ["local"])
    }).pipe(Effect.scoped))

  it.live("a login only over TLS: sent after STARTTLS; a login refused on a plain connection (538) waits", () =>
    Effect.gen(function*() {
      const tls = yield* selfSigned
      const server = yield* relay({
        key: tls.key,
        cert: tls.cert,
        authOptional: false,
        onAuth(auth, _session, callback) {
          if (auth.username === "orders" && auth.password === "s3cret") return callback(null, { user: "orders" })
          callback(new Error("Invalid username or password"))
        }
      })
      const settings = { smtpAuth: login("orders", "s3cret"), smtpTlsCa: Option.some(tls.cert) }
      const outcomes = [
        yield* outcome(server.port, settings, "over tls"),
        yield* outcome(server.port, { ...settings, smtpStartTls: "never" }, "plain")
      ]
      assert.deepStrictEqual(outcomes, ["sent", "waits"])
      assert.deepStrictEqual(server.taken, [{ subject: "over tls", secure: true, user: "orders" }])
    }).pipe(Effect.scoped))

  it.live("SMTP_SECURE: TLS from the first byte (port 465 style)", () =>
    Effect.gen(function*() {
      const tls = yield* selfSigned
      const server = yield* relay({ secure: true, key: tls.key, cert: tls.cert, authOptional: true })
      const sent = yield* outcome(server.port, { smtpSecure: true, smtpTlsCa: Option.some(tls.cert) }, "implicit")
      assert.strictEqual(sent, "sent")
      assert.deepStrictEqual(server.taken, [{ subject: "implicit", secure: true, user: undefined }])
    }).pipe(Effect.scoped))

  it.effect("SMTP_* settings: defaults of the local receiver; a login needs both halves; the CA file is read", () =>
    Effect.gen(function*() {
      const tls = yield* selfSigned
      const caFile = join(tls.dir, "ca.pem")
      writeFileSync(caFile, tls.cert)
      const load = (env: Record<string, string>) =>
        Effect.either(Effect.withConfigProvider(Config.config, ConfigProvider.fromMap(new Map(Object.entries(env)))))

      const defaults = yield* load({})
      assert.isTrue(Either.isRight(defaults))
      if (Either.isRight(defaults)) {
        const { smtpAuth, smtpSecure, smtpStartTls, smtpTlsCa, smtpTlsRejectUnauthorized } = defaults.right
        assert.deepStrictEqual(
          { smtpAuth, smtpSecure, smtpStartTls, smtpTlsCa, smtpTlsRejectUnauthorized },
          Config.smtpDefaults
        )
      }

      const set = yield* load({
        SMTP_USER: "orders",
        SMTP_PASSWORD: "s3cret",
        SMTP_SECURE: "true",
        SMTP_STARTTLS: "required",
        SMTP_TLS_CA_FILE: caFile,
        SMTP_TLS_REJECT_UNAUTHORIZED: "false"
      })
      assert.isTrue(Either.isRight(set))
      if (Either.isRight(set)) {
        const auth = Option.getOrThrow(set.right.smtpAuth)
        assert.deepStrictEqual([auth.user, Redacted.value(auth.password)], ["orders", "s3cret"])
        assert.deepStrictEqual(
          [set.right.smtpSecure, set.right.smtpStartTls, set.right.smtpTlsRejectUnauthorized],
          [true, "required", false]
        )
        assert.deepStrictEqual(set.right.smtpTlsCa, Option.some(tls.cert))
      }

      for (
        const env of [
          { SMTP_USER: "orders" },
          { SMTP_PASSWORD: "s3cret" },
          { SMTP_STARTTLS: "sometimes" },
          { SMTP_TLS_CA_FILE: join(tls.dir, "missing.pem") }
        ]
      ) {
        assert.isTrue(Either.isLeft(yield* load(env)), JSON.stringify(env))
      }
    }).pipe(Effect.scoped))
})
