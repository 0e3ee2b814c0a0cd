import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import { createRequire } from "node:module"

// The patched encoder and checksum of kafkajs (patches/kafkajs@2.2.4.patch), against the definitions.
const require = createRequire(createRequire(import.meta.url).resolve("kafkajs"))
const crc32C: (buffer: Buffer) => number = require("./src/protocol/recordBatch/crc32C/index.js")
const Encoder: new() => {
  writeVarInt(value: number): { buffer: Buffer }
  writeVarLong(value: number): { buffer: Buffer }
  writeUVarInt(value: number): { buffer: Buffer }
} = require("./src/protocol/encoder.js")
const Record: (record: {
  offsetDelta: number
  timestampDelta: number
  key: Buffer
  value: Buffer
  headers: Record<string, string>
}) => { buffer: Buffer } = require("./src/protocol/recordBatch/record/v0/index.js")

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), a bit at a time. */
const crc32CBitwise = (buffer: Uint8Array) => {
  let crc = -1
  for (const byte of buffer) {
    crc ^= byte
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
  }
  return (crc ^ -1) >>> 0
}

/** Unsigned LEB128, seven bits a byte, least significant first. */
const leb128 = (value: bigint) => {
  let rest = value
  const bytes: Array<number> = []
  while (rest >= 0x80n) {
    bytes.push(Number(rest & 0x7fn) | 0x80)
    rest >>= 7n
  }
  bytes.push(Number(rest))
  return Buffer.from(bytes)
}

/** Kafka's record format writes varints and varlongs zigzagged, then as LEB128. */
const zigzagLeb128 = (value: bigint) => leb128(value >= 0n ? value << 1n : (-value << 1n) - 1n)

describe("kafkajs encoding (patched)", () => {
  it("CRC-32C of the check string is 0xE3069283", () => {
    assert.strictEqual(crc32C(Buffer.from("123456789")), 0xe3069283)
  })

  it.prop(
    "CRC-32C eight bytes at a time equals CRC-32C a bit at a time",
    [FastCheck.uint8Array({ maxLength: 300 })],
    ([bytes]) => crc32C(Buffer.from(bytes)) === crc32CBitwise(bytes)
  )

  it.prop(
    "varints and varlongs are zigzag LEB128, whatever their size",
    [FastCheck.integer(), FastCheck.maxSafeInteger()],
    ([int, long]) =>
      new Encoder().writeVarInt(int).buffer.equals(zigzagLeb128(BigInt(int))) &&
      new Encoder().writeVarLong(long).buffer.equals(zigzagLeb128(BigInt(long))) &&
      new Encoder().writeUVarInt(int >>> 0).buffer.equals(leb128(BigInt(int >>> 0)))
  )

  it.effect("encoding a record zero-fills no buffer (an encoder per record and per header did, 512 bytes each)", () =>
    Effect.sync(() => {
      const original = Buffer.alloc
      let zeroFilled = 0
      Buffer.alloc = ((...args: Parameters<typeof Buffer.alloc>) => {
        zeroFilled++
        return original(...args)
      }) as typeof Buffer.alloc
      try {
        for (let i = 0; i < 100; i++) {
          Record({
            offsetDelta: i,
            timestampDelta: i,
            key: Buffer.from(`key-${i}`),
            value: Buffer.from("x".repeat(250)),
            headers: {
              "kpipe-event-id": `${i}`,
              traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            }
          })
        }
      } finally {
        Buffer.alloc = original
      }
      assert.strictEqual(zeroFilled, 0)
    }))
})
