import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { decodedPage, type SplitPage, splitPage } from "../../src/layers/dataSource/PageSplit.ts"

const event = (n: number, payload: unknown = { n }) => ({
  eventId: `0b7c1e80-1a2b-11ef-8000-${String(n).padStart(12, "0")}`,
  timeBucket: "20240315140000",
  eventType: "user.created.0",
  payload
})

/** Every event of `page`, taken in parts of the sizes given (cycled), with the index each part ended at. */
const takeAll = (page: SplitPage, sizes: ReadonlyArray<number>) => {
  const events: Array<unknown> = []
  const ends: Array<number> = []
  let at = 0
  for (let i = 0; page.remaining(at) > 0; i++) {
    const part = page.take(at, sizes[i % sizes.length] as number)
    expect(part.events.length).toBeGreaterThan(0)
    expect(part.events.length).toBeLessThanOrEqual(sizes[i % sizes.length] as number)
    events.push(...part.events)
    at = part.next
    ends.push(at)
  }
  return { events, ends }
}

describe("PageSplit", () => {
  it("hands out a page's events in parts equal to parsing it whole, and the rest of the page without them", () => {
    const body = { events: Array.from({ length: 10 }, (_, n) => event(n)), nextCursor: "c2" }
    const page = splitPage(JSON.stringify(body))
    expect(page).toBeDefined()
    if (page === undefined) return
    expect(page.rest()).toEqual({ events: [], nextCursor: "c2" })
    expect(page.remaining(0)).toBe(10)
    const first = page.take(0, 3)
    expect(first.events).toEqual(body.events.slice(0, 3))
    expect(first.next).toBe(3)
    expect(first.length).toBe(JSON.stringify(body.events.slice(0, 3)).length - 2)
    expect(takeAll(page, [4]).events).toEqual(body.events)
    expect(page.take(10, 5)).toEqual({ events: [], next: 10, length: 0 })
  })

  it("finds the events wherever they are in the object, pretty-printed or not, and an empty page", () => {
    const body = { nextCursor: "x", other: { events: [1, 2], text: 'a "quoted" ] } string \\' }, events: [event(1)] }
    for (const text of [
      JSON.stringify(body),
      JSON.stringify(body, null, 2),
      `  ${JSON.stringify(body, null, "\t")}\n`
    ]) {
      const page = splitPage(text)
      expect(page?.rest()).toEqual({ ...body, events: [] })
      expect(page === undefined ? [] : takeAll(page, [1]).events).toEqual(body.events)
    }
    const empty = splitPage('{"events":[]}')
    expect(empty?.remaining(0)).toBe(0)
    expect(empty?.rest()).toEqual({ events: [] })
  })

  it("an event that holds events in its payload (written like events) still comes out whole, in every part size", () => {
    const nested = [event(3), event(4), event(5)]
    const body = {
      events: [
        event(1),
        event(2, { copies: nested }),
        event(6),
        event(7, { copies: [event(8)], tail: "]}" }),
        event(9)
      ],
      nextCursor: "c"
    }
    const text = JSON.stringify(body)
    for (const size of [1, 2, 3, 4, 5, 10]) {
      const page = splitPage(text)
      expect(page === undefined ? [] : takeAll(page, [size]).events).toEqual(body.events)
    }
    // Parts of 1: each ends at the next event, whatever the guesses were.
    const page = splitPage(text)
    expect(page === undefined ? [] : takeAll(page, [1]).ends).toEqual([1, 2, 3, 4, 5])
  })

  it("a later member written like events (where a guess runs past the array) is found out, and the rest is corrected", () => {
    for (const body of [
      { events: [event(1), event(2)], other: [event(3), event(4)], nextCursor: "c" },
      { events: [event(1), event(2)], nextCursor: "c", other: [event(3), event(4)] }
    ]) {
      for (const size of [1, 2, 5]) {
        const page = splitPage(JSON.stringify(body))
        expect(page === undefined ? [] : takeAll(page, [size]).events).toEqual(body.events)
        // Once every part is out, the rest of the page is exact (its nextCursor included).
        expect(page?.rest()).toEqual({ ...body, events: [] })
      }
    }
  })

  it("a body it cannot split is undefined (the caller decodes it whole), and a broken event fails only its part", () => {
    for (const text of [
      "",
      "[]",
      '{"events": [',
      '{"events": {}}',
      '{"nextCursor": "c"}',
      '{"events": [], "events": []}',
      '{"events": []} trailing',
      '{"events": ["unterminated]}',
      '{"a" 1, "events": []}'
    ]) {
      expect(splitPage(text), text).toBeUndefined()
    }
    const good = JSON.stringify(event(1))
    const text = `{"events":[${good},${good},{"eventId":"x", oops},${good}],"nextCursor":"c"}`
    const page = splitPage(text)
    expect(page).toBeDefined()
    if (page === undefined) return
    expect(page.take(0, 2).events).toHaveLength(2)
    expect(() => page.take(2, 2)).toThrow(SyntaxError)
  })

  it("decodedPage hands out an already decoded page in the same parts", () => {
    const events = [1, 2, 3, 4, 5]
    const page = decodedPage({ nextCursor: "c" }, events)
    expect(page.rest()).toEqual({ nextCursor: "c" })
    expect(takeAll(page, [2]).events).toEqual(events)
    expect(takeAll(page, [2]).ends).toEqual([2, 4, 5])
  })

  it("property: for any payloads (events nested in them included), the parts are the parsed events", () => {
    const payload = fc.oneof(
      fc.jsonValue(),
      fc
        .array(
          fc.integer({ min: 0, max: 99 }).map((n) => event(n, { s: "x" })),
          { maxLength: 3 }
        )
        .map((copies) => ({
          copies
        }))
    )
    fc.assert(
      fc.property(
        fc.array(payload, { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(undefined, 2),
        fc.boolean(),
        (payloads, sizes, space, trailing) => {
          const events = payloads.map((p, n) => event(n, p))
          const body = trailing
            ? { events, nextCursor: "next", also: [event(90), event(91)] }
            : { events, nextCursor: "next" }
          const page = splitPage(JSON.stringify(body, null, space))
          expect(page).toBeDefined()
          if (page === undefined) return
          expect(takeAll(page, sizes).events).toEqual(JSON.parse(JSON.stringify(body)).events)
          expect(page.rest()).toEqual(JSON.parse(JSON.stringify({ ...body, events: [] })))
        }
      ),
      { numRuns: 300 }
    )
  })
})
