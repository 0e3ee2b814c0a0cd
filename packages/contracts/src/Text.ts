import * as Schema from "effect/Schema"

// PostgreSQL's text cannot hold NUL (the insert fails with 22021), so without this check such input
// reached the database and was answered 503 as if it were down. A lone UTF-16 surrogate is stored
// as U+FFFD, so two different names would be stored the same. Other control characters have no
// place in a name or a title either.
const isStorable = (text: string) => {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return false
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1)
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false
      i++
    } else if (code >= 0xdc00 && code <= 0xdfff) {
      return false
    }
  }
  return true
}

/** A string with no control characters (NUL, line breaks, tabs, DEL) and no unpaired surrogates. */
export const noControlCharacters = <S extends Schema.Schema.Any>(self: S) =>
  self.pipe(
    Schema.filter((text: string) => isStorable(text) || "must not contain control characters or unpaired surrogates")
  )

/** Text a person typed on one line: trimmed, 1 to `maxLength` characters, no control characters. */
export const line = (maxLength: number) =>
  Schema.String.pipe(Schema.trimmed(), Schema.minLength(1), Schema.maxLength(maxLength), noControlCharacters)
