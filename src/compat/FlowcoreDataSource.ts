/**
 * The original `FlowcoreDataSource` API (`pump.dataSource`), as Promises over the DataSource service.
 */
import { Effect, type ManagedRuntime } from "effect"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import * as TimeBucket from "../domain/TimeBucket.ts"
import { DataSource, type EventPage } from "../services/DataSource.ts"
import type { FlowcoreDataPumpDataSource, FlowcoreDataPumpState } from "./options.ts"

export interface FlowcoreEventPage {
  readonly events: Array<FlowcoreEvent>
  readonly nextCursor?: string | undefined
}

export class FlowcoreDataSource {
  readonly #config: FlowcoreDataPumpDataSource
  readonly #runtime: () => ManagedRuntime.ManagedRuntime<DataSource, unknown>

  constructor(config: FlowcoreDataPumpDataSource, runtime: () => ManagedRuntime.ManagedRuntime<DataSource, unknown>) {
    this.#config = config
    this.#runtime = runtime
  }

  get tenant(): string {
    return this.#config.tenant
  }
  get dataCore(): string {
    return this.#config.dataCore
  }
  get flowType(): string {
    return this.#config.flowType
  }
  get eventTypes(): Array<string> {
    return [...this.#config.eventTypes]
  }

  #run<A>(f: (source: DataSource["Service"]) => Effect.Effect<A, unknown>): Promise<A> {
    return this.#runtime().runPromise(DataSource.use(f))
  }

  /** Every time bucket holding events of the configured types, ascending (always fetched fresh). */
  getTimeBuckets(): Promise<Array<string>> {
    return this.#run((source) => source.timeBuckets({ refresh: true })).then((buckets) => [...buckets])
  }

  /** The first bucket after `timeBucket`, or null. */
  async getNextTimeBucket(timeBucket: string): Promise<string | null> {
    const buckets = await this.#run((source) => source.timeBuckets())
    return buckets.find((bucket) => bucket > timeBucket) ?? null
  }

  /**
   * The bucket closest to `timeBucket`: forward, the first at or after it (else the last); with `before`, the last at
   * or before it (else the first). `undefined` when there are no buckets.
   */
  async getClosestTimeBucket(timeBucket: string, before = false): Promise<string | undefined> {
    const buckets = await this.#run((source) => source.timeBuckets())
    if (before) {
      const earlier = buckets.filter((bucket) => bucket <= timeBucket)
      return earlier[earlier.length - 1] ?? buckets[0]
    }
    return buckets.find((bucket) => bucket >= timeBucket) ?? buckets[buckets.length - 1]
  }

  /** One page of events after `state` (or continuing `cursor`), up to `toEventId`. */
  getEvents(
    state: FlowcoreDataPumpState,
    amount: number,
    toEventId?: string,
    cursor?: string,
    includeSensitiveData?: boolean
  ): Promise<FlowcoreEventPage> {
    return this.#run((source) =>
      Effect.flatMap(TimeBucket.parse(state.timeBucket), (timeBucket) =>
        source.fetchPage({
          timeBucket,
          afterEventId: state.eventId ?? undefined,
          cursor,
          toEventId,
          pageSize: amount,
          includeSensitiveData
        })
      )
    ).then((page: EventPage) => ({ events: [...page.events], nextCursor: page.nextCursor }))
  }

  getTenantId(): Promise<string> {
    return this.#run(
      (source) =>
        source.tenantId ?? Effect.die(new Error("This data source has no tenant ids (is it an in-memory source?)"))
    )
  }
  getDataCoreId(): Promise<string> {
    return this.#run((source) => Effect.map(source.resolve, (ids) => ids.dataCoreId))
  }
  getFlowTypeId(): Promise<string> {
    return this.#run((source) => Effect.map(source.resolve, (ids) => ids.flowTypeId))
  }
  getEventTypeIds(): Promise<Array<string>> {
    return this.#run((source) => Effect.map(source.resolve, (ids) => [...ids.eventTypeIds]))
  }
}
