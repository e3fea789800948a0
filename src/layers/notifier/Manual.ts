/**
 * A notifier driven by the test itself: `ManualNotifier.notify` wakes a waiting pump, and waits otherwise run to their
 * timeout (so tests control live behaviour with the TestClock).
 */
import { Context, Effect, Layer } from "effect"
import { Notifier, type NotifierStatus } from "../../services/Notifier.ts"
import { makeNotificationLatch } from "./NotificationLatch.ts"

export class ManualNotifier extends Context.Service<
  ManualNotifier,
  {
    readonly notify: Effect.Effect<void>
    /** How many times the engine has waited so far. */
    readonly waits: Effect.Effect<number>
  }
>()("@flowcore/data-pump/ManualNotifier") {
  /** Provides both `Notifier` (for the pump) and `ManualNotifier` (for the test). */
  static readonly layer: Layer.Layer<Notifier | ManualNotifier> = Layer.effectContext(
    Effect.sync(() => {
      const latch = makeNotificationLatch()
      let waits = 0
      let lastNotificationAt: number | undefined
      const status: NotifierStatus = {
        notifier: "manual",
        connected: true,
        reconnects: 0,
        lastNotificationAt: undefined,
        lastConnectedAt: undefined,
        lastError: undefined
      }
      const notifier = Notifier.of({
        name: "manual",
        wait: (timeout) =>
          Effect.suspend(() => {
            waits++
            return latch.wait(timeout)
          }),
        status: Effect.sync(() => ({ ...status, lastNotificationAt }))
      })
      const manual = ManualNotifier.of({
        notify: Effect.sync(() => {
          lastNotificationAt = Date.now()
          latch.notifyUnsafe()
        }),
        waits: Effect.sync(() => waits)
      })
      return Context.make(Notifier, notifier).pipe(Context.add(ManualNotifier, manual))
    })
  )
}
