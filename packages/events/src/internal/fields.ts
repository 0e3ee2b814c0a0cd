import * as Schema from "effect/Schema"

/** The `version` field of an event: the literal current version, filled in by the constructor. */
export const version = <V extends number>(current: V) =>
  Schema.Literal(current).pipe(Schema.propertySignature, Schema.withConstructorDefault(() => current))

export const Quantity = Schema.Int.pipe(Schema.positive())
