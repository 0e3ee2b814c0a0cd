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
