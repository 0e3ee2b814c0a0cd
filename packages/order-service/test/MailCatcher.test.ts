import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createConnection } from "node:net"
import { createTransport } from "nodemailer"
import * as MailCatcher from "../src/MailCatcher.ts"

/** Starts a message (EHLO, MAIL FROM) and resets the connection in the middle of it (RST, not FIN). */
const resetMidMessage = (port: number) =>
  Effect.async<void>((resume) => {
    const socket = createConnection({ port, host: "127.0.0.1" })
    const steps = ["EHLO client.kpipe.test\r\n", "MAIL FROM:<a@kpipe.test>\r\n"]
    let answers = ""
    socket.on("data", (chunk) => {
      answers += chunk.toString("utf8")
      // Each step once the previous answer's last line ("250 …", not "250-…") came.
      if (!/^\d{3} [^\n]*\r\n$/m.test(answers.split("\r\n").slice(-2).join("\r\n"))) return
      answers = ""
      const next = steps.shift()
      if (next !== undefined) return void socket.write(next)
      socket.resetAndDestroy()
      resume(Effect.void)
    })
    socket.on("error", () => {})
  })

describe("MailCatcher", () => {
  it.live("clients resetting their connections in the middle of a message do not stop it; it goes on receiving", () =>
    Effect.gen(function*() {
      const mail = yield* MailCatcher.make()
      for (let i = 0; i < 3; i++) yield* resetMidMessage(mail.port)
      yield* Effect.sleep("200 millis")
      const transport = createTransport({ host: "127.0.0.1", port: mail.port, secure: false, ignoreTLS: true })
      yield* Effect.promise(() =>
        transport.sendMail({ from: "a@kpipe.test", to: "b@kpipe.test", subject: "still here", text: "hi" })
      )
      transport.close()
      assert.deepStrictEqual(mail.received().map((m) => m.subject), ["still here"])
    }).pipe(Effect.scoped))
})
