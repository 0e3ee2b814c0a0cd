import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { isInfrastructure } from "../src/internal/infrastructure.ts"

const sqlError = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code })

describe("isInfrastructure (a handler's SqlError)", () => {
  it("a socket that could not reach the server or lost it is infrastructure", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN"]) {
      assert.isTrue(isInfrastructure(sqlError(withCode(`connect ${code} 127.0.0.1:5432`, code))), code)
    }
    assert.isTrue(isInfrastructure(sqlError(new Error("Connection terminated unexpectedly"))))
  })

  it("the server away or overloaded is infrastructure", () => {
    for (const code of ["08006", "08001", "53300", "57P01", "57P03", "58030"]) {
      assert.isTrue(isInfrastructure(sqlError(withCode("server says", code))), code)
    }
    assert.isTrue(
      isInfrastructure(sqlError(withCode(`database "shop" is not currently accepting connections`, "55000")))
    )
  })

  it("a server taking no writes (read-only after a failover), a serialization failure, a deadlock, a lock or statement timeout is infrastructure", () => {
    for (const code of ["25006", "40001", "40P01", "55P03", "57014"]) {
      assert.isTrue(isInfrastructure(sqlError(withCode("server says", code))), code)
    }
  })

  it("a wrong statement, a violated constraint or a parameter that does not serialize is not", () => {
    // 40002: a deferred constraint violated at COMMIT, the statement's fault though in class 40.
    for (const code of ["23505", "42501", "42P01", "22P02", "40002", "25P02", "55000"]) {
      assert.isFalse(isInfrastructure(sqlError(withCode("server says", code))), code)
    }
    assert.isFalse(isInfrastructure(sqlError(new TypeError("Do not know how to serialize a BigInt"))))
    assert.isFalse(isInfrastructure(sqlError(new RangeError("Invalid time value"))))
  })

  it("an error that is not a SqlError or KafkaError is the handler's", () => {
    assert.isFalse(isInfrastructure(withCode("refused", "ECONNREFUSED")))
    assert.isFalse(isInfrastructure({ _tag: "Rejected" }))
  })
})
