import type { Logger } from '../log/log.ts';
import type { ObjectMeta } from '../api/meta.ts';
import { CompactedError, expired, unavailable } from '../errors/errors.ts';
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
}

export type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface CacheWatcher {
  plural: string;
  namespace?: string;
  /** does the object match this watcher's selectors */
  matches(o: Obj): boolean;
  send(type: WatchType, obj: Obj, rev: number): void;
  /** an exact match on an indexed field (`spec.containerInstance=ID`): only events whose old or new object has that value reach it */
  index?: { field: string; value: string };
}

const pluralOf = (key: string) => key.split('/')[2] ?? '';
const namespaceOf = (key: string) => {
  const ns = key.split('/')[3];
  return ns === '_' ? undefined : ns;
};

export const DEFAULT_WATCH_CACHE_SIZE = 20_000;

export function parseStored(value: string, modRevision: number): Obj {
  const o = JSON.parse(value) as Obj;
  // internal records (allocations, node credentials) may carry no metadata of their own
  o.metadata ??= {} as Obj['metadata'];
  o.metadata.resourceVersion = String(modRevision);
  return o;
}

/**
 * The apiserver's watch cache, like Kubernetes' cacher: ONE store watch over `/berth/`
 * feeds an in-memory copy of every object, per-plural and per-namespace indexes, custom
 * field indexes, and a bounded ring of recent events. Lists and watches are served from it,
 * so a thousand agents watching their own tasks cost the store nothing.
 *
 * Freshness: `waitFor(rev)` resolves once every event up to `rev` has been applied; the
 * registry calls it with the revision of this apiserver's latest write, so clients read
 * their writes. Objects handed out are shared and must never be modified (clone first).
 */
export class WatchCache {
  private readonly byKey = new Map<string, Obj>();
  private readonly byPlural = new Map<string, Map<string, Obj>>();
  /** plural -> field -> value -> keys */
  private readonly indexes = new Map<string, Map<string, Map<string, Set<string>>>>();
  private readonly ring: RingEntry[] = [];
  /** key -> the current object's stored JSON and revision (the next event's `prev` in the ring) */
  private readonly raw = new Map<string, { value: string; rev: number }>();
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

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    /** plural -> fields to index (e.g. tasks -> spec.containerInstance) */
    private readonly indexFields: Record<string, string[]>,
    /**
     * past events kept for watchers that resume: about 20 s of a 20,000-task burst, and
     * about 150 bytes of entry plus the object's JSON each. Watchers that fall further
     * behind get 410 and relist (informers and agents do). At 100,000 the history alone
     * held several hundred MiB of the apiserver at 5,000 tasks.
     */
    private readonly capacity = DEFAULT_WATCH_CACHE_SIZE,
  ) {}

  get revision() {
    return this.rev;
  }
  get isReady() {
    return this.ready;
  }
  get watcherCount() {
    return this.watchers.size;
  }

  async start(): Promise<void> {
    await this.relist();
  }

  /** list everything, then watch from the list's revision; on compaction, relist */
  private async relist(): Promise<void> {
    const items: Array<{ key: string; value: string; modRevision: number }> = [];
    let page = await this.store.list('/berth/', { limit: 5000 });
    const listRev = page.revision;
    items.push(...page.items);
    while (page.continue) {
      page = await this.store.list('/berth/', { limit: 5000, continue: page.continue });
      items.push(...page.items);
    }
    // what vanished while we were not watching goes out as DELETED
    const seen = new Set<string>();
    const events: CacheEvent[] = [];
    for (const kv of items) {
      seen.add(kv.key);
      const prev = this.byKey.get(kv.key);
      if (prev && prev.metadata.resourceVersion === String(kv.modRevision)) continue;
      events.push({ rev: kv.modRevision, key: kv.key, plural: pluralOf(kv.key), obj: parseStored(kv.value, kv.modRevision), prev, value: kv.value });
    }
    for (const [key, prev] of this.byKey) {
      if (!seen.has(key)) events.push({ rev: listRev, key, plural: pluralOf(key), prev });
    }
    events.sort((a, b) => a.rev - b.rev);
    const wasReady = this.ready;
    for (const e of events) this.apply(e, wasReady);
    if (!wasReady) {
      // a fresh cache has no history: watches from before now get 410
      this.ring.length = 0;
      this.ringStart = listRev;
    } else if (events.length) {
      // after a relist the history has a hole: watchers resuming from before it must relist
      this.ring.length = 0;
      this.ringStart = listRev;
    }
    this.rev = Math.max(this.rev, listRev);
    this.ready = true;
    this.resolveWaiters();
    this.watch = this.store.watch('/berth/', listRev, {
      onEvents: (evs) => this.onStoreEvents(evs),
      onError: (err) => {
        if (this.stopped) return;
        this.log.warn({ err: err.message, compacted: err instanceof CompactedError }, 'watch cache: store watch ended; relisting');
        setTimeout(() => {
          if (!this.stopped) this.relist().catch((e) => this.log.error({ err: (e as Error).message }, 'watch cache: relist failed'));
        }, err instanceof CompactedError ? 0 : 500);
      },
    });
  }

  private onStoreEvents(evs: WatchEvent[]) {
    for (const e of evs) {
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
    const before = this.raw.get(e.key);
    const value = e.obj ? (e.value ?? JSON.stringify(e.obj)) : undefined;
    if (value !== undefined) this.raw.set(e.key, { value, rev: e.rev });
    else this.raw.delete(e.key);
    this.ring.push({ rev: e.rev, key: e.key, plural: e.plural, value, prevValue: before?.value, prevRev: before?.rev });
    // trimmed in chunks of a tenth: shifting a 100,000-entry array on every event costs more than the event
    if (this.ring.length > this.capacity + Math.ceil(this.capacity / 10)) {
      const drop = this.ring.splice(0, this.ring.length - this.capacity);
      this.ringStart = drop[drop.length - 1].rev;
    }
    if (notify) this.notify(e);
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
    const plain = this.plainWatchers.get(e.plural);
    if (plain) for (const w of plain) this.dispatch(w, e);
    const byField = this.indexedWatchers.get(e.plural);
    if (!byField) return;
    for (const [field, byVal] of byField) {
      const a = e.prev ? valueAt(e.prev, field) : undefined;
      const b = e.obj ? valueAt(e.obj, field) : undefined;
      if (a !== undefined) for (const w of byVal.get(a) ?? []) this.dispatch(w, e);
      if (b !== undefined && b !== a) for (const w of byVal.get(b) ?? []) this.dispatch(w, e);
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
  private dispatch(w: CacheWatcher, e: CacheEvent) {
    if (w.plural !== e.plural) return;
    if (w.namespace !== undefined && namespaceOf(e.key) !== w.namespace) return;
    const was = e.prev !== undefined && w.matches(e.prev);
    const is = e.obj !== undefined && w.matches(e.obj);
    if (is && was) w.send('MODIFIED', e.obj!, e.rev);
    else if (is) w.send('ADDED', e.obj!, e.rev);
    else if (was) {
      // deleted, or no longer matching: send the last state the watcher would know, at this rev
      const last = e.obj ?? { ...e.prev!, metadata: { ...e.prev!.metadata, resourceVersion: String(e.rev) } };
      w.send('DELETED', last, e.rev);
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
   */
  addWatcher(w: CacheWatcher, fromRev: number): () => void {
    // the ring is trimmed in chunks, but holds exactly `capacity` events as far as watchers can tell
    const start = this.ring.length > this.capacity ? this.ring[this.ring.length - this.capacity - 1].rev : this.ringStart;
    if (fromRev < start) {
      throw expired(`too old resource version: ${fromRev} (${start + 1})`);
    }
    for (const r of this.ring) {
      if (r.rev <= fromRev || r.plural !== w.plural) continue;
      if (w.namespace !== undefined && namespaceOf(r.key) !== w.namespace) continue;
      this.dispatch(w, { rev: r.rev, key: r.key, plural: r.plural, obj: r.value !== undefined ? parseStored(r.value, r.rev) : undefined, prev: r.prevValue !== undefined ? parseStored(r.prevValue, r.prevRev!) : undefined });
    }
    return this.register(w);
  }

  stop() {
    this.stopped = true;
    this.watch?.close();
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }
}
