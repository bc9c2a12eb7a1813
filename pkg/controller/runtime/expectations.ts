/**
 * Controller expectations (client-go's ControllerExpectations): after a controller writes,
 * its informer lags. Until the writes it made for a key are seen in the cache, a reconcile
 * of that key would plan from stale state (and, say, create a second set of tasks), so it
 * waits. Expectations expire after `ttlMs` so a lost event can never wedge a key.
 */
export class Expectations {
  private readonly pending = new Map<string, { names: Set<string>; minRv: number; at: number }>();
  constructor(private readonly ttlMs = 30_000) {}

  /** The key's writes: names that must appear (or change) in the cache, and the object version it must reach. */
  expect(key: string, names: Iterable<string>, minRv = 0): void {
    const e = this.pending.get(key) ?? { names: new Set<string>(), minRv: 0, at: Date.now() };
    for (const n of names) e.names.add(n);
    e.minRv = Math.max(e.minRv, minRv);
    e.at = Date.now();
    this.pending.set(key, e);
  }

  /**
   * The outcome of the key's write became known to be uncertain only now (its answer was
   * lost to a timeout): the wait restarts here, not at `expect`. The TTL counts from the
   * last moment the write could still have been in flight; counted from before the request,
   * a client timeout as long as the TTL would let the expectation expire the instant the
   * timeout surfaced, and the next reconcile would create a duplicate (review R3-1).
   * Names observed meanwhile stay observed.
   */
  restart(key: string): void {
    const e = this.pending.get(key);
    if (e) e.at = Date.now();
  }

  /** A name of the key was observed in its expected state. */
  observed(key: string, name: string): void {
    this.pending.get(key)?.names.delete(name);
  }

  /** May the key be reconciled: everything it wrote has been seen (or the wait expired)? */
  satisfied(key: string, currentRv: number): boolean {
    const e = this.pending.get(key);
    if (!e) return true;
    if ((e.names.size === 0 && currentRv >= e.minRv) || Date.now() - e.at > this.ttlMs) {
      this.pending.delete(key);
      return true;
    }
    return false;
  }

  forget(key: string): void {
    this.pending.delete(key);
  }

  /** Forgets everything (a new leadership term: the writes awaited were another term's). */
  reset(): void {
    this.pending.clear();
  }
}
