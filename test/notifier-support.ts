/**
 * Helpers shared by the notifier tests (unit tests against scripted peers, integration tests against the emulator
 * and a real NATS server).
 */
import { Effect, Schedule, type Scope } from "effect"
import type { Notifier, NotifierStatus } from "../src/services/Notifier.ts"

/** Between two waits the engine fetches; tests separate their waits the same way. */
export const engineFetch = Effect.sleep("10 millis")

/** Polls a condition every 20 ms; fails the test (instead of hanging it) when it does not become true. */
export const eventually = (label: string, check: () => boolean, times = 250) =>
  Effect.suspend(() => (check() ? Effect.void : Effect.fail(`not yet: ${label}`))).pipe(
    Effect.retry({ times, schedule: Schedule.spaced("20 millis") }),
    Effect.catch(() => Effect.die(new Error(`timed out waiting for: ${label}`)))
  )

/** Polls the notifier's status until it satisfies `check`, like `eventually`. */
export const statusUntil = (
  notifier: Notifier["Service"],
  label: string,
  check: (status: NotifierStatus) => boolean
): Effect.Effect<void> =>
  notifier.status.pipe(
    Effect.flatMap((status) => (check(status) ? Effect.void : Effect.fail(`not yet: ${label}`))),
    Effect.retry({ times: 250, schedule: Schedule.spaced("20 millis") }),
    Effect.catch(() => Effect.die(new Error(`timed out waiting for: ${label}`)))
  )

const TRACKED = new Set(["TCPSocketWrap", "TCPServerWrap", "Timeout"])
const trackedHandles = () => process.getActiveResourcesInfo().filter((name) => TRACKED.has(name)).length

/** Runs a test body in its own scope and asserts that no socket, server or timer outlives it. */
export const leakChecked = <A, E>(body: Effect.Effect<A, E, Scope.Scope>) =>
  Effect.gen(function* () {
    const before = trackedHandles()
    const result = yield* Effect.scoped(body)
    yield* eventually("all sockets, servers and timers are released", () => trackedHandles() <= before)
    return result
  })
