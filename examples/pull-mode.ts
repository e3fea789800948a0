/**
 * Pull mode, as in the README: no processor; the program reserves events, handles them with `Promise.allSettled`,
 * acknowledges what succeeded and fails the rest. Every seventh event fails on its first delivery and succeeds when
 * redelivered; one event fails every time and, after `maxRedeliveryCount` redeliveries, reaches `onFinalyFailed`.
 * The pump stops by itself once everything up to `stopAt` has settled.
 *
 *   node examples/pull-mode.ts [--duration <seconds>]   (an upper bound; default 10)
 */
import { start } from "../src/emulator/index.ts"
import { FlowcoreDataPump, type FlowcoreDataPumpState, type FlowcoreEvent, TimeBucket } from "../src/index.ts"
import { API_KEY, exampleArgs, HOUR_MS, seedHistory, sleep, source } from "./support.ts"

const { durationSeconds } = exampleArgs(10)

const emulator = await start()
const ids = seedHistory(emulator, 200, 2)
const flaky = new Set(ids.filter((_, i) => i % 7 === 3))
const poisoned = ids[42] as string
console.log(`emulator at ${emulator.url}: ${ids.length} events, ${flaky.size} flaky, 1 poisoned (${poisoned})`)

let state: FlowcoreDataPumpState | null = { timeBucket: TimeBucket.fromDate(Date.now() - 3 * HOUR_MS) }
const attempts = new Map<string, number>()

const pump = FlowcoreDataPump.create({
  auth: { apiKey: API_KEY },
  dataSource: source,
  baseUrlOverride: emulator.url,
  stateManager: {
    getState: () => state,
    setState: (next) => {
      state = next
    }
  },
  notifier: { type: "websocket" },
  bufferSize: 50,
  maxRedeliveryCount: 2,
  // Every seeded event is older. After stopAt the pump waits 5 s for late events, and those 5 s are already over.
  stopAt: new Date(Date.now() - 5_000)
})

const finallyFailed: Array<string> = []
pump.onFinalyFailed((events) => {
  for (const event of events) finallyFailed.push(event.eventId)
  console.log(`onFinalyFailed: ${events.map((event) => event.eventId).join(", ")}`)
})

const processEvent = async (event: FlowcoreEvent): Promise<void> => {
  const attempt = (attempts.get(event.eventId) ?? 0) + 1
  attempts.set(event.eventId, attempt)
  if (event.eventId === poisoned) throw new Error(`order ${String(event.payload.orderId)} cannot be processed`)
  if (flaky.has(event.eventId) && attempt === 1) throw new Error("temporary failure")
}

const deadline = setTimeout(() => {
  console.log(`--duration ${durationSeconds} reached, stopping`)
  void pump.stop()
}, durationSeconds * 1000)

let acknowledged = 0
let failed = 0
await pump.start((error) => {
  if (error !== undefined) console.error("the pump stopped with an error:", error)
})

while (pump.isRunning) {
  try {
    const events = await pump.reserve(10)
    if (events.length === 0) {
      await sleep(100)
      continue
    }
    const results = await Promise.allSettled(events.map(processEvent))
    const successfulIds: Array<string> = []
    const failedIds: Array<string> = []
    results.forEach((result, index) => {
      const eventId = (events[index] as FlowcoreEvent).eventId
      if (result.status === "fulfilled") successfulIds.push(eventId)
      else failedIds.push(eventId)
    })
    if (successfulIds.length > 0) await pump.acknowledge(successfulIds)
    if (failedIds.length > 0) await pump.fail(failedIds)
    acknowledged += successfulIds.length
    failed += failedIds.length
  } catch (error) {
    console.error("processing error:", error)
  }
}
clearTimeout(deadline)
await pump.stop()
await emulator.close()

const retried = [...attempts.values()].filter((n) => n > 1).length
console.log(`acknowledged ${acknowledged} of ${ids.length}, ${failed} failed deliveries, ${retried} events redelivered`)
console.log(`finally failed: ${finallyFailed.length} (${finallyFailed.join(", ")})`)
console.log(`final state: ${JSON.stringify(state)}`)
