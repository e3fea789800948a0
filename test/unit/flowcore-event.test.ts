import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { FlowcoreEventFields, isFlowcoreEvent, validateEvents } from "../../src/domain/FlowcoreEvent.ts"
import { TimeUuid } from "../../src/domain/TimeUuid.ts"

const valid = {
  eventId: TimeUuid.fromDate(new Date("2024-03-15T14:05:00Z")).toString(),
  timeBucket: "20240315140000",
  tenant: "acme",
  dataCoreId: "dc",
  flowType: "orders.0",
  eventType: "order.created.0",
  metadata: { a: 1 },
  payload: { orderId: 7 },
  validTime: "2024-03-15T14:05:00.000Z"
}

const variants: Record<string, unknown> = {
  valid,
  "extra fields": { ...valid, extra: { x: 1 } },
  "uppercase id": { ...valid, eventId: valid.eventId.toUpperCase() },
  "v4 id": { ...valid, eventId: "9b2f7c0e-3c1a-4f7e-9a55-6b8e2d9c1f00" },
  "short id": { ...valid, eventId: "abc" },
  "variant c": { ...valid, eventId: `${valid.eventId.slice(0, 19)}c${valid.eventId.slice(20)}` },
  "variant B": { ...valid, eventId: `${valid.eventId.slice(0, 19)}B${valid.eventId.slice(20)}` },
  "no dash": { ...valid, eventId: `${valid.eventId.slice(0, 8)}0${valid.eventId.slice(9)}` },
  "non-hex": { ...valid, eventId: `g${valid.eventId.slice(1)}` },
  "non-ascii": { ...valid, eventId: `é${valid.eventId.slice(1)}` },
  "bucket with a letter": { ...valid, timeBucket: "2024031514000a" },
  "bucket of 13 digits": { ...valid, timeBucket: "2024031514000" },
  "payload array": { ...valid, payload: [1, 2] },
  "payload null": { ...valid, payload: null },
  "payload string": { ...valid, payload: "x" },
  "metadata null": { ...valid, metadata: null },
  "metadata array": { ...valid, metadata: [] },
  "tenant number": { ...valid, tenant: 1 },
  "missing validTime": { ...valid, validTime: undefined },
  "not an object": "event",
  null: null,
  array: [valid]
}

describe("FlowcoreEvent", () => {
  it("the hot-path guard agrees with the Schema on every variant", () => {
    const isBySchema = Schema.is(FlowcoreEventFields)
    for (const [name, value] of Object.entries(variants)) {
      expect([name, isFlowcoreEvent(value)]).toEqual([name, isBySchema(value)])
    }
  })

  it("agrees with the Schema on every single-character change of a valid id and bucket", () => {
    const isBySchema = Schema.is(FlowcoreEventFields)
    const replacements = ["0", "1", "8", "9", "a", "b", "c", "f", "A", "B", "F", "g", "-", " ", "é", "/", ":"]
    for (const field of ["eventId", "timeBucket"] as const) {
      const original = valid[field]
      for (let i = 0; i < original.length; i++) {
        for (const replacement of replacements) {
          const value = { ...valid, [field]: `${original.slice(0, i)}${replacement}${original.slice(i + 1)}` }
          expect([field, i, replacement, isFlowcoreEvent(value)]).toEqual([field, i, replacement, isBySchema(value)])
        }
      }
    }
  })

  it.effect("validateEvents passes valid events through untouched (unknown fields kept)", () =>
    Effect.gen(function* () {
      const raw = [{ ...valid, serverField: 42 }]
      const events = yield* validateEvents("EventList", raw)
      expect(events).toBe(raw)
      expect(events[0]?.serverField).toBe(42)
    })
  )

  it.effect("an invalid event fails with a Decode error naming its index and the problem", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(validateEvents("EventList", [valid, { ...valid, payload: [1] }]))
      expect(error.kind).toBe("Decode")
      expect(error.message).toContain("event #1")
    })
  )
})
