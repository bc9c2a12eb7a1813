import type { Logger } from 'pino';
import type { AnyObj, Client, KindRef, ListResult } from './client.ts';
import { isBerthError } from '../errors/errors.ts';

/**
 * List, then watch from the list's revision; keep a local cache with indexes; on a 410
 * (or any broken stream) relist and emit deletes for what vanished meanwhile; resync
 * periodically so level-triggered controllers revisit everything. Handlers run
 * synchronously and must only enqueue; each runs isolated from the others and from the
 * watch (one that throws is logged, and the others still see the event).
 *
 * Relists never go back in time: once synced, the informer relists with
 * `resourceVersion=<last seen>&resourceVersionMatch=NotOlderThan`, so an apiserver whose
 * cache trails the one the informer came from waits until it has caught up (or answers
 * 504, and the informer tries again) instead of returning an older state, which would turn
 * into deletes of objects that exist (client-go's reflector relists from its last
 * resourceVersion the same way). After "Too large resource version" or 410 for that
 * version, the next relist asks for the latest state (client-go's
 * isLastSyncResourceVersionUnavailable).
 *
 * `syncTo(rev)` brings the cache to a store revision of the caller's choosing: a controller
 * that has just acquired its lease at revision R must plan from a cache at least as new as R
 * (every write of the previous leader landed before R), not from a warm cache whose watch
 * may trail. Unless the cache is there already, the watch is cut and the informer relists
 * with `resourceVersion=R&resourceVersionMatch=NotOlderThan`, which waits for the
 * apiserver's cache to reach R (kube-controller-manager gets the same by listing only after
 * it has acquired its lease).
 */
export interface InformerHandlers<T> {
  add?(obj: T): void;
  update?(prev: T, obj: T): void;
  delete?(obj: T): void;
}

export interface InformerOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** periodic resync: every cached object is passed to `update(obj, obj)` (default off) */
  resyncMs?: number;
  log?: Logger;
}

export const objKey = (o: AnyObj) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);

export class Informer<T extends AnyObj = AnyObj> {
  private readonly items = new Map<string, T>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly indexers = new Map<string, (o: T) => string[]>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private rv = '';
  private synced = false;
  /** the last resourceVersion could not be listed (410 or too large): relist from the latest state */
  private rvUnavailable = false;
  private syncWaiters: Array<() => void> = [];
  private abort = new AbortController();
  private stopped = false;
  private resyncTimer?: NodeJS.Timeout;
  /** times the informer relisted (after a 410 or a broken stream) */
  relists = 0;
  /** the watch in flight (cut by `syncTo` so the loop relists) */
  private watchAc?: AbortController;
  /** `syncTo` cut the watch: relist at once, without the backoff of a failed watch */
  private cut = false;
  /** the highest revision a `syncTo` caller waits for */
  private wantRv = 0;
  private rvWaiters: Array<{ rev: number; done: () => void }> = [];

  constructor(
    private readonly client: Client,
    readonly kind: KindRef,
    private readonly opts: InformerOptions = {},
  ) {}

  on(h: InformerHandlers<T>): this {
    this.handlers.push(h);
    return this;
  }

  addIndex(name: string, fn: (o: T) => string[]): this {
    this.indexers.set(name, fn);
    const idx = new Map<string, Set<string>>();
    this.indexes.set(name, idx);
    for (const [k, o] of this.items) for (const v of fn(o)) (idx.get(v) ?? idx.set(v, new Set()).get(v)!).add(k);
    return this;
  }

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  list(): T[] {
    return [...this.items.values()];
  }

  /** How many objects an index value holds, without building the list. */
  indexSize(name: string, value: string): number {
    return this.indexes.get(name)?.get(value)?.size ?? 0;
  }

  /** Calls `fn` on each object an index value holds, without building the list. */
  forIndex(name: string, value: string, fn: (o: T) => void): void {
    const keys = this.indexes.get(name)?.get(value);
    if (!keys) return;
    for (const k of keys) {
      const o = this.items.get(k);
      if (o) fn(o);
    }
  }

  byIndex(name: string, value: string): T[] {
    const keys = this.indexes.get(name)?.get(value);
    if (!keys) return [];
    const out: T[] = [];
    for (const k of keys) {
      const o = this.items.get(k);
      if (o) out.push(o);
    }
    return out;
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  get resourceVersion(): string {
    return this.rv;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  /**
   * Resolves once the cache reflects the store at revision `rev` or later (relisting when
   * it does not already), or when the informer stops or `signal` aborts. Callers sharing
   * the informer share the relist.
   */
  async syncTo(rev: string | number, signal?: AbortSignal): Promise<void> {
    const want = Number(rev);
    await this.waitForSync();
    if (!Number.isFinite(want) || this.stopped || signal?.aborted || Number(this.rv) >= want) return;
    await new Promise<void>((resolve) => {
      const w = { rev: want, done: () => {} };
      const onAbort = () => {
        this.rvWaiters = this.rvWaiters.filter((x) => x !== w);
        resolve();
      };
      w.done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.rvWaiters.push(w);
      if (want > this.wantRv) {
        this.wantRv = want;
        this.cut = true;
        this.watchAc?.abort();
      }
    });
  }

  /** The cache moved to `this.rv`: wake the `syncTo` callers it satisfies. */
  private advanced(): void {
    if (!this.rvWaiters.length) return;
    const at = Number(this.rv);
    const done = this.rvWaiters.filter((w) => w.rev <= at);
    if (!done.length) return;
    this.rvWaiters = this.rvWaiters.filter((w) => w.rev > at);
    for (const w of done) w.done();
  }

  /** A `syncTo` waits for a revision the cache has not reached. */
  private get behind(): boolean {
    return this.wantRv > Number(this.rv);
  }

  start(): void {
    void this.run();
    if (this.opts.resyncMs) {
      this.resyncTimer = setInterval(() => {
        for (const o of this.items.values()) this.emit('update', o, o);
      }, this.opts.resyncMs);
      this.resyncTimer.unref?.();
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const w of this.syncWaiters) w();
    this.syncWaiters = [];
    for (const w of this.rvWaiters.splice(0)) w.done();
  }

  /**
   * Hands an event to every handler, each on its own: a handler that throws is logged and
   * does not keep the others from the event, nor abort the watch (which would relist and,
   * finding the cache already at the listed version, never deliver the change again).
   */
  private emit(type: 'add' | 'update' | 'delete', a: T, b?: T): void {
    for (const h of this.handlers) {
      try {
        if (type === 'add') h.add?.(a);
        else if (type === 'update') h.update?.(a, b!);
        else h.delete?.(a);
      } catch (e) {
        this.opts.log?.error({ err: (e as Error).stack ?? String(e), kind: String(typeof this.kind === 'string' ? this.kind : this.kind.kind), event: type }, 'informer handler failed');
      }
    }
  }

  private put(key: string, o: T): T | undefined {
    const prev = this.items.get(key);
    if (prev) this.unindex(key, prev);
    this.items.set(key, o);
    for (const [name, fn] of this.indexers) {
      const idx = this.indexes.get(name)!;
      for (const v of fn(o)) (idx.get(v) ?? idx.set(v, new Set()).get(v)!).add(key);
    }
    return prev;
  }

  private remove(key: string): T | undefined {
    const prev = this.items.get(key);
    if (!prev) return undefined;
    this.unindex(key, prev);
    this.items.delete(key);
    return prev;
  }

  private unindex(key: string, o: T) {
    for (const [name, fn] of this.indexers) {
      const idx = this.indexes.get(name)!;
      for (const v of fn(o)) {
        const s = idx.get(v);
        s?.delete(key);
        if (s && s.size === 0) idx.delete(v);
      }
    }
  }

  private async relist(): Promise<void> {
    // the latest state after a 410 or a 504 for a version; else a state no older than the one wanted (syncTo) or held
    const at = !this.synced || this.rvUnavailable ? undefined : this.behind ? String(this.wantRv) : this.rv || undefined;
    const from = at ? { resourceVersion: at, resourceVersionMatch: 'NotOlderThan' as const } : {};
    let r: ListResult<T>;
    try {
      r = await this.client.listAll<T>(this.kind, this.opts.namespace, { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector, ...from });
    } catch (e) {
      if (from.resourceVersion && (isBerthError(e, 'Expired') || isBerthError(e, 'Timeout'))) this.rvUnavailable = true;
      throw e;
    }
    this.rvUnavailable = false;
    const seen = new Set<string>();
    for (const o of r.items) {
      const k = objKey(o);
      seen.add(k);
      const prev = this.put(k, o);
      if (!prev) this.emit('add', o);
      else if (prev.metadata.resourceVersion !== o.metadata.resourceVersion) this.emit('update', prev, o);
    }
    for (const k of [...this.items.keys()]) {
      if (seen.has(k)) continue;
      const prev = this.remove(k)!;
      this.emit('delete', prev);
    }
    this.rv = r.resourceVersion;
    this.advanced();
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters) w();
      this.syncWaiters = [];
    }
  }

  private async run(): Promise<void> {
    let needList = true;
    let delay = 100;
    let lagged = false;
    while (!this.stopped) {
      try {
        if (needList || this.behind) {
          if (this.synced) this.relists++;
          await this.relist();
          needList = false;
          if (this.behind) {
            // the list answered older than a syncTo wants: once at once (the syncTo may have come while it was in
            // flight), then backing off like a failed watch, capped (a server whose cache lags for long, R3-9)
            if (lagged) await this.pause(delay);
            if (lagged) delay = Math.min(delay * 2, 5000);
            lagged = true;
            continue;
          }
          lagged = false;
        }
        needList = await this.watchOnce();
        delay = 100;
      } catch (e) {
        if (this.stopped) return;
        if (this.cut) {
          // the watch was cut on purpose (syncTo): relist now
          this.cut = false;
          needList = true;
          continue;
        }
        if (isBerthError(e, 'Expired') && !needList) needList = true;
        else {
          this.opts.log?.warn({ err: (e as Error).message, kind: String(typeof this.kind === 'string' ? this.kind : this.kind.kind) }, 'watch failed; relisting');
          needList = true;
          await this.pause(delay);
          delay = Math.min(delay * 2, 5000);
        }
      }
    }
  }

  /** Waits `ms`, or less if the informer stops meanwhile. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.abort.signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.abort.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Returns true when a relist is needed (410), false when the stream simply ended. */
  private async watchOnce(): Promise<boolean> {
    this.cut = false;
    // a syncTo that came while relisting: the list may have answered an older state
    if (this.behind) return true;
    const ac = new AbortController();
    this.watchAc = ac;
    const stream = this.client.watch<T>(this.kind, this.opts.namespace, {
      resourceVersion: this.rv,
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
      signal: AbortSignal.any([this.abort.signal, ac.signal]),
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
    });
    for await (const ev of stream) {
      // cut by syncTo: what this stream still carries is older than the relist that follows
      if (ac.signal.aborted) break;
      if (ev.type === 'ERROR') {
        const code = (ev.object as unknown as { code?: number }).code;
        if (code === 410) return true;
        throw new Error((ev.object as unknown as { message?: string }).message ?? 'watch error');
      }
      const rv = ev.object.metadata?.resourceVersion;
      if (ev.type === 'BOOKMARK') {
        if (rv) this.rv = rv;
        this.advanced();
        continue;
      }
      const k = objKey(ev.object);
      if (ev.type === 'DELETED') {
        const prev = this.remove(k);
        this.emit('delete', prev ?? ev.object);
      } else {
        const prev = this.put(k, ev.object);
        if (prev) this.emit('update', prev, ev.object);
        else this.emit('add', ev.object);
      }
      if (rv) this.rv = rv;
      this.advanced();
    }
    this.cut = false;
    return this.behind;
  }
}
