/**
 * A Map for keys that keep coming and going (held events by id, parts and pages kept for a while), which replaces its
 * underlying Map by a copy of itself every so many insertions.
 *
 * Why: V8 grows or compacts a Map by allocating a new table that the old table keeps pointing to. Once one table of
 * the chain is in the old generation (every mark-compact promotes the live one), that dead table keeps its young
 * successor, and every entry that successor holds, alive through each scavenge, which then promotes them; the chain
 * grows until the next mark-compact. With one entry in and one out per event, that kept every event handled since
 * the last mark-compact: ~15–20 MB promoted per scavenge and five times the scavenge pauses (bench/README.md). A
 * fresh Map has no link to the old chain, so what a promoted table can keep is bounded by one Map's insertions.
 */
export class ChurnMap<K, V> {
  private map = new Map<K, V>()
  private inserted = 0

  get size(): number {
    return this.map.size
  }
  get(key: K): V | undefined {
    return this.map.get(key)
  }
  has(key: K): boolean {
    return this.map.has(key)
  }
  set(key: K, value: V): void {
    // Copying costs one insertion per entry kept, at most a quarter of an insertion per insertion made.
    if (++this.inserted > Math.max(64, 4 * this.map.size)) {
      this.map = new Map(this.map)
      this.inserted = 0
    }
    this.map.set(key, value)
  }
  delete(key: K): boolean {
    return this.map.delete(key)
  }
  clear(): void {
    this.map = new Map()
    this.inserted = 0
  }
  /** The key inserted first (a Map keeps insertion order, and so does its copy). */
  oldestKey(): K | undefined {
    return this.map.keys().next().value
  }
  values(): IterableIterator<V> {
    return this.map.values()
  }
}
