/**
 * Read-ahead of event pages: as soon as a page's body is in, its `nextCursor` is read from the raw JSON and the next
 * page is requested, so that the server works on it while this one is parsed, validated and handed over (a plain
 * cursor loop leaves the server idle for all of that). The cursor read from the raw text is only a hint: the caller
 * drops the read-ahead unless the decoded page has the same `nextCursor`. Bodies read ahead are kept as text.
 */
import { Effect, Exit, Fiber, type Scope } from "effect"
import { ChurnMap } from "../../domain/ChurnMap.ts"

// The member must be the last (or first) of the top-level object: `"...": "..."}` closes it, nothing nested can.
const LAST_MEMBER = /"nextCursor"\s*:\s*("(?:[^"\\]|\\.)*")\s*\}\s*$/
const FIRST_MEMBER = /^\s*\{\s*"nextCursor"\s*:\s*("(?:[^"\\]|\\.)*")/
const WINDOW = 1024

/** The non-empty string `nextCursor` of a raw page body, if it is the first or last member of the object. */
export const cursorHint = (text: string): string | undefined => {
  const match =
    LAST_MEMBER.exec(text.length > WINDOW ? text.slice(-WINDOW) : text) ?? FIRST_MEMBER.exec(text.slice(0, WINDOW))
  if (match?.[1] === undefined) return undefined
  try {
    const cursor: unknown = JSON.parse(match[1])
    return typeof cursor === "string" && cursor !== "" ? cursor : undefined
  } catch {
    return undefined
  }
}

interface Pending<A, E> {
  readonly pageSize: number
  readonly fiber: Fiber.Fiber<A, E>
}

/**
 * Requests started ahead, by the identity of the request they stand for (everything but the page size). At most
 * `capacity` are kept: a read-ahead nobody asks for (the caller stopped, or moved elsewhere) is interrupted when a
 * newer one needs its place, or when `scope` closes.
 */
export const makeReadAhead = <A, E>(scope: Scope.Scope, capacity = 4) => {
  const pending = new ChurnMap<string, Pending<A, E>>()

  const drop = (key: string): void => {
    const entry = pending.get(key)
    if (entry === undefined) return
    pending.delete(key)
    entry.fiber.interruptUnsafe()
  }

  /** Starts `request` now (it is written before this returns), as the page `key` of at most `pageSize` events. */
  const start = (key: string, pageSize: number, request: Effect.Effect<A, E>): Effect.Effect<void> =>
    Effect.suspend(() => {
      drop(key)
      if (pending.size >= capacity) {
        const oldest = pending.oldestKey()
        if (oldest !== undefined) drop(oldest)
      }
      return Effect.map(Effect.forkIn(request, scope, { startImmediately: true }), (fiber) => {
        pending.set(key, { pageSize, fiber })
      })
    })

  /**
   * The result of the read-ahead for `key`, if one was started for at most `pageSize` events and succeeded;
   * undefined otherwise (the caller then makes the request itself). Either way the read-ahead is used up.
   */
  const take = (key: string, pageSize: number): Effect.Effect<A | undefined> =>
    Effect.suspend(() => {
      const entry = pending.get(key)
      if (entry === undefined) return Effect.succeed(undefined)
      pending.delete(key)
      if (entry.pageSize > pageSize) {
        entry.fiber.interruptUnsafe()
        return Effect.succeed(undefined)
      }
      return Fiber.await(entry.fiber).pipe(
        Effect.map((exit) => (Exit.isSuccess(exit) ? exit.value : undefined)),
        Effect.onInterrupt(() => Fiber.interrupt(entry.fiber))
      )
    })

  /** Whether a read-ahead for `key` is kept (in flight or arrived). */
  const has = (key: string): boolean => pending.has(key)
  /** How many read-aheads are kept. */
  const size = (): number => pending.size
  /** The result of the read-ahead for `key`, if it has arrived and succeeded (it stays kept). */
  const arrived = (key: string): A | undefined => {
    const exit = pending.get(key)?.fiber.pollUnsafe()
    return exit !== undefined && Exit.isSuccess(exit) ? exit.value : undefined
  }

  /** Whether the read-ahead for `key` (if any) is kept and still on its way (not yet in, nor failed). */
  const onItsWay = (key: string | undefined): boolean => {
    const entry = key === undefined ? undefined : pending.get(key)
    return entry !== undefined && entry.fiber.pollUnsafe() === undefined
  }

  return { start, take, drop, has, size, arrived, onItsWay }
}
