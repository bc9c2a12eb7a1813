import { StaleCacheError, TooLargeResourceVersionError, storageInitializing } from '../errors/errors.ts';
import type { Store } from '../store/store.ts';
import type { WatchCache } from './watchcache.ts';

export interface ReaderOptions {
  /** how long a read waits for the cache to reach a revision (ms, default 3 s, as Kubernetes) */
  waitMs?: number;
  /** how long a write waits for the cache to show this apiserver's own writes (ms, default 10 s) */
  ownWritesWaitMs?: number;
}

/**
 * THE seam between requests and the watch cache (Kubernetes' CacheDelegator): every read
 * that must not be stale asks it first, and it decides how fresh the cache must be.
 *
 * - `consistent()`: linearizable. One cheap read of the store's current revision, started
 *   after the call began, then a wait until the cache holds it. Concurrent callers share
 *   revision reads: at most one is in flight and one queued behind it (every caller that
 *   arrives while a read runs waits for the next one, which starts after it arrived), so N
 *   requests cost about one store round trip. A cache that does not catch up within the wait
 *   gives `StaleCacheError` (the registry then reads the store).
 * - `notOlderThan(rv)`: the cache holds at least rv (a client's resourceVersion), waiting
 *   up to 3 s, else "Too large resource version" (504, ResourceVersionTooLarge).
 * - `ownWrites()`: this apiserver's own writes are in (read-your-writes; what the write loop
 *   needs, since its compare-and-swap catches anything older).
 * Each refuses with 429 "storage is (re)initializing" while the cache is not synced.
 */
export class Reader {
  private lastWriteRev = 0;
  private inflight?: Promise<number>;
  private queued?: Promise<number>;
  private readonly waitMs: number;
  private readonly ownWritesWaitMs: number;
  /** store revision reads done (so tests can see that concurrent reads share them) */
  revisionReads = 0;

  constructor(
    private readonly store: Store,
    private readonly cache: WatchCache,
    opts: ReaderOptions = {},
  ) {
    this.waitMs = opts.waitMs ?? 3000;
    this.ownWritesWaitMs = opts.ownWritesWaitMs ?? 10_000;
  }

  noteWrite(rev: number) {
    if (rev > this.lastWriteRev) this.lastWriteRev = rev;
  }

  get ready(): boolean {
    return this.cache.isReady;
  }

  requireReady(): void {
    if (!this.cache.isReady) throw storageInitializing(this.cache.notReadyReason ?? 'the watch cache is not synced');
  }

  /** The store's current revision, read after this call began (shared with concurrent callers). */
  storeRevision(): Promise<number> {
    if (!this.inflight) return this.begin();
    this.queued ??= this.inflight
      .catch(() => 0)
      .then(() => {
        this.queued = undefined;
        return this.begin();
      });
    return this.queued;
  }

  private begin(): Promise<number> {
    this.revisionReads++;
    const p: Promise<number> = this.store.currentRevision().finally(() => {
      if (this.inflight === p) this.inflight = undefined;
    });
    this.inflight = p;
    return p;
  }

  /** Resolves once the cache holds every write the store had committed when this call began; returns that revision. */
  async consistent(): Promise<number> {
    this.requireReady();
    const rev = Math.max(await this.storeRevision(), this.lastWriteRev);
    if (this.cache.revision >= rev) return rev;
    try {
      await this.cache.waitFor(rev, this.waitMs);
    } catch {
      this.requireReady();
      throw new StaleCacheError(this.cache.revision, rev, this.waitMs);
    }
    return rev;
  }

  /** Resolves once the cache holds revision `rv` (bounded), else 504 "Too large resource version". */
  async notOlderThan(rv: number): Promise<void> {
    this.requireReady();
    if (this.cache.revision >= rv) return;
    try {
      await this.cache.waitFor(rv, this.waitMs);
    } catch {
      this.requireReady();
      throw new TooLargeResourceVersionError(rv, this.cache.revision);
    }
  }

  /** Resolves once the cache shows this apiserver's own writes. */
  async ownWrites(): Promise<void> {
    this.requireReady();
    await this.cache.waitFor(this.lastWriteRev, this.ownWritesWaitMs);
  }
}
