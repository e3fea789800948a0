import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Logger, Schedule } from "effect"
import { makeConnectionMonitor, reconnectBackoff } from "../../src/layers/notifier/ConnectionMonitor.ts"
import { noopRecorder } from "../../src/services/PumpMetrics.ts"

describe("reconnectBackoff", () => {
  it.effect("grows exponentially with jitter and never exceeds the cap, even after jitter", () =>
    Effect.gen(function* () {
      const step = yield* Schedule.toStep(reconnectBackoff(500, 30_000))
      const delays: Array<number> = []
      for (let attempt = 0; attempt < 40; attempt++) {
        const [, delay] = yield* step(0, undefined)
        delays.push(Duration.toMillis(delay))
      }
      expect(delays[0]).toBeGreaterThanOrEqual(400)
      expect(delays[0]).toBeLessThanOrEqual(600)
      expect(delays[3]).toBeGreaterThanOrEqual(0.8 * 4_000)
      expect(delays[3]).toBeLessThanOrEqual(1.2 * 4_000)
      expect(Math.max(...delays)).toBeLessThanOrEqual(30_000)
      expect(delays.slice(10).every((delay) => delay === 30_000)).toBe(true)
    })
  )
})

describe("ConnectionMonitor", () => {
  it.effect("one Warning per outage, one Info per recovery, reconnects counted only after a first connect", () => {
    const logs: Array<string> = []
    let metric = 0
    const monitor = makeConnectionMonitor("test", { ...noopRecorder, notifierReconnected: () => metric++ })
    return Effect.gen(function* () {
      yield* monitor.disconnected("refused")
      yield* monitor.disconnected("refused again")
      yield* monitor.disconnected("and again")
      expect(logs).toEqual(["Warn"])
      expect(yield* monitor.status).toMatchObject({ connected: false, reconnects: 0, lastError: "and again" })

      yield* monitor.connected
      expect(logs).toEqual(["Warn", "Info"])
      expect(metric).toBe(0)
      expect(yield* monitor.status).toMatchObject({ connected: true, reconnects: 0 })

      yield* monitor.disconnected("dropped")
      yield* monitor.disconnected("refused")
      yield* monitor.connected
      expect(logs).toEqual(["Warn", "Info", "Warn", "Info"])
      expect(metric).toBe(1)
      const status = yield* monitor.status
      expect(status).toMatchObject({ notifier: "test", connected: true, reconnects: 1, lastError: "refused" })
      expect(status.lastConnectedAt).toBeTypeOf("number")
    }).pipe(
      Effect.provide(
        Logger.layer([
          Logger.make(({ logLevel }) => {
            if (logLevel !== "Debug") logs.push(logLevel)
          })
        ])
      )
    )
  })

  it.effect("a clean first connect is not a recovery and not a reconnect", () => {
    const logs: Array<string> = []
    let metric = 0
    const monitor = makeConnectionMonitor("test", { ...noopRecorder, notifierReconnected: () => metric++ })
    return Effect.gen(function* () {
      yield* monitor.connected
      expect(logs).toEqual([])
      expect(metric).toBe(0)
      monitor.notifyUnsafe()
      expect(yield* monitor.wait("1 second")).toBe("notified")
      expect((yield* monitor.status).lastNotificationAt).toBeTypeOf("number")
    }).pipe(
      Effect.provide(
        Logger.layer([
          Logger.make(({ logLevel }) => {
            if (logLevel !== "Debug") logs.push(logLevel)
          })
        ])
      )
    )
  })
})
