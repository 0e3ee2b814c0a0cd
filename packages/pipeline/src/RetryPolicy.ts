import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"

/** Exponential backoff with jitter and a per-delay cap, bounded by a number of retries. */
export interface RetryPolicy {
  /** Delay before the first retry. */
  readonly initialDelay: Duration.Duration
  /** Exponential multiplier between consecutive delays. */
  readonly factor: number
  /** Hard cap on each single delay, applied after jitter. */
  readonly maxDelay: Duration.Duration
  /** Retries after the first attempt: a handler runs at most `maxRetries + 1` times. */
  readonly maxRetries: number
  /** `0` = none; `0.2` = each delay is drawn uniformly from `[d * 0.8, d * 1.2]` before the cap. */
  readonly jitter: number
}

export interface RetryPolicyOptions {
  readonly initialDelay: Duration.DurationInput
  /** Defaults to `2`. */
  readonly factor?: number | undefined
  /** Defaults to no cap. */
  readonly maxDelay?: Duration.DurationInput | undefined
  readonly maxRetries: number
  /** Defaults to `0`. */
  readonly jitter?: number | undefined
}

const decodeDuration = (name: string, input: Duration.DurationInput): Duration.Duration =>
  Option.getOrThrowWith(
    Duration.decodeUnknown(input),
    () => new Cause.IllegalArgumentException(`RetryPolicy: ${name} is not a duration: ${String(input)}`)
  )

const check = (condition: boolean, message: string): void => {
  if (!condition) throw new Cause.IllegalArgumentException(`RetryPolicy: ${message}`)
}

/**
 * Builds a policy.
 *
 * @throws IllegalArgumentException (`effect/Cause`) unless `initialDelay` is finite and positive,
 * `maxDelay >= initialDelay`, `maxRetries` is a non-negative integer, `factor >= 1` and `0 <= jitter < 1`.
 */
export const make = (options: RetryPolicyOptions): RetryPolicy => {
  const initialDelay = decodeDuration("initialDelay", options.initialDelay)
  const maxDelay = options.maxDelay === undefined
    ? Duration.infinity
    : decodeDuration("maxDelay", options.maxDelay)
  const factor = options.factor ?? 2
  const jitter = options.jitter ?? 0
  check(
    Duration.isFinite(initialDelay) && Duration.greaterThan(initialDelay, Duration.zero),
    `initialDelay must be finite and positive, got ${Duration.format(initialDelay)}`
  )
  check(
    Duration.greaterThanOrEqualTo(maxDelay, initialDelay),
    `maxDelay (${Duration.format(maxDelay)}) must be at least initialDelay (${Duration.format(initialDelay)})`
  )
  check(
    Number.isSafeInteger(options.maxRetries) && options.maxRetries >= 0,
    `maxRetries must be a non-negative integer, got ${options.maxRetries}`
  )
  check(Number.isFinite(factor) && factor >= 1, `factor must be a finite number >= 1, got ${factor}`)
  check(jitter >= 0 && jitter < 1, `jitter must be in [0, 1), got ${jitter}`)
  return { initialDelay, factor, maxDelay, maxRetries: options.maxRetries, jitter }
}

/** Member sync (S1): 3 retries after 1 s, 2 s and 4 s, ±10 % jitter, never more than 4 s. */
export const seedMemberSync: RetryPolicy = make({
  initialDelay: "1 second",
  factor: 2,
  maxDelay: "4 seconds",
  maxRetries: 3,
  jitter: 0.1
})

/** Order follow-ups (S2): 3 attempts (2 retries) after 1 s and 2 s, ±10 % jitter, never more than 10 s. */
export const seedOrderFollowUps: RetryPolicy = make({
  initialDelay: "1 second",
  factor: 2,
  maxDelay: "10 seconds",
  maxRetries: 2,
  jitter: 0.1
})

export const defaultPolicy: RetryPolicy = seedMemberSync

/**
 * `exponential(initialDelay, factor)`, jittered by ±`jitter`, each delay capped at `maxDelay`, for at
 * most `maxRetries` recurrences. The input is the error; the output is the number of retries already
 * made (`maxRetries` once exhausted, which is what `Effect.retryOrElse` hands its fallback).
 *
 * Jitter reads the `Random` service: use `Effect.withRandomFixed` for deterministic delays.
 */
export const schedule = (policy: RetryPolicy): Schedule.Schedule<number, unknown> => {
  const exponential = Schedule.exponential(policy.initialDelay, policy.factor)
  const jittered = policy.jitter > 0
    ? Schedule.jitteredWith(exponential, { min: 1 - policy.jitter, max: 1 + policy.jitter })
    : exponential
  return jittered.pipe(
    Schedule.modifyDelay((_, delay) => Duration.min(delay, policy.maxDelay)),
    Schedule.intersect(Schedule.recurs(policy.maxRetries)),
    Schedule.map(([, retries]) => retries)
  )
}

/** The nominal (un-jittered, capped) delay before each retry, for docs and tests. */
export const delays = (policy: RetryPolicy): ReadonlyArray<Duration.Duration> =>
  Array.from(
    { length: policy.maxRetries },
    (_, retry) => Duration.min(Duration.times(policy.initialDelay, Math.pow(policy.factor, retry)), policy.maxDelay)
  )

/**
 * What to do with one typed handler error: `"retry"` per the policy, then dead-letter; `"deadLetter"`
 * at once; `"wait"` when the error says something the handler depends on is away (an e-mail or SMS
 * provider, another service), not that the event is wrong: the partition waits and retries as for
 * an unreachable database (forever, with capped backoff, alerting after 30 s) and never dead-letters.
 */
export type Decision = "retry" | "deadLetter" | "wait"

/** A decision for every error tag of `E`. Leaving a tag out is a compile error. */
export type ErrorPolicy<E extends { readonly _tag: string }> = { readonly [K in E["_tag"]]: Decision }

export const decide = <E extends { readonly _tag: string }>(policy: ErrorPolicy<E>, error: E): Decision =>
  policy[error._tag as E["_tag"]]
