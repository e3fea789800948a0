/**
 * The one-command demo (`npm start`): an in-process Flowcore emulator holding a few hours of history plus a live
 * producer, and a pump catching up on it over HTTP, then following live through the WebSocket notifier. The handler
 * runs 10 events at a time with a small random delay, and about 1% of first deliveries fail (they succeed when
 * redelivered). Progress is one line rewritten in place on a terminal, one log line a second otherwise.
 *
 * Everything lives in ./.demo: the checkpoint (state.json) and the emulator's events (events.ndjson), so running
 * the demo again resumes where the last run stopped, over the same history.
 *
 *   node examples/demo.ts [--duration <seconds>] [--reset] [--events <count>] [--rate <events per second>]
 *
 * --duration ends the run by itself (default: run until Ctrl-C); Ctrl-C stops gracefully (handlers drain, the final
 * checkpoint is saved, the emulator closes) and a second Ctrl-C exits at once. --reset deletes ./.demo first.
 * --events (default 30000) and --rate (default 20) only shape a fresh history and the live producer.
 */
import { existsSync, statSync } from "node:fs"
import { mkdir, rm } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join, relative, resolve } from "node:path"
import { parseArgs } from "node:util"
import { Cause, Data, Deferred, Duration, Effect, Exit, Fiber, Layer, Logger, Option, Random, Schedule } from "effect"
import * as FlowcoreEmulator from "../src/emulator/index.ts"
import {
  DataPump,
  DataSource,
  dataPumpPromRegistry,
  FileStateStore,
  flowcoreLayer,
  StateStore,
  TimeBucket,
  TimeUuid
} from "../src/index.ts"
import { API_KEY, HOUR_MS, positiveNumber, source } from "./support.ts"

const { values: flags } = parseArgs({
  options: {
    duration: { type: "string" },
    reset: { type: "boolean", default: false },
    events: { type: "string", default: "30000" },
    rate: { type: "string", default: "20" }
  },
  strict: true
})
const durationSeconds = flags.duration === undefined ? undefined : positiveNumber("duration", flags.duration)
const historyCount = Math.round(positiveNumber("events", flags.events))
const liveRate = positiveNumber("rate", flags.rate)

const directory = resolve(".demo")
const statePath = join(directory, "state.json")
const eventsPath = join(directory, "events.ndjson")
const shown = (path: string) => relative(process.cwd(), path)

// ---- output: one progress line rewritten in place on a TTY, plain lines otherwise ----

const tty = process.stdout.isTTY === true
let progressOnScreen = false

/** A normal line; on a TTY it first wipes the progress line, which the next tick redraws. */
const say = (text: string) => {
  process.stdout.write(`${tty && progressOnScreen ? "\r\x1b[K" : ""}${text}\n`)
  progressOnScreen = false
}

const showProgress = (text: string) => {
  if (!tty) return say(text)
  const width = (process.stdout.columns ?? 120) - 1
  process.stdout.write(`\r\x1b[K${text.length > width ? text.slice(0, width) : text}`)
  progressOnScreen = true
}

const formatLogPart = (part: unknown) => (typeof part === "string" ? part : JSON.stringify(part))
const DemoLogger = Logger.layer([
  Logger.make(({ logLevel, message }) => {
    const parts = Array.isArray(message) ? message : [message]
    say(`${logLevel.toUpperCase()} ${parts.map(formatLogPart).join(" ")}`)
  })
])

const formatLag = (ms: number) => {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const minutes = Math.floor(ms / 60_000)
  return minutes < 60 ? `${minutes}m` : `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`
}

const count = (n: number) => Math.round(n).toLocaleString("en")

/** The instant a checkpoint stands for: its event's time, or the start of its bucket. */
const checkpointInstant = (checkpoint: DataPump.PumpSnapshot["checkpoint"]): number | undefined =>
  checkpoint === undefined
    ? undefined
    : checkpoint.eventId === undefined
      ? TimeBucket.toEpochMillis(checkpoint.timeBucket)
      : TimeUuid.fromString(checkpoint.eventId).getDate().getTime()

// ---- the history: `count` events over the current hour and the four before it ----

const seed = (emulator: FlowcoreEmulator.Emulator, total: number) => {
  const from = TimeBucket.toEpochMillis(TimeBucket.fromDate(Date.now() - 4 * HOUR_MS))
  const to = Date.now() - 1_000
  // Batches keep each synchronous journal write (one NDJSON line per event) to a few megabytes.
  const batch = 5_000
  for (let offset = 0; offset < total; offset += batch) {
    const size = Math.min(batch, total - offset)
    emulator.ingestMany(
      Array.from({ length: size }, (_, k) => {
        const i = offset + k
        return {
          ...source,
          eventType: source.eventTypes[i % source.eventTypes.length] as string,
          payload: { orderId: `order-${Math.floor(i / 3)}`, amount: (i % 250) + 1 },
          eventTime: new Date(from + Math.floor((i * (to - from)) / total))
        }
      })
    )
  }
  return { from: TimeBucket.fromDate(from), to: TimeBucket.fromDate(to) }
}

// ---- the program ----

class DemoFailure extends Data.TaggedError("DemoFailure")<{ readonly message: string }> {}

const program = Effect.gen(function* () {
  if (flags.reset) {
    yield* Effect.promise(() => rm(directory, { recursive: true, force: true }))
    say(`--reset: deleted ${shown(directory)}/ (saved state and events)`)
  }
  yield* Effect.promise(() => mkdir(directory, { recursive: true }))

  // Ctrl-C (or SIGTERM) asks for a graceful stop; a second one exits at once.
  const stopRequested = yield* Deferred.make<string>()
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const onSignal = (signal: NodeJS.Signals) => {
        if (!Deferred.doneUnsafe(stopRequested, Effect.succeed(signal === "SIGINT" ? "Ctrl-C" : signal))) {
          process.exit(130)
        }
      }
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
      return onSignal
    }),
    (onSignal) =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )

  // A file left empty by a run killed before it seeded holds no history: seed again.
  const hadHistory = existsSync(eventsPath) && statSync(eventsPath).size > 0
  const emulator = yield* FlowcoreEmulator.make({ persistPath: eventsPath })
  if (hadHistory) {
    say(`emulator: reloaded the history persisted in ${shown(eventsPath)}`)
  } else {
    const { from, to } = seed(emulator, historyCount)
    say(`emulator: seeded ${count(historyCount)} events in buckets ${from} … ${to} (saved to ${shown(eventsPath)})`)
  }

  const metricsServer = yield* Effect.acquireRelease(
    Effect.callback<ReturnType<typeof createServer>>((resume) => {
      const server = createServer((request, response) => {
        if (request.url !== "/metrics") return void response.writeHead(404).end()
        dataPumpPromRegistry.metrics().then(
          (text) => response.writeHead(200, { "Content-Type": dataPumpPromRegistry.contentType }).end(text),
          (error: unknown) => response.writeHead(500).end(String(error))
        )
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )
  say(`emulator  ${emulator.url}`)
  say(`metrics   http://127.0.0.1:${(metricsServer.address() as AddressInfo).port}/metrics`)
  say(`state     ${shown(statePath)}`)

  const services = Layer.mergeAll(
    flowcoreLayer({ auth: { apiKey: API_KEY }, dataSource: source, baseUrlOverride: emulator.url }),
    FileStateStore.layer({ path: statePath })
  )

  const handledByType = new Map<string, number>()
  let handled = 0

  yield* Effect.gen(function* () {
    const pump = yield* DataPump.make({
      bufferSize: 1_000,
      checkpoint: { intervalMs: 500 },
      processor: {
        concurrency: 10,
        handleEvent: (event, { attempt }) =>
          Effect.gen(function* () {
            yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(0, 4)))
            if (attempt === 1 && (yield* Random.next) < 0.01) {
              return yield* Effect.fail(
                new DemoFailure({ message: `first delivery of ${event.eventId} fails on purpose` })
              )
            }
            handled++
            handledByType.set(event.eventType, (handledByType.get(event.eventType) ?? 0) + 1)
          })
      }
    })

    const saved = yield* (yield* StateStore).load
    let origin: number
    if (Option.isSome(saved)) {
      const state = saved.value
      say(`resuming from ${state.timeBucket}/${state.eventId ?? "(start of bucket)"}`)
      origin = checkpointInstant(state) ?? Date.now()
      yield* pump.start
    } else {
      const buckets = yield* (yield* DataSource).timeBuckets()
      const first = buckets[0] ?? TimeBucket.fromDate(Date.now())
      say(`no saved state in ${shown(statePath)}: starting from the first bucket, ${first}`)
      origin = TimeBucket.toEpochMillis(first)
      yield* pump.restart({ timeBucket: first })
    }

    let produced = 0
    const producer = yield* Effect.sync(() => {
      const n = produced++
      emulator.ingest({
        ...source,
        eventType: source.eventTypes[n % source.eventTypes.length] as string,
        payload: { orderId: `live-${n}`, amount: (n % 250) + 1 }
      })
    }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(1000 / liveRate))), Effect.forkScoped)
    say(`live producer: ${liveRate} events/s`)

    // Events per second over the last second or so, from (time, handled) samples.
    const samples: Array<{ readonly at: number; readonly handled: number }> = [{ at: Date.now(), handled }]
    const progressLine = Effect.gen(function* () {
      const snapshot = yield* pump.snapshot
      const now = Date.now()
      samples.push({ at: now, handled })
      while (samples.length > 2 && now - (samples[0]?.at ?? now) > 1_000) samples.shift()
      const oldest = samples[0] ?? { at: now, handled }
      const rate = now > oldest.at ? ((handled - oldest.handled) * 1000) / (now - oldest.at) : 0
      const reached = checkpointInstant(snapshot.checkpoint) ?? origin
      const drained = snapshot.live && snapshot.buffer.depth === 0
      const caughtUp = drained ? 100 : Math.min(99.9, Math.max(0, ((reached - origin) * 100) / (now - origin)))
      return [
        `${snapshot.live ? "LIVE" : "catch-up"} ${snapshot.position.timeBucket ?? "-"} ${caughtUp.toFixed(1)}%`,
        `${count(rate)} ev/s`,
        `lag ${formatLag(Math.max(0, now - reached))}`,
        `buffer ${snapshot.buffer.depth}/${snapshot.buffer.capacity}`,
        `retries ${count(snapshot.counters.redelivered)}`,
        `handled ${count(handled)}`
      ].join(" | ")
    })
    const progress = yield* progressLine.pipe(
      Effect.flatMap((line) => Effect.sync(() => showProgress(line))),
      Effect.repeat(Schedule.spaced(tty ? "250 millis" : "1 second")),
      Effect.delay(tty ? "250 millis" : "1 second"),
      Effect.forkScoped
    )

    const elapsed =
      durationSeconds === undefined
        ? Effect.never
        : Effect.as(Effect.sleep(Duration.seconds(durationSeconds)), `--duration ${durationSeconds}s elapsed`)
    const reason = yield* Effect.raceFirst(
      Effect.raceFirst(Deferred.await(stopRequested), elapsed),
      Effect.as(pump.awaitStopped, "the pump stopped")
    )
    yield* Fiber.interrupt(producer)
    yield* Fiber.interrupt(progress)
    showProgress(yield* progressLine)
    say(`stopping (${reason}): draining handlers and saving the final checkpoint`)
    yield* pump.stop

    const final = yield* (yield* StateStore).load
    say(
      Option.match(final, {
        onNone: () => "no checkpoint saved",
        onSome: (state) => `final checkpoint ${state.timeBucket}/${state.eventId ?? "(start of bucket)"}`
      })
    )
    say(
      `handled ${count(handled)} events this run (${[...handledByType].map(([type, n]) => `${type} ${count(n)}`).join(", ")}); produced ${count(produced)} live`
    )
  }).pipe(Effect.scoped, Effect.provide(services))
})

const main = program.pipe(
  Effect.scoped,
  Effect.andThen(Effect.sync(() => say("closed the emulator and the metrics server; run again to resume"))),
  Effect.provide(DemoLogger)
)

// Not NodeRuntime.runMain: it answers Ctrl-C by interrupting and exiting 130, while the demo treats Ctrl-C as an
// ordinary request to stop and exits 0 once everything is closed.
Effect.runFork(main).addObserver((exit) => {
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
    say(`the demo failed:\n${Cause.pretty(exit.cause)}`)
    process.exitCode = 1
  }
})
