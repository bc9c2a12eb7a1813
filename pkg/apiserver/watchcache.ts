import type { Logger } from '../log/log.ts';
import type { ObjectMeta } from '../api/meta.ts';
import { CompactedError, expired, unavailable } from '../errors/errors.ts';
import { listPages } from '../store/pager.ts';
import type { Store, WatchEvent } from '../store/store.ts';
import { fieldValue as valueAt } from './selectors.ts';

/** A stored object as the cache keeps it: parsed, with resourceVersion set. */
export type Obj = {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta & { name: string };
  spec?: unknown;
  status?: unknown;
};

export interface CacheEvent {
  /** store revision of the change */
  rev: number;
  key: string;
  /** the plural the key belongs to (/berth/<plural>/...) */
  plural: string;
  obj?: Obj;
  prev?: Obj;
  /** the stored JSON of `obj` */
  value?: string;
}

/**
 * An event as the ring keeps it: the stored JSON, not the parsed objects. Live watchers get
 * the parsed objects at once; only a watcher resuming from an older revision needs the
 * history, and it parses what it reads. Parsed objects cost several times their JSON, and
 * the ring holds up to `capacity` past versions of objects.
 */
interface RingEntry {
  rev: number;
  key: string;
  plural: string;
  value?: string;
  prevValue?: string;
  prevRev?: number;
  /**
   * the values of the plural's index fields in the new and the old object (in the order of
   * the cache's index fields): a resuming watcher on an index skips the entries whose
   * objects cannot match it without parsing them (R1-5)
   */
  idx?: string[];
  prevIdx?: string[];
  /** when the cache applied it (ms), for the time-based history */
  at: number;
}

export type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** What the watchers of one event share (see CacheWatcher.send); lives only while the event is dispatched. */
export type EventShare = Map<string, unknown>;

export interface CacheWatcher {
  plural: string;
  namespace?: string;
  /** the revision the watcher has (its resourceVersion): nothing at or below it is sent */
  from: number;
  /** does the object match this watcher's selectors */
  matches(o: Obj): boolean;
  /**
   * `share` is the same map for every watcher one event reaches: what a watcher derives from
   * the event (the object as it is sent, its encoded frame) is kept there by the first one
   * and reused by the others (serialize once, not once per watcher)
   */
  send(type: WatchType, obj: Obj, rev: number, share: EventShare): void;
  /** an exact match on an indexed field (`spec.containerInstance=ID`): only events whose old or new object has that value reach it */
  index?: { field: string; value: string };
}

const pluralOf = (key: string) => key.split('/')[2] ?? '';
const namespaceOf = (key: string) => {
  const ns = key.split('/')[3];
  return ns === '_' ? undefined : ns;
};

/** the cap on past events (`--watch-cache-size`) */
export const DEFAULT_WATCH_CACHE_SIZE = 50_000;
/** every event younger than this is kept (cap permitting): Kubernetes' eventFreshDuration */
export const DEFAULT_WATCH_HISTORY_MS = 75_000;
/** and never fewer than this many, however old (cap permitting) */
export const DEFAULT_WATCH_HISTORY_MIN_EVENTS = 1000;

export interface WatchCacheOptions {
  /** at most this many past events: the cap (default 50,000) */
  capacity?: number;
  /** keep every event younger than this, ms (default 75 s) */
  historyMs?: number;
  /** keep at least this many past events (default 1,000) */
  minEvents?: number;
  /** the clock, ms */
  now?: () => number;
  /** relist backoff: from `initialMs`, doubling, capped at `maxMs`, with jitter */
  backoff?: { initialMs: number; maxMs: number };
  /** [0,1), for the jitter */
  random?: () => number;
  /** a watcher's replay of the history runs in slices of about this long (ms, default 5), yielding between them */
  replaySliceMs?: number;
}

export function parseStored(value: string, modRevision: number): Obj {
  const o = JSON.parse(value) as Obj;
  // internal records (allocations, node credentials) may carry no metadata of their own
  o.metadata ??= {} as Obj['metadata'];
  o.metadata.resourceVersion = String(modRevision);
  return o;
}

/**
 * The apiserver's watch cache, like Kubernetes' cacher: ONE store watch over `/berth`
 * feeds an in-memory copy of every object under `/berth/`, per-plural and per-namespace
 * indexes, custom field indexes, and a bounded history of recent events. Lists and watches
 * are served from it, so a thousand agents watching their own tasks cost the store nothing.
 *
 * Freshness: `waitFor(rev)` resolves once every event up to `rev` has been applied. The
 * watch covers `/berth-meta/` too (the compactor's key), so every revision berth writes
 * reaches the cache and a wait for the store's current revision ends as soon as the
 * events are in (the Reader does that for consistent reads). berth expects the etcd
 * keyspace to itself: revisions written by another application never arrive, and a
 * consistent read then falls back to the store after a bounded wait.
 *
 * Healing: the cache is ready only while it is synced. When its store watch ends
 * (compaction, an error the client does not retry) it turns unready at once and relists
 * until it succeeds, with capped exponential backoff and jitter; while unready, reads that
 * need it are refused (429) or served from the store by the Reader. Watchers stay
 * registered through a relist and get what changed meanwhile.
 *
 * History: every event of the last 75 s, at least 1,000, at most the capacity
 * (`--watch-cache-size`); watchers resuming from before it get 410 and relist.
 *
 * Objects handed out are shared and must never be modified (clone first).
 */
export class WatchCache {
  private readonly byKey = new Map<string, Obj>();
  private readonly byPlural = new Map<string, Map<string, Obj>>();
  /** plural -> field -> value -> keys */
  private readonly indexes = new Map<string, Map<string, Map<string, Set<string>>>>();
  /** the history: ring[head..] (trimmed from the front, compacted now and then) */
  private ring: Array<RingEntry | undefined> = [];
  private head = 0;
  /**
   * key -> its newest event still in the ring: the next event of the key takes its old
   * object's JSON from there (the same string, not a copy). The cache keeps no JSON of its
   * current objects beside them (it did: about 2 KB per task, as much as the parsed object);
   * an old object whose event has left the ring is serialized when its key next changes.
   */
  private readonly lastEntry = new Map<string, RingEntry>();
  private ringStart = 0; // events with rev > ringStart are all in the ring
  private rev = 0;
  private readonly watchers = new Set<CacheWatcher>();
  /** plural -> watchers without an index */
  private readonly plainWatchers = new Map<string, Set<CacheWatcher>>();
  /** plural -> field -> value -> watchers (1,000 agents each watching their own tasks cost one lookup per event, not 1,000 matches) */
  private readonly indexedWatchers = new Map<string, Map<string, Map<string, Set<CacheWatcher>>>>();
  private waiters: Array<{ rev: number; resolve: () => void }> = [];
  private watch?: { close(): void };
  private stopped = false;
  private ready = false;
  /** synced at least once: relists after that tell watchers what changed */
  private synced = false;
  private notReady = 'starting: the first list has not completed';
  private syncing?: Promise<void>;
  private wake?: () => void;
  private readonly capacity: number;
  private readonly historyMs: number;
  private readonly minEvents: number;
  private readonly now: () => number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly random: () => number;
  private readonly replaySliceMs: number;
  /** relists done after the first sync (each one a healed watch) */
  relists = 0;
  /** objects parsed from the history to replay it to resuming watchers (what replays cost: R1-5) */
  replayParsed = 0;
  /** replays that yielded the event loop at least once (long ones) */
  replaysYielded = 0;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    /** plural -> fields to index (e.g. tasks -> spec.containerInstance) */
    private readonly indexFields: Record<string, string[]>,
    /** the history's bounds and the relist backoff (a number: the capacity alone) */
    opts: WatchCacheOptions | number = {},
  ) {
    const o = typeof opts === 'number' ? { capacity: opts } : opts;
    this.capacity = o.capacity ?? DEFAULT_WATCH_CACHE_SIZE;
    this.historyMs = o.historyMs ?? DEFAULT_WATCH_HISTORY_MS;
    this.minEvents = Math.min(o.minEvents ?? DEFAULT_WATCH_HISTORY_MIN_EVENTS, this.capacity);
    this.now = o.now ?? Date.now;
    this.backoff = o.backoff ?? { initialMs: 200, maxMs: 30_000 };
    this.random = o.random ?? Math.random;
    this.replaySliceMs = o.replaySliceMs ?? 5;
  }

  get revision() {
    return this.rev;
  }
  get isReady() {
    return this.ready;
  }
  /** why the cache is not ready (undefined when it is) */
  get notReadyReason(): string | undefined {
    return this.ready ? undefined : this.notReady;
  }
  get watcherCount() {
    return this.watchers.size;
  }

  /** Starts syncing; resolves once the cache is ready the first time (it retries until then) or stopped. */
  async start(): Promise<void> {
    await this.resync();
  }

  /** Relists until it succeeds (one loop at a time), with capped exponential backoff and jitter. */
  private resync(): Promise<void> {
    this.syncing ??= (async () => {
      for (let attempt = 0; !this.stopped; attempt++) {
        try {
          await this.relist();
          return;
        } catch (e) {
          if (this.stopped) return;
          const delay = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(attempt, 20)) * (0.5 + this.random() / 2);
          this.notReady = `relisting from the store failed (attempt ${attempt + 1}, next in ${Math.round(delay)} ms): ${(e as Error).message}`;
          this.log.warn({ err: (e as Error).message, attempt: attempt + 1, retryInMs: Math.round(delay) }, 'watch cache: relist failed; retrying');
          await new Promise<void>((r) => {
            const t = setTimeout(r, delay);
            this.wake = () => {
              clearTimeout(t);
              r();
            };
          });
          this.wake = undefined;
        }
      }
    })().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** list everything (paged by keys and bytes, at one revision), then watch from the list's revision */
  private async relist(): Promise<void> {
    const items: Array<{ key: string; value: string; modRevision: number }> = [];
    let listRev = 0;
    for await (const page of listPages(this.store, '/berth/')) {
      listRev = page.revision;
      items.push(...page.items);
    }
    if (this.stopped) return;
    // what vanished while we were not watching goes out as DELETED
    const seen = new Set<string>();
    const events: CacheEvent[] = [];
    for (const kv of items) {
      seen.add(kv.key);
      const prev = this.byKey.get(kv.key);
      if (prev && prev.metadata.resourceVersion === String(kv.modRevision)) continue;
      let obj: Obj;
      try {
        obj = parseStored(kv.value, kv.modRevision);
      } catch {
        this.log.error({ key: kv.key }, 'watch cache: unparseable value ignored'); // as a watch event's would be
        continue;
      }
      events.push({ rev: kv.modRevision, key: kv.key, plural: pluralOf(kv.key), obj, prev, value: kv.value });
    }
    for (const [key, prev] of this.byKey) {
      if (!seen.has(key)) events.push({ rev: listRev, key, plural: pluralOf(key), prev });
    }
    events.sort((a, b) => a.rev - b.rev);
    const notify = this.synced;
    for (const e of events) this.apply(e, notify);
    if (!this.synced || events.length) {
      // a fresh cache has no history (watches from before now get 410); after a relist the
      // history has a hole, and watchers resuming from before it must relist
      this.ring = [];
      this.lastEntry.clear();
      this.head = 0;
      this.ringStart = listRev;
    }
    if (this.synced) this.relists++;
    this.rev = Math.max(this.rev, listRev);
    this.synced = true;
    this.ready = true;
    this.resolveWaiters();
    const watch = this.store.watch('/berth', listRev, {
      onEvents: (evs) => {
        if (this.watch === watch) this.onStoreEvents(evs);
      },
      onError: (err) => {
        if (this.stopped || this.watch !== watch) return;
        this.ready = false;
        this.notReady = `the store watch ended (${err.message}); relisting`;
        this.log.warn({ err: err.message, compacted: err instanceof CompactedError }, 'watch cache: store watch ended; relisting');
        void this.resync();
      },
    });
    this.watch = watch;
  }

  private onStoreEvents(evs: WatchEvent[]) {
    for (const e of evs) {
      // /berth-meta/ keys (the compactor's) only move the revision along
      if (!e.key.startsWith('/berth/')) continue;
      let obj: Obj | undefined;
      if (e.type === 'put') {
        try {
          obj = parseStored(e.value!, e.modRevision);
        } catch {
          this.log.error({ key: e.key }, 'watch cache: unparseable value ignored');
          continue;
        }
      }
      this.apply({ rev: e.modRevision, key: e.key, plural: pluralOf(e.key), obj, prev: this.byKey.get(e.key), value: e.value }, true);
    }
    if (evs.length) this.rev = Math.max(this.rev, evs[evs.length - 1].modRevision);
    this.resolveWaiters();
  }

  private apply(e: CacheEvent, notify: boolean) {
    const per = this.byPlural.get(e.plural) ?? new Map<string, Obj>();
    this.byPlural.set(e.plural, per);
    if (e.prev) this.unindex(e.plural, e.key, e.prev);
    if (e.obj) {
      this.byKey.set(e.key, e.obj);
      per.set(e.key, e.obj);
      this.index(e.plural, e.key, e.obj);
    } else {
      this.byKey.delete(e.key);
      per.delete(e.key);
    }
    const value = e.obj ? (e.value ?? JSON.stringify(e.obj)) : undefined;
    let prevValue: string | undefined;
    let prevRev: number | undefined;
    if (e.prev) {
      prevRev = Number(e.prev.metadata.resourceVersion);
      const last = this.lastEntry.get(e.key);
      // a replay parses it back and sets its resourceVersion again: the parsed object's JSON serves
      prevValue = last && last.rev === prevRev && last.value !== undefined ? last.value : JSON.stringify(e.prev);
    }
    const at = this.now();
    const fields = this.indexFields[e.plural];
    const idx = fields && e.obj ? fields.map((f) => valueAt(e.obj, f)) : undefined;
    const prevIdx = fields && e.prev ? fields.map((f) => valueAt(e.prev, f)) : undefined;
    const entry: RingEntry = { rev: e.rev, key: e.key, plural: e.plural, value, prevValue, prevRev, idx, prevIdx, at };
    this.ring.push(entry);
    this.lastEntry.set(e.key, entry);
    this.trim(at);
    if (notify) this.notify(e);
  }

  /**
   * Drops history beyond the cap, and events older than the history window above the
   * minimum. The front moves by index; the array is compacted only once half of it is dead
   * (shifting a 50,000-entry array on every event costs more than the event).
   */
  private trim(now: number) {
    let size = this.ring.length - this.head;
    while (size > this.minEvents && (size > this.capacity || this.ring[this.head]!.at < now - this.historyMs)) {
      const gone = this.ring[this.head]!;
      this.ringStart = gone.rev;
      if (this.lastEntry.get(gone.key) === gone) this.lastEntry.delete(gone.key);
      this.ring[this.head] = undefined; // let the value go now
      this.head++;
      size--;
    }
    if (this.head > 1024 && this.head * 2 > this.ring.length) {
      this.ring = this.ring.slice(this.head);
      this.head = 0;
    }
  }

  /** past events held for resuming watchers */
  get historySize(): number {
    return this.ring.length - this.head;
  }

  private index(plural: string, key: string, o: Obj) {
    const fields = this.indexFields[plural];
    if (!fields) return;
    const idx = this.indexes.get(plural) ?? new Map<string, Map<string, Set<string>>>();
    this.indexes.set(plural, idx);
    for (const f of fields) {
      const byVal = idx.get(f) ?? new Map<string, Set<string>>();
      idx.set(f, byVal);
      const v = valueAt(o, f);
      const set = byVal.get(v) ?? new Set<string>();
      byVal.set(v, set);
      set.add(key);
    }
  }

  private unindex(plural: string, key: string, o: Obj) {
    const idx = this.indexes.get(plural);
    if (!idx) return;
    for (const [f, byVal] of idx) {
      const v = valueAt(o, f);
      const set = byVal.get(v);
      set?.delete(key);
      if (set && set.size === 0) byVal.delete(v);
    }
  }

  private notify(e: CacheEvent) {
    const share: EventShare = new Map();
    const plain = this.plainWatchers.get(e.plural);
    if (plain) for (const w of plain) this.dispatch(w, e, share);
    const byField = this.indexedWatchers.get(e.plural);
    if (!byField) return;
    for (const [field, byVal] of byField) {
      const a = e.prev ? valueAt(e.prev, field) : undefined;
      const b = e.obj ? valueAt(e.obj, field) : undefined;
      if (a !== undefined) for (const w of byVal.get(a) ?? []) this.dispatch(w, e, share);
      if (b !== undefined && b !== a) for (const w of byVal.get(b) ?? []) this.dispatch(w, e, share);
    }
  }

  private register(w: CacheWatcher): () => void {
    this.watchers.add(w);
    if (w.index && this.isIndexed(w.plural, w.index.field)) {
      const byField = this.indexedWatchers.get(w.plural) ?? new Map<string, Map<string, Set<CacheWatcher>>>();
      this.indexedWatchers.set(w.plural, byField);
      const byVal = byField.get(w.index.field) ?? new Map<string, Set<CacheWatcher>>();
      byField.set(w.index.field, byVal);
      const set = byVal.get(w.index.value) ?? new Set<CacheWatcher>();
      byVal.set(w.index.value, set);
      set.add(w);
      return () => {
        this.watchers.delete(w);
        set.delete(w);
        if (set.size === 0) byVal.delete(w.index!.value);
      };
    }
    const set = this.plainWatchers.get(w.plural) ?? new Set<CacheWatcher>();
    this.plainWatchers.set(w.plural, set);
    set.add(w);
    return () => {
      this.watchers.delete(w);
      set.delete(w);
    };
  }

  /** Delivers one event to one watcher, turning selector transitions into ADDED/DELETED. */
  private dispatch(w: CacheWatcher, e: CacheEvent, share: EventShare = new Map()) {
    if (w.plural !== e.plural || e.rev <= w.from) return;
    if (w.namespace !== undefined && namespaceOf(e.key) !== w.namespace) return;
    const was = e.prev !== undefined && w.matches(e.prev);
    const is = e.obj !== undefined && w.matches(e.obj);
    if (is && was) w.send('MODIFIED', e.obj!, e.rev, share);
    else if (is) w.send('ADDED', e.obj!, e.rev, share);
    else if (was) {
      // deleted, or no longer matching: send the last state the watcher would know, at this
      // rev (one object per event, so every watcher it reaches shares its encoding too)
      let last = share.get('last') as Obj | undefined;
      if (!last) {
        last = e.obj ?? { ...e.prev!, metadata: { ...e.prev!.metadata, resourceVersion: String(e.rev) } };
        share.set('last', last);
      }
      w.send('DELETED', last, e.rev, share);
    }
  }

  async waitFor(rev: number, timeoutMs = 10_000): Promise<void> {
    if (this.rev >= rev && this.ready) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(unavailable(`the watch cache did not reach revision ${rev} in time (at ${this.rev})`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.push({ rev, resolve: done });
    });
  }

  private resolveWaiters() {
    if (!this.ready) return;
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) (w.rev <= this.rev ? w.resolve() : keep.push(w));
    this.waiters = keep;
  }

  get(key: string): Obj | undefined {
    return this.byKey.get(key);
  }

  /**
   * The objects of a plural (in a namespace), sorted by key; `indexed` narrows by an
   * indexed field's exact value first.
   */
  list(plural: string, namespace: string | undefined, indexed?: { field: string; value: string }): Array<[string, Obj]> {
    let keys: Iterable<string> | undefined;
    if (indexed) {
      const set = this.indexes.get(plural)?.get(indexed.field)?.get(indexed.value);
      keys = set ? [...set] : [];
    }
    const per = this.byPlural.get(plural);
    if (!per) return [];
    const prefix = namespace === undefined ? undefined : `/berth/${plural}/${namespace}/`;
    const out: Array<[string, Obj]> = [];
    if (keys) {
      for (const k of keys) {
        const o = per.get(k);
        if (o && (!prefix || k.startsWith(prefix))) out.push([k, o]);
      }
    } else {
      for (const [k, o] of per) if (!prefix || k.startsWith(prefix)) out.push([k, o]);
    }
    out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return out;
  }

  isIndexed(plural: string, field: string): boolean {
    return this.indexFields[plural]?.includes(field) ?? false;
  }

  /**
   * Registers a watcher that first receives every matching event after `fromRev` from the
   * ring (410 Expired when that history is gone), then live events.
   *
   * The replay (R1-5) reads the ring's stored JSON: it starts at the first event after
   * `fromRev` (a binary search), skips other plurals and namespaces by key, skips by the
   * entry's index values what an indexed watcher cannot match (an agent resuming its
   * `spec.containerInstance=X` watch parses only its own tasks' events), and parses an old
   * object only when it may have matched. It runs in slices of `replaySliceMs` and yields
   * between them, so one long replay (or a failover storm of them) does not hold the event
   * loop; the watcher is registered in the same turn as the replay reaches the end of the
   * ring, so it misses nothing. History trimmed past the replay while it yielded is a 410.
   */
  async addWatcher(w: CacheWatcher, fromRev: number): Promise<() => void> {
    const tooOld = (why = '') => expired(`too old resource version: ${fromRev} (${this.ringStart + 1})${why}`);
    if (fromRev < this.ringStart) throw tooOld();
    const fields = this.indexFields[w.plural];
    const fi = w.index && fields ? fields.indexOf(w.index.field) : -1;
    const value = w.index?.value;
    const prefix = w.namespace !== undefined ? `/berth/${w.plural}/${w.namespace}/` : `/berth/${w.plural}/`;
    let last = fromRev; // every event up to it has been replayed
    let i = this.firstAfter(last);
    let sliceStart = performance.now();
    let yielded = false;
    while (i < this.ring.length) {
      const r = this.ring[i++]!;
      last = r.rev;
      if (r.key.startsWith(prefix) && r.plural === w.plural) {
        // may the new object match, may the old one have matched (an indexed watcher's matches
        // require the index value)
        const may = r.value !== undefined && (fi < 0 || r.idx?.[fi] === value);
        const mayHave = r.prevValue !== undefined && (fi < 0 || r.prevIdx?.[fi] === value);
        if (may || mayHave) {
          // the new object is also what a watcher it no longer matches is sent (as live events do)
          const obj = r.value !== undefined ? this.parseReplayed(r.value, r.rev) : undefined;
          const prev = mayHave ? this.parseReplayed(r.prevValue!, r.prevRev!) : undefined;
          this.dispatch(w, { rev: r.rev, key: r.key, plural: r.plural, obj, prev });
        }
      }
      // yield between revisions only (a txn's events share one), every so often
      if ((i & 127) === 0 && this.ring[i]?.rev !== last && performance.now() - sliceStart > this.replaySliceMs) {
        await new Promise<void>((r) => setImmediate(r));
        yielded = true;
        if (last < this.ringStart) throw tooOld(': the history moved on while the watch replayed it; list again');
        i = this.firstAfter(last);
        sliceStart = performance.now();
      }
    }
    if (yielded) this.replaysYielded++;
    return this.register(w);
  }

  /** the ring index of the first event after `rev` (the ring is in revision order) */
  private firstAfter(rev: number): number {
    let lo = this.head;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ring[mid]!.rev <= rev) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private parseReplayed(value: string, rev: number): Obj {
    this.replayParsed++;
    return parseStored(value, rev);
  }

  stop() {
    this.stopped = true;
    this.ready = false;
    this.notReady = 'stopped';
    this.wake?.();
    this.watch?.close();
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }
}
