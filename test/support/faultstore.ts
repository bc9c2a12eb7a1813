import { unavailable } from '../../pkg/errors/errors.ts';
import type { Compare, ListOptions, Op, Store, Watch, WatchHandlers, WatchOptions } from '../../pkg/store/store.ts';

/**
 * Fault injection around a REAL store (not a mock: every call goes to it): lists can be
 * made to fail, and open watches can be ended with an error, as a store does when its
 * watch gives up (compaction, an error the client will not retry) or the store is
 * unreachable for a while.
 */
export class FaultStore implements Store {
  /** the next this-many lists fail with 503 */
  failLists = 0;
  /** lists that failed because of `failLists` */
  failedLists = 0;
  private readonly open = new Set<{ handlers: WatchHandlers; watch: Watch }>();
  /** while set, currentRevision() reads the revision at once but answers only on releaseRevisionReads() (a slow round trip) */
  holdRevisionReads = false;
  revisionReads = 0;
  private held: Array<() => void> = [];
  /** while set, currentRevision() fails with 503 (the store unreachable for that read) */
  failRevisionReads = false;
  /** while set, open watches deliver nothing: their events wait, in order, for releaseEvents() (a watch lagging behind the store) */
  holdEvents = false;
  private heldEvents: Array<() => void> = [];

  constructor(readonly inner: Store) {}

  get backend() {
    return this.inner.backend;
  }

  /** Ends every open watch with `err` (they deliver nothing more), like a store watch that gives up. */
  endWatches(err: Error = new Error('injected: the store watch broke')): void {
    for (const o of [...this.open]) {
      this.open.delete(o);
      o.watch.close();
      setImmediate(() => o.handlers.onError(err));
    }
  }

  get openWatches(): number {
    return this.open.size;
  }

  get(key: string) {
    return this.inner.get(key);
  }
  async list(prefix: string, opts?: ListOptions) {
    if (this.failLists > 0) {
      this.failLists--;
      this.failedLists++;
      throw unavailable('etcd: injected: the store is unavailable');
    }
    return this.inner.list(prefix, opts);
  }
  count(prefix: string) {
    return this.inner.count(prefix);
  }
  create(key: string, value: string) {
    return this.inner.create(key, value);
  }
  update(key: string, value: string, modRevision: number) {
    return this.inner.update(key, value, modRevision);
  }
  delete(key: string, modRevision?: number) {
    return this.inner.delete(key, modRevision);
  }
  txn(compares: Compare[], ops: Op[]) {
    return this.inner.txn(compares, ops);
  }
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers, opts?: WatchOptions): Watch {
    let entry: { handlers: WatchHandlers; watch: Watch } | undefined;
    const watch = this.inner.watch(
      prefix,
      afterRevision,
      {
        onEvents: (evs) => {
          if (this.holdEvents || this.heldEvents.length > 0) this.heldEvents.push(() => handlers.onEvents(evs));
          else handlers.onEvents(evs);
        },
        onError: (err) => {
          if (!entry || !this.open.delete(entry)) return;
          handlers.onError(err);
        },
        onProgress: handlers.onProgress?.bind(handlers),
      },
      opts,
    );
    const mine = { handlers, watch };
    entry = mine;
    this.open.add(mine);
    return {
      close: () => {
        this.open.delete(mine);
        watch.close();
      },
    };
  }
  /** delivers the events held back while `holdEvents` was set, in order, and stops holding */
  releaseEvents(): void {
    this.holdEvents = false;
    for (const d of this.heldEvents.splice(0)) d();
  }

  async currentRevision() {
    this.revisionReads++;
    if (this.failRevisionReads) throw unavailable('etcd: injected: the revision read failed');
    const rev = await this.inner.currentRevision();
    if (this.holdRevisionReads) await new Promise<void>((r) => this.held.push(r));
    return rev;
  }

  releaseRevisionReads(): void {
    this.holdRevisionReads = false;
    for (const r of this.held.splice(0)) r();
  }
  compact(revision: number) {
    return this.inner.compact(revision);
  }
  compactedRevision() {
    return this.inner.compactedRevision();
  }
  close() {
    return this.inner.close();
  }
}
