/**
 * DataSource: reads the event store. The engine only ever talks to this interface; `FlowcoreHttp` speaks the real
 * protocol and `InMemory` is the deterministic test source.
 */
import { Context, type Effect } from "effect"
import type { DataSourceError } from "../domain/errors.ts"
import type { FlowcoreEvent } from "../domain/FlowcoreEvent.ts"
import type { TimeBucket } from "../domain/TimeBucket.ts"

/** The configured names and the ids they resolve to (with `noTranslation`, ids are the configured strings). */
export interface ResolvedSource {
  readonly tenant: string
  readonly dataCore: string
  readonly dataCoreId: string
  readonly flowType: string
  readonly flowTypeId: string
  /** Configured event types, in configuration order. */
  readonly eventTypes: ReadonlyArray<string>
  /** Their ids, in the same order. */
  readonly eventTypeIds: ReadonlyArray<string>
}

/** One page request within one bucket. `cursor` continues a previous page; otherwise `afterEventId` positions. */
export interface PageRequest {
  readonly timeBucket: TimeBucket
  readonly cursor?: string | undefined
  /** Exclusive lower bound (ignored when `cursor` is given). */
  readonly afterEventId?: string | undefined
  /** Inclusive upper bound. */
  readonly toEventId?: string | undefined
  readonly pageSize: number
  readonly includeSensitiveData?: boolean | undefined
  /**
   * Lets the source request the page after this one now (same bucket, this page's `nextCursor`) for at most this
   * many events, so that the server works on it while this page is decoded and handled (FlowcoreHttp also requests
   * the one after that once it is in: two pages ahead at most). Such a response is kept as it came, not decoded (its
   * events are not held until asked for), and serves the next call for it that asks for at least this many events;
   * the page returned says when one was started. Sources without a read-ahead ignore it.
   */
  readonly readAhead?: number | undefined
  /**
   * Lets the source read pages of up to this many events from the server, more than `pageSize`, and hand them out
   * in parts: it returns `pageSize` events at most and keeps the rest of the response as it came, not decoded, for the
   * calls that follow (the page returned then has a `nextCursor` of the source's own). A buffer smaller than a
   * server page then costs no more round trips than a large one. Sources without it ignore it.
   */
  readonly readPageSize?: number | undefined
  /**
   * The bucket the caller reads next once this one has nothing more, when that is known (the bucket's hour is over):
   * with `readAhead`, a page that ends this bucket lets the source request that bucket's first page ahead, as it does
   * the next page of a bucket. Sources without a read-ahead ignore it.
   */
  readonly followingBucket?: TimeBucket | undefined
}

export interface EventPage {
  /** Sorted ascending by event id time. */
  readonly events: ReadonlyArray<FlowcoreEvent>
  /** Present when the bucket has more events right now. */
  readonly nextCursor?: string | undefined
  /**
   * Bytes of the response body when known (for a part of a page, of its events' text), for throughput metrics without
   * re-serialising events.
   */
  readonly sizeBytes?: number | undefined
  /**
   * The page after this one (`nextCursor`) has been requested ahead, or is held already (the next part of a page
   * read whole), for at most this many events: the caller waits for room for it rather than asking for less.
   */
  readonly readAhead?: number | undefined
  /**
   * When this page was requested (epoch ms), given when that may be before the call that returned it (a read-ahead,
   * or a part of a page read whole): the page shows the bucket as it was then.
   */
  readonly requestedAt?: number | undefined
  /**
   * A response the source requested ahead (the next page) was still on its way when this page was handed out. The
   * caller lets pending I/O in once it has handed these events on, so that response is read while they are handled,
   * not only when the caller next waits for something.
   */
  readonly responsePending?: boolean | undefined
}

export class DataSource extends Context.Service<
  DataSource,
  {
    /** Resolves names to ids once and caches them. */
    readonly resolve: Effect.Effect<ResolvedSource, DataSourceError>
    /** All buckets holding events of the configured types, ascending. `refresh` bypasses any cache. */
    readonly timeBuckets: (options?: {
      readonly refresh?: boolean | undefined
    }) => Effect.Effect<ReadonlyArray<TimeBucket>, DataSourceError>
    readonly fetchPage: (request: PageRequest) => Effect.Effect<EventPage, DataSourceError>
    /** The tenant's id (a name-to-id lookup); sources that have no tenant ids leave it out. */
    readonly tenantId?: Effect.Effect<string, DataSourceError> | undefined
  }
>()("@flowcore/data-pump/DataSource") {}
