import * as Schema from "effect/Schema"

/**
 * A number in a path, query or header, written the one way a client should: decimal digits, no
 * sign, point, exponent, `0x`, blanks or leading zeros. `Schema.NumberFromString` alone takes
 * anything `Number()` takes (`0x1f` is 31, ` 7` is 7), so a garbled id could name a real record.
 */
export const FromString = Schema.String.pipe(
  Schema.pattern(/^(?:0|[1-9][0-9]{0,15})$/, { message: () => "expected decimal digits" }),
  Schema.compose(Schema.NumberFromString)
).annotations({ identifier: "DecimalFromString" })
