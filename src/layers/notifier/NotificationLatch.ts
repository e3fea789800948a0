/**
 * The latch every notifier shares: a notification that arrives while nobody waits is remembered, so the next `wait`
 * returns at once; one that arrives during a wait wakes every waiter. Callbacks from sockets call `notifyUnsafe`
 * synchronously, so no notification can slip between a wait returning and the next one starting.
 */
import { Deferred, type Duration, Effect } from "effect"
import type { WakeReason } from "../../services/Notifier.ts"

export interface NotificationLatch {
  readonly notifyUnsafe: () => void
  readonly notify: Effect.Effect<void>
  readonly wait: (timeout: Duration.Input) => Effect.Effect<WakeReason>
}

export const makeNotificationLatch = (): NotificationLatch => {
  let pending = false
  const waiters = new Set<Deferred.Deferred<void>>()

  const notifyUnsafe = () => {
    if (waiters.size === 0) {
      pending = true
      return
    }
    // Copy first: a woken fiber may start its next wait synchronously, and that wait needs a notification of its own.
    const woken = [...waiters]
    waiters.clear()
    for (const waiter of woken) Deferred.doneUnsafe(waiter, Effect.void)
  }

  const wait = (timeout: Duration.Input): Effect.Effect<WakeReason> =>
    Effect.suspend(() => {
      if (pending) {
        pending = false
        return Effect.succeed<WakeReason>("notified")
      }
      const waiter = Deferred.makeUnsafe<void>()
      waiters.add(waiter)
      return Deferred.await(waiter).pipe(
        Effect.as<WakeReason>("notified"),
        Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.succeed<WakeReason>("timeout") }),
        Effect.ensuring(Effect.sync(() => waiters.delete(waiter)))
      )
    })

  return { notifyUnsafe, notify: Effect.sync(notifyUnsafe), wait }
}
