import * as BigDecimal from "effect/BigDecimal"
import * as Schema from "effect/Schema"

const maxFractionDigits = 15
const upperBound = BigDecimal.make(10n ** 15n, 0)

/**
 * A non-negative amount of money: a `BigDecimal` in memory, a plain decimal string ("1250.5") on the
 * wire. `BigDecimal.format` switches to exponent notation from a scale of ±16 on, so the bounds keep
 * the encoded form a plain decimal.
 */
export const Money = Schema.String.pipe(
  Schema.pattern(/^\d+(\.\d+)?$/, { description: "a non-negative decimal such as 1250.5" }),
  Schema.compose(Schema.BigDecimal),
  Schema.nonNegativeBigDecimal(),
  Schema.lessThanBigDecimal(upperBound),
  Schema.filter((amount) => BigDecimal.normalize(amount).scale <= maxFractionDigits, {
    description: `at most ${maxFractionDigits} fraction digits`,
    // Decoding normalizes (1.50 becomes 1.5), so generated amounts are normalized as well: a round trip then
    // gives back the same representation, not just an equal number.
    arbitrary: () => (fc) =>
      fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 15n - 1n }), fc.integer({ min: 0, max: maxFractionDigits }))
        .map(([value, scale]) => BigDecimal.normalize(BigDecimal.make(value, scale)))
  })
)
export type Money = typeof Money.Type

// PostgreSQL's NUMERIC holds up to 131,072 digits before the decimal point.
const maxSumDigits = 131_072

/** `amount` as a plain decimal, never in exponent notation (`BigDecimal.format` uses it from a scale of ±16 on). */
const plain = (amount: BigDecimal.BigDecimal) => {
  const { scale, value } = BigDecimal.normalize(amount)
  if (scale <= 0) return `${value}${"0".repeat(-scale)}`
  const digits = `${value}`.padStart(scale + 1, "0")
  return `${digits.slice(0, -scale)}.${digits.slice(-scale)}`
}

/**
 * A sum of `Money` amounts (a product's sales): a `BigDecimal` in memory, a plain decimal string on
 * the wire however large, as a PostgreSQL NUMERIC keeps it. `Money`'s bound holds for one order
 * line, not for what many lines add up to.
 */
export const MoneySum = Schema.transform(
  Schema.String.pipe(Schema.pattern(/^\d+(\.\d+)?$/, { description: "a non-negative decimal such as 1250.5" })),
  Schema.BigDecimalFromSelf,
  {
    strict: true,
    decode: (text) => BigDecimal.normalize(BigDecimal.unsafeFromString(text)),
    encode: plain
  }
).pipe(
  Schema.nonNegativeBigDecimal(),
  Schema.filter((amount) => {
    const { scale, value } = BigDecimal.normalize(amount)
    return scale <= maxFractionDigits && value.toString().length - scale <= maxSumDigits
  }, {
    description: `at most ${maxFractionDigits} fraction digits and ${maxSumDigits} before the point`,
    arbitrary: () => (fc) =>
      fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 40n }), fc.integer({ min: 0, max: maxFractionDigits }))
        .map(([value, scale]) => BigDecimal.normalize(BigDecimal.make(value, scale)))
  })
)
export type MoneySum = typeof MoneySum.Type
