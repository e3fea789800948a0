/**
 * Push mode, as in the README: a `processor.handler`, a file-backed `stateManager` (plain `getState` / `setState`
 * callbacks over a JSON file) and the WebSocket notifier. The pump first catches up on three hours of history, then
 * a producer ingests live events and the program prints how long each took to reach the handler.
 *
 *   node examples/push-mode.ts [--duration <seconds>]   (default 4)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { start } from "../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreDataPumpState, TimeBucket } from "../src/index.ts"
import { API_KEY, exampleArgs, HOUR_MS, ingestLive, seedHistory, sleep, source } from "./support.ts"

const { durationSeconds } = exampleArgs(4)
const startedAt = Date.now()

const emulator = await start()
const history = new Set(seedHistory(emulator, 300, 3))
console.log(`emulator at ${emulator.url} with ${history.size} historical events`)

const directory = mkdtempSync(join(tmpdir(), "data-pump-push-"))
const stateFile = join(directory, "pump-state.json")

let historyHandled = 0
let liveHandled = 0
let markCaughtUp = () => {}
const caughtUp = new Promise<void>((resolve) => {
  markCaughtUp = resolve
})

const pump = FlowcoreDataPump.create({
  auth: { apiKey: API_KEY },
  dataSource: source,
  baseUrlOverride: emulator.url,
  stateManager: {
    getState: (): FlowcoreDataPumpState | null => {
      try {
        const state = JSON.parse(readFileSync(stateFile, "utf8")) as FlowcoreDataPumpState
        console.log("resuming from saved state:", state)
        return state
      } catch {
        // The README returns null here (start at the live edge); this example replays the history instead.
        const timeBucket = TimeBucket.fromDate(Date.now() - 4 * HOUR_MS)
        console.log(`no saved state, starting from bucket ${timeBucket}`)
        return { timeBucket }
      }
    },
    setState: (state) => {
      writeFileSync(stateFile, JSON.stringify(state, null, 2))
    }
  },
  processor: {
    concurrency: 5,
    handler: async (events) => {
      for (const event of events) {
        if (history.has(event.eventId)) {
          historyHandled++
          if (historyHandled === history.size) markCaughtUp()
        } else {
          liveHandled++
          const delayMs = Date.now() - Number(event.payload.sentAt)
          console.log(`live ${event.eventType} ${String(event.payload.orderId)} handled ${delayMs} ms after ingest`)
        }
      }
    }
  },
  notifier: { type: "websocket" }
})

await pump.start()
await Promise.race([caughtUp, sleep(durationSeconds * 1000)])
console.log(`history: handled ${historyHandled}/${history.size} events in ${Date.now() - startedAt} ms`)

// Live phase: whatever is left of the duration, at least a second, one event every 200 ms.
const liveUntil = Math.max(startedAt + durationSeconds * 1000, Date.now() + 1000)
let produced = 0
while (Date.now() < liveUntil) {
  ingestLive(emulator, produced++)
  await sleep(200)
}
// Every live event is handled within milliseconds; the bound only keeps a broken setup from hanging here.
const settleBy = Date.now() + 5_000
while (liveHandled < produced && Date.now() < settleBy) await sleep(20)

await pump.stop()
await emulator.close()
console.log(`live: produced ${produced}, handled ${liveHandled}`)
console.log(`saved state: ${readFileSync(stateFile, "utf8").replace(/\s+/g, " ")}`)
rmSync(directory, { recursive: true, force: true })
