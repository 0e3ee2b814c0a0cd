import { ConsumerSettings } from "@kpipe/service-kit"
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import * as Config from "../src/Config.ts"

/** order-service's configuration for a test of one module (no database, SMTP or SMS unless given). */
export const values = (overrides: Partial<Config.Values> = {}): Config.Values => ({
  port: 0,
  databaseUrl: Redacted.make("postgres://unused"),
  maxQuantity: 100,
  smtpHost: "127.0.0.1",
  smtpPort: 1,
  smtpConnections: 1,
  mailFrom: "orders@kpipe.test",
  smsUrl: new URL("http://127.0.0.1:1/sms"),
  smsToken: Redacted.make("unused"),
  smsTimeout: Duration.seconds(10),
  ...Config.smtpDefaults,
  attentionErrorAfter: Duration.seconds(30),
  consumer: ConsumerSettings.defaults,
  ...overrides
})
