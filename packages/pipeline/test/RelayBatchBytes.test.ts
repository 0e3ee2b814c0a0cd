import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { type ClaimedRow, upToBytes } from "../src/internal/relayClaim.ts"

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
