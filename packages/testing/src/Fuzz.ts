import { Database } from "@kpipe/sql"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as RawHttp from "./RawHttp.ts"
import * as ServiceProcess from "./ServiceProcess.ts"
import { uniqueName } from "./TestKafka.ts"

/**
 * A well-formed request to one endpoint; the fuzzer only ever sends broken copies of it, each
 * broken in a way the endpoint must refuse (a typed 4xx), never accept.
 */
export interface Template {
  readonly method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE"
  /** With its query string; path segments made of digits are ids the fuzzer garbles. */
  readonly path: string
  readonly headers?: ReadonlyArray<readonly [string, string]> | undefined
  /** A JSON object; each top-level field is replaced by a value of another JSON type. */
  readonly body?: Readonly<Record<string, unknown>> | undefined
  /** Headers naming the caller (`X-User-Id`, `Authorization`): dropped, garbled or duplicated. */
  readonly identity?: ReadonlyArray<string> | undefined
}

export interface Mutant extends RawHttp.RawRequest {
  /** What was broken, for the failure message. */
  readonly mutation: string
}

// Never valid where a positive id, an enum or a bounded number is expected.
const garbageSegments = ["abc", "-1", "1.5", "1e3x", "%00", "%F0%9F%99%82", "%C3%BC%C3%BC", "%20", "NaN", "0x1f", "'1'"]
const garbageQuery = ["abc", "-1", "1.5", "%F0%9F%99%82", "%00", "1e3x", "0x10"]
// Never a valid user id, token or bearer header.
const garbageIdentity = ["abc", "-5", "0", "1.5", "", " ", "1;1", "Bearer", "Basic YTpi", "null"]

const otherType = (value: unknown): FastCheck.Arbitrary<string> => {
  const options: Array<string> = []
  if (typeof value !== "string") options.push(`"${"x".repeat(3)}"`, `"\u00fc\u{1F642}"`)
  if (typeof value !== "number") options.push("12345", "-1", "1e400")
  if (typeof value !== "boolean") options.push("true")
  if (!Array.isArray(value)) options.push("[1,2,3]")
  if (typeof value !== "object" || value === null || Array.isArray(value)) options.push(`{"a":{"b":[]}}`)
  return FastCheck.constantFrom(...options)
}

const withoutIdentity = (template: Template) =>
  (template.headers ?? []).filter(([name]) => !(template.identity ?? []).includes(name))

const jsonHeaders = (template: Template): ReadonlyArray<readonly [string, string]> => [
  ...(template.headers ?? []),
  ["Content-Type", "application/json"]
]

const mutantsOf = (template: Template, bodyLimit: number): ReadonlyArray<FastCheck.Arbitrary<Mutant>> => {
  const kinds: Array<FastCheck.Arbitrary<Mutant>> = []
  const body = template.body === undefined ? undefined : JSON.stringify(template.body)
  const base = {
    method: template.method,
    path: template.path,
    headers: body === undefined ? template.headers : jsonHeaders(template),
    body
  }
  const [pathOnly, query = ""] = template.path.split("?") as [string, string?]
  const segments = pathOnly.split("/")
  const ids = segments.flatMap((segment, i) => /^\d+$/.test(segment) ? [i] : [])
  if (ids.length > 0) {
    kinds.push(
      FastCheck.tuple(FastCheck.constantFrom(...ids), FastCheck.constantFrom(...garbageSegments)).map(
        ([i, garbage]) => {
          const path = segments.map((segment, j) => j === i ? garbage : segment).join("/")
          return { ...base, path: query === "" ? path : `${path}?${query}`, mutation: `path segment ${i} = ${garbage}` }
        }
      )
    )
  }
  const params = query === "" ? [] : query.split("&").map((pair) => pair.split("=")[0]!)
  if (params.length > 0) {
    kinds.push(
      FastCheck.tuple(FastCheck.constantFrom(...params), FastCheck.constantFrom(...garbageQuery)).map(
        ([name, garbage]) => {
          const rewritten = query.split("&").map((pair) => pair.startsWith(`${name}=`) ? `${name}=${garbage}` : pair)
          return { ...base, path: `${pathOnly}?${rewritten.join("&")}`, mutation: `query ${name} = ${garbage}` }
        }
      )
    )
  }
  const fields = Object.keys(template.body ?? {})
  if (fields.length > 0) {
    kinds.push(
      FastCheck.constantFrom(...fields).chain((field) =>
        otherType(template.body![field]).map((replacement) => {
          const marker = `"__kpipe_fuzz_${field}__"`
          const text = JSON.stringify({ ...template.body, [field]: "__kpipe_fuzz_" + field + "__" }).replace(
            marker,
            replacement
          )
          return { ...base, body: text, mutation: `field ${field} = ${replacement}` }
        })
      )
    )
  }
  if (body !== undefined) {
    kinds.push(
      FastCheck.oneof(
        FastCheck.integer({ min: 0, max: Math.max(0, body.length - 1) }).map((at) => body.slice(0, at)),
        FastCheck.constantFrom("not json", "{", "[1,2", "{\"a\":}", "\u00fc\u{1F642}", "null", "[]", "\"text\"", "42"),
        FastCheck.string({ minLength: 1, maxLength: 20 }).map((tail) => `${body}}${tail}`)
      ).map((text) => ({ ...base, body: text, mutation: `body ${JSON.stringify(text.slice(0, 40))}` })),
      FastCheck.integer({ min: bodyLimit + 1, max: bodyLimit * 4 }).map((size) => ({
        ...base,
        body: JSON.stringify({ ...template.body, padding: "x".repeat(size) }),
        mutation: `body of ${size} bytes`
      }))
    )
  }
  for (const name of template.identity ?? []) {
    const value = (template.headers ?? []).find(([header]) => header === name)?.[1] ?? ""
    const others = withoutIdentity(template)
    const headers = (extra: ReadonlyArray<readonly [string, string]>) =>
      body === undefined ? [...others, ...extra] : [...others, ...extra, ["Content-Type", "application/json"] as const]
    kinds.push(
      FastCheck.constant({ ...base, headers: headers([]), mutation: `without ${name}` }),
      FastCheck.constantFrom(...garbageIdentity).map((garbage) => ({
        ...base,
        headers: headers([[name, garbage]]),
        mutation: `${name}: ${JSON.stringify(garbage)}`
      })),
      FastCheck.constant({
        ...base,
        // The broken one first: Node keeps only the first of some duplicated headers (Authorization).
        headers: headers([[name, `${value}1`], [name, value]]),
        mutation: `${name} twice`
      })
    )
  }
  return kinds
}

/** Broken copies of `templates`, each one the service must refuse with a typed 4xx. */
export const mutants = (
  templates: ReadonlyArray<Template>,
  options: { readonly bodyLimit?: number | undefined } = {}
): FastCheck.Arbitrary<Mutant> => {
  const kinds = templates.flatMap((template) => mutantsOf(template, options.bodyLimit ?? 64 * 1024))
  if (kinds.length === 0) throw new Error("No template has anything to break")
  return FastCheck.oneof(...kinds)
}

/** Whether `answer` is a refusal the client can act on: a 4xx with a JSON body naming its error. */
export const isTypedRefusal = (answer: RawHttp.RawAnswer) =>
  answer.status >= 400 && answer.status < 500 && answer.tag !== undefined

/**
 * Sends `mutant` to 127.0.0.1:`port` and fails, with the request and the answer, unless the answer is
 * a typed 4xx.
 */
export const refused = (port: number, mutant: Mutant) =>
  Effect.flatMap(
    RawHttp.exchange(port, mutant),
    (answer) =>
      isTypedRefusal(answer) ? Effect.succeed(answer) : Effect.fail(
        new Error(
          `${mutant.method} ${mutant.path} (${mutant.mutation}) answered ${answer.status} ${
            JSON.stringify(answer.body).slice(0, 300)
          }`
        )
      )
  )

/**
 * The service at `entry` as its own process on a fresh database (dropped with the scope) and topic
 * prefix, on a free port; for sending it what no client should.
 */
export const service = (options: {
  readonly name: string
  readonly entry: string
  readonly env?: Readonly<Record<string, string>> | undefined
}): Effect.Effect<ServiceProcess.ServiceProcess & { readonly port: number }, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const serverUrl = yield* Database.url
    const database = `kpipe_fuzz_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`
    yield* Effect.addFinalizer(() =>
      Database.onServer(serverUrl, (sql) => sql`DROP DATABASE IF EXISTS ${sql(database)} WITH (FORCE)`).pipe(
        Effect.ignoreLogged
      )
    )
    const child = yield* ServiceProcess.start({
      name: options.name,
      entry: options.entry,
      env: {
        DATABASE_URL: Database.withDatabase(Redacted.value(serverUrl), database),
        PORT: "0",
        TOPIC_PREFIX: `${uniqueName("fuzz")}.`,
        KPIPE_ENV: "development",
        ...options.env
      },
      readyTimeout: "60 seconds",
      stopTimeout: "15 seconds"
    })
    if (child.port === undefined) {
      return yield* Effect.fail(new Error(`${options.name} logged no port: ${child.output()}`))
    }
    return { ...child, port: child.port }
  })

/**
 * Sends `runs` generated mutants (default 300) to 127.0.0.1:`port`, one after the other; fails with
 * fast-check's report (the smallest failing request, the seed to replay it) when one is not a typed 4xx.
 */
export const check = (port: number, arbitrary: FastCheck.Arbitrary<Mutant>, options: {
  readonly runs?: number | undefined
  readonly seed?: number | undefined
} = {}): Effect.Effect<void, Error> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () =>
        FastCheck.check(
          FastCheck.asyncProperty(arbitrary, (mutant) => Effect.runPromise(Effect.asVoid(refused(port, mutant)))),
          { numRuns: options.runs ?? 300, ...(options.seed !== undefined ? { seed: options.seed } : {}) }
        ),
      catch: (cause) => new Error(`The fuzz run itself failed: ${String(cause)}`)
    }),
    (details) => details.failed ? Effect.fail(new Error(FastCheck.defaultReportMessage(details))) : Effect.void
  )

/** Fails unless `service` still runs, answers `/health/live` and logged no defect or error. */
export const survived = (service: ServiceProcess.ServiceProcess & { readonly port: number }) =>
  Effect.gen(function*() {
    const live = yield* RawHttp.exchange(service.port, { method: "GET", path: "/health/live" })
    if (live.status !== 200) return yield* Effect.fail(new Error(`/health/live answered ${live.status}`))
    if (!(yield* service.isRunning)) return yield* Effect.fail(new Error(`${service.name} exited`))
    const output = service.output()
    if (/defect|Fiber terminated|ERROR/i.test(output)) {
      return yield* Effect.fail(new Error(`${service.name} logged a defect or an error:\n${output}`))
    }
  })
