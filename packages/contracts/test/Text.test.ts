import { assert, describe, it } from "@effect/vitest"
import { Text } from "@kpipe/contracts"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

const decode = Schema.decodeUnknownEither(Text.line(20))
const printable = Schema.String.pipe(
  Schema.pattern(/^[^\s\p{Cc}][^\p{Cc}]{0,18}[^\s\p{Cc}]$/u),
  Schema.maxLength(20)
)
const control = Schema.Int.pipe(Schema.between(0, 0x1f))

describe("Text.line", () => {
  it.prop("accepts trimmed printable text up to its length", [printable], ([text]) => {
    assert.isTrue(Either.isRight(decode(text)), JSON.stringify(text))
  })

  it.prop("refuses any control character anywhere, NUL included", [
    printable,
    control,
    Schema.Int.pipe(Schema.between(0, 19))
  ], ([text, code, at]) => {
    const position = Math.min(at, text.length)
    const withControl = text.slice(0, position) + String.fromCharCode(code) + text.slice(position)
    assert.isTrue(Either.isLeft(decode(withControl)), JSON.stringify(withControl))
  })

  it("refuses empty, padded and overlong text, DEL and unpaired surrogates", () => {
    for (const text of ["", " x", "x ", "x".repeat(21), "a\u007fb", "s\ud800", "\udc00", "a\ud800b", "\udc00\ud800"]) {
      assert.isTrue(Either.isLeft(decode(text)), JSON.stringify(text))
    }
    assert.isTrue(Either.isRight(decode("caf\u00e9 \ud83d\ude00")), "a surrogate pair is one character")
  })
})
