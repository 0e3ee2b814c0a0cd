// Compiles the ```ts examples of every packages/*/README.md, so each package's embedding example
// keeps up with its API (```ts no-check and other languages are left alone).
// Usage: node scripts/check-readme-examples.ts
//
// Why the examples are compiled at a path inside their package: an example must resolve its imports
// as a user of the package would, through that package's package.json (its own name via "exports",
// its "type") and its node_modules, so an undeclared dependency or an "./internal/*" import fails
// here as it would for the user. A tsconfig under .cache with `paths` would instead resolve whatever
// we map, bypassing "exports" and the package's declared dependencies. Writing the files into
// packages/<pkg>/ would be just as faithful, but others edit and lint packages/ concurrently and a
// crashed run would leave them behind; so the compiler host presents each example at
// packages/<pkg>/.readme-examples/<n>.ts without creating it there, and TypeScript's own module
// resolution runs from that directory. Copies of what was compiled go to .cache/readme-examples/
// (gitignored) for inspection. The options are those of tsconfig.base.json, like the packages' code.
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

const root = path.resolve(import.meta.dirname, "..")
const packagesDir = path.join(root, "packages")
const cacheDir = path.join(root, ".cache", "readme-examples")

// Unused locals, parameters and imports: snippets often declare things only to show them.
const ignoredCodes = new Set([6133, 6192, 6196, 6198, 6199])

interface Example {
  readonly readme: string // relative to root, for messages
  readonly firstLine: number // 1-based README line of the block's first content line
  readonly text: string
}

interface Fence {
  readonly indent: number
  readonly marker: string
  readonly isExample: boolean
  readonly line: number
  readonly body: Array<string>
}

const problems: Array<string> = []

const extractExamples = (readme: string, content: string): Array<Example> => {
  const lines = content.split(/\r?\n/)
  const examples: Array<Example> = []
  let open: Fence | undefined
  lines.forEach((line, index) => {
    if (open === undefined) {
      const start = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(line)
      if (start !== null) {
        const [, indent = "", marker = "", info = ""] = start
        if (!(marker.startsWith("`") && info.includes("`"))) {
          open = { indent: indent.length, marker, isExample: info.trim() === "ts", line: index + 1, body: [] }
        }
      }
      return
    }
    const end = /^\s*(`{3,}|~{3,})\s*$/.exec(line)?.[1]
    if (end !== undefined && end[0] === open.marker[0] && end.length >= open.marker.length) {
      if (open.isExample) examples.push({ readme, firstLine: open.line + 1, text: open.body.join("\n") + "\n" })
      open = undefined
      return
    }
    // Content of an indented fence (in a list item) loses up to the fence's indentation.
    const strip = Math.min(open.indent, /^ */.exec(line)![0].length)
    open.body.push(line.slice(strip))
  })
  if (open?.isExample === true) problems.push(`${readme}:${open.line}: the \`\`\`ts block is never closed`)
  return examples
}

// packages/<pkg>/.readme-examples/<n>.ts (never written) -> the example compiled under that name
const examples = new Map<string, Example>()
const packagesChecked = new Set<string>()

const packageNames = fs.readdirSync(packagesDir, { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(packagesDir, entry.name, "package.json")))
  .map((entry) => entry.name)
  .sort()

fs.rmSync(cacheDir, { recursive: true, force: true })
for (const name of packageNames) {
  const readme = `packages/${name}/README.md`
  const readmePath = path.join(root, readme)
  if (!fs.existsSync(readmePath)) {
    problems.push(`packages/${name} has no README.md`)
    continue
  }
  const found = extractExamples(readme, fs.readFileSync(readmePath, "utf8"))
  if (found.length === 0) {
    problems.push(`${readme}: has no \`\`\`ts block; each package needs an embedding example that compiles`)
    continue
  }
  packagesChecked.add(name)
  found.forEach((example, index) => {
    const file = `${index + 1}.ts`
    examples.set(path.join(packagesDir, name, ".readme-examples", file).replaceAll("\\", "/"), example)
    fs.mkdirSync(path.join(cacheDir, name), { recursive: true })
    fs.writeFileSync(path.join(cacheDir, name, file), example.text)
  })
}

const configPath = path.join(root, "tsconfig.base.json")
const config = ts.readConfigFile(configPath, ts.sys.readFile)
const formatHost: ts.FormatDiagnosticsHost = {
  getCanonicalFileName: (fileName) => fileName,
  getCurrentDirectory: () => root,
  getNewLine: () => "\n"
}
const report = (diagnostics: ReadonlyArray<ts.Diagnostic>) => {
  for (const diagnostic of diagnostics) {
    if (diagnostic.category !== ts.DiagnosticCategory.Error || ignoredCodes.has(diagnostic.code)) continue
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
    const example = diagnostic.file === undefined ? undefined : examples.get(diagnostic.file.fileName)
    if (diagnostic.file !== undefined && example !== undefined && diagnostic.start !== undefined) {
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
      problems.push(`${example.readme}:${example.firstLine + line}: ${message}`)
    } else {
      problems.push(ts.formatDiagnostic(diagnostic, formatHost).trimEnd())
    }
  }
}

if (config.error !== undefined) {
  report([config.error])
} else if (examples.size > 0) {
  // The examples are the config's only files: the rest of the program is what they import.
  const parsed = ts.parseJsonConfigFileContent(
    { ...config.config, files: [...examples.keys()] },
    ts.sys,
    root,
    undefined,
    configPath
  )
  const host = ts.createCompilerHost(parsed.options, true)
  const { directoryExists, fileExists, getSourceFile, readFile } = host
  const exampleDirs = new Set([...examples.keys()].map((file) => path.posix.dirname(file)))
  host.fileExists = (fileName) => examples.has(fileName) || fileExists.call(host, fileName)
  host.readFile = (fileName) => examples.get(fileName)?.text ?? readFile.call(host, fileName)
  host.directoryExists = (directory) =>
    exampleDirs.has(directory) || (directoryExists?.call(host, directory) ?? ts.sys.directoryExists(directory))
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const example = examples.get(fileName)
    return example === undefined
      ? getSourceFile.call(host, fileName, languageVersion, onError, shouldCreate)
      : ts.createSourceFile(fileName, example.text, languageVersion, true)
  }
  const program = ts.createProgram({
    rootNames: parsed.fileNames,
    options: parsed.options,
    host,
    configFileParsingDiagnostics: parsed.errors
  })
  report(parsed.errors)
  report(program.getOptionsDiagnostics())
  report(program.getGlobalDiagnostics())
  for (const fileName of examples.keys()) {
    const sourceFile = program.getSourceFile(fileName)
    if (sourceFile === undefined) {
      problems.push(`${fileName}: not in the program`)
      continue
    }
    report(program.getSyntacticDiagnostics(sourceFile))
    report(program.getSemanticDiagnostics(sourceFile))
  }
}

if (problems.length > 0) {
  for (const problem of problems) process.stderr.write(`${problem}\n`)
  process.stderr.write(`readme examples: ${problems.length} problem(s)\n`)
  process.exitCode = 1
} else {
  process.stdout.write(`readme examples: ${examples.size} blocks in ${packagesChecked.size} packages compiled\n`)
}
