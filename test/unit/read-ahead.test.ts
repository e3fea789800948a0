import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope } from "effect"
import { cursorHint, makeReadAhead } from "../../src/layers/dataSource/ReadAhead.ts"

describe("cursorHint", () => {
  it("reads nextCursor when it is the last or the first member of the page object", () => {
    expect(cursorHint('{"events":[{"eventId":"a"}],"nextCursor":"c2"}')).toBe("c2")
    expect(cursorHint('{"nextCursor":"c2","events":[{"eventId":"a"}]}')).toBe("c2")
    expect(cursorHint('{\n  "events": [],\n  "nextCursor" : "c2"\n}\n')).toBe("c2")
    // JSON escapes are decoded, as JSON.parse would.
    expect(cursorHint('{"events":[],"nextCursor":"c\\"2\\u0041"}')).toBe('c"2A')
    // Only the end of a large body is looked at.
    const events = Array.from({ length: 2000 }, (_, i) => ({ eventId: String(i), payload: { text: "x".repeat(20) } }))
    expect(cursorHint(JSON.stringify({ events, nextCursor: "far" }))).toBe("far")
  })

  it("gives nothing when the page has no usable cursor or it could be something else's", () => {
    expect(cursorHint('{"events":[]}')).toBeUndefined()
    expect(cursorHint('{"events":[],"nextCursor":null}')).toBeUndefined()
    expect(cursorHint('{"events":[],"nextCursor":""}')).toBeUndefined()
    expect(cursorHint('{"events":[],"nextCursor":7}')).toBeUndefined()
    // A member of a nested object (here an event payload) is not the page's cursor.
    expect(cursorHint('{"events":[{"payload":{"nextCursor":"no"}}]}')).toBeUndefined()
    expect(cursorHint('{"events":[],"meta":{"nextCursor":"no"}}')).toBeUndefined()
    expect(cursorHint('{"events":[], "nextCursor": "unterminated}')).toBeUndefined()
    expect(cursorHint("")).toBeUndefined()
  })
})

/** A read-ahead store tied to the test's scope. */
const readAheadInScope = Effect.map(Effect.scope, (scope) => makeReadAhead<string, string>(scope))

describe("makeReadAhead", () => {
  it.effect("serves a started request to a take for at least its page size, once", () =>
    Effect.gen(function* () {
      const readAhead = yield* readAheadInScope
      let started = 0
      yield* readAhead.start(
        "page-2",
        10,
        Effect.sync(() => {
          started++
          return "body-2"
        })
      )
      // Started at once, not when it is taken.
      expect(started).toBe(1)
      expect(yield* readAhead.take("page-2", 10)).toBe("body-2")
      expect(yield* readAhead.take("page-2", 10)).toBeUndefined()
      yield* readAhead.start("page-3", 10, Effect.succeed("body-3"))
      expect(yield* readAhead.take("page-3", 25)).toBe("body-3")
      expect(yield* readAhead.take("page-4", 10)).toBeUndefined()
    }).pipe(Effect.scoped)
  )

  it.effect("a take for fewer events, a failed request or a drop makes the caller fetch it itself", () =>
    Effect.gen(function* () {
      const readAhead = yield* readAheadInScope
      yield* readAhead.start("too-big", 10, Effect.never)
      expect(yield* readAhead.take("too-big", 9)).toBeUndefined()
      yield* readAhead.start("failing", 10, Effect.fail("HTTP 500"))
      expect(yield* readAhead.take("failing", 10)).toBeUndefined()
      yield* readAhead.start("dropped", 10, Effect.succeed("body"))
      readAhead.drop("dropped")
      expect(yield* readAhead.take("dropped", 10)).toBeUndefined()
    }).pipe(Effect.scoped)
  )

  it.effect("tells which requests it keeps, how many, and the result of one that is in, without using it up", () =>
    Effect.gen(function* () {
      const readAhead = yield* readAheadInScope
      const gate = yield* Deferred.make<string>()
      yield* readAhead.start("pending", 10, Deferred.await(gate))
      yield* readAhead.start("failed", 10, Effect.fail("HTTP 500"))
      yield* readAhead.start("in", 10, Effect.succeed("body-in"))
      expect([readAhead.has("pending"), readAhead.has("in"), readAhead.has("other"), readAhead.size()]).toEqual([
        true,
        true,
        false,
        3
      ])
      expect([readAhead.arrived("pending"), readAhead.arrived("failed"), readAhead.arrived("in")]).toEqual([
        undefined,
        undefined,
        "body-in"
      ])
      expect(["pending", "failed", "in", "other"].map(readAhead.onItsWay)).toEqual([true, false, false, false])
      // Still kept: a look does not use it up.
      expect(yield* readAhead.take("in", 10)).toBe("body-in")
      yield* Deferred.succeed(gate, "body-pending")
      expect(yield* readAhead.take("pending", 10)).toBe("body-pending")
      expect(readAhead.size()).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.effect("keeps at most `capacity` requests, interrupting the oldest, and the rest when its scope closes", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const readAhead = makeReadAhead<string, never>(scope, 2)
      const interrupted: Array<string> = []
      const pending = (key: string) =>
        readAhead.start(key, 1, Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted.push(key)))))
      yield* pending("a")
      yield* pending("b")
      yield* pending("c")
      expect(interrupted).toEqual(["a"])
      yield* Scope.close(scope, Exit.void)
      expect(interrupted.sort()).toEqual(["a", "b", "c"])
    })
  )
})
