import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"
import { FileStateStore } from "../../src/layers/stateStore/File.ts"
import { StateStore } from "../../src/services/StateStore.ts"

const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const nodeBinary = NodePath.join(repoRoot, "node_modules/.bin/node")

const HOUR_MS = 3_600_000
const BASE_MS = Date.UTC(2024, 0, 1)

/** State number n: bucket n hours after BASE, so the number can be read back from any saved state. */
const numbered = (n: number): PumpState => ({
  timeBucket: TimeBucket.fromDate(BASE_MS + n * HOUR_MS),
  eventId: TimeUuid.min(new Date(BASE_MS + n * HOUR_MS + 1)).toString()
})
const numberOf = (state: PumpState) => (TimeBucket.toEpochMillis(state.timeBucket) - BASE_MS) / HOUR_MS

const tempDir = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(NodePath.join(os.tmpdir(), "pump-state-file-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

const withStore = <A, E>(path: string, f: (store: StateStore["Service"]) => Effect.Effect<A, E>) =>
  StateStore.use(f).pipe(Effect.provide(FileStateStore.layer({ path }).pipe(Layer.orDie)))

const loadFrom = (path: string) => withStore(path, (store) => store.load)

const tempFilesIn = (dir: string) =>
  Effect.promise(() => fs.readdir(dir)).pipe(Effect.map((names) => names.filter((name) => name.endsWith(".tmp"))))

describe("FileStateStore", () => {
  it.live("a missing file is no state; saves round-trip, with and without eventId", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = NodePath.join(dir, "state.json")
      expect(Option.isNone(yield* loadFrom(path))).toBe(true)

      const withId = numbered(3)
      yield* withStore(path, (store) => store.save(withId))
      expect(yield* loadFrom(path)).toEqual(Option.some(withId))
      expect(JSON.parse(yield* Effect.promise(() => fs.readFile(path, "utf8")))).toEqual({ version: 1, ...withId })

      const wholeBucket: PumpState = { timeBucket: TimeBucket.make("20240315140000") }
      yield* withStore(path, (store) => store.save(wholeBucket))
      expect(yield* loadFrom(path)).toEqual(Option.some(wholeBucket))
      expect(yield* tempFilesIn(dir)).toEqual([])
    })
  )

  it.live("a corrupt or hand-edited file is CorruptState naming the path and how to start fresh", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = NodePath.join(dir, "state.json")
      const v4 = "2f1e7c8a-3b4d-4e5f-8a6b-7c8d9e0f1a2b"
      const cases: ReadonlyArray<readonly [string, string]> = [
        ['{"timeBucket": "2024031514', "not valid JSON"],
        ["", "not valid JSON"],
        ['["20240315140000"]', "expected a JSON object"],
        ['{"timeBucket": "20240315143000"}', "20240315143000"],
        ['{"timeBucket": "20240230000000"}', "not a real UTC date"],
        [`{"timeBucket": "20240315140000", "eventId": "${v4}"}`, "UUID v1"],
        ['{"timeBucket": "20240315140000", "eventId": 7}', "eventId"],
        ['{"timeBucket": "20240315140000", "eventid": "x"}', "eventid"],
        ['{"eventId": "x"}', "timeBucket"],
        ['{"version": 2, "timeBucket": "20240315140000"}', '"version" is 2']
      ]
      for (const [contents, problem] of cases) {
        yield* Effect.promise(() => fs.writeFile(path, contents))
        const error = yield* Effect.flip(loadFrom(path))
        expect(error._tag, contents).toBe("CorruptState")
        expect(error.message, contents).toContain(path)
        expect(error.message, contents).toContain(problem)
        expect(error.message, contents).toContain(`Delete ${path} to start from the live edge, or fix it`)
      }
    })
  )

  it.live("an unreadable or unwritable location fails with StateStoreError, not None", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const missingDir = NodePath.join(dir, "no-such-dir", "state.json")
      const saveError = yield* Effect.flip(withStore(missingDir, (store) => store.save(numbered(1))))
      expect(saveError._tag).toBe("StateStoreError")
      expect(saveError.store).toBe("file")
      expect(saveError.operation).toBe("save")
      expect(saveError.fatal).not.toBe(true)
      expect(saveError.message).toContain(missingDir)

      const aFile = NodePath.join(dir, "plain-file")
      yield* Effect.promise(() => fs.writeFile(aFile, "x"))
      const underFile = NodePath.join(aFile, "state.json")
      expect((yield* Effect.flip(withStore(underFile, (store) => store.save(numbered(1))))).operation).toBe("save")

      const loadError = yield* Effect.flip(loadFrom(dir))
      expect(loadError._tag).toBe("StateStoreError")
      expect(loadError.message).toContain(dir)
      expect(yield* tempFilesIn(dir)).toEqual([])
    })
  )

  it.live("rejects an empty path with InvalidOptions", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Layer.build(FileStateStore.layer({ path: " " })))
      expect(error._tag).toBe("InvalidOptions")
      expect(error.message).toContain("stateStore.path")
    })
  )

  it.live("concurrent saves to one file apply in call order; two files do not interfere", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const a = NodePath.join(dir, "a.json")
      const b = NodePath.join(dir, "b.json")
      const rounds = Array.from({ length: 40 }, (_, i) => i + 1)
      yield* Effect.all(
        [a, b].map((path, which) =>
          withStore(path, (store) =>
            Effect.forEach(rounds, (n) => store.save(numbered(n * 2 + which)), {
              concurrency: "unbounded",
              discard: true
            })
          )
        ),
        { concurrency: "unbounded" }
      )
      expect(yield* loadFrom(a)).toEqual(Option.some(numbered(80)))
      expect(yield* loadFrom(b)).toEqual(Option.some(numbered(81)))
      expect(yield* tempFilesIn(dir)).toEqual([])
    })
  )

  it.live("removes temp files left by dead writers and keeps those of live ones", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = NodePath.join(dir, "state.json")
      const deadPid = yield* Effect.promise(
        () =>
          new Promise<number>((resolve, reject) => {
            const child = spawn(nodeBinary, ["-e", ""], { stdio: "ignore" })
            child.on("error", reject)
            child.on("exit", () => resolve(child.pid ?? -1))
          })
      )
      const stale = `state.json.${deadPid}.0123456789ab.tmp`
      const live = `state.json.${process.ppid}.0123456789ab.tmp`
      const unrelated = `other.json.${deadPid}.0123456789ab.tmp`
      for (const name of [stale, live, unrelated])
        yield* Effect.promise(() => fs.writeFile(NodePath.join(dir, name), "{"))
      expect(Option.isNone(yield* loadFrom(path))).toBe(true)
      expect((yield* tempFilesIn(dir)).sort()).toEqual([live, unrelated].sort())
    })
  )
})

/** Saves states n+1, n+2, ... as fast as it can, printing each number once its save has returned. */
const writerScript = `
import { Effect, Layer, Option } from "effect"
import * as TimeBucket from "./src/domain/TimeBucket.ts"
import { TimeUuid } from "./src/domain/TimeUuid.ts"
import { FileStateStore } from "./src/layers/stateStore/File.ts"
import { StateStore } from "./src/services/StateStore.ts"
const HOUR_MS = ${HOUR_MS}
const BASE_MS = ${BASE_MS}
const numbered = (n) => ({
  timeBucket: TimeBucket.fromDate(BASE_MS + n * HOUR_MS),
  eventId: TimeUuid.min(new Date(BASE_MS + n * HOUR_MS + 1)).toString()
})
const program = Effect.gen(function* () {
  const store = yield* StateStore
  const current = yield* store.load
  let n = Option.isSome(current) ? (TimeBucket.toEpochMillis(current.value.timeBucket) - BASE_MS) / HOUR_MS : 0
  for (;;) {
    n++
    yield* store.save(numbered(n))
    process.stdout.write(n + "\\n")
  }
}).pipe(Effect.provide(FileStateStore.layer({ path: process.env.STATE_PATH })))
Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exit(1)
})
`

interface KilledWriter {
  readonly lastConfirmed: number
  readonly signal: NodeJS.Signals | null
  readonly stderr: string
}

/** Starts the writer, lets it confirm at least one save, then SIGKILLs it after a random extra delay. */
const runAndKill = (path: string): Promise<KilledWriter> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(nodeBinary, ["--input-type=module", "-e", writerScript], {
      cwd: repoRoot,
      env: { ...process.env, STATE_PATH: path },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    let stderr = ""
    let killScheduled = false
    const safety = setTimeout(() => child.kill("SIGKILL"), 20_000)
    child.on("error", reject)
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      if (!killScheduled && output.includes("\n")) {
        killScheduled = true
        setTimeout(() => child.kill("SIGKILL"), Math.floor(Math.random() * 40))
      }
    })
    child.on("close", (_code, signal) => {
      clearTimeout(safety)
      const confirmed = output.split("\n").filter((line) => line !== "")
      resolve({ lastConfirmed: Number(confirmed.at(-1) ?? Number.NaN), signal, stderr })
    })
  })

/** One file, `rounds` writers in turn, each killed mid-loop; after each kill the file must hold a state it confirmed. */
const killRepeatedly = (path: string, rounds: number) =>
  Effect.gen(function* () {
    let previous = 0
    for (let round = 0; round < rounds; round++) {
      const killed = yield* Effect.promise(() => runAndKill(path))
      expect(killed.stderr).toBe("")
      expect(killed.signal).toBe("SIGKILL")
      expect(Number.isInteger(killed.lastConfirmed)).toBe(true)

      JSON.parse(yield* Effect.promise(() => fs.readFile(path, "utf8")))
      const loaded = yield* loadFrom(path)
      expect(Option.isSome(loaded)).toBe(true)
      const n = Option.isSome(loaded) ? numberOf(loaded.value) : Number.NaN
      expect(loaded).toEqual(Option.some(numbered(n)))
      // The last confirmed save is on disk; at most the one in flight when the kill landed is newer.
      expect([killed.lastConfirmed, killed.lastConfirmed + 1]).toContain(n)
      expect(n).toBeGreaterThan(previous)
      previous = n
    }
  })

describe("FileStateStore atomicity", () => {
  it.live("SIGKILL at random moments (20 times) leaves the old or the new state, never a torn file", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      // Four files side by side, five kills each: 20 kills without waiting for 20 node start-ups in a row.
      const lanes = ["a.json", "b.json", "c.json", "d.json"].map((name) => NodePath.join(dir, name))
      yield* Effect.all(
        lanes.map((path) => killRepeatedly(path, 5)),
        { concurrency: "unbounded", discard: true }
      )
      // Every loadFrom above built a store, which removes the temp files of the killed writers.
      yield* Effect.forEach(lanes, loadFrom, { discard: true })
      expect(yield* tempFilesIn(dir)).toEqual([])
    })
  )
})
