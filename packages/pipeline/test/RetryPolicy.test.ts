import { assert, describe, it } from "@effect/vitest"
import * as RetryPolicy from "@kpipe/pipeline/RetryPolicy"
import * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"

class Transient extends Data.TaggedError("Transient") {}
class Permanent extends Data.TaggedError("Permanent") {}
class Malformed extends Data.TaggedError("Malformed") {}
type HandlerError = Transient | Permanent | Malformed

const errorPolicy: RetryPolicy.ErrorPolicy<HandlerError> = {
  Transient: "retry",
  Permanent: "deadLetter",
  Malformed: "deadLetter"
}

const policyArbitrary = (factor: FastCheck.Arbitrary<number>, jitter: FastCheck.Arbitrary<number>) =>
  FastCheck.record({
    initialDelay: FastCheck.integer({ min: 1, max: 5_000 }),
    factor,
    headroom: FastCheck.integer({ min: 0, max: 100_000 }),
    maxRetries: FastCheck.integer({ min: 0, max: 8 }),
    jitter
  }).map(({ headroom, ...options }) => RetryPolicy.make({ ...options, maxDelay: options.initialDelay + headroom }))

const anyFactor = FastCheck.double({ min: 1, max: 4, noNaN: true })
const unjittered = policyArbitrary(anyFactor, FastCheck.constant(0))
const jittered = policyArbitrary(anyFactor, FastCheck.double({ min: 0.001, max: 0.5, noNaN: true }))
const wholeMillis = policyArbitrary(FastCheck.integer({ min: 1, max: 4 }), FastCheck.constant(0))
const randoms = FastCheck.tuple(
  FastCheck.double({ min: 0, max: 1, noNaN: true }),
  FastCheck.array(FastCheck.double({ min: 0, max: 1, noNaN: true }))
).map(([head, tail]) => Arr.prepend(tail, head))

const millis = (durations: ReadonlyArray<Duration.Duration>) => durations.map((d) => Duration.toMillis(d))

/** Feeds the schedule more failures than it accepts; `Schedule.run` appends a final 0 when it stops. */
const scheduledDelays = (policy: RetryPolicy.RetryPolicy) =>
  Schedule.run(
    Schedule.delays(RetryPolicy.schedule(policy)),
    0,
    Arr.makeBy(policy.maxRetries + 3, () => new Transient())
  ).pipe(Effect.map((out) => Chunk.toReadonlyArray(out).map((d) => Duration.toMillis(d))))

describe("RetryPolicy", () => {
  it("seed policies have the documented nominal delays", () => {
    assert.deepStrictEqual(millis(RetryPolicy.delays(RetryPolicy.seedMemberSync)), [1_000, 2_000, 4_000])
    assert.strictEqual(RetryPolicy.seedOrderFollowUps.maxRetries, 2)
    assert.deepStrictEqual(millis(RetryPolicy.delays(RetryPolicy.seedOrderFollowUps)), [1_000, 2_000])
    assert.strictEqual(RetryPolicy.defaultPolicy, RetryPolicy.seedMemberSync)
  })

  it.effect("seedMemberSync jitters by 10% and caps the jittered delay at 4 s", () =>
    Effect.gen(function*() {
      const lowest = yield* scheduledDelays(RetryPolicy.seedMemberSync).pipe(Effect.withRandomFixed([0]))
      const highest = yield* scheduledDelays(RetryPolicy.seedMemberSync).pipe(Effect.withRandomFixed([1]))
      assert.deepStrictEqual(lowest.map(Math.round), [900, 1_800, 3_600, 0])
      assert.deepStrictEqual(highest.map(Math.round), [1_100, 2_200, 4_000, 0])
    }))

  it.effect.prop(
    "without jitter the schedule recurs maxRetries times with exactly the nominal, capped, non-decreasing delays",
    { policy: unjittered },
    ({ policy }) =>
      Effect.gen(function*() {
        const out = yield* scheduledDelays(policy)
        assert.strictEqual(out.length, policy.maxRetries + 1)
        assert.strictEqual(out.at(-1), 0)
        const delays = out.slice(0, -1)
        assert.deepStrictEqual(delays, millis(RetryPolicy.delays(policy)))
        delays.forEach((delay, i) => {
          assert.isAtMost(delay, Duration.toMillis(policy.maxDelay))
          if (i > 0) assert.isAtLeast(delay, delays[i - 1]!)
        })
      })
  )

  const inJitteredBand = (policy: RetryPolicy.RetryPolicy, random: Arr.NonEmptyArray<number>) =>
    Effect.gen(function*() {
      const out = yield* scheduledDelays(policy).pipe(Effect.withRandomFixed(random))
      assert.strictEqual(out.length, policy.maxRetries + 1)
      const cap = Duration.toMillis(policy.maxDelay)
      out.slice(0, -1).forEach((delay, i) => {
        const nominal = Duration.toMillis(policy.initialDelay) * Math.pow(policy.factor, i)
        // A Duration holds whole nanoseconds, rounded at each step of the schedule (base, factor,
        // jitter): up to ~1.5 ns off the exact product.
        const tolerance = 1e-5
        assert.isAtMost(delay, cap)
        assert.isAtLeast(delay, Math.min(nominal * (1 - policy.jitter), cap) - tolerance)
        assert.isAtMost(delay, Math.min(nominal * (1 + policy.jitter), cap) + tolerance)
      })
    })

  it.effect.prop(
    "with jitter each delay lies in the jittered band around the nominal delay and never exceeds the cap",
    { policy: jittered, random: randoms },
    ({ policy, random }) => inJitteredBand(policy, random)
  )

  it.effect("a delay rounded to whole nanoseconds at each step still lies in the band (a CI run's counterexample)", () =>
    inJitteredBand(
      RetryPolicy.make({
        initialDelay: Duration.millis(5),
        factor: 3.624343678516153,
        maxDelay: Duration.millis(87),
        maxRetries: 3,
        jitter: 0.3207949376954752
      }),
      [0.9999999999999956]
    ))

  it.effect.prop(
    "Effect.retry attempts maxRetries + 1 times and takes exactly the sum of the delays in virtual time",
    { policy: wholeMillis },
    ({ policy }) =>
      Effect.gen(function*() {
        const attempts = yield* Ref.make<ReadonlyArray<number>>([])
        const fiber = yield* Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) => Ref.update(attempts, Arr.append(now))),
          Effect.zipRight(Effect.fail(new Transient())),
          Effect.retry(RetryPolicy.schedule(policy)),
          Effect.fork
        )
        const delays = millis(RetryPolicy.delays(policy))
        const total = delays.reduce((sum, delay) => sum + delay, 0)
        if (total > 0) {
          yield* TestClock.adjust(total - 1)
          assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
          yield* TestClock.adjust(1)
        }
        const error = yield* Effect.flip(Fiber.join(fiber))
        assert.strictEqual(error._tag, "Transient")
        const times = yield* Ref.get(attempts)
        assert.strictEqual(times.length, policy.maxRetries + 1)
        assert.deepStrictEqual(times.slice(1).map((time, i) => time - times[i]!), delays)
        assert.strictEqual(times.at(-1)! - times[0]!, total)
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect("the schedule's output is the number of retries made, so retryOrElse sees maxRetries", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const fiber = yield* Ref.update(attempts, (n) => n + 1).pipe(
        Effect.zipRight(Effect.fail(new Transient())),
        Effect.retryOrElse(
          RetryPolicy.schedule(RetryPolicy.seedOrderFollowUps),
          (_, retries) => Effect.succeed(retries)
        ),
        Effect.fork
      )
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber), 2)
      assert.strictEqual(yield* Ref.get(attempts), 3)
    }))

  it("decide returns the decision mapped to the error's tag", () => {
    assert.strictEqual(RetryPolicy.decide(errorPolicy, new Transient()), "retry")
    assert.strictEqual(RetryPolicy.decide(errorPolicy, new Permanent()), "deadLetter")
    assert.strictEqual(RetryPolicy.decide(errorPolicy, new Malformed()), "deadLetter")
  })

  it("an ErrorPolicy must name every tag of the error union", () => {
    // @ts-expect-error Malformed has no decision
    const incomplete: RetryPolicy.ErrorPolicy<HandlerError> = { Transient: "retry", Permanent: "deadLetter" }
    assert.strictEqual(RetryPolicy.decide(incomplete, new Transient()), "retry")
  })

  it.effect("decide drives Effect.retry: retryable errors use every retry, the others fail at once", () =>
    Effect.gen(function*() {
      const attemptsUntilGivenUp = (error: HandlerError) =>
        Effect.gen(function*() {
          const attempts = yield* Ref.make(0)
          const fiber = yield* Ref.update(attempts, (n) => n + 1).pipe(
            Effect.zipRight(Effect.fail(error)),
            Effect.retry({
              schedule: RetryPolicy.schedule(RetryPolicy.seedMemberSync),
              while: (e) => RetryPolicy.decide(errorPolicy, e) === "retry"
            }),
            Effect.fork
          )
          yield* TestClock.adjust("1 minute")
          assert.strictEqual(yield* Effect.flip(Fiber.join(fiber)), error)
          return yield* Ref.get(attempts)
        })
      assert.strictEqual(yield* attemptsUntilGivenUp(new Transient()), 4)
      assert.strictEqual(yield* attemptsUntilGivenUp(new Permanent()), 1)
    }))

  it("make applies defaults and accepts the edge values", () => {
    const policy = RetryPolicy.make({ initialDelay: "100 millis", maxRetries: 0 })
    assert.strictEqual(policy.factor, 2)
    assert.strictEqual(policy.jitter, 0)
    assert.isFalse(Duration.isFinite(policy.maxDelay))
    assert.deepStrictEqual(RetryPolicy.delays(policy), [])
    const flat = RetryPolicy.make({ initialDelay: 50, factor: 1, maxDelay: 50, maxRetries: 2, jitter: 0.99 })
    assert.deepStrictEqual(millis(RetryPolicy.delays(flat)), [50, 50])
  })

  it("make rejects invalid options with an IllegalArgumentException", () => {
    const valid = { initialDelay: "1 second", maxDelay: "10 seconds", maxRetries: 3 } as const
    const invalid: ReadonlyArray<RetryPolicy.RetryPolicyOptions> = [
      { ...valid, maxRetries: -1 },
      { ...valid, maxRetries: 1.5 },
      { ...valid, maxRetries: Number.NaN },
      { ...valid, factor: 0.5 },
      { ...valid, factor: Number.POSITIVE_INFINITY },
      { ...valid, jitter: -0.1 },
      { ...valid, jitter: 1 },
      { ...valid, jitter: Number.NaN },
      { ...valid, initialDelay: 0 },
      { ...valid, initialDelay: "forever" as Duration.DurationInput },
      { ...valid, initialDelay: Duration.infinity },
      { ...valid, maxDelay: "500 millis" }
    ]
    for (const options of invalid) {
      assert.throws(() => RetryPolicy.make(options), Cause.IllegalArgumentException)
    }
  })
})
