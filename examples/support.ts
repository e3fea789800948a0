/**
 * The few helpers every example shares: the `--duration` flag, the flow type the examples read, and seeding an
 * in-process emulator with history. Everything else lives in the example itself, so each one reads top to bottom.
 */
import { parseArgs } from "node:util"
import type { Emulator } from "../src/emulator/index.ts"

export const HOUR_MS = 3_600_000

/** The emulator's default API key (`fc_<keyId>_<secret>`); every example authenticates with it. */
export const API_KEY = "fc_emulator_secret"

export const source = {
  tenant: "acme",
  dataCore: "shop",
  flowType: "orders.0",
  eventTypes: ["order.created.0", "order.paid.0", "order.shipped.0"]
} as const

/** A positive number from a flag; anything else exits with a message naming the flag and what it accepts. */
export const positiveNumber = (flag: string, value: string): number => {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${flag} must be a positive number, got ${JSON.stringify(value)}`)
    process.exit(2)
  }
  return n
}

/** Reads `--duration <seconds>`: how long to run, `fallbackSeconds` when it is not given. */
export const exampleArgs = (fallbackSeconds: number): { readonly durationSeconds: number } => {
  const { values } = parseArgs({ options: { duration: { type: "string" } }, strict: true })
  return {
    durationSeconds: values.duration === undefined ? fallbackSeconds : positiveNumber("duration", values.duration)
  }
}

/**
 * Ingests `count` events spread evenly over the `hours` hours before now (the newest a minute ago), cycling through
 * the event types with an `orderId` and `amount` payload. Returns their ids in time order.
 */
export const seedHistory = (emulator: Emulator, count: number, hours: number): ReadonlyArray<string> => {
  const end = Date.now() - 60_000
  const start = end - hours * HOUR_MS
  return emulator.ingestMany(
    Array.from({ length: count }, (_, i) => ({
      tenant: source.tenant,
      dataCore: source.dataCore,
      flowType: source.flowType,
      eventType: source.eventTypes[i % source.eventTypes.length] as string,
      payload: { orderId: `order-${Math.floor(i / source.eventTypes.length)}`, amount: (i % 97) + 1 },
      eventTime: new Date(start + Math.floor((i * (end - start)) / count))
    }))
  )
}

/** One live event, stamped with the ingest time. */
export const ingestLive = (emulator: Emulator, n: number): string =>
  emulator.ingest({
    tenant: source.tenant,
    dataCore: source.dataCore,
    flowType: source.flowType,
    eventType: source.eventTypes[n % source.eventTypes.length] as string,
    payload: { orderId: `live-${n}`, amount: n, sentAt: Date.now() }
  })

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
