/**
 * The original README's state-manager snippets against the emulator: memory (live and from a time), file, database
 * (needs PostgreSQL on 127.0.0.1:5432, user postgres, database `test`; fails when it is missing), multi-instance,
 * checkpointing every N events, and TimeUuid positioning.
 */
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PgClient } from "@effect/sql-pg"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "@effect/vitest"
import { ManagedRuntime } from "effect"
import { SqlClient } from "effect/sql"
import { DEFAULT_API_KEY, type Emulator } from "../../src/emulator/index.ts"
import {
  FlowcoreDataPump,
  type FlowcoreDataPumpState,
  type FlowcoreDataPumpStateManager,
  TimeUuid
} from "../../src/index.ts"
import {
  bucketOf,
  CREATED,
  difference,
  eventually,
  hourStart,
  idsOf,
  ingestLive,
  ingestUntilDelivered,
  MINUTE,
  PAID,
  PumpTracker,
  seedMinutes,
  sleep,
  source,
  startEmulator,
  Transcript
} from "./readme-support.ts"

let emulator: Emulator
let dir: string
const pumps = new PumpTracker()

beforeEach(async () => {
  emulator = await startEmulator()
  dir = mkdtempSync(join(tmpdir(), "readme-state-"))
})
afterEach(async () => {
  await pumps.stopAll()
  await emulator.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A push-mode pump on `stateManager` that records what it handles. */
const pumpWith = (
  stateManager: FlowcoreDataPumpStateManager,
  handled: Array<string>,
  options: { readonly eventTypes?: ReadonlyArray<string>; readonly slowMs?: number } = {}
) =>
  pumps.track(
    FlowcoreDataPump.create({
      auth: { apiKey: DEFAULT_API_KEY },
      dataSource: { ...source, eventTypes: options.eventTypes ?? source.eventTypes },
      stateManager,
      processor: {
        handler: async (events) => {
          if (options.slowMs !== undefined) await sleep(options.slowMs)
          handled.push(...idsOf(events))
        }
      },
      baseUrlOverride: emulator.url
    })
  )

describe("README: memory state manager", () => {
  it("currentState = null starts in live mode and then tracks the position", async () => {
    const console = new Transcript()
    const before = ingestLive(emulator)
    let currentState: FlowcoreDataPumpState | null = null // Start in live mode
    const stateManager: FlowcoreDataPumpStateManager = {
      getState: () => currentState,
      setState: (state) => {
        currentState = state
        console.log(`Processed up to: ${state.timeBucket} - ${state.eventId}`)
      }
    }
    const handled: Array<string> = []
    await pumpWith(stateManager, handled).start()

    const live = await ingestUntilDelivered(() => ingestLive(emulator), handled)
    live.push(ingestLive(emulator, PAID), ingestLive(emulator))
    await eventually(
      () => handled.length >= live.length,
      5_000,
      () => `the live events: ${difference(live, handled)}`
    )
    expect(handled).toEqual(live)
    expect(handled).not.toContain(before)
    const last = live[live.length - 1] as string
    await eventually(() => currentState?.eventId === last, 2_000, "the position")
    expect(currentState).toEqual({ timeBucket: bucketOf(Date.now()), eventId: last })
    expect(console.has(`Processed up to: ${bucketOf(Date.now())} - ${last}`)).toBe(true)
  })

  it("{ timeBucket, eventId: undefined } starts from the first event of that hour", async () => {
    const earlier = seedMinutes(emulator, hourStart(4), [10, 20])
    const fromHour = seedMinutes(emulator, hourStart(3), [0, 15, 45])
    const later = seedMinutes(emulator, hourStart(1), [5, 55], PAID)
    let currentState: FlowcoreDataPumpState | null = {
      timeBucket: bucketOf(hourStart(3)),
      eventId: undefined // Start from first event in that hour
    }
    const handled: Array<string> = []
    await pumpWith(
      {
        getState: () => currentState,
        setState: (state) => {
          currentState = state
        }
      },
      handled
    ).start()

    await eventually(() => handled.length >= fromHour.length + later.length, 5_000, "the history")
    expect(handled).toEqual([...fromHour, ...later])
    for (const id of earlier) expect(handled).not.toContain(id)
    await eventually(() => currentState?.eventId === later[1], 2_000, "the position")
    expect(currentState?.timeBucket).toBe(bucketOf(hourStart(1)))
  })
})

/** The README's file snippet, with the file in this test's temporary directory. */
const fileStateManager = (path: string, console: Transcript): FlowcoreDataPumpStateManager => ({
  getState: () => {
    try {
      const data = readFileSync(path, "utf8")
      const state = JSON.parse(data)
      console.log("Resuming from saved state:", state)
      return state
    } catch (_error) {
      console.log("No previous state found, starting fresh")
      return null // Start in live mode
    }
  },
  setState: (state) => {
    try {
      writeFileSync(path, JSON.stringify(state, null, 2))
      console.log("State saved:", state)
    } catch (error) {
      console.error("Failed to save state:", error)
      // Consider throwing to stop pump if state saving is critical
    }
  }
})

describe("README: file state manager", () => {
  it("a second pump resumes from pump-state.json without re-delivering what the first one processed", async () => {
    const path = join(dir, "pump-state.json")
    const console = new Transcript()
    const first: Array<string> = []
    const pump = pumpWith(fileStateManager(path, console), first)
    await pump.start()
    expect(console.has("No previous state found, starting fresh")).toBe(true)

    const processed = await ingestUntilDelivered(() => ingestLive(emulator), first)
    for (let i = 0; i < 5; i++) processed.push(ingestLive(emulator, i % 2 === 0 ? CREATED : PAID))
    await eventually(
      () => first.length >= processed.length,
      5_000,
      () => `the first pump's events: ${difference(processed, first)}`
    )
    await pump.stop()
    expect(first).toEqual(processed)
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({
      timeBucket: bucketOf(Date.now()),
      eventId: processed[processed.length - 1]
    })

    const whileStopped = [ingestLive(emulator), ingestLive(emulator, PAID), ingestLive(emulator)]
    const second: Array<string> = []
    await pumpWith(fileStateManager(path, console), second).start()
    expect(console.has("Resuming from saved state:")).toBe(true)
    await eventually(() => second.length >= whileStopped.length, 5_000, "the second pump's events")
    expect(second).toEqual(whileStopped)
    expect(console.has("State saved:")).toBe(true)
    expect(console.has("Failed to save state:")).toBe(false)
  })
})

describe("README: checkpoint strategy", () => {
  it("saving every N-th state works, and a restart resumes from the last saved checkpoint", async () => {
    const path = join(dir, "pump-state.json")
    const console = new Transcript()
    const loadStateFromFile = (): FlowcoreDataPumpState | null => {
      try {
        return JSON.parse(readFileSync(path, "utf8"))
      } catch {
        return null
      }
    }
    const saveStateToFile = (state: FlowcoreDataPumpState) => writeFileSync(path, JSON.stringify(state))
    const offered: Array<FlowcoreDataPumpState> = []
    const CHECKPOINT_INTERVAL = 5
    const checkpointing = (): FlowcoreDataPumpStateManager => {
      // Save state every N events for performance
      let eventCount = 0
      return {
        getState: () => loadStateFromFile(),
        setState: (state) => {
          offered.push(state)
          eventCount++
          // Only save every N events to reduce I/O
          if (eventCount % CHECKPOINT_INTERVAL === 0) {
            saveStateToFile(state)
            console.log(`Checkpoint saved after ${eventCount} events`)
          }
        }
      }
    }

    const first: Array<string> = []
    const pump = pumpWith(checkpointing(), first, { slowMs: 10 })
    await pump.start()
    const all = await ingestUntilDelivered(() => ingestLive(emulator), first)
    for (let i = 0; i < 15; i++) all.push(ingestLive(emulator, i % 3 === 0 ? PAID : CREATED))
    await eventually(
      () => first.length >= all.length,
      8_000,
      () => `the first pump's events: ${difference(all, first)}`
    )
    await eventually(() => offered.length >= CHECKPOINT_INTERVAL, 2_000, "enough checkpoints")
    await pump.stop()

    const saved = offered[Math.floor(offered.length / CHECKPOINT_INTERVAL) * CHECKPOINT_INTERVAL - 1]
    expect(console.has(`Checkpoint saved after ${CHECKPOINT_INTERVAL} events`)).toBe(true)
    expect(loadStateFromFile()).toEqual(saved)
    const resumeAfter = all.indexOf(saved?.eventId as string)
    expect(resumeAfter).toBeGreaterThanOrEqual(0)

    const added = [ingestLive(emulator), ingestLive(emulator, PAID)]
    const second: Array<string> = []
    await pumpWith(checkpointing(), second).start()
    const expected = [...all.slice(resumeAfter + 1), ...added]
    await eventually(() => second.length >= expected.length, 5_000, "the second pump's events")
    expect(second).toEqual(expected)
  })
})

describe("README: database state manager (PostgreSQL)", () => {
  const table = `flowcore_pump_state_${randomBytes(4).toString("hex")}`
  const pg = ManagedRuntime.make(
    PgClient.layer({
      host: "127.0.0.1",
      port: 5432,
      database: "test",
      username: "postgres",
      connectTimeout: "5 seconds"
    })
  )
  /** The README's `db.query(sql, params)`: `?` placeholders become $1, $2, ... */
  const db = {
    query: <Row extends object>(text: string, params: ReadonlyArray<unknown> = []): Promise<ReadonlyArray<Row>> => {
      let n = 0
      const sql = text.replace(/\?/g, () => `$${++n}`)
      return pg.runPromise(SqlClient.SqlClient.use((client) => client.unsafe<Row>(sql, params)))
    }
  }

  beforeAll(async () => {
    // Example table schema
    await db.query(`CREATE TABLE ${table} (
      id VARCHAR(50) PRIMARY KEY, -- Instance identifier
      time_bucket VARCHAR(14) NOT NULL, -- "yyyyMMddHH0000"
      event_id VARCHAR(255), -- Last processed event ID
      updated_at TIMESTAMP DEFAULT NOW()
    )`)
  })
  afterAll(async () => {
    await db.query(`DROP TABLE IF EXISTS ${table}`)
    await pg.dispose()
  })

  /** The README's snippet; MySQL's ON DUPLICATE KEY UPDATE is PostgreSQL's ON CONFLICT ... DO UPDATE. */
  const databaseStateManager = (console: Transcript): FlowcoreDataPumpStateManager => ({
    getState: async () => {
      try {
        const result = await db.query<{ time_bucket: string; event_id: string | undefined }>(
          `SELECT time_bucket, event_id FROM ${table} WHERE id = ?`,
          ["main"]
        )
        if (result.length === 0) {
          console.log("No previous state found, starting in live mode")
          return null
        }
        const state = {
          timeBucket: result[0]?.time_bucket as string,
          eventId: result[0]?.event_id
        }
        console.log("Resuming from database state:", state)
        return state
      } catch (error) {
        console.error("Failed to load state from database:", error)
        return null // Start fresh if DB is down
      }
    },
    setState: async (state) => {
      try {
        await db.query(
          `INSERT INTO ${table} (id, time_bucket, event_id, updated_at)
          VALUES (?, ?, ?, NOW())
          ON CONFLICT (id) DO UPDATE SET
          time_bucket = EXCLUDED.time_bucket,
          event_id = EXCLUDED.event_id,
          updated_at = NOW()`,
          ["main", state.timeBucket, state.eventId]
        )
      } catch (error) {
        console.error("CRITICAL: Failed to save state to database:", error)
        throw error // Stop processing if we can't save progress
      }
    }
  })

  it("the flowcore_pump_state row is upserted, and a restarted pump resumes from it", async () => {
    const console = new Transcript()
    const first: Array<string> = []
    const pump = pumpWith(databaseStateManager(console), first)
    await pump.start()
    expect(console.has("No previous state found, starting in live mode")).toBe(true)
    const processed = await ingestUntilDelivered(() => ingestLive(emulator), first)
    processed.push(ingestLive(emulator, PAID), ingestLive(emulator))
    await eventually(
      () => first.length >= processed.length,
      5_000,
      () => `the first pump's events: ${difference(processed, first)}`
    )
    await pump.stop()

    const rows = await db.query<{ id: string; time_bucket: string; event_id: string }>(
      `SELECT id, time_bucket, event_id FROM ${table}`
    )
    expect(rows).toEqual([{ id: "main", time_bucket: bucketOf(Date.now()), event_id: processed[processed.length - 1] }])

    const whileStopped = [ingestLive(emulator, PAID), ingestLive(emulator)]
    const second: Array<string> = []
    await pumpWith(databaseStateManager(console), second).start()
    expect(console.has("Resuming from database state:")).toBe(true)
    await eventually(() => second.length >= whileStopped.length, 5_000, "the second pump's events")
    expect(second).toEqual(whileStopped)
    expect(console.lines.filter((line) => line.includes("Failed"))).toEqual([])
  })

  it("multi-instance: two pumps with their own event types and ids in one table progress independently", async () => {
    /**
     * The README's snippet with `INSERT OR REPLACE` (SQLite) written as PostgreSQL's upsert, and the columns aliased:
     * the snippet returns `result[0]` as the state, which needs `timeBucket` / `eventId` keys.
     */
    const instanceStateManager = (instanceId: string): FlowcoreDataPumpStateManager => ({
      getState: async () => {
        const result = await db.query<FlowcoreDataPumpState>(
          `SELECT time_bucket AS "timeBucket", event_id AS "eventId" FROM ${table} WHERE id = ?`,
          [instanceId] // Each instance has unique state
        )
        return result[0] || null
      },
      setState: async (state) => {
        await db.query(
          `INSERT INTO ${table} (id, time_bucket, event_id) VALUES (?, ?, ?)
          ON CONFLICT (id) DO UPDATE SET time_bucket = EXCLUDED.time_bucket, event_id = EXCLUDED.event_id`,
          [instanceId, state.timeBucket, state.eventId]
        )
      }
    })
    const created = "processor-created"
    const paid = "processor-paid"
    const rowsOf = async () =>
      Object.fromEntries(
        (
          await db.query<{ id: string; event_id: string }>(`SELECT id, event_id FROM ${table} WHERE id IN (?, ?)`, [
            created,
            paid
          ])
        ).map((row) => [row.id, row.event_id])
      )

    const run = async () => {
      const handledCreated: Array<string> = []
      const handledPaid: Array<string> = []
      const a = pumpWith(instanceStateManager(created), handledCreated, { eventTypes: [CREATED] })
      const b = pumpWith(instanceStateManager(paid), handledPaid, { eventTypes: [PAID] })
      await Promise.all([a.start(), b.start()])
      return { a, b, handledCreated, handledPaid }
    }

    const one = await run()
    const createdIds = await ingestUntilDelivered(() => ingestLive(emulator, CREATED), one.handledCreated)
    const paidIds = await ingestUntilDelivered(() => ingestLive(emulator, PAID), one.handledPaid)
    for (let i = 0; i < 6; i++) {
      if (i % 2 === 0) createdIds.push(ingestLive(emulator, CREATED))
      else paidIds.push(ingestLive(emulator, PAID))
    }
    await eventually(
      () => one.handledCreated.length >= createdIds.length && one.handledPaid.length >= paidIds.length,
      5_000,
      "both instances' events"
    )
    expect(one.handledCreated).toEqual(createdIds)
    expect(one.handledPaid).toEqual(paidIds)
    await Promise.all([one.a.stop(), one.b.stop()])
    expect(await rowsOf()).toEqual({
      [created]: createdIds[createdIds.length - 1],
      [paid]: paidIds[paidIds.length - 1]
    })

    // Only one instance has new events: the other resumes with nothing to do, and neither moves the other's row.
    const newCreated = [ingestLive(emulator, CREATED), ingestLive(emulator, CREATED)]
    const two = await run()
    await eventually(() => two.handledCreated.length >= newCreated.length, 5_000, "the created instance's events")
    expect(two.handledCreated).toEqual(newCreated)
    expect(two.handledPaid).toEqual([])
    await Promise.all([two.a.stop(), two.b.stop()])
    const rows = await rowsOf()
    expect(rows[created]).toBe(newCreated[newCreated.length - 1])
    expect(rows[paid]).toBe(paidIds[paidIds.length - 1])
  })
})

describe("README: TimeUuid positioning", () => {
  it("state { timeBucket, eventId: TimeUuid.fromDate(12:30) } delivers only the events after 12:30", async () => {
    const hour = hourStart(1)
    const [at10, at29, at31, at50] = seedMinutes(emulator, hour, [10, 29, 31, 50])
    const console = new Transcript()

    // Generate event ID from specific timestamp
    const eventId = TimeUuid.fromDate(new Date(hour + 30 * MINUTE)).toString()
    // Start processing from timestamp (doesn't need to match existing event)
    const stateManager = {
      stateManager: {
        getState: () => ({
          timeBucket: bucketOf(hour), // Hour bucket
          eventId: eventId // Start from first event AFTER 12:30:00
        }),
        setState: (state: FlowcoreDataPumpState) => {
          // Extract timestamp from event ID
          const timestamp = TimeUuid.fromString(state.eventId as string).getDate()
          console.log(`Processed up to: ${timestamp.toISOString()}`)
        }
      }
    }
    const handled: Array<string> = []
    await pumpWith(stateManager.stateManager, handled).start()

    await eventually(() => handled.length >= 2, 5_000, "the events after 12:30")
    expect(handled).toEqual([at31, at50])
    for (const id of [at10, at29]) expect(handled).not.toContain(id)
    await eventually(
      () => console.has(`Processed up to: ${new Date(hour + 50 * MINUTE).toISOString()}`),
      2_000,
      "the position of the 12:50 event"
    )

    // Other useful TimeUuid methods:
    const before = Date.now()
    const now = TimeUuid.now().toString() // Current timestamp as UUID
    const date = TimeUuid.fromString(eventId).getDate() // Extract Date from UUID
    const timestamp = date.getTime() // Unix timestamp
    expect(timestamp).toBe(hour + 30 * MINUTE)
    const nowMs = TimeUuid.fromString(now).getDate().getTime()
    expect(nowMs).toBeGreaterThanOrEqual(before)
    expect(nowMs).toBeLessThanOrEqual(Date.now())
  })
})
