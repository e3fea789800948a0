/**
 * The crash test (design §4 guarantees 1–2): SIGKILL the pump at random instants, restart it from its saved state,
 * and prove that every ingested event was completed at least once, with duplicates per crash bounded by the buffer.
 *
 *   node test/crash/run.ts [--events 50000] [--kills 20] [--store file|postgres] [--scenarios a,b,c,d]
 *                          [--buffer-size 1000] [--parallel 2] [--seed N] [--keep] [--trace]
 *
 * The emulator runs in this process; the pump runs as a child process (pump-child.ts) with the production wiring.
 * Scenarios: a) batch handler, concurrency 1; b) batch handler, concurrency 10; c) per-event handler, concurrency 100
 * (each with 10% injected handler failures and maxRedeliveryCount 3, on the File or PostgreSQL store); d) the
 * transactional mode on PostgreSQL, projecting every event into `projection(event_id PRIMARY KEY)`. Exits non-zero if
 * any assertion fails. See README.md in this folder for longer soaks.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Console, Data, Deferred, Duration, Effect, Fiber, Option, Schedule, Schema, type Scope } from "effect"
import { Command, Flag } from "effect/cli"
import { SqlClient } from "effect/sql"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { sortKey, TimeUuid } from "../../src/domain/TimeUuid.ts"
import { type Emulator, make as makeEmulator } from "../../src/emulator/index.ts"
import { analyzeLogs, type LogAnalysis, type ParsedLog, parseLog, spread } from "./analysis.ts"
import {
  type ChildConfig,
  ChildConfigJson,
  type HandlerMode,
  PROJECTION_TABLE,
  postgres,
  type Source,
  STARTED_LINE,
  seededRandom
} from "./ChildConfig.ts"

const HOUR_MS = 3_600_000
const CHILD = fileURLToPath(new URL("./pump-child.ts", import.meta.url))
const SOURCES = fileURLToPath(new URL("../../src", import.meta.url))
const FAILURE_RATE = 0.1
const MAX_REDELIVERY_COUNT = 3
/** Kill instants after the child reported that its pump started (the brief's 150–1500 ms). */
const KILL_WINDOW_MS = { min: 150, max: 1500 } as const
/** Every EARLY_KILL_EVERY-th kill lands during start-up instead (state load, resolve, first save). */
const EARLY_KILL_EVERY = 5
const STOP_AT_MARGIN_MS = 1000
const STARTUP_TIMEOUT = Duration.seconds(60)

/**
 * Every child loads the engine from src/ when it starts, so an edit made while the harness runs mixes engine
 * versions across runs; a fingerprint taken before and after tells a reader whether the figures are trustworthy.
 */
const fingerprintSources = (): string => {
  const hash = createHash("sha256")
  const files = (fs.readdirSync(SOURCES, { recursive: true }) as Array<string>).sort()
  for (const file of files) {
    const path = NodePath.join(SOURCES, file)
    if (fs.statSync(path).isFile()) hash.update(file).update(fs.readFileSync(path))
  }
  return hash.digest("hex").slice(0, 12)
}

class HarnessError extends Data.TaggedError("HarnessError")<{ readonly message: string }> {}

class CrashTestFailed extends Data.TaggedError("CrashTestFailed")<{ readonly message: string }> {}

type ScenarioName = "a" | "b" | "c" | "d"

interface Scenario {
  readonly name: ScenarioName
  readonly title: string
  readonly mode: HandlerMode
  readonly concurrency: number
  readonly store: "file" | "postgres"
}

const scenarioOf = (name: ScenarioName, store: "file" | "postgres"): Scenario => {
  switch (name) {
    case "a":
      return { name, title: "batch, concurrency 1", mode: "batch", concurrency: 1, store }
    case "b":
      return { name, title: "batch, concurrency 10", mode: "batch", concurrency: 10, store }
    case "c":
      return { name, title: "per event, concurrency 100", mode: "event", concurrency: 100, store }
    case "d":
      return { name, title: "transactional, batches of 10", mode: "transactional", concurrency: 10, store: "postgres" }
  }
}

interface RunSettings {
  readonly events: number
  readonly kills: number
  readonly bufferSize: number
  readonly seed: number
  readonly keep: boolean
  readonly trace: boolean
  readonly runId: string
}

interface KillRecord {
  readonly run: number
  readonly early: boolean
  /** ms after spawn the child reported started, if it did before the kill. */
  readonly startedAfterMs: number | undefined
  readonly killedAfterSpawnMs: number
  /** The checkpoint the next run resumes from, as saved when the kill landed. */
  readonly checkpoint: string
  /**
   * Completed events past that checkpoint: what the next runs may deliver again. Guarantee 2 bounds it by the
   * events held past the watermark (bufferSize); undefined in transactional mode, which logs no completions.
   */
  readonly exposure: number | undefined
  readonly progress: string
}

interface ScenarioResult {
  readonly scenario: Scenario
  readonly kills: ReadonlyArray<KillRecord>
  /** Kills that hit a run before all history events had been completed. */
  readonly catchUpKills: number
  readonly analysis: LogAnalysis
  readonly projection: ProjectionCheck | undefined
  readonly saves: SaveStats
  readonly totalMs: number
  readonly failures: ReadonlyArray<string>
  readonly directory: string
}

interface ProjectionCheck {
  readonly rows: number
  readonly distinctRows: number
  /** Ingested events neither projected nor completed by the failed handler. */
  readonly missing: number
  readonly missingSample: ReadonlyArray<string>
  /** Rows whose id was never ingested. */
  readonly foreign: number
  readonly violations: number
  readonly violationSample: string | undefined
}

interface SaveStats {
  readonly p50Ms: number
  readonly maxMs: number
}

const readSaveStats = (directory: string): SaveStats => {
  const durations = fs
    .readdirSync(directory)
    .filter((name) => name.startsWith("saves-"))
    .flatMap((name) => fs.readFileSync(NodePath.join(directory, name), "utf8").split("\n"))
    .map((line) => Number(line.split(" ")[1]))
    .filter((ms) => Number.isFinite(ms))
    .sort((a, b) => a - b)
  return {
    p50Ms: durations[Math.floor(durations.length / 2)] ?? 0,
    maxMs: durations.at(-1) ?? 0
  }
}

const SavedCheckpoint = Schema.Struct({ timeBucket: Schema.String, eventId: Schema.optionalKey(Schema.String) })
type SavedCheckpoint = typeof SavedCheckpoint.Type
const decodeStateFile = Schema.decodeUnknownEffect(Schema.fromJsonString(SavedCheckpoint))

const describeCheckpoint = (checkpoint: SavedCheckpoint | undefined) =>
  checkpoint === undefined ? "none" : `${checkpoint.timeBucket}/${checkpoint.eventId ?? "-"}`

/** Events are read in time-uuid order, so "past the checkpoint" is a comparison of sort keys. */
const checkpointKey = (checkpoint: SavedCheckpoint | undefined): string =>
  checkpoint === undefined
    ? ""
    : sortKey(
        checkpoint.eventId ??
          TimeUuid.min(TimeBucket.toDate(TimeBucket.make(checkpoint.timeBucket)))
            .getBefore()
            .toString()
      )

const source = (scenario: Scenario, runId: string): Source => ({
  tenant: "crash",
  dataCore: `crash-${runId}-${scenario.name}`,
  flowType: "crash.0",
  eventTypes: ["crash.created.0", "crash.updated.0", "crash.deleted.0"]
})

const pgLayer = PgClient.layer({ ...postgres, connectTimeout: "5 seconds", maxConnections: 2 })

const withSql = <A>(
  what: string,
  f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>
): Effect.Effect<A, HarnessError> =>
  SqlClient.SqlClient.use(f).pipe(
    Effect.provide(pgLayer),
    Effect.mapError(
      (cause) =>
        new HarnessError({
          message: `PostgreSQL (${postgres.host}:${postgres.port}, db ${postgres.database}): could not ${what}: ${String(cause)}`
        })
    )
  )

/** Seeds the history: `count` events over the last ~6 hours, cycling through the event types. */
const seedHistory = (emulator: Emulator, src: Source, count: number) => {
  const now = Date.now()
  const from = now - 6 * HOUR_MS
  // The newest history event is a few seconds old, so every live event (minted at ingest time) comes after it.
  const span = 6 * HOUR_MS - 5_000
  const ids: Array<string> = []
  const buckets = new Set<string>()
  const chunk = 10_000
  for (let offset = 0; offset < count; offset += chunk) {
    const size = Math.min(chunk, count - offset)
    ids.push(
      ...emulator.ingestMany(
        Array.from({ length: size }, (_, k) => {
          const i = offset + k
          const eventTime = new Date(from + Math.floor((i * span) / count))
          buckets.add(TimeBucket.fromDate(eventTime))
          return {
            tenant: src.tenant,
            dataCore: src.dataCore,
            flowType: src.flowType,
            eventType: src.eventTypes[i % src.eventTypes.length] as string,
            payload: { n: i, kind: "history" },
            eventTime
          }
        })
      )
    )
  }
  return { ids, buckets: buckets.size }
}

/** A few live events every 100 ms, until interrupted. */
const liveProducer = (emulator: Emulator, src: Source, random: () => number, ids: Array<string>) =>
  Effect.sync(() => {
    const count = 1 + Math.floor(random() * 4)
    for (let k = 0; k < count; k++) {
      ids.push(
        emulator.ingest({
          tenant: src.tenant,
          dataCore: src.dataCore,
          flowType: src.flowType,
          eventType: src.eventTypes[Math.floor(random() * src.eventTypes.length)] as string,
          payload: { n: ids.length, kind: "live" }
        })
      )
    }
  }).pipe(Effect.repeat(Schedule.spaced("100 millis")), Effect.asVoid)

interface ChildExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface RunningChild {
  readonly process: ChildProcess
  readonly spawnedAt: number
  /** ms after spawn at which the child printed STARTED_LINE. */
  readonly started: Deferred.Deferred<number>
  readonly exited: Deferred.Deferred<ChildExit>
}

/** Spawns one pump run; closing the scope SIGKILLs it if it is still alive and waits for it to be gone. */
const spawnChild = (config: ChildConfig, outputFd: number): Effect.Effect<RunningChild, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const spawnedAt = performance.now()
      const started = Deferred.makeUnsafe<number>()
      const exited = Deferred.makeUnsafe<ChildExit>()
      fs.writeSync(outputFd, `--- run ${config.logPath} ---\n`)
      const child = spawn(process.execPath, [CHILD, Schema.encodeSync(ChildConfigJson)(config)], {
        stdio: ["ignore", "pipe", outputFd]
      })
      let tail = ""
      child.stdout?.on("data", (chunk: Buffer) => {
        fs.writeSync(outputFd, chunk)
        if (Deferred.isDoneUnsafe(started)) return
        tail = (tail + chunk.toString("utf8")).slice(-2 * STARTED_LINE.length - 2)
        if (tail.includes(STARTED_LINE)) Deferred.doneUnsafe(started, Effect.succeed(performance.now() - spawnedAt))
      })
      child.on("exit", (code, signal) => {
        Deferred.doneUnsafe(exited, Effect.succeed({ code, signal }))
      })
      child.on("error", (error) => {
        fs.writeSync(outputFd, `spawn error: ${error.message}\n`)
        Deferred.doneUnsafe(exited, Effect.succeed({ code: -1, signal: null }))
      })
      return { process: child, spawnedAt, started, exited }
    }),
    (child) =>
      Effect.gen(function* () {
        if (!Deferred.isDoneUnsafe(child.exited)) child.process.kill("SIGKILL")
        yield* Deferred.await(child.exited)
      })
  )

const describeExit = (exit: ChildExit) => (exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`)

const readRunLog = (directory: string, run: number): ParsedLog => {
  const path = runLogPath(directory, run)
  return parseLog(fs.existsSync(path) ? fs.readFileSync(path, "utf8") : "")
}

const readRunLogs = (directory: string, runs: number): ReadonlyArray<ParsedLog> =>
  Array.from({ length: runs }, (_, run) => readRunLog(directory, run))

const runLogPath = (directory: string, run: number) =>
  NodePath.join(directory, `run-${String(run).padStart(3, "0")}.log`)

/** The index of the run in which the last of `ids` was first completed (runs.length if never). */
const runCompleting = (ids: ReadonlyArray<string>, runs: ReadonlyArray<ParsedLog>): number => {
  const remaining = new Set(ids)
  for (let run = 0; run < runs.length; run++) {
    const log = runs[run] as ParsedLog
    for (const id of log.handled) remaining.delete(id)
    for (const id of log.failed) remaining.delete(id)
    if (remaining.size === 0) return run
  }
  return runs.length
}

const readCheckpoint = (
  scenario: Scenario,
  statePath: string,
  schema: string,
  id: string
): Effect.Effect<SavedCheckpoint | undefined, HarnessError> =>
  scenario.store === "file"
    ? fs.existsSync(statePath)
      ? decodeStateFile(fs.readFileSync(statePath, "utf8")).pipe(
          Effect.mapError((error) => new HarnessError({ message: `cannot read ${statePath}: ${error.message}` }))
        )
      : Effect.succeed(undefined)
    : withSql("read the checkpoint row", (sql) =>
        Effect.gen(function* () {
          const table = `"${schema}"."flowcore_pump_state"`
          const [exists] = yield* sql<{ readonly found: boolean }>`SELECT to_regclass(${table}) IS NOT NULL AS found`
          if (exists?.found !== true) return undefined
          const [row] = yield* sql.unsafe<{ readonly time_bucket: string; readonly event_id: string | null }>(
            `SELECT time_bucket, event_id FROM ${table} WHERE id = $1`,
            [id]
          )
          if (row === undefined) return undefined
          const checkpoint: SavedCheckpoint =
            row.event_id === null
              ? { timeBucket: row.time_bucket }
              : { timeBucket: row.time_bucket, eventId: row.event_id }
          return checkpoint
        })
      )

const checkProjection = (
  schema: string,
  ingested: ReadonlyArray<string>,
  runs: ReadonlyArray<ParsedLog>,
  violationsPath: string
) =>
  Effect.gen(function* () {
    const rows = yield* withSql("read the projection", (sql) =>
      sql.unsafe<{ readonly event_id: string }>(`SELECT event_id FROM "${schema}"."${PROJECTION_TABLE}"`)
    )
    const projected = new Set(rows.map((row) => row.event_id))
    const failed = new Set(runs.flatMap((run) => run.failed))
    const ingestedSet = new Set(ingested)
    const missing = ingested.filter((id) => !projected.has(id) && !failed.has(id))
    const violationLines = fs.existsSync(violationsPath)
      ? fs
          .readFileSync(violationsPath, "utf8")
          .split("\n")
          .filter((line) => line !== "")
      : []
    return {
      rows: rows.length,
      distinctRows: projected.size,
      missing: missing.length,
      missingSample: missing.slice(0, 5),
      foreign: [...projected].filter((id) => !ingestedSet.has(id)).length,
      violations: violationLines.length,
      violationSample: violationLines[0]
    } satisfies ProjectionCheck
  })

const runScenario = (scenario: Scenario, settings: RunSettings, log: (line: string) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const began = performance.now()
    const random = seededRandom(settings.seed ^ (scenario.name.charCodeAt(0) * 0x9e3779b1))
    const uniform = (min: number, max: number) => Math.round(min + random() * (max - min))
    const src = source(scenario, settings.runId)
    const schema = `crash_${settings.runId}_${scenario.name}`
    let passed = false

    const directory = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), `flowcore-crash-${scenario.name}-`))),
      (dir) =>
        Effect.sync(() => {
          if (passed && !settings.keep) fs.rmSync(dir, { recursive: true, force: true })
        })
    )
    const outputFd = yield* Effect.acquireRelease(
      Effect.sync(() => fs.openSync(NodePath.join(directory, "child-output.log"), "a")),
      (fd) => Effect.sync(() => fs.closeSync(fd))
    )
    if (scenario.store === "postgres") {
      yield* Effect.acquireRelease(
        withSql("create the scenario schema", (sql) =>
          Effect.andThen(
            sql.unsafe(`CREATE SCHEMA "${schema}"`),
            scenario.mode === "transactional"
              ? Effect.asVoid(sql.unsafe(`CREATE TABLE "${schema}"."${PROJECTION_TABLE}" (event_id TEXT PRIMARY KEY)`))
              : Effect.void
          )
        ),
        () =>
          withSql("drop the scenario schema", (sql) => sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).pipe(
            Effect.catch((error) => Console.error(error.message))
          )
      )
    }

    const emulator = yield* makeEmulator({}).pipe(
      Effect.mapError((error) => new HarnessError({ message: `emulator: ${error.message}` }))
    )
    // Runs start here only while nothing is saved yet: an hour before the oldest history event.
    const fromTimeBucket = TimeBucket.fromDate(Date.now() - 7 * HOUR_MS)
    const seeded = seedHistory(emulator, src, settings.events)
    const history = seeded.ids
    const live: Array<string> = []
    const violationsPath = NodePath.join(directory, "violations.log")
    const statePath = NodePath.join(directory, "state.json")
    const stateId = `crash-${scenario.name}`
    const configFor = (run: number, stopAt: Date | undefined): ChildConfig => ({
      url: emulator.url,
      source: src,
      logPath: runLogPath(directory, run),
      violationsPath,
      savesPath: NodePath.join(directory, `saves-${String(run).padStart(3, "0")}.log`),
      ...(settings.trace ? { tracePath: NodePath.join(directory, `trace-${String(run).padStart(3, "0")}.log`) } : {}),
      store: scenario.store === "file" ? { type: "file", path: statePath } : { type: "postgres", schema, id: stateId },
      fromTimeBucket,
      ...(stopAt === undefined ? {} : { stopAt: stopAt.toISOString() }),
      mode: scenario.mode,
      concurrency: scenario.concurrency,
      bufferSize: settings.bufferSize,
      maxRedeliveryCount: MAX_REDELIVERY_COUNT,
      failureRate: FAILURE_RATE,
      seed: Math.floor(random() * 2 ** 31)
    })
    yield* log(`seeded ${history.length} events in ${seeded.buckets} hour buckets; logs in ${directory}`)

    const producer = yield* liveProducer(emulator, src, random, live).pipe(Effect.forkScoped)
    const kills: Array<KillRecord> = []
    const completedSoFar = new Set<string>()
    let lastStartupMs = 2000

    for (let run = 0; run < settings.kills; run++) {
      const early = (run + 1) % EARLY_KILL_EVERY === 0
      const record = yield* Effect.scoped(
        Effect.gen(function* () {
          const child = yield* spawnChild(configFor(run, undefined), outputFd)
          const diedEarly = (exit: ChildExit) =>
            new HarnessError({
              message: `run ${run} ended by itself (${describeExit(exit)}) before it was killed; see ${directory}/child-output.log`
            })
          if (early) {
            const delay = uniform(0, lastStartupMs)
            const exited = yield* Deferred.await(child.exited).pipe(Effect.timeoutOption(Duration.millis(delay)))
            if (Option.isSome(exited)) return yield* diedEarly(exited.value)
          } else {
            const ready = yield* Effect.raceFirst(
              Effect.map(Deferred.await(child.started), (ms) => ({ _tag: "started" as const, ms })),
              Effect.map(Deferred.await(child.exited), (exit) => ({ _tag: "exited" as const, exit }))
            ).pipe(
              Effect.timeoutOrElse({
                duration: STARTUP_TIMEOUT,
                orElse: () =>
                  Effect.fail(new HarnessError({ message: `run ${run} did not start within 60 s; see ${directory}` }))
              })
            )
            if (ready._tag === "exited") return yield* diedEarly(ready.exit)
            lastStartupMs = ready.ms
            const delay = uniform(KILL_WINDOW_MS.min, KILL_WINDOW_MS.max)
            const exited = yield* Deferred.await(child.exited).pipe(Effect.timeoutOption(Duration.millis(delay)))
            if (Option.isSome(exited)) return yield* diedEarly(exited.value)
          }
          const killedAfterSpawnMs = Math.round(performance.now() - child.spawnedAt)
          child.process.kill("SIGKILL")
          const exit = yield* Deferred.await(child.exited)
          if (exit.signal !== "SIGKILL") return yield* diedEarly(exit)
          const started = yield* Deferred.poll(child.started)
          const startedAfterMs = Option.isSome(started) ? Math.round(yield* started.value) : undefined
          const checkpoint = yield* readCheckpoint(scenario, statePath, schema, stateId)
          const runLog = readRunLog(directory, run)
          for (const id of runLog.handled) completedSoFar.add(id)
          for (const id of runLog.failed) completedSoFar.add(id)
          let exposure: number | undefined
          let progress: string
          if (scenario.mode === "transactional") {
            const [counted] = yield* withSql("count the projection", (sql) =>
              sql.unsafe<{ readonly rows: string }>(
                `SELECT count(*)::text AS rows FROM "${schema}"."${PROJECTION_TABLE}"`
              )
            )
            progress = `${counted?.rows ?? "?"} events projected so far`
          } else {
            const key = checkpointKey(checkpoint)
            exposure = 0
            for (const id of completedSoFar) if (sortKey(id) > key) exposure++
            progress = `${completedSoFar.size} completed so far, ${exposure} of them past the saved checkpoint`
          }
          return {
            run,
            early,
            startedAfterMs,
            killedAfterSpawnMs,
            checkpoint: describeCheckpoint(checkpoint),
            exposure,
            progress
          } satisfies KillRecord
        })
      )
      kills.push(record)
      yield* log(
        `run ${run}: SIGKILL ${record.killedAfterSpawnMs} ms after spawn (${
          record.startedAfterMs === undefined
            ? "during start-up"
            : `${record.killedAfterSpawnMs - record.startedAfterMs} ms after its pump started`
        }); ${record.progress}`
      )
    }

    yield* Fiber.interrupt(producer)
    const stopAt = new Date(Date.now() + STOP_AT_MARGIN_MS)
    const finalRun = settings.kills
    const finalBegan = performance.now()
    const finalTimeout = Duration.seconds(Math.max(120, Math.ceil(settings.events / 500)))
    const finalExit = yield* Effect.scoped(
      Effect.flatMap(spawnChild(configFor(finalRun, stopAt), outputFd), (child) =>
        Deferred.await(child.exited).pipe(Effect.timeoutOption(finalTimeout))
      )
    )
    const finalRunMs = Math.round(performance.now() - finalBegan)
    yield* log(
      `final run ${finalRun} (stopAt ${stopAt.toISOString()}): ${
        Option.isSome(finalExit)
          ? describeExit(finalExit.value)
          : `still running after ${Duration.format(finalTimeout)}`
      } in ${finalRunMs} ms`
    )

    const ingested = [...history, ...live]
    yield* log(`ingested ${history.length} history + ${live.length} live events`)
    const runs = readRunLogs(directory, settings.kills + 1)
    const projection =
      scenario.mode === "transactional" ? yield* checkProjection(schema, ingested, runs, violationsPath) : undefined
    const analysis = analyzeLogs(ingested, runs)
    const perCrash = spread(analysis.perCrash)
    const catchUpKills = Math.min(kills.length, runCompleting(history, runs))
    const saves = readSaveStats(directory)

    const failures: Array<string> = []
    const expect = (ok: boolean, message: string) => {
      if (!ok) failures.push(message)
    }
    expect(
      Option.isSome(finalExit) && finalExit.value.code === 0,
      `the final run must stop by itself at stopAt with exit code 0, got ${
        Option.isSome(finalExit) ? describeExit(finalExit.value) : "no exit (timed out)"
      }`
    )
    expect(kills.length === settings.kills, `expected ${settings.kills} kills, did ${kills.length}`)
    expect(analysis.malformed === 0, `${analysis.malformed} malformed log line(s)`)
    expect(analysis.unknown === 0, `${analysis.unknown} completed id(s) that were never ingested`)
    if (projection === undefined) {
      expect(analysis.lost === 0, `${analysis.lost} event(s) lost, e.g. ${analysis.lostSample.join(", ")}`)
      expect(
        analysis.inRunDuplicates === 0,
        `${analysis.inRunDuplicates} event(s) completed twice within one run (double delivery while running)`
      )
      const worst = analysis.perCrash.indexOf(perCrash.max)
      expect(
        perCrash.max <= settings.bufferSize,
        `duplicates per crash must be <= bufferSize ${settings.bufferSize}, max was ${perCrash.max} (crash of run ${worst}, ` +
          `killed with ${kills[worst]?.exposure ?? "?"} completed events past the saved checkpoint ` +
          `${kills[worst]?.checkpoint ?? "?"}; checkpoint saves took p50 ${saves.p50Ms} ms, max ${saves.maxMs} ms)`
      )
    } else {
      expect(
        projection.missing === 0,
        `${projection.missing} event(s) neither projected nor failed, e.g. ${projection.missingSample.join(", ")}`
      )
      expect(projection.foreign === 0, `${projection.foreign} projected id(s) that were never ingested`)
      expect(projection.rows === projection.distinctRows, `${projection.rows - projection.distinctRows} duplicate rows`)
      expect(
        projection.violations === 0,
        `${projection.violations} duplicate insert(s) of committed events, e.g. ${projection.violationSample ?? ""}`
      )
    }
    passed = failures.length === 0
    // The evidence of a failure: every ingested id in fetch order, next to the run logs, saves and traces.
    if (!passed) fs.writeFileSync(NodePath.join(directory, "ingested.txt"), ingested.map((id) => `${id}\n`).join(""))
    return {
      scenario,
      kills,
      catchUpKills,
      analysis,
      projection,
      saves,
      totalMs: Math.round(performance.now() - began),
      failures,
      directory
    } satisfies ScenarioResult
  }).pipe(Effect.scoped)

const printSummary = (results: ReadonlyArray<ScenarioResult>, settings: RunSettings) =>
  Effect.gen(function* () {
    const columns: ReadonlyArray<readonly [string, number]> = [
      ["scenario", 40],
      ["ingested", 9],
      ["completed", 9],
      ["via failed", 10],
      ["lost", 5],
      ["dups", 6],
      ["dups/crash max", 14],
      ["avg", 7],
      ["past ckpt max", 13],
      ["kills (early)", 13],
      ["catch-up", 8],
      ["save p50/max ms", 15],
      ["time s", 6],
      ["result", 6]
    ]
    const row = (cells: ReadonlyArray<string | number>) =>
      cells
        .map((cell, i) => {
          const width = columns[i]?.[1] ?? 0
          return i === 0 ? String(cell).padEnd(width) : String(cell).padStart(width)
        })
        .join(" ")
    const header = row(columns.map(([name]) => name))
    yield* Console.log(`\nCrash test summary (bufferSize ${settings.bufferSize}, seed ${settings.seed})`)
    yield* Console.log(header)
    yield* Console.log("-".repeat(header.length))
    for (const result of results) {
      const { analysis, projection, scenario } = result
      const perCrash = spread(analysis.perCrash)
      const exposure = spread(result.kills.flatMap((kill) => (kill.exposure === undefined ? [] : [kill.exposure])))
      yield* Console.log(
        row([
          `${scenario.name}) ${scenario.title}, ${scenario.store}`,
          analysis.ingested,
          projection === undefined ? analysis.completed : projection.distinctRows,
          analysis.failedOnly,
          projection === undefined ? analysis.lost : projection.missing,
          projection === undefined
            ? analysis.duplicates
            : projection.violations + projection.rows - projection.distinctRows,
          projection === undefined ? perCrash.max : "-",
          projection === undefined ? perCrash.avg.toFixed(1) : "-",
          projection === undefined ? exposure.max : "-",
          `${result.kills.length} (${result.kills.filter((kill) => kill.early).length})`,
          result.catchUpKills,
          `${result.saves.p50Ms}/${result.saves.maxMs}`,
          (result.totalMs / 1000).toFixed(1),
          result.failures.length === 0 ? "PASS" : "FAIL"
        ])
      )
    }
    yield* Console.log(
      [
        "",
        "completed: distinct events in the success or failed-handler logs (d: rows in projection); via failed: completed only",
        "by the failed handler; lost: ingested but never completed (d: neither projected nor failed); dups: completions beyond",
        "the first (d: inserts of already committed events); dups/crash: events a restart completed again; past ckpt: completed",
        "events past the saved checkpoint when the kill landed; catch-up: kills before the history was complete."
      ].join("\n")
    )
    for (const result of results) {
      for (const failure of result.failures) yield* Console.error(`FAIL ${result.scenario.name}: ${failure}`)
      if (result.failures.length > 0) yield* Console.error(`  evidence kept in ${result.directory}`)
    }
  })

const crash = Command.make(
  "crash",
  {
    events: Flag.Int("events").pipe(Flag.withDefault(50_000), Flag.withDescription("History events per scenario")),
    kills: Flag.Int("kills").pipe(Flag.withDefault(20), Flag.withDescription("SIGKILLs per scenario")),
    store: Flag.Literals("store", ["file", "postgres"]).pipe(
      Flag.withDefault("file"),
      Flag.withDescription("State store of scenarios a–c (d always uses PostgreSQL)")
    ),
    scenarios: Flag.String("scenarios").pipe(Flag.withDefault("a,b,c,d"), Flag.withDescription("Comma-separated")),
    bufferSize: Flag.Int("buffer-size").pipe(Flag.withDefault(1000), Flag.withDescription("The pump's bufferSize")),
    parallel: Flag.Int("parallel").pipe(Flag.withDefault(2), Flag.withDescription("Scenarios run at the same time")),
    seed: Flag.Int("seed").pipe(Flag.optional, Flag.withDescription("Seed of kill instants and failures")),
    keep: Flag.Boolean("keep").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Keep the logs of passing scenarios")
    ),
    trace: Flag.Boolean("trace").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Also log every delivery and injected failure (trace-NNN.log), for diagnosing a failure")
    )
  },
  Effect.fn("crash")(function* (flags) {
    const names = flags.scenarios.split(",").map((name) => name.trim())
    const scenarios: Array<Scenario> = []
    for (const name of names) {
      if (name !== "a" && name !== "b" && name !== "c" && name !== "d") {
        return yield* new HarnessError({ message: `--scenarios: unknown scenario "${name}"; allowed: a, b, c, d` })
      }
      scenarios.push(scenarioOf(name, flags.store))
    }
    if (flags.events < 1 || flags.kills < 1 || flags.bufferSize < 1 || flags.parallel < 1) {
      return yield* new HarnessError({ message: "--events, --kills, --buffer-size and --parallel must be >= 1" })
    }
    const settings: RunSettings = {
      events: flags.events,
      kills: flags.kills,
      bufferSize: flags.bufferSize,
      seed: Option.getOrElse(flags.seed, () => Math.floor(Math.random() * 2 ** 31)),
      keep: flags.keep,
      trace: flags.trace,
      runId: randomBytes(3).toString("hex")
    }
    const sourcesBefore = fingerprintSources()
    yield* Console.log(
      `Crash test: scenarios ${names.join(",")}, ${settings.events} events + live, ${settings.kills} kills each, seed ${settings.seed}`
    )
    const results = yield* Effect.forEach(
      scenarios,
      (scenario) =>
        runScenario(scenario, settings, (line) => Console.log(`[${scenario.name}] ${line}`)).pipe(
          Effect.tap((result) =>
            Console.log(
              `[${scenario.name}] done in ${(result.totalMs / 1000).toFixed(1)} s: ${result.failures.length === 0 ? "PASS" : "FAIL"}`
            )
          )
        ),
      { concurrency: flags.parallel }
    )
    yield* printSummary(results, settings)
    const sourcesAfter = fingerprintSources()
    if (sourcesAfter !== sourcesBefore) {
      yield* Console.error(
        `WARNING: src/ changed while the crash test ran (${sourcesBefore} -> ${sourcesAfter}); runs may have loaded different engine versions`
      )
    }
    const failed = results.filter((result) => result.failures.length > 0)
    if (failed.length > 0) {
      return yield* new CrashTestFailed({
        message: `crash test failed in scenario(s) ${failed.map((result) => result.scenario.name).join(", ")}`
      })
    }
  })
)

crash.pipe(Command.run({ version: "1.0.0" }), Effect.provide(NodeServices.layer), NodeRuntime.runMain)
