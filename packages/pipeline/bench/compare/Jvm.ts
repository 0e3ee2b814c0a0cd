// Java programs of the comparison (Kafka's tools, Kafka Connect), on classpaths Maven fetched once
// into the gitignored .cache/ (jars/fetch-jars.sh).
import * as Command from "@effect/platform/Command"
import { ServiceProcess } from "@kpipe/devtools"
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export class JvmError extends Data.TaggedError("JvmError")<{ readonly message: string }> {}

const fetchScript = fileURLToPath(new URL("jars/fetch-jars.sh", import.meta.url))
export const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url))
/** Scratch files of one run: configs, logs, Connect's offsets. */
export const runDir = `${repoRoot}.cache/bench-compare-run`

/** The directory holding `kafka-tools` or `debezium`'s jars, fetched with Maven the first time. */
export const classpath = (name: "kafka-tools" | "debezium") =>
  Command.make("bash", fetchScript, name).pipe(
    Command.stderr("inherit"),
    Command.string,
    Effect.map((out) => `${out.trim().split("\n").at(-1)}/*`),
    Effect.provide(ServiceProcess.executorLayer),
    Effect.mapError((error) => new JvmError({ message: `fetching ${name}: ${error.message}` }))
  )

/** log4j 1 (reload4j) settings: errors only to stderr, or everything from `level` into `file`. */
export const log4j = (name: string, file?: string, level = "WARN") => {
  mkdirSync(runDir, { recursive: true })
  const path = `${runDir}/${name}-log4j.properties`
  writeFileSync(
    path,
    file === undefined
      ? [
        "log4j.rootLogger=ERROR, stderr",
        "log4j.appender.stderr=org.apache.log4j.ConsoleAppender",
        "log4j.appender.stderr.Target=System.err",
        "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n"
      ].join("\n")
      : [
        `log4j.rootLogger=${level}, file`,
        "log4j.appender.file=org.apache.log4j.FileAppender",
        `log4j.appender.file.File=${file}`,
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n"
      ].join("\n")
  )
  return path
}

const javaCommand = (cp: string, log4jPath: string, main: string, args: ReadonlyArray<string>, heap: string) =>
  Command.make(
    "java",
    `-Xmx${heap}`,
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
    `-Dlog4j.configuration=file:${log4jPath}`,
    "-cp",
    cp,
    main,
    ...args
  )

const linesOf = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  stream.pipe(Stream.decodeText(), Stream.splitLines, Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

/** Runs `main` to the end and returns what it printed on stdout; fails with its stderr when it fails. */
export const runToEnd = (cp: string, main: string, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const proc = yield* Command.start(javaCommand(cp, log4j("tools"), main, args, "512m"))
    const [stdout, stderr, code] = yield* Effect.all([linesOf(proc.stdout), linesOf(proc.stderr), proc.exitCode], {
      concurrency: 3
    })
    if (code !== 0) {
      return yield* new JvmError({ message: `${main} exited with ${code}:\n${[...stderr, ...stdout].join("\n")}` })
    }
    return stdout
  }).pipe(
    Effect.scoped,
    Effect.provide(ServiceProcess.executorLayer),
    Effect.catchTag("SystemError", "BadArgument", (error) => new JvmError({ message: `${main}: ${error.message}` }))
  )

/**
 * Starts `main` for the life of the scope (Command's release stops it, SIGTERM first). Its log4j
 * output goes to `logFile`, what it prints to `logFile` + `.out`.
 */
export const start = (cp: string, main: string, args: ReadonlyArray<string>, logFile: string) =>
  Effect.gen(function*() {
    const proc = yield* Command.start(javaCommand(cp, log4j("connect", logFile, "INFO"), main, args, "1g"))
    writeFileSync(`${logFile}.out`, "")
    const toFile = (stream: Stream.Stream<Uint8Array, unknown>) =>
      stream.pipe(
        Stream.runForEach((bytes) => Effect.sync(() => appendFileSync(`${logFile}.out`, bytes))),
        Effect.ignore
      )
    yield* Effect.forkScoped(Effect.all([toFile(proc.stdout), toFile(proc.stderr)], { concurrency: 2 }))
    return proc
  }).pipe(
    Effect.provide(ServiceProcess.executorLayer),
    Effect.catchTag("SystemError", "BadArgument", (error) => new JvmError({ message: `${main}: ${error.message}` }))
  )
