import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { type ClaimedRow, malformation, upToBytes, withoutMalformed } from "../src/internal/relayClaim.ts"

const row = (id: number, payload: string): ClaimedRow => ({
  id: String(id),
  topic: "t",
  messageKey: `k${id % 7}`,
  eventId: `e${id}`,
  eventType: "Test",
  schemaVersion: 1,
  payload,
  headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
})

const rowsArbitrary = FastCheck.array(FastCheck.string({ maxLength: 3_000 }), { minLength: 1, maxLength: 60 })
  .map((payloads) => payloads.map((payload, i) => row(i, payload)))

describe("relay claim size", () => {
  it.prop(
    "a claim is a prefix of its rows, at least one, as many as fit in the byte budget",
    [rowsArbitrary, FastCheck.integer({ min: 1, max: 60_000 })],
    ([rows, maxBytes]) => {
      const taken = upToBytes(rows, maxBytes)
      assert.isAtLeast(taken.length, 1)
      assert.deepStrictEqual(taken, rows.slice(0, taken.length))
      // What it took fits (or is the one row a claim always takes).
      assert.strictEqual(upToBytes(taken, maxBytes).length, taken.length)
      if (taken.length < rows.length) {
        // One row more would not fit: the next claim starts there.
        assert.isBelow(upToBytes(rows.slice(0, taken.length + 1), maxBytes).length, taken.length + 1)
      }
    }
  )

  it("multi-byte characters count as the bytes they are sent as", () => {
    const rows = [row(1, "é".repeat(300)), row(2, "é".repeat(300))]
    // 600 bytes each (plus framing), 300 characters each.
    assert.strictEqual(upToBytes(rows, 1_200).length, 1)
    assert.strictEqual(upToBytes(rows, 2_000).length, 2)
  })
})

const keyed = ([key, bad]: readonly [number, boolean], i: number): ClaimedRow => ({
  ...row(i, "{}"),
  messageKey: `k${key}`,
  headers: (bad ? { retries: i } : { n: String(i) }) as unknown as Record<string, string>
})

describe("relay claim, malformed rows", () => {
  it.prop(
    "each key's rows are sent up to its first malformed row, which fails; the rest of its key waits",
    [FastCheck.array(FastCheck.tuple(FastCheck.integer({ min: 0, max: 4 }), FastCheck.boolean()), { maxLength: 40 })],
    ([spec]) => {
      const rows = spec.map(keyed)
      const { malformed, sendable } = withoutMalformed(rows)
      for (const key of new Set(rows.map((r) => r.messageKey))) {
        const ofKey = rows.filter((r) => r.messageKey === key)
        const firstBad = ofKey.findIndex((r) => malformation(r) !== undefined)
        const expectedSent = firstBad === -1 ? ofKey : ofKey.slice(0, firstBad)
        assert.deepStrictEqual(sendable.filter((r) => r.messageKey === key), expectedSent)
        assert.deepStrictEqual(
          malformed.filter((m) => m.row.messageKey === key).map((m) => m.row),
          firstBad === -1 ? [] : [ofKey[firstBad]]
        )
      }
      // The claim's order is kept.
      assert.deepStrictEqual(sendable, rows.filter((r) => sendable.includes(r)))
    }
  )

  it("headers that are not an object of strings are named in the reason", () => {
    const withHeaders = (headers: unknown) => ({ ...row(1, "{}"), headers: headers as Record<string, string> })
    assert.isUndefined(malformation(withHeaders({ a: "1" })))
    assert.strictEqual(
      malformation(withHeaders({ a: { b: true } })),
      `Outbox row's header "a" must be a string, not {"b":true}`
    )
    assert.strictEqual(
      malformation(withHeaders(["a"])),
      `Outbox row's headers must be a JSON object of strings, not ["a"]`
    )
    assert.strictEqual(
      malformation(withHeaders(null)),
      `Outbox row's headers must be a JSON object of strings, not null`
    )
  })
})
