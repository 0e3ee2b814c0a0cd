import * as Schema from "effect/Schema"

// PostgreSQL's text cannot hold NUL (the insert fails with 22021), so without this check such input
// reached the database and was answered 503 as if it were down. Other control characters have no
// place in a name or a title either.
const hasControlCharacter = (text: string) => {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return true
  }
  return false
}

/** A string with no control characters (NUL, line breaks, tabs, DEL). */
export const noControlCharacters = <S extends Schema.Schema.Any>(self: S) =>
  self.pipe(
    Schema.filter((text: string) => !hasControlCharacter(text) || "must not contain control characters")
  )

/** Text a person typed on one line: trimmed, 1 to `maxLength` characters, no control characters. */
export const line = (maxLength: number) =>
  Schema.String.pipe(Schema.trimmed(), Schema.minLength(1), Schema.maxLength(maxLength), noControlCharacters)
