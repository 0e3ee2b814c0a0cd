import type * as Effect from "effect/Effect"
import type { BenchConfig } from "./config.ts"
import type { Window } from "./measure.ts"
import type { SpanRecorder } from "./spans.ts"

/** What every scenario runs with. */
export interface Context {
  readonly config: BenchConfig
  readonly recorder: SpanRecorder
  /** Topics made so far; the entry deletes them when the run ends. */
  readonly created: Array<string>
  /** Runs an effect under the tracer that times spans into `recorder`. */
  readonly traced: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** One line of the summary: a stage's rate and CPU. */
export interface Stage {
  readonly name: string
  readonly events: number
  readonly wallMs: number
  readonly window: Window
}
