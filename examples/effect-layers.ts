/**
 * The Effect-native composition: `DataPump.run` over layers you pick. `flowcoreSourceLayer` is the HTTP data source
 * plus Prometheus metrics, `runLayer` adds the WebSocket notifier and the event buffer, and `FileStateStore` keeps the
 * checkpoint in a JSON file. The pump replays the history, follows live events until `stopAt` (`--duration` from
 * now) and returns once everything up to it is handled. The emulator, the state directory and the live producer are
 * scoped resources, so Ctrl-C stops the pump gracefully too (handlers drain, final checkpoint saved) before
 * everything is released in reverse order.
 *
 *   node examples/effect-layers.ts [--duration <seconds>]   (default 3)
 */
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeRuntime } from "@effect/platform-node"
import { Data, Effect, Layer, Option, Random, Schedule } from "effect"
import * as FlowcoreEmulator from "../src/emulator/index.ts"
import {
  DataPump,
  FileStateStore,
  flowcoreSourceLayer,
  makeConnection,
  runLayer,
  StateStore,
  TimeBucket,
  TimeUuid
} from "../src/index.ts"
import { API_KEY, exampleArgs, HOUR_MS, ingestLive, seedHistory, source } from "./support.ts"

const { durationSeconds } = exampleArgs(3)

class TransientFailure extends Data.TaggedError("TransientFailure")<{ readonly message: string }> {}

const program = Effect.gen(function* () {
  const emulator = yield* FlowcoreEmulator.make()
  const seeded = seedHistory(emulator, 1_000, 3).length
  const directory = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "data-pump-layers-"))),
    (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
  )
  const statePath = join(directory, "checkpoint.json")
  yield* Effect.log(`emulator at ${emulator.url} with ${seeded} historical events; checkpoint file ${statePath}`)

  const connection = yield* makeConnection({
    auth: { apiKey: API_KEY },
    dataSource: source,
    baseUrlOverride: emulator.url
  })
  const services = Layer.mergeAll(
    runLayer(connection, { type: "websocket" }),
    FileStateStore.layer({ path: statePath })
  ).pipe(Layer.provideMerge(flowcoreSourceLayer(connection)))

  const stopAt = new Date(Date.now() + durationSeconds * 1_000)
  let produced = 0
  // Live events from the first second until stopAt, so every one of them is the pump's to handle.
  yield* Effect.sync(() => {
    if (Date.now() < stopAt.getTime() - 20) ingestLive(emulator, produced++)
    return Date.now()
  }).pipe(
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (now) => now >= stopAt.getTime() - 120 }),
    Effect.delay("1 second"),
    Effect.forkScoped
  )

  const totals = new Map<string, number>()
  let handled = 0
  let retried = 0
  const pump = DataPump.run({
    bufferSize: 500,
    stopAt,
    // Events may land in the bucket shortly after stopAt's instant with an earlier id; wait half a second for them.
    rolloverSettleMs: 500,
    processor: {
      concurrency: 10,
      // Events of one order are handled strictly in order; different orders run in parallel.
      orderingKey: (event) => String(event.payload.orderId),
      handleEvent: (event, { attempt }) =>
        Effect.gen(function* () {
          // One delivery in fifty fails the first time; the pump redelivers it with backoff.
          if (attempt === 1 && (yield* Random.next) < 0.02) {
            return yield* new TransientFailure({ message: `transient failure on ${event.eventId}` })
          }
          if (attempt > 1) retried++
          handled++
          totals.set(event.eventType, (totals.get(event.eventType) ?? 0) + Number(event.payload.amount))
        })
    }
  })

  // The store is read before and after the run, so this part shares the pump's services.
  yield* Effect.gen(function* () {
    const store = yield* StateStore
    // Without a checkpoint the pump starts at the live edge; saving one first makes it replay the history.
    if (Option.isNone(yield* store.load)) {
      yield* store.save({ timeBucket: TimeBucket.fromDate(Date.now() - 4 * HOUR_MS) })
    }

    yield* Effect.log(`following live events until ${stopAt.toISOString()}`)
    yield* pump

    yield* Effect.log(`handled ${handled} events (${retried} after a retry) of ${seeded} historical + ${produced} live`)
    yield* Effect.log(`amounts by event type: ${JSON.stringify(Object.fromEntries(totals))}`)
    const saved = yield* store.load
    if (Option.isSome(saved) && saved.value.eventId !== undefined) {
      const at = TimeUuid.fromString(saved.value.eventId).getDate().toISOString()
      yield* Effect.log(`checkpoint: ${saved.value.timeBucket}/${saved.value.eventId} (${at})`)
    }
    yield* Effect.log(`${statePath}: ${(yield* Effect.promise(() => readFile(statePath, "utf8"))).trim()}`)
  }).pipe(Effect.provide(services))
})

NodeRuntime.runMain(Effect.scoped(program))
