/**
 * The original README's API reference snippets against the emulator: the FlowcoreDataSource methods, pump control and
 * the restart patterns, the pull-mode methods, stopAt, and the Prometheus endpoint.
 */
import { createServer, request, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { DEFAULT_API_KEY, type Emulator } from "../../src/emulator/index.ts"
import {
  dataPumpPromRegistry,
  FlowcoreDataPump,
  type FlowcoreDataPumpOptions,
  type FlowcoreDataPumpState
} from "../../src/index.ts"
import {
  bucketOf,
  CREATED,
  eventually,
  hourStart,
  idsOf,
  ingestLive,
  ingestUntilDelivered,
  MINUTE,
  PAID,
  PumpTracker,
  seedMinutes,
  source,
  startEmulator,
  within
} from "./readme-support.ts"

let emulator: Emulator
const pumps = new PumpTracker()

beforeEach(async () => {
  emulator = await startEmulator({}, "metrics.0")
})
afterEach(async () => {
  await pumps.stopAll()
  await emulator.close()
})

/** Three hours of history: 5, 3 and 1 hours ago, both event types, in time order per hour. */
const seedHistory = () => {
  const h5 = seedMinutes(emulator, hourStart(5), [10, 40])
  const h3 = [
    ...seedMinutes(emulator, hourStart(3), [5, 25], CREATED),
    ...seedMinutes(emulator, hourStart(3), [50], PAID)
  ]
  const h1 = seedMinutes(emulator, hourStart(1), [15, 45], PAID)
  return { h5, h3, h1, all: [...h5, ...h3, ...h1] }
}

type PumpOverrides = Partial<Omit<FlowcoreDataPumpOptions, "auth" | "dataSource" | "baseUrlOverride">>

/** A push-mode pump over memory state that records what it handles and the states it is given. */
const makePump = (
  initial: FlowcoreDataPumpState | null,
  handled: Array<string>,
  overrides: PumpOverrides = {},
  states: Array<FlowcoreDataPumpState> = []
) => {
  let state = initial
  return pumps.track(
    FlowcoreDataPump.create({
      auth: { apiKey: DEFAULT_API_KEY },
      dataSource: source,
      stateManager: {
        getState: () => state,
        setState: (next) => {
          state = next
          states.push(next)
        }
      },
      processor: { concurrency: 2, handler: (events) => void handled.push(...idsOf(events)) },
      baseUrlOverride: emulator.url,
      ...overrides
    })
  )
}

/** Resolves with the error the start callback got (undefined for a clean end). */
const startWithCallback = (pump: FlowcoreDataPump) =>
  new Promise<Error | undefined>((resolve, reject) => {
    pump.start((error) => resolve(error)).catch(reject)
  })

describe("README: FlowcoreDataSource", () => {
  it("time buckets, direct event access and resource information", async () => {
    const { h5, h3, h1 } = seedHistory()
    const [b5, b3, b1] = [bucketOf(hourStart(5)), bucketOf(hourStart(3)), bucketOf(hourStart(1))]
    const { dataSource } = makePump(null, [])

    // Get all available time buckets for your event types
    const timeBuckets = await dataSource.getTimeBuckets()
    expect(timeBuckets).toEqual([b5, b3, b1])
    expect(`First: ${timeBuckets[0]}, Last: ${timeBuckets[timeBuckets.length - 1]}`).toBe(`First: ${b5}, Last: ${b1}`)

    // Get the next time bucket after a specific one
    expect(await dataSource.getNextTimeBucket(b5)).toBe(b3)
    expect(await dataSource.getNextTimeBucket(b3)).toBe(b1)
    expect(await dataSource.getNextTimeBucket(b1)).toBeNull()

    // Get the closest time bucket to a specific time (forward or backward)
    const between = bucketOf(hourStart(4))
    const closestBucket = await dataSource.getClosestTimeBucket(between) // Forward
    const previousBucket = await dataSource.getClosestTimeBucket(between, true) // Backward
    expect([closestBucket, previousBucket]).toEqual([b3, b5])
    expect(await dataSource.getClosestTimeBucket(b3)).toBe(b3)
    expect(await dataSource.getClosestTimeBucket(b3, true)).toBe(b3)

    // Get events directly from a specific state
    const events = await dataSource.getEvents(
      { timeBucket: b3, eventId: h3[0] },
      100, // amount
      undefined, // toEventId (optional)
      undefined, // cursor (optional)
      false // includeSensitiveData
    )
    expect(`Retrieved ${events.events.length} events`).toBe("Retrieved 2 events")
    expect(idsOf(events.events)).toEqual(h3.slice(1))
    expect(events.nextCursor).toBeUndefined()
    const whole = await dataSource.getEvents({ timeBucket: b5 }, 100)
    expect(idsOf(whole.events)).toEqual(h5)
    const firstPage = await dataSource.getEvents({ timeBucket: b3 }, 2)
    expect(idsOf(firstPage.events)).toEqual(h3.slice(0, 2))
    expect(firstPage.nextCursor).toBeDefined()
    const secondPage = await dataSource.getEvents({ timeBucket: b3 }, 2, undefined, firstPage.nextCursor)
    expect(idsOf(secondPage.events)).toEqual(h3.slice(2))
    const upTo = await dataSource.getEvents({ timeBucket: b1 }, 100, h1[0])
    expect(idsOf(upTo.events)).toEqual(h1.slice(0, 1))

    // Access configured names
    expect(dataSource.tenant).toBe("acme")
    expect(dataSource.dataCore).toBe("shop")
    expect(dataSource.flowType).toBe("orders.0")
    expect(dataSource.eventTypes).toEqual([CREATED, PAID])

    // Get translated IDs (useful for debugging or direct API calls)
    const ids = emulator.ids(source.tenant, source.dataCore, source.flowType)
    expect(await dataSource.getTenantId()).toBe(ids.tenantId)
    expect(await dataSource.getDataCoreId()).toBe(ids.dataCoreId)
    expect(await dataSource.getFlowTypeId()).toBe(ids.flowTypeId)
    expect(await dataSource.getEventTypeIds()).toEqual([ids.eventTypeIds[CREATED], ids.eventTypeIds[PAID]])
  })
})

describe("README: pump control", () => {
  it("isRunning, start and stop", async () => {
    const handled: Array<string> = []
    const dataPump = makePump(null, handled)
    expect(dataPump.isRunning).toBe(false)
    const ended = startWithCallback(dataPump)
    await eventually(() => dataPump.isRunning, 5_000, "the pump to run")
    // Check if pump is running
    expect(dataPump.isRunning).toBe(true)
    await ingestUntilDelivered(() => ingestLive(emulator), handled)
    // Stop the pump
    await dataPump.stop()
    expect(dataPump.isRunning).toBe(false)
    expect(await within(ended, 2_000, "the start callback")).toBeUndefined()
    const afterStop = ingestLive(emulator)
    // Start the pump again: it resumes where it stopped.
    await dataPump.start()
    await eventually(() => handled.includes(afterStop), 5_000, "the event ingested while stopped")
  })

  it("restart({ timeBucket }) jumps back and re-delivers; restart with an eventId starts after it", async () => {
    const { h5, h3, h1 } = seedHistory()
    const handled: Array<string> = []
    const dataPump = makePump({ timeBucket: bucketOf(hourStart(3)) }, handled)
    await dataPump.start()
    await eventually(() => handled.length >= h3.length + h1.length, 5_000, "the first pass")
    expect(handled).toEqual([...h3, ...h1])

    handled.length = 0
    await dataPump.restart({
      timeBucket: bucketOf(hourStart(5)) // Required: target time bucket
    })
    await eventually(() => handled.length >= h5.length + h3.length + h1.length, 5_000, "the replay")
    expect(handled).toEqual([...h5, ...h3, ...h1])

    handled.length = 0
    await dataPump.restart({
      timeBucket: bucketOf(hourStart(3)),
      eventId: h3[0] // Optional: specific event (omit to start from first event in bucket)
    })
    await eventually(() => handled.length >= h3.length - 1 + h1.length, 5_000, "the replay after the event")
    expect(handled).toEqual([...h3.slice(1), ...h1])
    expect(dataPump.isRunning).toBe(true)
  })

  it("restart(state, stopAt) ends the run at the new stopAt; restart(state, null) removes the limit", async () => {
    const { h5, h3, all } = seedHistory()
    const handled: Array<string> = []
    const dataPump = makePump(null, handled)
    const ended = startWithCallback(dataPump)
    await eventually(() => dataPump.isRunning, 5_000, "the pump to run")

    // Restart with a new stop date - change both position AND stop condition
    await dataPump.restart({ timeBucket: bucketOf(hourStart(5)) }, new Date(hourStart(2)))
    expect(await within(ended, 8_000, "the run to end at stopAt")).toBeUndefined()
    expect(dataPump.isRunning).toBe(false)
    expect(handled).toEqual([...h5, ...h3])

    handled.length = 0
    await dataPump.restart({ timeBucket: bucketOf(hourStart(5)) }, null)
    await eventually(() => handled.length >= all.length, 5_000, "every event without a limit")
    expect(handled).toEqual(all)
    expect(dataPump.isRunning).toBe(true)
    const live = await ingestUntilDelivered(() => ingestLive(emulator), handled)
    expect(handled).toEqual([...all, ...live])
  })

  it("the three common restart patterns", async () => {
    const { h5, h3, h1, all } = seedHistory()
    const handled: Array<string> = []
    const dataPump = makePump({ timeBucket: bucketOf(hourStart(1)) }, handled)
    const ended = startWithCallback(dataPump)
    await eventually(() => handled.length >= h1.length, 5_000, "the newest hour")
    expect(handled).toEqual(h1)

    // 1. Jump to historical data
    handled.length = 0
    const firstTimeBucket = (await dataPump.dataSource.getTimeBuckets())[0] as string
    await dataPump.restart({ timeBucket: firstTimeBucket })
    await eventually(() => handled.length >= all.length, 5_000, "the whole history")
    expect(handled).toEqual(all)

    // 2. Reprocess from error point
    handled.length = 0
    const lastKnownGoodState = { timeBucket: bucketOf(hourStart(3)), eventId: h3[1] }
    await dataPump.restart(lastKnownGoodState)
    await eventually(() => handled.length >= 1 + h1.length, 5_000, "the events after the good state")
    expect(handled).toEqual([...h3.slice(2), ...h1])

    // 3. Start backfill operation
    handled.length = 0
    const endDate = new Date(hourStart(3) + 30 * MINUTE)
    await dataPump.restart({ timeBucket: bucketOf(hourStart(10)) }, endDate)
    expect(await within(ended, 8_000, "the backfill to end at its end date")).toBeUndefined()
    expect(handled).toEqual([...h5, ...h3.slice(0, 2)])
    expect(dataPump.isRunning).toBe(false)
  })
})

describe("README: pull mode methods", () => {
  it("reserve, acknowledge, fail, and onFinalyFailed after maxRedeliveryCount", async () => {
    const { all } = seedHistory()
    const dataPump = pumps.track(
      FlowcoreDataPump.create({
        auth: { apiKey: DEFAULT_API_KEY },
        dataSource: source,
        stateManager: { getState: () => ({ timeBucket: bucketOf(hourStart(5)) }), setState: () => {} },
        maxRedeliveryCount: 3,
        baseUrlOverride: emulator.url
      })
    )
    const permanentlyFailed: Array<Array<string>> = []
    // Handle events that permanently failed (exceeded retry limit)
    dataPump.onFinalyFailed(async (failedEvents) => {
      permanentlyFailed.push(idsOf(failedEvents))
    })
    await dataPump.start()

    const two = await dataPump.reserve(2)
    expect(idsOf(two)).toEqual(all.slice(0, 2))
    await dataPump.acknowledge(two.map((e) => e.eventId))
    await dataPump.fail(["not-an-event-id"])

    // Two events always fail; the rest are acknowledged as they come.
    const doomed = [all[2], all[4]] as Array<string>
    const deliveries = new Map<string, number>()
    const acknowledged = new Set(idsOf(two))
    const finished = () =>
      acknowledged.size === all.length - doomed.length && doomed.every((id) => deliveries.get(id) === 4)
    while (!finished()) {
      const events = await within(dataPump.reserve(10), 5_000, "more events") // Mark 10 events as reserved for processing
      expect(events.length).toBeGreaterThan(0)
      expect(events.length).toBeLessThanOrEqual(10)
      for (const id of idsOf(events)) deliveries.set(id, (deliveries.get(id) ?? 0) + 1)
      const good = events.filter((e) => !doomed.includes(e.eventId))
      await dataPump.acknowledge(good.map((e) => e.eventId))
      for (const id of idsOf(good)) acknowledged.add(id)
      await dataPump.fail(idsOf(events).filter((id) => doomed.includes(id)))
    }
    await eventually(() => permanentlyFailed.flat().length === doomed.length, 3_000, "onFinalyFailed")
    expect(permanentlyFailed.flat().sort()).toEqual([...doomed].sort())
    // Never handed out again after the 1 + maxRedeliveryCount deliveries, and acknowledged events never came back.
    expect(Object.fromEntries(deliveries)).toEqual(
      Object.fromEntries(all.slice(2).map((id) => [id, doomed.includes(id) ? 4 : 1]))
    )
    const snapshot = await dataPump.snapshot()
    expect(snapshot?.counters).toMatchObject({ acknowledged: all.length - 2, failed: 2 })
  })
})

describe("README: stopAt", () => {
  it("a past stopAt delivers exactly the events at or before it, then ends the run", async () => {
    const { h5, h3 } = seedHistory()
    // The second event of that hour sits exactly on stopAt, the third 25 minutes after it.
    const stopAt = new Date(hourStart(3) + 25 * MINUTE)
    const handled: Array<string> = []
    const dataPump = makePump({ timeBucket: bucketOf(hourStart(5)) }, handled, { stopAt })
    const ended = startWithCallback(dataPump)
    expect(await within(ended, 8_000, "the run to end")).toBeUndefined()
    expect(handled).toEqual([...h5, ...h3.slice(0, 2)])
    expect(dataPump.isRunning).toBe(false)
  })

  it("a future stopAt keeps delivering live events until it passes", async () => {
    const handled: Array<string> = []
    const stopAt = new Date(Date.now() + 3_000)
    const dataPump = makePump(null, handled, { stopAt })
    const ended = startWithCallback(dataPump)
    await eventually(() => dataPump.isRunning, 5_000, "the pump to run")
    const live = await ingestUntilDelivered(() => ingestLive(emulator), handled, 2_000)
    await eventually(() => Date.now() > stopAt.getTime() + 10, 3_000, "stopAt to pass")
    const late = ingestLive(emulator)
    expect(await within(ended, 10_000, "the run to end after stopAt")).toBeUndefined()
    expect(handled).toEqual(live)
    expect(handled).not.toContain(late)
  })
})

describe("README: Prometheus metrics", () => {
  const get = (server: Server, path: string) =>
    new Promise<{ status: number; contentType: string | undefined; body: string }>((resolve, reject) => {
      const { port } = server.address() as AddressInfo
      const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          body += chunk
        })
        res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], body }))
      })
      req.on("error", reject)
      req.end()
    })

  /** `name{a="x",b="y"} value` lines of one metric, labels parsed. */
  const samples = (body: string, name: string) =>
    body
      .split("\n")
      .filter((line) => line.startsWith(`${name}{`))
      .map((line) => {
        const labels = Object.fromEntries(
          [...line.slice(line.indexOf("{") + 1, line.lastIndexOf("}")).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [
            m[1],
            m[2]
          ])
        )
        return { labels, value: Number(line.slice(line.lastIndexOf(" ") + 1)) }
      })

  it("an HTTP endpoint like the README's Express example serves the seven metrics for the running pump", async () => {
    const flowType = "metrics.0"
    const created = seedMinutes(emulator, hourStart(2), [1, 2, 3, 4, 5, 6, 7], CREATED, { ...source, flowType })
    const paid = seedMinutes(emulator, hourStart(2), [10, 20, 30, 40, 50], PAID, { ...source, flowType })
    const poison = created[3] as string
    const handled: Array<string> = []
    const failed: Array<string> = []
    const dataPump = pumps.track(
      FlowcoreDataPump.create({
        auth: { apiKey: DEFAULT_API_KEY },
        dataSource: { ...source, flowType },
        stateManager: { getState: () => ({ timeBucket: bucketOf(hourStart(2)) }), setState: () => {} },
        processor: {
          handler: (events) => {
            if (events.some((event) => event.eventId === poison)) throw new Error("poison")
            handled.push(...idsOf(events))
          },
          failedHandler: (events) => void failed.push(...idsOf(events))
        },
        maxRedeliveryCount: 0,
        baseUrlOverride: emulator.url
      })
    )
    await dataPump.start()
    await eventually(
      () => handled.length === created.length + paid.length - 1 && failed.length === 1,
      5_000,
      "every event"
    )

    // Express.js example, on node:http: app.get("/metrics", ...)
    const server = createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.statusCode = 404
        res.end()
        return
      }
      res.setHeader("Content-Type", dataPumpPromRegistry.contentType)
      // prom-client >= 13 returns a Promise here; the README's `res.end(registry.metrics())` predates that.
      dataPumpPromRegistry.metrics().then(
        (text) => res.end(text),
        () => res.writeHead(500).end()
      )
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const response = await get(server, "/metrics")
      expect(response.status).toBe(200)
      expect(response.contentType).toBe(dataPumpPromRegistry.contentType)

      const ours = { tenant: "acme", data_core: "shop", flow_type: flowType }
      const perEventType = [
        "flowcore_data_pump_buffer_events_gauge",
        "flowcore_data_pump_buffer_reserved_events_gauge",
        "flowcore_data_pump_buffer_size_bytes_gauge",
        "flowcore_data_pump_events_acknowledged_counter",
        "flowcore_data_pump_events_failed_counter",
        "flowcore_data_pump_events_pulled_size_bytes_counter"
      ]
      for (const name of [...perEventType, "flowcore_data_pump_sdk_commands_counter"]) {
        expect(response.body).toContain(`# TYPE ${name} `)
      }
      for (const name of perEventType) {
        const found = samples(response.body, name).filter((sample) => sample.labels.flow_type === flowType)
        expect(found.length, name).toBeGreaterThan(0)
        for (const sample of found) {
          expect(sample.labels).toEqual({ ...ours, event_type: expect.stringMatching(/^order\.(created|paid)\.0$/) })
        }
      }
      const value = (name: string, eventType: string) =>
        samples(response.body, name).find(
          (sample) => sample.labels.flow_type === flowType && sample.labels.event_type === eventType
        )?.value
      expect(value("flowcore_data_pump_events_acknowledged_counter", CREATED)).toBe(created.length - 1)
      expect(value("flowcore_data_pump_events_acknowledged_counter", PAID)).toBe(paid.length)
      expect(value("flowcore_data_pump_events_failed_counter", CREATED)).toBe(1)
      expect(value("flowcore_data_pump_events_failed_counter", PAID) ?? 0).toBe(0)
      expect(value("flowcore_data_pump_buffer_events_gauge", CREATED)).toBe(0)
      expect(value("flowcore_data_pump_events_pulled_size_bytes_counter", PAID)).toBeGreaterThan(0)
      // The original labels SDK commands by command only; here they also carry the flow type.
      const commands = samples(response.body, "flowcore_data_pump_sdk_commands_counter").filter(
        (sample) => sample.labels.flow_type === flowType
      )
      expect(commands.length).toBeGreaterThan(0)
      for (const sample of commands) expect(sample.labels).toMatchObject(ours)
      expect(commands.reduce((sum, sample) => sum + sample.value, 0)).toBeGreaterThan(0)
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})
