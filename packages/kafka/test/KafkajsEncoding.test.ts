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
  value: Buffer | string
  headers: Record<string, string>
}) => { buffer: Buffer } = require("./src/protocol/recordBatch/record/v0/index.js")
const murmur2: (key: Buffer | string) => number = require("./src/producer/partitioners/default/murmur2.js")
const groupMessagesPerPartition: <M>(args: {
  topic: string
  partitionMetadata: ReadonlyArray<unknown>
  messages: ReadonlyArray<M>
  partitioner: (args: { message: M }) => number
}) => Record<string, Array<M>> = require("./src/producer/groupMessagesPerPartition.js")

/** Java's `Utils.murmur2`, int arithmetic spelled out with BigInt: the hash that places a key. */
const murmur2Java = (data: Uint8Array) => {
  const int = (value: bigint) => BigInt.asIntN(32, value)
  const m = 0x5bd1e995n
  const shiftRight = (value: bigint, bits: bigint) => BigInt.asUintN(32, value) >> bits
  let h = int(0x9747b28cn ^ BigInt(data.length))
  const whole = data.length - (data.length % 4)
  for (let i = 0; i < whole; i += 4) {
    let k = int(
      BigInt(data[i]!) | (BigInt(data[i + 1]!) << 8n) | (BigInt(data[i + 2]!) << 16n) | (BigInt(data[i + 3]!) << 24n)
    )
    k = int(k * m)
    k = int(k ^ shiftRight(k, 24n))
    k = int(k * m)
    h = int(int(h * m) ^ k)
  }
  const rest = data.length % 4
  if (rest >= 3) h = int(h ^ (BigInt(data[whole + 2]!) << 16n))
  if (rest >= 2) h = int(h ^ (BigInt(data[whole + 1]!) << 8n))
  if (rest >= 1) h = int((h ^ BigInt(data[whole]!)) * m)
  h = int(h ^ shiftRight(h, 13n))
  h = int(h * m)
  h = int(h ^ shiftRight(h, 15n))
  return Number(h)
}

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

  // Values of Kafka's own UtilsTest.testMurmur2, and of kafka-clients 3.9.1's `Utils.murmur2` for the
  // others: a key must land on the partition the Java client (and kafkajs before the patch) picks.
  it("murmur2 gives the Java client's hash", () => {
    const java: ReadonlyArray<readonly [string, number]> = [
      ["21", -973932308],
      ["foobar", -790332482],
      ["a-little-bit-long-string", -985981536],
      ["a-little-bit-longer-string", -1486304829],
      ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
      ["abc", 479470107],
      ["", 275646681],
      ["ü€𝄞 key", 1019348727],
      ["user-42", 1459644460]
    ]
    for (const [key, hash] of java) {
      assert.strictEqual(murmur2(key), hash, key)
      assert.strictEqual(murmur2(Buffer.from(key)), hash, key)
      assert.strictEqual(murmur2Java(Buffer.from(key)), hash, key)
    }
  })

  it.prop(
    "murmur2 with 32-bit multiplies equals Java's int arithmetic, for any bytes",
    [FastCheck.uint8Array({ maxLength: 100 })],
    ([bytes]) => murmur2(Buffer.from(bytes)) === murmur2Java(bytes)
  )

  it.prop(
    "messages grouped per partition keep their order, each where the partitioner put it",
    [FastCheck.array(FastCheck.record({ id: FastCheck.nat(), partition: FastCheck.integer({ min: 0, max: 5 }) }))],
    ([messages]) => {
      const grouped = groupMessagesPerPartition({
        topic: "t",
        partitionMetadata: [{}],
        messages,
        partitioner: ({ message }) => message.partition
      })
      const expected: Record<string, Array<(typeof messages)[number]>> = {}
      for (const message of messages) (expected[message.partition] ??= []).push(message)
      assert.deepStrictEqual(grouped, expected)
    }
  )

  it.prop(
    "a record is encoded as Kafka's record format says, headers included",
    [
      FastCheck.nat(),
      FastCheck.maxSafeNat(),
      FastCheck.string(),
      FastCheck.oneof(FastCheck.string(), FastCheck.uint8Array({ maxLength: 600 })),
      FastCheck.dictionary(FastCheck.string({ minLength: 1 }), FastCheck.string())
    ],
    ([offsetDelta, timestampDelta, key, value, headers]) => {
      const bytes = (data: string | Uint8Array) => typeof data === "string" ? Buffer.from(data) : Buffer.from(data)
      const sized = (data: Buffer) => Buffer.concat([zigzagLeb128(BigInt(data.length)), data])
      const entries = Object.entries(headers)
      const body = Buffer.concat([
        Buffer.of(0),
        zigzagLeb128(BigInt(timestampDelta)),
        zigzagLeb128(BigInt(offsetDelta)),
        sized(bytes(key)),
        sized(bytes(value)),
        zigzagLeb128(BigInt(entries.length)),
        ...entries.flatMap(([name, text]) => [sized(bytes(name)), sized(bytes(text))])
      ])
      const encoded = Record({
        offsetDelta,
        timestampDelta,
        key: bytes(key),
        value: typeof value === "string" ? value : Buffer.from(value),
        headers
      }).buffer
      assert.deepStrictEqual(encoded, Buffer.concat([zigzagLeb128(BigInt(body.length)), body]))
    }
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
