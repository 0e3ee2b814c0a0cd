import { assert, describe, it } from "@effect/vitest"
import { Money } from "@kpipe/events"
import * as Arbitrary from "effect/Arbitrary"
import * as BigDecimal from "effect/BigDecimal"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

const decode = Schema.decodeUnknownEither(Money.Money)

describe("Money", () => {
  it("decodes a decimal string", () => {
    assert.deepStrictEqual(decode("1250.50"), Either.right(BigDecimal.normalize(BigDecimal.make(12505n, 1))))
    assert.deepStrictEqual(decode("0"), Either.right(BigDecimal.normalize(BigDecimal.make(0n, 0))))
  })

  it("rejects anything but a non-negative plain decimal", () => {
    for (const wire of ["", "-1", "1e5", " 1", "1.", ".5", "1,5", "1000000000000000", "0.0000000000000001", 12]) {
      assert.isTrue(Either.isLeft(decode(wire)), String(wire))
    }
  })

  it.prop("encodes as a plain decimal", [Arbitrary.make(Money.Money)], ([amount]) => {
    assert.match(Schema.encodeSync(Money.Money)(amount), /^\d+(\.\d+)?$/)
  })
})
