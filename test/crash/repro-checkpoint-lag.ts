/**
 * Minimal reproduction of the one bound the crash test found broken: duplicates after a crash can exceed
 * `bufferSize`. In-process, no emulator, no child: the InMemory source, a state store whose saves take 100 ms (a
 * File store under fsync contention took 80–400 ms in the crash runs), and a fast handler.
 *
 *   node test/crash/repro-checkpoint-lag.ts
 *
 * Every 2 ms it counts the events the handler completed past the checkpoint the store holds right now: exactly what
 * a SIGKILL at that instant would deliver again. The buffer holds at most `bufferSize` events past the in-memory
 * watermark, but the saved checkpoint trails that watermark by a whole save, and the buffer refills from the
 * in-memory watermark, so the exposure grows to bufferSize + (events settled during one save). Exits 1 when the
 * exposure exceeded bufferSize.
 */
import { Effect, Layer, Option } from "effect"
import type { PumpState } from "../../src/domain/PumpState.ts"
import * as TimeBucket from "../../src/domain/TimeBucket.ts"
import { sortKey } from "../../src/domain/TimeUuid.ts"
import { EventBufferLive } from "../../src/layers/buffer/EventBufferLive.ts"
import { InMemoryDataSource } from "../../src/layers/dataSource/InMemory.ts"
import { ManualNotifier } from "../../src/layers/notifier/Manual.ts"
import * as DataPump from "../../src/pump/DataPump.ts"
import { PumpMetrics } from "../../src/services/PumpMetrics.ts"
import { StateStore } from "../../src/services/StateStore.ts"

const EVENTS = 20_000
const BUFFER_SIZE = 100
const SAVE_MS = 100
const HOUR_MS = 3_600_000
const start = Date.now() - 3 * HOUR_MS
let saved: PumpState | undefined = { timeBucket: TimeBucket.fromDate(start) }
const slowStore = Layer.succeed(
  StateStore,
  StateStore.of({
    name: "slow",
    load: Effect.sync(() => Option.fromUndefinedOr(saved)),
    save: (state) =>
      Effect.sleep(SAVE_MS).pipe(
        Effect.andThen(
          Effect.sync(() => {
            saved = state
          })
        )
      )
  })
)

const completed: Array<string> = []
let maxExposure = 0
const exposure = () => {
  const key = saved?.eventId === undefined ? "" : sortKey(saved.eventId)
  let past = 0
  // Completion order is nearly fetch order; anything past the checkpoint is among the most recent completions.
  for (let i = Math.max(0, completed.length - 5_000); i < completed.length; i++) {
    if (sortKey(completed[i] as string) > key) past++
  }
  return past
}

const sampler = setInterval(() => {
  maxExposure = Math.max(maxExposure, exposure())
}, 2)

await Effect.runPromise(
  DataPump.run({
    bufferSize: BUFFER_SIZE,
    stopAt: new Date(start + HOUR_MS),
    rolloverSettleMs: 0,
    processor: {
      concurrency: 10,
      // A yield per event keeps the handler fast but lets the sampler and the checkpointer run.
      handleEvent: (event) =>
        Effect.andThen(
          Effect.yieldNow,
          Effect.sync(() => void completed.push(event.eventId))
        )
    }
  }).pipe(
    Effect.provide(
      Layer.mergeAll(
        InMemoryDataSource.layer({
          eventTypes: ["e"],
          events: Array.from({ length: EVENTS }, (_, i) => ({
            eventType: "e",
            at: start + Math.floor((i * (HOUR_MS / 2)) / EVENTS)
          }))
        }),
        ManualNotifier.layer,
        slowStore,
        EventBufferLive.pipe(Layer.provide(PumpMetrics.none)),
        PumpMetrics.none
      )
    )
  )
)
clearInterval(sampler)

console.log(
  `bufferSize ${BUFFER_SIZE}, saves of ${SAVE_MS} ms, ${completed.length} events: at worst ${maxExposure} completed events ` +
    `were past the saved checkpoint (a crash then delivers them again)`
)
if (maxExposure > BUFFER_SIZE) {
  console.log(`VIOLATED: duplicates per crash can reach ${maxExposure} > bufferSize ${BUFFER_SIZE}`)
  process.exitCode = 1
} else {
  console.log("bound held")
}
