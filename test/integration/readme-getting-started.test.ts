/**
 * The original README's setup snippets, run against the emulator: the full `create` example, push mode with retries
 * and a failed handler, the manual pull loop, both ways to authenticate, and what invalid options do.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { DEFAULT_API_KEY, type Emulator } from "../../src/emulator/index.ts"
import {
  FlowcoreDataPump,
  type FlowcoreDataPumpOptions,
  type FlowcoreDataPumpState,
  type FlowcoreEvent,
  InvalidOptions,
  TimeBucket
} from "../../src/index.ts"
import {
  CREATED,
  difference,
  eventually,
  hourStart,
  idsOf,
  ingestLive,
  ingestUntilDelivered,
  PAID,
  PumpTracker,
  seedMinutes,
  source,
  startEmulator,
  Transcript,
  within
} from "./readme-support.ts"

let emulator: Emulator
const pumps = new PumpTracker()

/**
 * Runs a pump with `auth` and `dataSource` (and `extra` options) from `hour` to half past it, and returns the ids its
 * handler saw once the run has ended on its own.
 */
const idsReadInFirstHalfHour = async (
  hour: number,
  options: Pick<FlowcoreDataPumpOptions, "auth" | "dataSource"> & Partial<FlowcoreDataPumpOptions>
) => {
  const handled: Array<string> = []
  const finished = new Promise<Error | undefined>((resolve) => {
    const pump = pumps.track(
      FlowcoreDataPump.create({
        stateManager: { getState: () => ({ timeBucket: TimeBucket.fromDate(hour) }), setState: () => {} },
        processor: { handler: (events) => void handled.push(...idsOf(events)) },
        stopAt: new Date(hour + 30 * 60_000),
        baseUrlOverride: emulator.url,
        ...options
      })
    )
    pump.start(resolve).catch(resolve)
  })
  expect(await within(finished, 5_000, "the run to end")).toBeUndefined()
  return handled
}

beforeEach(async () => {
  emulator = await startEmulator()
})
afterEach(async () => {
  await pumps.stopAll()
  await emulator.close()
})

describe("README: example setup", () => {
  it("create() with every option: live events after start reach the handler, the logger hears the pump", async () => {
    const console = new Transcript()
    const logged = { debug: new Transcript(), info: new Transcript(), warn: new Transcript(), error: new Transcript() }
    const handled: Array<string> = []
    const before = ingestLive(emulator)

    const dataPump = pumps.track(
      FlowcoreDataPump.create({
        auth: {
          apiKey: DEFAULT_API_KEY,
          apiKeyId: "emulator"
        },
        dataSource: {
          tenant: source.tenant,
          dataCore: source.dataCore,
          flowType: source.flowType,
          eventTypes: source.eventTypes
        },
        noTranslation: false,
        stateManager: {
          getState: () => null, // Start in live mode
          setState: (state) => console.log("Position:", state)
        },
        processor: {
          handler: async (events) => {
            console.log(`Processing ${events.length} events`)
            handled.push(...idsOf(events))
          }
        },
        notifier: { type: "websocket" },
        directMode: false,
        bufferSize: 100,
        logger: {
          debug: (msg) => logged.debug.log(`[DEBUG] ${msg}`),
          info: (msg) => logged.info.log(`[INFO] ${msg}`),
          warn: (msg) => logged.warn.log(`[WARN] ${msg}`),
          error: (msg) => logged.error.log(`[ERROR] ${msg}`)
        },
        baseUrlOverride: emulator.url
      })
    )
    await dataPump.start()
    expect(dataPump.isRunning).toBe(true)

    const probes = await ingestUntilDelivered(() => ingestLive(emulator), handled)
    const live = [ingestLive(emulator, CREATED), ingestLive(emulator, PAID), ingestLive(emulator, CREATED)]
    await eventually(
      () => handled.length >= probes.length + live.length,
      5_000,
      () => `the live events: ${difference([...probes, ...live], handled)}`
    )

    expect(handled).toEqual([...probes, ...live])
    expect(handled).not.toContain(before)
    expect(console.has("Processing 1 events")).toBe(true)
    expect(console.has("Position:")).toBe(true)
    expect(logged.debug.lines.length).toBeGreaterThan(0)
    expect(logged.debug.lines.every((line) => line.startsWith("[DEBUG] "))).toBe(true)
    expect(logged.debug.has("websocket notifier connected")).toBe(true)
    expect(logged.error.lines).toEqual([])
    expect(emulator.stats.wsConnections).toBe(1)

    await dataPump.stop()
    expect(dataPump.isRunning).toBe(false)
    await eventually(() => emulator.stats.wsConnections === 0, 2_000, "the WebSocket to close")
  })
})

describe("README: processing modes", () => {
  it("push mode: concurrency 5, a throwing event is retried 3 times and then given to failedHandler", async () => {
    const hour = hourStart(2)
    const ids = seedMinutes(
      emulator,
      hour,
      Array.from({ length: 23 }, (_, i) => i * 2)
    )
    const poison = ids[7] as string
    let state: FlowcoreDataPumpState | null = { timeBucket: TimeBucket.fromDate(hour) }
    const batchSizes: Array<number> = []
    const attempts = new Map<string, number>()
    const processed = new Set<string>()
    const permanentlyFailed: Array<string> = []

    const processEvent = async (event: FlowcoreEvent) => {
      attempts.set(event.eventId, (attempts.get(event.eventId) ?? 0) + 1)
      if (event.eventId === poison) throw new Error(`cannot process ${event.eventId}`)
      processed.add(event.eventId)
    }
    const logFailedEvents = async (events: Array<FlowcoreEvent>) => {
      permanentlyFailed.push(...idsOf(events))
    }

    const dataPump = pumps.track(
      FlowcoreDataPump.create({
        auth: { apiKey: DEFAULT_API_KEY },
        dataSource: source,
        stateManager: {
          getState: () => state,
          setState: (next) => {
            state = next
          }
        },
        processor: {
          concurrency: 5,
          handler: async (events) => {
            batchSizes.push(events.length)
            // You only write business logic here
            for (const event of events) {
              await processEvent(event)
            }
          },
          failedHandler: async (failedEvents) => {
            // Handle events that permanently failed after all retries
            await logFailedEvents(failedEvents)
          }
        },
        bufferSize: 1000,
        maxRedeliveryCount: 3,
        baseUrlOverride: emulator.url
      })
    )
    await dataPump.start() // Just start and it runs automatically!

    await eventually(() => permanentlyFailed.length > 0 && processed.size === ids.length - 1, 8_000, "the retries")
    await eventually(
      async () => (await dataPump.snapshot())?.counters.acknowledged === ids.length - 1,
      2_000,
      "the acknowledgements"
    )

    expect(attempts.get(poison)).toBe(4)
    expect(permanentlyFailed).toEqual([poison])
    expect([...processed].sort()).toEqual(ids.filter((id) => id !== poison).sort())
    expect((await dataPump.snapshot())?.counters.failed).toBe(1)
    expect(batchSizes.every((size) => size >= 1 && size <= 5)).toBe(true)
    expect(Math.max(...batchSizes)).toBe(5)
    // The failed event settled too: the checkpoint moved past it to the last event.
    await eventually(() => state?.eventId === ids[ids.length - 1], 2_000, "the checkpoint")
  })

  it("pull mode: the reserve / acknowledge / fail loop gets failed events back and ends when the pump stops", async () => {
    const hour = hourStart(2)
    const ids = seedMinutes(
      emulator,
      hour,
      Array.from({ length: 12 }, (_, i) => i * 4)
    )
    const flaky = new Set(ids.filter((_, i) => i % 4 === 0))
    const reservations: Array<Array<string>> = []
    const done = new Set<string>()
    const failures = new Map<string, number>()
    let state: FlowcoreDataPumpState | null = { timeBucket: TimeBucket.fromDate(hour) }
    const console = new Transcript()

    const processEvent = async (event: FlowcoreEvent) => {
      const failed = failures.get(event.eventId) ?? 0
      if (flaky.has(event.eventId) && failed === 0) {
        failures.set(event.eventId, 1)
        throw new Error("first attempt fails")
      }
      done.add(event.eventId)
    }

    const dataPump = pumps.track(
      FlowcoreDataPump.create({
        auth: { apiKey: DEFAULT_API_KEY },
        dataSource: source,
        stateManager: {
          getState: () => state,
          setState: (next) => {
            state = next
          }
        },
        baseUrlOverride: emulator.url
        // ❌ No processor = manual mode
      })
    )
    await dataPump.start()

    const loop = (async () => {
      // You manually control the entire event lifecycle
      while (dataPump.isRunning) {
        try {
          // 1️⃣ YOU manually reserve events from buffer
          const events = await dataPump.reserve(10)
          if (events.length === 0) {
            await new Promise((resolve) => setTimeout(resolve, 1000))
            continue
          }
          reservations.push(idsOf(events))
          // 2️⃣ YOU handle business logic with custom error handling
          const results = await Promise.allSettled(events.map((event) => processEvent(event)))
          // 3️⃣ YOU decide what succeeded vs failed
          const successfulIds: Array<string> = []
          const failedIds: Array<string> = []
          results.forEach((result, index) => {
            const eventId = events[index]?.eventId as string
            if (result.status === "fulfilled") {
              successfulIds.push(eventId)
            } else {
              failedIds.push(eventId)
            }
          })
          // 4️⃣ YOU manually acknowledge successful events (removes from buffer)
          if (successfulIds.length > 0) {
            await dataPump.acknowledge(successfulIds)
          }
          // 5️⃣ YOU manually mark failed events for retry
          if (failedIds.length > 0) {
            await dataPump.fail(failedIds)
          }
        } catch (error) {
          console.error("Processing error:", error)
        }
      }
    })()

    await eventually(() => done.size === ids.length, 8_000, "every event to be processed")
    const reservedIds = reservations.flat()
    for (const id of ids) expect(reservedIds.filter((reserved) => reserved === id).length).toBe(flaky.has(id) ? 2 : 1)
    expect(reservations.every((batch) => batch.length >= 1 && batch.length <= 10)).toBe(true)
    expect(reservations[0]).toEqual(ids.slice(0, 10))
    await eventually(() => state?.eventId === ids[ids.length - 1], 2_000, "the checkpoint")

    await dataPump.stop()
    await within(loop, 3_000, "the pull loop to end")
    expect(console.lines).toEqual([])
    expect(await dataPump.reserve(10)).toEqual([])
  })
})

describe("README: authentication", () => {
  it("API key: { apiKey, apiKeyId } and a bare fc_<id>_<secret> key both read events", async () => {
    const hour = hourStart(1)
    const ids = seedMinutes(emulator, hour, [5, 10, 15])
    for (const auth of [{ apiKey: DEFAULT_API_KEY, apiKeyId: "emulator" }, { apiKey: DEFAULT_API_KEY }]) {
      expect(await idsReadInFirstHalfHour(hour, { auth, dataSource: source })).toEqual(ids)
    }
  })

  it("OIDC: getBearerToken's access token authenticates; a token the server rejects fails start()", async () => {
    await emulator.close()
    emulator = await startEmulator({ config: { bearerTokens: ["oidc-access-token"] } })
    const hour = hourStart(1)
    const ids = seedMinutes(emulator, hour, [1, 2, 3])
    // Stands in for `oidcClient({ clientId, clientSecret })` from @flowcore/oidc-client (not a dependency here).
    const oidcClient = (options: { clientId: string; clientSecret: string }) => ({
      getToken: async () => ({
        accessToken: options.clientSecret === "your-client-secret" ? "oidc-access-token" : "revoked"
      })
    })

    const create = (clientSecret: string, handled: Array<string>) => {
      const oidc = oidcClient({ clientId: "your-client-id", clientSecret })
      return pumps.track(
        FlowcoreDataPump.create({
          auth: {
            getBearerToken: () => oidc.getToken().then((token) => token.accessToken)
          },
          dataSource: source,
          stateManager: { getState: () => ({ timeBucket: TimeBucket.fromDate(hour) }), setState: () => {} },
          processor: { handler: (events) => void handled.push(...idsOf(events)) },
          notifier: { type: "websocket" },
          baseUrlOverride: emulator.url
        })
      )
    }

    const handled: Array<string> = []
    const dataPump = create("your-client-secret", handled)
    await dataPump.start()
    await eventually(() => handled.length === ids.length, 5_000, "the events")
    expect(handled).toEqual(ids)
    const probes = await ingestUntilDelivered(() => ingestLive(emulator), handled)
    expect(handled).toEqual([...ids, ...probes])
    await dataPump.stop()

    const rejected = create("wrong-secret", [])
    const failure = await within(
      rejected.start().then(
        () => undefined,
        (error: unknown) => error
      ),
      10_000,
      "start() to reject"
    )
    expect(failure).toBeInstanceOf(Error)
    expect(String((failure as Error).message)).toMatch(/401|auth/i)
    expect(String((failure as Error).message)).not.toContain("revoked")
    expect(rejected.isRunning).toBe(false)
  })
})

describe("README: options table", () => {
  it("noTranslation: true takes the data core, flow type and event types as ids", async () => {
    const hour = hourStart(1)
    const ids = [...seedMinutes(emulator, hour, [1, 2]), ...seedMinutes(emulator, hour, [3], PAID)]
    const resolved = emulator.ids(source.tenant, source.dataCore, source.flowType)
    const handled = await idsReadInFirstHalfHour(hour, {
      auth: { apiKey: DEFAULT_API_KEY },
      dataSource: {
        tenant: source.tenant,
        dataCore: resolved.dataCoreId,
        flowType: resolved.flowTypeId,
        eventTypes: [resolved.eventTypeIds[CREATED] as string, resolved.eventTypeIds[PAID] as string]
      },
      noTranslation: true
    })
    expect(handled).toEqual(ids)
    // Without translation no data core, flow type or event type lookup is made.
    expect(emulator.stats.byPath["/api/v1/event-types"] ?? 0).toBe(0)
  })

  it("achknowledgeTimeoutMs: a pull-mode reservation that is never acknowledged is handed out again", async () => {
    const hour = hourStart(1)
    const ids = seedMinutes(emulator, hour, [1, 2])
    const dataPump = pumps.track(
      FlowcoreDataPump.create({
        auth: { apiKey: DEFAULT_API_KEY },
        dataSource: source,
        stateManager: { getState: () => ({ timeBucket: TimeBucket.fromDate(hour) }), setState: () => {} },
        achknowledgeTimeoutMs: 200,
        baseUrlOverride: emulator.url
      })
    )
    await dataPump.start()
    const first = await dataPump.reserve(10)
    expect(idsOf(first)).toEqual(ids)
    const redelivered = new Set<string>()
    while (redelivered.size < ids.length) {
      const again = await within(dataPump.reserve(10), 3_000, "the expired reservation to come back")
      for (const id of idsOf(again)) redelivered.add(id)
      await dataPump.acknowledge(idsOf(again))
    }
    expect([...redelivered].sort()).toEqual([...ids].sort())
    await eventually(
      async () => (await dataPump.snapshot())?.counters.acknowledged === ids.length,
      2_000,
      "the acknowledgements"
    )
  })
})

describe("README: options are validated", () => {
  const valid = () => ({
    auth: { apiKey: DEFAULT_API_KEY },
    dataSource: source,
    stateManager: { getState: () => null, setState: () => {} }
  })
  const invalid = (options: unknown): InvalidOptions => {
    try {
      FlowcoreDataPump.create(options as Parameters<typeof FlowcoreDataPump.create>[0])
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidOptions)
      return error as InvalidOptions
    }
    throw new Error("create() accepted invalid options")
  }

  it('bufferSize "x" names the option, the value and what is allowed', () => {
    const error = invalid({ ...valid(), bufferSize: "x" })
    expect(error.field).toBe("bufferSize")
    expect(error.received).toContain('"x"')
    expect(error.allowed).toMatch(/integer/)
    expect(error.message).toContain("bufferSize")
  })

  it('notifier { type: "kafka" } lists the notifiers there are', () => {
    const error = invalid({ ...valid(), notifier: { type: "kafka" } })
    expect(error.field).toMatch(/^notifier/)
    expect(error.message).toContain("kafka")
    for (const type of ["websocket", "nats", "poller"]) expect(error.allowed).toContain(type)
  })

  it('an API key "abc" is rejected without echoing the key', () => {
    const error = invalid({ ...valid(), auth: { apiKey: "abc" } })
    expect(error.field).toBe("auth.apiKey")
    expect(error.allowed).toContain("fc_")
    expect(`${error.message} ${error.received} ${JSON.stringify(error)}`).not.toContain("abc")
  })

  it("a wrong type, a failed check and a missing key of one option all say what the option allows", () => {
    const cases: ReadonlyArray<readonly [Record<string, unknown>, string, string, string]> = [
      [{ bufferSize: 1.5 }, "bufferSize", "1.5", "an integer >= 1"],
      [{ bufferSize: 0 }, "bufferSize", "0", "an integer >= 1"],
      [{ maxRedeliveryCount: "3" }, "maxRedeliveryCount", '"3"', "an integer >= 0, or -1 to retry forever"],
      [{ processor: { concurrency: "5", handler: () => {} } }, "processor.concurrency", '"5"', "an integer >= 1"],
      [{ notifier: { type: "nats" } }, "notifier.servers", "undefined", "a NATS server URL or a non-empty array"],
      [{ notifier: { type: "poller", intervalMs: 5 } }, "notifier.intervalMs", "5", "a number of milliseconds >= 100"],
      [{ logger: { info: () => {}, warn: () => {}, error: () => {} } }, "logger.debug", "undefined", "a function"],
      [{ dataSource: { ...source, eventTypes: [] } }, "dataSource.eventTypes", "[]", "a non-empty array"],
      [{ dataSource: { ...source, eventTypes: [""] } }, "dataSource.eventTypes.0", '""', "a non-empty string"],
      [{ auth: { apiKey: 12345 } }, "auth.apiKey", "a number", "a non-empty string"],
      // The token itself where the function belongs: named as the bearer option, and never echoed.
      [{ auth: { getBearerToken: "eyJhbGciOi.token" } }, "auth.getBearerToken", "a string", "a function"],
      [{ includeSensitiveData: "yes" }, "includeSensitiveData", '"yes"', "true or false"]
    ]
    for (const [options, field, received, allowed] of cases) {
      const error = invalid({ ...valid(), ...options })
      expect({ field: error.field, received: error.received }).toEqual({ field, received })
      expect(error.allowed).toContain(allowed)
    }
  })

  it("a valid configuration creates a stopped pump", async () => {
    const pump = pumps.track(FlowcoreDataPump.create({ ...valid(), baseUrlOverride: emulator.url }))
    expect(pump.isRunning).toBe(false)
  })
})
