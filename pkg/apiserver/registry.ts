import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/log.ts';
import { API_VERSION, GROUP, SYSTEM_NAMESPACE, storeKey, type KindInfo, type ListOptions } from '../api/meta.ts';
import { validateObject, type Limits, DEFAULT_LIMITS, sameJson } from '../api/validate.ts';
import { alreadyExists, badRequest, conflict, expired, internal, invalid, isBerthError, notFound, BerthError, CompactedError, StaleCacheError, TooLargeResourceVersionError } from '../errors/errors.ts';
import type { Op, Compare, Store } from '../store/store.ts';
import { mergePatch, jsonPatch } from './patch.ts';
import { Reader } from './reader.ts';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector, type FieldRequirement, type Selector } from './selectors.ts';
import { WatchCache, parseStored, type CacheWatcher, type EventShare, type Obj, type WatchType } from './watchcache.ts';
import { decodeContinue, encodeContinue } from '../store/keys.ts';
import { listPages } from '../store/pager.ts';
import { checkFence, roomBeside, withFence, type Fence } from './fence.ts';
import { defaultTxnLimits, type TxnLimits } from '../store/limits.ts';
import type { RequestAttributes } from './auth.ts';

export type { Obj };

export interface RequestContext {
  /** the authenticated user, for admission decisions and audit */
  user?: string;
  dryRun?: boolean;
  /** `Strict` (default), `Warn` or `Ignore`; berth's schemas are always strict */
  fieldValidation?: string;
  /** a bootstrap identity registering an instance receives a node credential */
  issueNodeCredential?: boolean;
  /** the bootstrap token (its id) a registration is made with: it counts against the token's budget */
  bootstrapToken?: string;
  /** a node identity's instance: node restriction decides what it may write */
  node?: { cluster: string; instance: string };
  /** the address the request came from (registration records it) */
  sourceAddress?: string;
  /**
   * ECS's RegisterTaskDefinition: register a new revision even when the content equals the
   * latest one (ECS always does); applying a manifest of identical content is a no-op
   */
  newRevision?: boolean;
  /** the lease fence the request carries (Berth-Lease-Fence): every txn it commits also compares it */
  fence?: Fence;
  /**
   * on a container instance's status write (Berth-Instance-Lease): the revision of the
   * instance's InstanceLease the writer judged it by (0: it saw none); the write commits only
   * while the lease is still at it, so a renewal landing meanwhile defeats a disconnect
   */
  instanceLeaseRevision?: number;
  /**
   * the request's authorizer, for what a write turns out to do (writeauthz.ts): the
   * resource API passes it; absent, the caller authorized the whole operation itself
   */
  authorize?: (attrs: Omit<RequestAttributes, 'path'>) => void;
  /** the request's body names spec.taskDefinition (a service update's authorization asks ecs:task-definition then) */
  namesTaskDefinition?: boolean;
  /** a service's task definition is deployed even if the spec names it already (ECS's UpdateService after a rollback) */
  deploysTaskDefinition?: boolean;
  /** a PUT of the whole object (kubectl replace): system finalizers its body omits are kept */
  replacesObject?: boolean;
}

/**
 * A check every write of every kind passes (Kubernetes' validating admission plugins, such
 * as NodeRestriction): it sees the operation, the stored object and the one to be written,
 * and throws to refuse. `prev` is the object the write compares against in its txn.
 */
export type WriteValidator = (op: {
  verb: 'create' | 'update' | 'delete';
  kind: KindInfo;
  sub: 'status' | undefined;
  prev?: Obj;
  next?: Obj;
  ctx: RequestContext;
}) => void;

/** What a kind-specific admission hook may do at each step, within the write's transaction. */
export interface WriteContext {
  registry: Registry;
  /** the name the client used (a task definition family, say), before resolution */
  reqName?: string;
  /** applied to the object returned to the client only (never stored): e.g. a node credential */
  response?: (o: Obj) => Obj;
  /** extra compares and ops committed atomically with the object's own write */
  compares: Compare[];
  ops: Op[];
  ctx: RequestContext;
}

/**
 * Per-kind rules. Each hook is the one place that kind's rule lives: both API faces (the
 * resource API and the ECS API) go through the registry and so through these.
 */
export interface Admission {
  /** before validation: rewrite the incoming object (e.g. task definition revision naming) */
  normalize?(obj: Obj, ns: string | undefined, w: WriteContext): Promise<Obj | { existing: Obj }>;
  /** after validation of a create: set server fields, add ops to the txn */
  create?(obj: Obj, w: WriteContext): Promise<void>;
  /** after validation of an update: compare old and new (spec or status), add ops */
  update?(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined): Promise<void>;
  /** a DELETE: return an object to write instead of deleting (e.g. deregister = INACTIVE) */
  delete?(obj: Obj, w: WriteContext): Promise<Obj | undefined>;
  /** resolve a name a client asked for to a stored name (task definition family -> latest) */
  resolveName?(name: string, ns: string | undefined): string | undefined;
  /**
   * immutable kinds: what a revision is (default: its spec); a write addressed by the family
   * that changes it registers the next revision
   */
  revisionContent?(obj: Obj): unknown;
  /** decorate an object on its way out (computed fields) */
  decorate?(obj: Obj): Obj;
  /**
   * on the Cluster kind: runs for every create of a namespaced object in the cluster, to
   * add the cluster's guards to that create's txn
   */
  child?(kind: KindInfo, ns: string, w: WriteContext): void;
  /**
   * an object of this kind that is removed stays describable as this record (INACTIVE) for
   * the retention: ECS keeps deleted services and deregistered instances for an hour
   */
  tombstone?(obj: Obj): Obj;
}

/** When a tombstone was written (an annotation on the record). */
export const INACTIVE_SINCE_ANNOTATION = 'berth.dev/inactive-since';
/** Where a removed object's record lives: beside, not among, the live objects of its kind. */
export const tombstoneKey = (plural: string, ns: string | undefined, name: string) => storeKey(`inactive.${plural}`, ns, name);

/** A create admitted and validated, not yet committed: the object and the rest of its txn. */
export interface PreparedCreate {
  key: string;
  obj: Obj;
  /** what admission adds to the object's own put (guard keys, allocation records, credentials) */
  compares: Compare[];
  ops: Op[];
  response?: (o: Obj) => Obj;
}

/** An update admitted and validated, not yet committed: the txn that makes it (Registry.prepareWrite). */
interface PreparedWrite {
  key: string;
  /** the object as it will be stored (its resourceVersion set once committed) */
  next: Obj;
  compares: Compare[];
  ops: Op[];
  /** the client pinned a resourceVersion: a failed compare is a Conflict, not a retry */
  pinned: boolean;
  /** the cache was confirmed against fresh state on the way */
  confirmed: boolean;
}

/** how often a create is admitted again after its txn met a newer state (a revision taken, a guard moved) */
const CREATE_ATTEMPTS = 6;
/** task definition revisions: every concurrent registration must get its own, however many there are */
const REVISION_ATTEMPTS = 50;

export interface ListResult {
  items: Obj[];
  resourceVersion: string;
  continue?: string;
  remainingItemCount?: number;
}

export interface WatchOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** the field selector already parsed (by the server, which authorized on it) */
  fields?: FieldRequirement[];
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** list-then-watch: send the current state as ADDED first (no or "0" resourceVersion) */
  sendInitialEvents?: boolean;
}

/**
 * A watch's receiver: the event's type, the object as it is sent (decorated and redacted:
 * `Admission.decorate`), and its frame, `{"type":...,"object":...}\n` as bytes. The frame is
 * built once per event and type and the same Buffer handed to every watcher the event
 * reaches, whatever its selectors (they decide who gets an event, not what it says).
 */
export type WatchSink = (type: WatchType | 'BOOKMARK', obj: Obj, frame: () => Buffer) => void;

/** Objects encoded for watchers (each event's once, however many watchers it reaches): what tests count. */
export const watchEncoding = { objects: 0 };

/** The watch frame of an object, once per `share` (an event) and type. */
function sharedFrame(share: EventShare, type: WatchType, slot: string, obj: Obj): Buffer {
  const key = `frame:${type}:${slot}`;
  let f = share.get(key) as Buffer | undefined;
  if (!f) {
    const jsonKey = `json:${slot}`;
    let json = share.get(jsonKey) as string | undefined;
    if (json === undefined) {
      watchEncoding.objects++;
      json = JSON.stringify(obj);
      share.set(jsonKey, json);
    }
    f = Buffer.from(`{"type":"${type}","object":${json}}\n`);
    share.set(key, f);
  }
  return f;
}

/** A running watch. */
export interface WatchHandle {
  stop(): void;
  /**
   * The revision a bookmark may carry now: every matching event up to it has been sent, and
   * it is never lower than anything the watch has sent (or the revision it started from).
   */
  bookmarkRevision(): number;
}

/** A list's selectors and limit. */
interface ListFilter {
  labels: Selector;
  fields: FieldRequirement[];
  limit: number;
}

/** How a get or list names the state it wants (Kubernetes' resourceVersion semantics). */
type ReadVersion = { kind: 'latest' } | { kind: 'any' } | { kind: 'notOlderThan'; rv: number } | { kind: 'exact'; rv: number };

function readVersion(rv: string | undefined, match: string | undefined, what: 'get' | 'list' | 'watch'): ReadVersion {
  if (rv !== undefined && rv !== '' && (!/^\d+$/.test(rv) || !Number.isSafeInteger(Number(rv)))) {
    throw badRequest(`resourceVersion: "${rv.slice(0, 40)}" is not a valid resource version`);
  }
  if (match !== undefined && match !== '') {
    if (what !== 'list') throw badRequest(`resourceVersionMatch: only lists take it`);
    if (match !== 'NotOlderThan' && match !== 'Exact') throw badRequest(`resourceVersionMatch: "${match}" is not supported; use NotOlderThan or Exact`);
    if (!rv) throw badRequest('resourceVersionMatch: is forbidden unless resourceVersion is provided');
    if (match === 'Exact' && rv === '0') throw badRequest('resourceVersionMatch: "Exact" is forbidden for resourceVersion "0"');
    if (match === 'Exact') return { kind: 'exact', rv: Number(rv) };
  }
  if (!rv) return { kind: 'latest' };
  if (rv === '0') return { kind: 'any' };
  return { kind: 'notOlderThan', rv: Number(rv) };
}

const now = () => new Date().toISOString();

/**
 * The generic REST storage of every kind: CRUD with optimistic concurrency, status
 * subresource, patches, finalizers, selectors, paging, and watches served from the watch
 * cache. Kind-specific rules plug in as Admission hooks.
 */
export class Registry {
  private readonly admission = new Map<string, Admission>();
  private readonly validators: WriteValidator[] = [];
  private readonly admittedValidators: WriteValidator[] = [];
  /** how reads decide what the cache may answer (the one seam between requests and the cache) */
  readonly reader: Reader;

  constructor(
    readonly store: Store,
    readonly cache: WatchCache,
    readonly log: Logger,
    readonly limits: Limits = DEFAULT_LIMITS,
    reader?: Reader,
    /** how big one txn may be (what may grow is split to fit: commitEach) */
    readonly txnLimits: TxnLimits = defaultTxnLimits(store),
  ) {
    this.reader = reader ?? new Reader(store, cache);
  }

  use(kind: string, a: Admission) {
    this.admission.set(kind, a);
  }

  /**
   * Adds a check that every create, update and delete of every kind passes: before the
   * kind's admission (node restriction: what the caller wrote), or `admitted`, after it, on
   * the object as it will be stored (authorization of what the write does: writeauthz.ts).
   */
  useValidator(v: WriteValidator, phase: 'written' | 'admitted' = 'written') {
    (phase === 'admitted' ? this.admittedValidators : this.validators).push(v);
  }

  private validateWrite(op: Parameters<WriteValidator>[0]) {
    for (const v of this.validators) v(op);
  }

  private validateAdmitted(op: Parameters<WriteValidator>[0]) {
    for (const v of this.admittedValidators) v(op);
  }

  private adm(kind: KindInfo): Admission {
    return this.admission.get(kind.kind) ?? {};
  }

  noteWrite(rev: number) {
    this.reader.noteWrite(rev);
  }

  /**
   * Waits until the cache holds every write the store had committed when this call began,
   * whichever apiserver made it (a consistent read). Everything that decides from the cache
   * what must not be stale (admission, authorization, the ECS face, bindings) calls this
   * first. 429 while the cache is not synced; 504 when it does not catch up in 3 s.
   */
  async fresh(): Promise<void> {
    await this.reader.consistent();
  }

  /** Waits until the cache shows this apiserver's own writes (read-your-writes): enough where a compare-and-swap follows. */
  async ownWrites(): Promise<void> {
    await this.reader.ownWrites();
  }

  /**
   * The cached object at a key; an absent one is confirmed against fresh state before it
   * counts as absent (a lagging cache must not answer "not found" for what another apiserver
   * just wrote).
   */
  async lookup(key: string): Promise<Obj | undefined> {
    const o = this.cache.get(key);
    if (o) return o;
    await this.fresh();
    return this.cache.get(key);
  }

  key(kind: KindInfo, ns: string | undefined, name: string) {
    return storeKey(kind.plural, kind.namespaced ? ns : undefined, name);
  }

  private async checkNamespace(kind: KindInfo, ns: string | undefined) {
    if (kind.namespaced && !ns) throw badRequest(`${kind.plural} live in a cluster: give the namespace (the cluster name)`);
    if (!kind.namespaced && ns) throw badRequest(`${kind.plural} are not namespaced; drop the namespace`);
    if (kind.namespaced && !(kind.kind === 'Lease' && ns === SYSTEM_NAMESPACE)) {
      const key = storeKey('clusters', undefined, ns!);
      const inactive = (o: Obj | undefined) => !o || (o as { status?: { status?: string } }).status?.status === 'INACTIVE';
      let cl = this.cache.get(key);
      if (inactive(cl)) {
        await this.fresh();
        cl = this.cache.get(key);
      }
      if (inactive(cl)) throw notFound('clusters', ns!, `cluster "${ns}" not found`, 'ClusterNotFoundException');
    }
  }

  private out(kind: KindInfo, o: Obj): Obj {
    const a = this.adm(kind);
    return a.decorate ? a.decorate(o) : o;
  }

  resolveName(kind: KindInfo, ns: string | undefined, name: string): string {
    return this.adm(kind).resolveName?.(name, ns) ?? name;
  }

  /** The stored object as of now (a consistent read; undefined when absent). */
  async peek(kind: KindInfo, ns: string | undefined, name: string): Promise<Obj | undefined> {
    return this.readOne(kind, ns, name, { kind: 'latest' });
  }

  /**
   * GET. resourceVersion "" (default): the latest state (the cache once it has caught up
   * with the store, else the store); "0": whatever the cache holds; N: at least as new as N
   * (waits up to 3 s, then 504 "Too large resource version"). An unsynced cache sends every
   * get to the store, as Kubernetes' delegator does.
   */
  async get(kind: KindInfo, ns: string | undefined, name: string, opts: { resourceVersion?: string } = {}): Promise<Obj> {
    const o = await this.readOne(kind, ns, name, readVersion(opts.resourceVersion, undefined, 'get'));
    if (!o) throw notFoundFor(kind, name);
    return this.aliased(kind, name, this.out(kind, o));
  }

  private async readOne(kind: KindInfo, ns: string | undefined, name: string, v: ReadVersion): Promise<Obj | undefined> {
    if (!this.reader.ready) return this.storeGet(kind, ns, name, v);
    if (v.kind === 'latest') {
      try {
        await this.reader.consistent();
      } catch (e) {
        if (e instanceof StaleCacheError) return this.storeGet(kind, ns, name, v);
        throw e;
      }
    } else if (v.kind === 'notOlderThan') await this.reader.notOlderThan(v.rv);
    return this.cache.get(this.key(kind, ns, this.resolveName(kind, ns, name)));
  }

  private async storeGet(kind: KindInfo, ns: string | undefined, name: string, v: ReadVersion): Promise<Obj | undefined> {
    if (v.kind === 'notOlderThan' || v.kind === 'exact') {
      const cur = await this.store.currentRevision();
      if (cur < v.rv) throw new TooLargeResourceVersionError(v.rv, cur);
    }
    const kv = await this.store.get(this.key(kind, ns, this.resolveName(kind, ns, name)));
    return kv && parseStored(kv.value, kv.modRevision);
  }

  /**
   * A task definition addressed by its family is shown under that name (its revision is in
   * status): `kubectl apply` of a family manifest reads it back by the name in the file and
   * must not see a rename, so its patch lands on the family (and registers a new revision).
   */
  private aliased(kind: KindInfo, reqName: string, o: Obj): Obj {
    if (!kind.immutableSpec || reqName.includes(':') || o.metadata.name === reqName) return o;
    return { ...o, metadata: { ...o.metadata, name: reqName } };
  }

  /**
   * LIST, with Kubernetes' resourceVersion semantics (the same on every apiserver of one store):
   * - "" (default): the latest state: the cache once it has caught up with the store's
   *   current revision (one shared revision read), else the store itself;
   * - "0": whatever the cache holds now; N (NotOlderThan): a state at N or newer (waits up
   *   to 3 s, then 504 "Too large resource version"); N with Exact, or N with a limit and no
   *   match (Kubernetes' legacy exact): the store at exactly N (410 when compacted).
   * A paginated list is ONE snapshot: page 1's revision is every page's resourceVersion,
   * and the continue token carries it, so later pages are read from the store at that
   * revision (410 Expired once compacted). Page 1 comes from the cache when the cache can
   * serve it: its contents are exactly the store's state at its revision.
   */
  async list(kind: KindInfo, ns: string | undefined, opts: ListOptions & { fields?: FieldRequirement[] } = {}): Promise<ListResult> {
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = opts.fields ?? parseFieldSelector(opts.fieldSelector, kind.fieldSelectors);
    const limit = opts.limit && opts.limit > 0 ? opts.limit : Infinity;
    const filter = { labels, fields, limit };
    const prefix = kind.namespaced && ns ? `/berth/${kind.plural}/${ns}/` : `/berth/${kind.plural}/`;
    if (opts.continue) {
      if (opts.resourceVersion || opts.resourceVersionMatch) throw badRequest('resourceVersion: specifying a resource version is not allowed when using continue');
      const c = decodeContinue(opts.continue, prefix);
      return this.storePage(kind, prefix, filter, c.revision, c.nextKey, true);
    }
    const v = readVersion(opts.resourceVersion, opts.resourceVersionMatch, 'list');
    if (v.kind === 'exact' || (v.kind === 'notOlderThan' && !opts.resourceVersionMatch && limit !== Infinity)) {
      return this.storePage(kind, prefix, filter, v.rv, prefix, false);
    }
    if (!this.reader.ready) return this.storePage(kind, prefix, filter, 0, prefix, false, v.kind === 'notOlderThan' ? v.rv : 0);
    if (v.kind === 'latest') {
      try {
        await this.reader.consistent();
      } catch (e) {
        if (e instanceof StaleCacheError) return this.storePage(kind, prefix, filter, 0, prefix, false);
        throw e;
      }
    } else if (v.kind === 'notOlderThan') await this.reader.notOlderThan(v.rv);
    return this.cachePage(kind, ns, prefix, filter);
  }

  /** Page 1 from the cache, at the cache's revision (its contents are the store's state there). */
  private cachePage(kind: KindInfo, ns: string | undefined, prefix: string, f: ListFilter): ListResult {
    const rev = this.cache.revision;
    const idx = f.fields.find((r) => r.op === 'eq' && this.cache.isIndexed(kind.plural, r.field));
    const all = this.cache.list(kind.plural, ns, idx ? { field: idx.field, value: idx.value } : undefined);
    const items: Obj[] = [];
    let next: string | undefined;
    let remaining = 0;
    for (const [key, o] of all) {
      if (!matchesLabels(f.labels, o.metadata.labels) || !matchesFields(f.fields, o)) continue;
      if (items.length >= f.limit) {
        next ??= key;
        remaining++;
        continue;
      }
      items.push(this.out(kind, o));
    }
    return {
      items,
      resourceVersion: String(rev),
      ...(next !== undefined ? { continue: encodeContinue(rev, next, prefix), remainingItemCount: remaining } : {}),
    };
  }

  /**
   * A page read from the store at `revision` (0: the current one), from `start` on, filtered,
   * up to the limit. `minRev`: the current revision must be at least this (a NotOlderThan
   * read the cache could not serve).
   */
  private async storePage(
    kind: KindInfo,
    prefix: string,
    f: ListFilter,
    revision: number,
    start: string,
    continued: boolean,
    minRev = 0,
  ): Promise<ListResult> {
    const items: Obj[] = [];
    let rev = revision;
    let next: string | undefined;
    try {
      const pages = listPages(this.store, prefix, {
        revision: revision || undefined,
        continue: start !== prefix ? encodeContinue(revision, start, prefix) : undefined,
        maxKeys: Math.min(1000, Math.max(f.limit, 50)),
      });
      outer: for await (const page of pages) {
        rev = page.revision;
        if (rev < minRev) throw new TooLargeResourceVersionError(minRev, rev);
        for (let i = 0; i < page.items.length; i++) {
          const kv = page.items[i];
          if (items.length >= f.limit) {
            next = kv.key;
            break outer;
          }
          const o = parseStored(kv.value, kv.modRevision);
          if (!matchesLabels(f.labels, o.metadata.labels) || !matchesFields(f.fields, o)) continue;
          items.push(this.out(kind, o));
        }
      }
    } catch (e) {
      if (e instanceof CompactedError) {
        throw continued
          ? expired('The provided continue parameter is too old to display a consistent list result. Start a new list without the continue parameter.')
          : expired(`too old resource version: ${revision} (${e.compactRevision})`);
      }
      throw e;
    }
    return { items, resourceVersion: String(rev), ...(next !== undefined ? { continue: encodeContinue(rev, next, prefix) } : {}) };
  }

  /**
   * A watch served from the cache. Without a resourceVersion (or "0"), the current state is
   * sent first as ADDED events, like Kubernetes ("" waits for the latest state first). From
   * N, the watch waits until the cache holds N (up to 3 s, then "Too large resource
   * version") and never sends an event at or below N. 429 while the cache is not synced.
   */
  async watch(kind: KindInfo, ns: string | undefined, opts: WatchOptions, sink: WatchSink): Promise<WatchHandle> {
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = opts.fields ?? parseFieldSelector(opts.fieldSelector, kind.fieldSelectors);
    const rv = opts.resourceVersion;
    const v = readVersion(rv, undefined, 'watch');
    if (v.kind === 'latest') {
      // the latest state when the cache catches up in time; else the newest the cache has
      // (Kubernetes serves such a watch from its cache as it is)
      await this.reader.consistent().catch((e) => {
        if (!(e instanceof StaleCacheError)) throw e;
        this.log.warn({ err: e.message, kind: kind.plural }, 'watch: starting from the cache as it is');
      });
    } else if (v.kind === 'notOlderThan') await this.reader.notOlderThan(v.rv);
    else this.reader.requireReady();
    const matches = (o: Obj) => matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o);
    const idx = fields.find((f) => f.op === 'eq' && this.cache.isIndexed(kind.plural, f.field));
    let from: number;
    const namespace = kind.namespaced ? ns : undefined;
    if (v.kind !== 'notOlderThan' || opts.sendInitialEvents) {
      from = this.cache.revision;
      for (const [, o] of this.cache.list(kind.plural, namespace, idx ? { field: idx.field, value: idx.value } : undefined)) {
        if (!matches(o)) continue;
        const out = this.out(kind, o);
        sink('ADDED', out, () => sharedFrame(new Map(), 'ADDED', 'obj', out));
      }
      if (opts.sendInitialEvents && opts.allowWatchBookmarks) {
        const mark = bookmark(kind, from, true);
        sink('BOOKMARK', mark, () => Buffer.from(`{"type":"BOOKMARK","object":${JSON.stringify(mark)}}\n`));
      }
    } else {
      from = v.rv;
    }
    let sent = from;
    const w: CacheWatcher = {
      plural: kind.plural,
      namespace,
      from,
      matches,
      send: (type, obj, rev, share) => {
        if (rev > sent) sent = rev;
        // the object as sent, decorated once per event: a DELETED's last state is its own slot
        const slot = type === 'DELETED' ? 'last' : 'obj';
        let out = share.get(`out:${slot}`) as Obj | undefined;
        if (!out) {
          out = this.out(kind, obj);
          share.set(`out:${slot}`, out);
        }
        const o = out;
        sink(type, o, () => sharedFrame(share, type, slot, o));
      },
      ...(idx ? { index: { field: idx.field, value: idx.value } } : {}),
    };
    const stop = await this.cache.addWatcher(w, from);
    return { stop, bookmarkRevision: () => Math.max(this.cache.revision, sent) };
  }

  // ------------------------------------------------------------------ writes

  /** Validates a whole incoming object for a kind; the name may be resolved by admission. */
  private validate(kind: KindInfo, body: unknown, ns: string | undefined): Obj {
    const v = validateObject(body, { kind, limits: this.limits, allowRevisionName: kind.immutableSpec });
    if (kind.namespaced) {
      const bodyNs = v.metadata.namespace;
      if (bodyNs !== undefined && bodyNs !== ns) {
        throw badRequest(`the namespace of the object (${bodyNs}) does not match the namespace on the request (${ns})`);
      }
    } else if (v.metadata.namespace) {
      throw badRequest(`${kind.plural} are not namespaced; drop metadata.namespace`);
    }
    // a spec stored as written keeps the user's own (kubectl's three-way patch compares it with the file)
    const spec = kind.specAsWritten ? structuredClone((body as { spec?: unknown }).spec) : v.spec;
    const o: Obj = { apiVersion: API_VERSION, kind: kind.kind, metadata: { ...v.metadata }, spec } as Obj;
    if (kind.namespaced) o.metadata.namespace = ns;
    if (v.status !== undefined) o.status = v.status;
    return o;
  }

  private validateStatus(kind: KindInfo, status: unknown, name: string): unknown {
    if (status === undefined) return undefined;
    const r = kind.status.safeParse(status);
    if (!r.success) {
      const err = invalid(kind.kind, name, r.error.issues.map((i) => ({ field: ['status', ...i.path].join('.'), message: i.message })));
      throw err;
    }
    return r.data;
  }

  /**
   * Admission and validation of a create, without committing it: the object and the txn
   * pieces that make it (RunTask commits several with their bindings in one txn).
   */
  async prepareCreate(kind: KindInfo, ns: string | undefined, body: unknown, ctx: RequestContext = {}): Promise<PreparedCreate | { existing: Obj }> {
    await this.checkNamespace(kind, ns);
    const w: WriteContext = { registry: this, compares: [], ops: [], ctx };
    let o = this.validate(kind, body, ns);
    // like Kubernetes kinds with a status subresource: a client's status is not taken on
    // create (admission may set one: a task definition's revision and ARN)
    delete o.status;
    const a = this.adm(kind);
    if (a.normalize) {
      const r = await a.normalize(o, ns, w);
      if ('existing' in r) return { existing: r.existing };
      o = r;
    }
    if (!o.metadata.name) {
      if (!o.metadata.generateName) throw invalid(kind.kind, '', [{ field: 'metadata.name', message: 'is required' }]);
      o.metadata.name = o.metadata.generateName + randomUUID().replace(/-/g, '').slice(0, 5);
    }
    const meta = o.metadata as Record<string, unknown>;
    meta.uid = randomUUID();
    meta.creationTimestamp = now();
    meta.generation = 1;
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    delete meta.managedFields;
    delete meta.generateName;
    this.validateWrite({ verb: 'create', kind, sub: undefined, next: o, ctx });
    if (a.create) await a.create(o, w);
    if (o.status !== undefined) o.status = this.validateStatus(kind, o.status, o.metadata.name);
    this.validateAdmitted({ verb: 'create', kind, sub: undefined, next: o, ctx });
    this.guardNamespace(kind, ns, w);
    return { key: this.key(kind, ns, o.metadata.name), obj: o, compares: w.compares, ops: w.ops, response: w.response };
  }

  /**
   * A namespaced create commits only while its cluster is as this cache saw it (so never
   * into a cluster deleted meanwhile, on any apiserver), and the cluster's admission adds its
   * contents guard, which a cluster delete compares (C4).
   */
  private guardNamespace(kind: KindInfo, ns: string | undefined, w: WriteContext) {
    if (!kind.namespaced || (kind.kind === 'Lease' && ns === SYSTEM_NAMESPACE)) return;
    const key = storeKey('clusters', undefined, ns!);
    const cl = this.cache.get(key);
    if (!cl || (cl as { status?: { status?: string } }).status?.status === 'INACTIVE') {
      throw notFound('clusters', ns!, `cluster "${ns}" not found`, 'ClusterNotFoundException');
    }
    w.compares.push({ key, modRevision: Number(cl.metadata.resourceVersion) });
    this.admission.get('Cluster')?.child?.(kind, ns!, w);
  }

  /**
   * Commits prepared creates, and more (a binding's records, a client token), in ONE txn.
   * On success each object carries its resourceVersion.
   */
  async commitCreates(prepared: PreparedCreate[], extra: { compares: Compare[]; ops: Op[] } = { compares: [], ops: [] }, ctx: RequestContext = {}) {
    const parts = [
      ...prepared.map((p) => ({
        compares: [{ key: p.key, modRevision: 0 }, ...p.compares],
        ops: [{ type: 'put' as const, key: p.key, value: JSON.stringify(p.obj) }, ...p.ops],
      })),
      extra,
    ];
    const merged = mergeTxn(parts);
    // two pieces read one guard at two revisions (the cache moved between their admissions):
    // as if the txn had failed on it, so the caller admits again from fresh state
    if ('contradicts' in merged) return { succeeded: false, revision: 0, failed: [merged.contradicts], written: [] };
    const r = await this.txn(merged.compares, merged.ops, ctx);
    if (r.succeeded) for (const p of prepared) p.obj.metadata.resourceVersion = String(r.revision);
    return r;
  }

  async create(kind: KindInfo, ns: string | undefined, body: unknown, ctx: RequestContext = {}): Promise<{ obj: Obj; created: boolean }> {
    // admission reads the cache (a service resolves its task definition, a namespaced object
    // needs its cluster): it must see this apiserver's own earlier writes, or a create right
    // after another races the watch
    await this.fresh();
    for (let attempt = 1; ; attempt++) {
      const p = await this.prepareCreate(kind, ns, body, ctx);
      if ('existing' in p) return { obj: this.out(kind, p.existing), created: false };
      if (ctx.dryRun) return { obj: this.out(kind, p.obj), created: true };
      const r = await this.commitCreates([p], undefined, ctx);
      if (r.succeeded) {
        const out = this.out(kind, p.obj);
        return { obj: p.response ? p.response(structuredClone(out)) : out, created: true };
      }
      // the txn met a newer state than this cache's (txn noted its revision): wait for it
      // and admit again. A name the client chose that is taken is AlreadyExists; a revision
      // number admission chose (a task definition) was taken by a concurrent registration,
      // so the next one is tried (C5)
      const own = r.failed.includes(p.key);
      if (own && !kind.immutableSpec) throw alreadyExistsFor(kind, p.obj.metadata.name);
      if (attempt >= (own ? REVISION_ATTEMPTS : CREATE_ATTEMPTS)) throw conflictFor(kind, p.obj.metadata.name);
      await this.fresh();
      if (own) await new Promise((res) => setTimeout(res, Math.random() * Math.min(20, 2 * attempt)));
    }
  }

  /**
   * PUT: the whole object (or its status). Requires metadata.resourceVersion, like custom
   * resources in Kubernetes: a stale one fails with 409 Conflict.
   */
  async update(kind: KindInfo, ns: string | undefined, name: string, body: unknown, sub: 'status' | undefined, ctx: RequestContext = {}): Promise<Obj> {
    await this.checkNamespace(kind, ns);
    const rv = (body as { metadata?: { resourceVersion?: unknown } })?.metadata?.resourceVersion;
    if (rv === undefined || rv === '') {
      throw invalid(kind.kind, name, [{ field: 'metadata.resourceVersion', message: 'must be specified for an update' }]);
    }
    const bodyName = (body as { metadata?: { name?: unknown } })?.metadata?.name;
    if (bodyName !== undefined && bodyName !== name && this.resolveName(kind, ns, String(bodyName)) !== this.resolveName(kind, ns, name)) {
      throw badRequest(`the name of the object (${String(bodyName)}) does not match the name on the URL (${name})`);
    }
    return this.aliased(kind, name, await this.write(kind, ns, name, sub, { ...ctx, replacesObject: true }, () => body, String(rv)));
  }

  /** PATCH: merge patch or JSON patch on the current object; retried on conflict unless the patch pins a resourceVersion. */
  async patch(kind: KindInfo, ns: string | undefined, name: string, type: 'merge' | 'json', patch: unknown, sub: 'status' | undefined, ctx: RequestContext = {}): Promise<Obj> {
    await this.checkNamespace(kind, ns);
    if (type === 'merge' && (typeof patch !== 'object' || patch === null || Array.isArray(patch))) {
      throw badRequest('a merge patch must be a JSON object');
    }
    return this.aliased(kind, name, await this.write(kind, ns, name, sub, ctx, (cur) => (type === 'merge' ? mergePatch(cur, patch) : jsonPatch(cur, patch))));
  }

  /**
   * Merge patches of the status of many objects of one kind, committed in as few txns as the
   * store's limits allow (an agent's status reports: one request per report interval). Each
   * item is admitted exactly as a single status PATCH (node restriction, admission, status
   * validation, what the write does) and gets its own outcome: its object, or its error. An
   * item whose txn met a newer state is prepared again from that state (as `write` retries);
   * an item that would write a key another item of the same txn writes (two tasks of one
   * instance releasing its allocation record as they stop) goes in a later txn, prepared
   * on the state the earlier one left. Items that name one object twice: the second is refused.
   */
  async patchStatuses(kind: KindInfo, ns: string | undefined, items: Array<{ name: string; patch: unknown }>, ctx: RequestContext = {}): Promise<Array<{ obj: Obj } | { error: unknown }>> {
    await this.checkNamespace(kind, ns);
    const out: Array<{ obj: Obj } | { error: unknown }> = new Array(items.length);
    const seen = new Set<string>();
    let pending: number[] = [];
    items.forEach((it, i) => {
      if (typeof it.patch !== 'object' || it.patch === null || Array.isArray(it.patch)) out[i] = { error: badRequest('a merge patch must be a JSON object') };
      else if (seen.has(it.name)) out[i] = { error: badRequest(`${kind.plural} "${it.name}" is named twice in this call`) };
      else pending.push(i);
      seen.add(it.name);
    });
    const confirmed = new Map<number, boolean>();
    const conflicts = new Map<number, number>();
    const { maxOps, maxBytes } = roomBeside(ctx.fence, this.txnLimits);
    while (pending.length) {
      const prepared: Array<{ i: number; p: PreparedWrite }> = [];
      for (const i of pending) {
        const { name, patch } = items[i];
        try {
          const p = await this.prepareWrite(kind, ns, name, 'status', ctx, (cur) => mergePatch(cur, patch), undefined, confirmed.get(i) ?? false);
          if ('done' in p) out[i] = { obj: this.aliased(kind, name, p.done) };
          else {
            confirmed.set(i, p.confirmed);
            prepared.push({ i, p });
          }
        } catch (e) {
          out[i] = { error: e };
        }
      }
      // txns within the limits; an item touching a key an earlier item of the txn writes (or
      // writing one it compares) waits for the next round
      const next: number[] = [];
      let chunk: Array<{ i: number; p: PreparedWrite }> = [];
      let compareRev = new Map<string, number>();
      let written = new Set<string>();
      const roundWritten = new Set<string>();
      let bytes = 0;
      const chunks: Array<typeof chunk> = [];
      const size = (p: PreparedWrite) => p.compares.reduce((n, c) => n + c.key.length + 16, 0) + p.ops.reduce((n, o) => n + o.key.length + (o.type === 'put' ? o.value.length : 0) + 16, 0);
      for (const it of prepared) {
        const { p } = it;
        const clash =
          p.ops.some((o) => roundWritten.has(o.key) || compareRev.has(o.key)) ||
          p.compares.some((c) => roundWritten.has(c.key) || (compareRev.has(c.key) && compareRev.get(c.key) !== c.modRevision));
        if (clash) {
          next.push(it.i);
          continue;
        }
        const b = size(p);
        const newCompares = p.compares.filter((c) => !compareRev.has(c.key)).length;
        if (chunk.length && (compareRev.size + newCompares > maxOps || written.size + p.ops.length > maxOps || bytes + b > maxBytes)) {
          chunks.push(chunk);
          chunk = [];
          compareRev = new Map();
          written = new Set();
          bytes = 0;
        }
        chunk.push(it);
        for (const c of p.compares) compareRev.set(c.key, c.modRevision);
        for (const o of p.ops) {
          written.add(o.key);
          roundWritten.add(o.key);
        }
        bytes += b;
      }
      if (chunk.length) chunks.push(chunk);
      for (const c of chunks) {
        const merged = mergeTxn(c.map((x) => x.p));
        if ('contradicts' in merged) throw internal(`a status batch compares ${merged.contradicts} twice`);
        const r = await this.commit(ctx, merged.compares, merged.ops);
        this.noteWrite(r.revision);
        if (r.succeeded) {
          for (const { i, p } of c) out[i] = { obj: this.aliased(kind, items[i].name, this.committedWrite(kind, p, r.revision)) };
          continue;
        }
        // the items whose compares failed met a newer state: prepared again from it (a few
        // times, as a single write); the others of the txn only go again
        const failed = new Set(r.failed);
        const touched = c.filter((x) => x.p.compares.some((cmp) => failed.has(cmp.key)));
        for (const x of touched.length ? touched : c) {
          const n = (conflicts.get(x.i) ?? 0) + 1;
          conflicts.set(x.i, n);
          if (n > 10) out[x.i] = { error: conflictFor(kind, items[x.i].name) };
        }
        for (const x of c) if (!out[x.i]) next.push(x.i);
      }
      pending = next;
    }
    return out;
  }

  /**
   * The read-mutate-CAS loop shared by update and patch (GuaranteedUpdate): bounded
   * retries, and a write that changes nothing is skipped.
   */
  private async write(
    kind: KindInfo,
    ns: string | undefined,
    reqName: string,
    sub: 'status' | undefined,
    ctx: RequestContext,
    mutate: (cur: Obj) => unknown,
    expectRv?: string,
  ): Promise<Obj> {
    let confirmed = false;
    for (let attempt = 0; ; attempt++) {
      const p = await this.prepareWrite(kind, ns, reqName, sub, ctx, mutate, expectRv, confirmed);
      if ('done' in p) return p.done;
      confirmed = p.confirmed;
      const r = await this.commit(ctx, p.compares, p.ops);
      if (r.succeeded) {
        this.noteWrite(r.revision);
        return this.committedWrite(kind, p, r.revision);
      }
      if (p.pinned) throw conflictFor(kind, reqName);
      if (attempt >= 10) throw conflictFor(kind, reqName);
      this.noteWrite(r.revision);
    }
  }

  /** What a prepared write returns once its txn committed at `revision`. */
  private committedWrite(kind: KindInfo, p: PreparedWrite, revision: number): Obj {
    p.next.metadata.resourceVersion = String(revision);
    return this.out(kind, p.next);
  }

  /**
   * One pass of the read-mutate step of `write`, up to (not including) the commit: the txn
   * that makes the write, or what to answer without one (no change, a dry run, a new
   * revision registered instead). Every check of a single write runs here (node
   * restriction, admission, status validation, authorization of what the write does), so a
   * batch of writes (`patchStatuses`) checks each item exactly as a single write.
   */
  private async prepareWrite(
    kind: KindInfo,
    ns: string | undefined,
    reqName: string,
    sub: 'status' | undefined,
    ctx: RequestContext,
    mutate: (cur: Obj) => unknown,
    expectRv: string | undefined,
    confirmedBefore: boolean,
  ): Promise<PreparedWrite | { done: Obj }> {
    const a = this.adm(kind);
    // C8: the cache may trail another apiserver's writes; a miss or a precondition that fails
    // only because the client has seen a newer version is confirmed against fresh state
    // (once) before it becomes a 404 or a 409, as GuaranteedUpdate re-reads when its cached
    // state fails a precondition. The compare-and-swap below catches any other staleness.
    let confirmed = confirmedBefore;
    for (;;) {
      const name = this.resolveName(kind, ns, reqName);
      const key = this.key(kind, ns, name);
      await this.ownWrites();
      const cur = this.cache.get(key);
      if (!confirmed && (!cur || aheadOf(expectRv, cur))) {
        await this.fresh();
        confirmed = true;
        continue;
      }
      if (!cur) throw notFoundFor(kind, reqName);
      if (expectRv !== undefined && expectRv !== cur.metadata.resourceVersion) throw conflictFor(kind, reqName);
      const curClone = structuredClone(cur);
      // the patch is applied to the object without its version, so a version in the result
      // is one the client asked for (a precondition); without it the write retries on conflict
      const probe = structuredClone(cur);
      delete (probe.metadata as { resourceVersion?: string }).resourceVersion;
      const changed = mutate(probe) as Obj;
      if (typeof changed !== 'object' || changed === null || Array.isArray(changed)) throw badRequest('the result of the patch is not an object');
      const patchedRv = (changed.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
      if (!confirmed && aheadOf(patchedRv, cur)) {
        await this.fresh();
        confirmed = true;
        continue;
      }
      if (patchedRv !== undefined && patchedRv !== cur.metadata.resourceVersion) throw conflictFor(kind, reqName);
      const w: WriteContext = { registry: this, compares: [], ops: [], ctx, reqName };
      let next: Obj;
      if (sub === 'status') {
        next = { ...curClone, status: this.validateStatus(kind, changed.status, name) };
      } else {
        const v = this.validate(kind, { ...changed, metadata: { ...(changed.metadata ?? {}), name: kind.immutableSpec ? name : changed.metadata?.name ?? name } }, ns);
        if (v.metadata.name !== name) throw badRequest(`metadata.name: cannot change the name from "${name}" to "${v.metadata.name}"`);
        next = {
          ...v,
          metadata: {
            ...v.metadata,
            uid: (curClone.metadata as Record<string, unknown>).uid,
            creationTimestamp: (curClone.metadata as Record<string, unknown>).creationTimestamp,
            generation: (curClone.metadata as Record<string, unknown>).generation,
            deletionTimestamp: (curClone.metadata as Record<string, unknown>).deletionTimestamp,
          } as Obj['metadata'],
          status: curClone.status,
        } as Obj;
        if (next.metadata && (next.metadata as Record<string, unknown>).deletionTimestamp === undefined) delete (next.metadata as Record<string, unknown>).deletionTimestamp;
        delete (next.metadata as Record<string, unknown>).managedFields;
        const content = (o: Obj) => (a.revisionContent ? a.revisionContent(o) : o.spec);
        if (kind.immutableSpec && !sameJson(content(next), content(curClone))) {
          // revisions are immutable: a changed spec addressed by its family registers the
          // next revision (this is how `kubectl apply` of an edited file lands); addressed
          // by an explicit revision it is refused (what else a revision is, admission refuses
          // with its own field)
          if (!reqName.includes(':') && !reqName.startsWith('arn:')) {
            const family = name.split(':')[0];
            const { labels, annotations } = next.metadata as Record<string, unknown>;
            const body = { apiVersion: API_VERSION, kind: kind.kind, metadata: { name: family, labels, annotations }, spec: next.spec };
            // a registration, authorized as one before anything is read back (R1-1)
            this.validateAdmitted({ verb: 'create', kind, sub: undefined, next: body as Obj, ctx });
            return { done: (await this.create(kind, ns, body, ctx)).obj };
          }
          if (!sameJson(next.spec, curClone.spec)) {
            const message = `${kind.plural} revisions are immutable; apply the family "${name.split(':')[0]}" to register a new revision`;
            throw invalid(kind.kind, name, [{ field: 'spec', message, reason: 'FieldValueForbidden' }]);
          }
        }
      }
      this.validateWrite({ verb: 'update', kind, sub, prev: curClone, next, ctx });
      if (a.update) await a.update(next, curClone, w, sub);
      // generation counts spec changes as admission leaves them (`web` resolving to the same
      // `web:3` is no change)
      if (sub !== 'status' && !kind.immutableSpec && !sameJson(next.spec, curClone.spec)) {
        (next.metadata as Record<string, unknown>).generation = Number((curClone.metadata as Record<string, unknown>).generation ?? 1) + 1;
      }
      delete next.metadata.resourceVersion;
      const prevComparable = { ...curClone, metadata: { ...curClone.metadata, resourceVersion: undefined } };
      if (w.ops.length === 0 && (sub === 'status' ? sameJson(next.status, curClone.status) : sameJson(next, prevComparable))) {
        return { done: this.out(kind, cur) }; // nothing changed: no write
      }
      this.validateAdmitted({ verb: 'update', kind, sub, prev: curClone, next, ctx });
      // finalizers: a deleting object whose last finalizer went away is removed now
      const finalizing =
        (next.metadata as Record<string, unknown>).deletionTimestamp !== undefined &&
        !((next.metadata as Record<string, unknown>).finalizers as string[] | undefined)?.length;
      if (ctx.dryRun) return { done: this.out(kind, { ...next, metadata: { ...next.metadata, resourceVersion: cur.metadata.resourceVersion } }) };
      if (finalizing) this.addTombstone(kind, ns, next, w);
      return {
        key,
        next,
        compares: [{ key, modRevision: Number(cur.metadata.resourceVersion) }, ...w.compares],
        ops: [finalizing ? { type: 'delete', key } : { type: 'put', key, value: JSON.stringify(next) }, ...w.ops],
        pinned: expectRv !== undefined || patchedRv !== undefined,
        confirmed,
      };
    }
  }

  /**
   * DELETE: with finalizers, marks deletionTimestamp; admission may turn a delete into a
   * state change (task definitions are deregistered, not removed). `preconditionRv` gives
   * optimistic concurrency.
   */
  async delete(kind: KindInfo, ns: string | undefined, reqName: string, ctx: RequestContext = {}, preconditionRv?: string): Promise<Obj> {
    await this.checkNamespace(kind, ns);
    const a = this.adm(kind);
    let confirmed = false; // as in write(): a miss or a newer precondition is confirmed against fresh state (C8)
    for (let attempt = 0; ; attempt++) {
      const name = this.resolveName(kind, ns, reqName);
      const key = this.key(kind, ns, name);
      await this.ownWrites();
      const cur = this.cache.get(key);
      if (!confirmed && (!cur || aheadOf(preconditionRv, cur))) {
        await this.fresh();
        confirmed = true;
        attempt--;
        continue;
      }
      if (!cur) throw notFoundFor(kind, reqName);
      if (preconditionRv && preconditionRv !== cur.metadata.resourceVersion) throw conflictFor(kind, reqName);
      const w: WriteContext = { registry: this, compares: [], ops: [], ctx, reqName };
      const curClone = structuredClone(cur);
      this.validateWrite({ verb: 'delete', kind, sub: undefined, prev: curClone, ctx });
      let replacement = a.delete ? await a.delete(curClone, w) : undefined;
      const finalizers = (curClone.metadata as Record<string, unknown>).finalizers as string[] | undefined;
      if (!replacement && finalizers?.length) {
        if ((curClone.metadata as Record<string, unknown>).deletionTimestamp) return this.out(kind, cur);
        replacement = { ...curClone, metadata: { ...curClone.metadata, deletionTimestamp: now() } as Obj['metadata'] };
      }
      if (ctx.dryRun) return this.out(kind, replacement ?? cur);
      if (replacement) delete replacement.metadata.resourceVersion;
      else this.addTombstone(kind, ns, curClone, w);
      const r = await this.commit(
        ctx,
        [{ key, modRevision: Number(cur.metadata.resourceVersion) }, ...w.compares],
        [replacement ? { type: 'put', key, value: JSON.stringify(replacement) } : { type: 'delete', key }, ...w.ops],
      );
      if (r.succeeded) {
        this.noteWrite(r.revision);
        const res = replacement ?? cur;
        return this.aliased(kind, reqName, this.out(kind, { ...res, metadata: { ...res.metadata, resourceVersion: String(r.revision) } }));
      }
      if (preconditionRv || attempt >= 10) throw conflictFor(kind, reqName);
      this.noteWrite(r.revision);
    }
  }

  /** The removal of `o` also writes its describable record, when its kind keeps one. */
  private addTombstone(kind: KindInfo, ns: string | undefined, o: Obj, w: WriteContext) {
    const t = this.adm(kind).tombstone?.(structuredClone(o));
    if (!t) return;
    const meta = t.metadata as { annotations?: Record<string, string>; resourceVersion?: string };
    delete meta.resourceVersion;
    meta.annotations = { ...meta.annotations, [INACTIVE_SINCE_ANNOTATION]: now() };
    w.ops.push({ type: 'put', key: tombstoneKey(kind.plural, kind.namespaced ? ns : undefined, o.metadata.name), value: JSON.stringify(t) });
  }

  /** The INACTIVE record of a removed object (a deleted service, a deregistered instance), while it is kept. */
  async inactive(kind: KindInfo, ns: string | undefined, name: string): Promise<Obj | undefined> {
    await this.fresh();
    return this.cache.get(tombstoneKey(kind.plural, kind.namespaced ? ns : undefined, name));
  }

  /** Deletes the INACTIVE records older than the retention; returns how many. */
  async sweepInactive(kinds: KindInfo[], retentionMs: number, nowMs = Date.now()): Promise<number> {
    let n = 0;
    for (const kind of kinds) {
      for (const [key, o] of this.cache.list(`inactive.${kind.plural}`, undefined)) {
        const since = Date.parse((o.metadata as { annotations?: Record<string, string> }).annotations?.[INACTIVE_SINCE_ANNOTATION] ?? '');
        if (Number.isFinite(since) && nowMs - since < retentionMs) continue;
        const r = await this.txn([{ key, modRevision: Number(o.metadata.resourceVersion) }], [{ type: 'delete', key }]);
        if (r.succeeded) n++;
      }
    }
    return n;
  }

  /** Deletes the records under /berth/<plural>/ created (`createdAt`) longer than `ttlMs` ago: RunTask's client tokens. */
  async sweepRecords(plural: string, ttlMs: number, nowMs = Date.now()): Promise<number> {
    let n = 0;
    for (const [key, o] of this.cache.list(plural, undefined)) {
      const at = Date.parse((o as { createdAt?: string }).createdAt ?? '');
      if (Number.isFinite(at) && nowMs - at < ttlMs) continue;
      const r = await this.txn([{ key, modRevision: Number(o.metadata.resourceVersion) }], [{ type: 'delete', key }]);
      if (r.succeeded) n++;
    }
    return n;
  }

  /**
   * Independent writes, each atomic on its own (its compares and ops), committed in order in
   * as few txns as the store's limits allow (R1-4: a family's deregistration, one revision
   * each). Returns the indexes of the writes whose txn failed (a compare did not hold): the
   * caller reads them again and retries what still applies.
   */
  async commitEach(items: Array<{ compares: Compare[]; ops: Op[] }>, ctx: RequestContext = {}): Promise<number[]> {
    const { maxOps, maxBytes } = roomBeside(ctx.fence, this.txnLimits);
    const size = (it: { compares: Compare[]; ops: Op[] }) =>
      it.compares.reduce((n, c) => n + c.key.length + 16, 0) + it.ops.reduce((n, o) => n + o.key.length + (o.type === 'put' ? o.value.length : 0) + 16, 0);
    const failed: number[] = [];
    let chunk: number[] = [];
    let compares = 0;
    let ops = 0;
    let bytes = 0;
    const flush = async () => {
      if (!chunk.length) return;
      const r = await this.txn(
        chunk.flatMap((i) => items[i].compares),
        chunk.flatMap((i) => items[i].ops),
        ctx,
      );
      if (!r.succeeded) failed.push(...chunk);
      chunk = [];
      compares = ops = bytes = 0;
    };
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      const b = size(it);
      if (chunk.length && (compares + it.compares.length > maxOps || ops + it.ops.length > maxOps || bytes + b > maxBytes)) await flush();
      chunk.push(i);
      compares += it.compares.length;
      ops += it.ops.length;
      bytes += b;
    }
    await flush();
    return failed;
  }

  /** A raw txn on behalf of a kind's logic (binding); notes the revision for freshness; fenced like every write. */
  async txn(compares: Compare[], ops: Op[], ctx: RequestContext = {}) {
    const r = await this.commit(ctx, compares, ops);
    this.noteWrite(r.revision);
    return r;
  }

  /** The one place a request's writes reach the store: with its lease fence, if it carries one (refused with LeaseLost when it no longer holds). */
  private async commit(ctx: RequestContext, compares: Compare[], ops: Op[]) {
    const r = await this.store.txn(withFence(ctx.fence, compares), ops);
    checkFence(ctx.fence, r);
    return r;
  }
}

/** A client's resourceVersion newer than the cached object's: the cache, not the client, may be behind. */
function aheadOf(rv: string | undefined, cur: Obj | undefined): boolean {
  return rv !== undefined && cur !== undefined && /^\d+$/.test(rv) && Number(rv) > Number(cur.metadata.resourceVersion);
}

/**
 * The compares and ops of several writes as one txn. A key compared twice must be compared
 * at one revision (else `contradicts` names it), and a key written twice must get one value
 * (etcd refuses duplicate keys in a txn): the pieces of one RunTask share their cluster's guards.
 */
export function mergeTxn(parts: Array<{ compares: Compare[]; ops: Op[] }>): { compares: Compare[]; ops: Op[] } | { contradicts: string } {
  const compares = new Map<string, Compare>();
  const ops = new Map<string, Op>();
  for (const part of parts) {
    for (const c of part.compares) {
      const had = compares.get(c.key);
      if (had && had.modRevision !== c.modRevision) return { contradicts: c.key };
      compares.set(c.key, c);
    }
    for (const o of part.ops) {
      const had = ops.get(o.key);
      if (had && JSON.stringify(had) !== JSON.stringify(o)) throw internal(`one txn would write ${o.key} twice with different values`);
      ops.set(o.key, o);
    }
  }
  return { compares: [...compares.values()], ops: [...ops.values()] };
}

/** a resource as kube-apiserver names it in errors: `services.berth.dev` (its group in details.group) */
const qualified = (kind: KindInfo) => `${kind.plural}.${GROUP}`;

function alreadyExistsFor(kind: KindInfo, name: string): BerthError {
  return alreadyExists(kind.plural, name, `${qualified(kind)} "${name}" already exists`);
}

function notFoundFor(kind: KindInfo, name: string): BerthError {
  return notFound(kind.plural, name, `${qualified(kind)} "${name}" not found`);
}

function conflictFor(kind: KindInfo, name: string): BerthError {
  return conflict(kind.plural, name, `Operation cannot be fulfilled on ${qualified(kind)} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
}

export function bookmark(kind: KindInfo, rev: number, initialEventsEnd = false): Obj {
  return {
    apiVersion: API_VERSION,
    kind: kind.kind,
    metadata: {
      name: '',
      resourceVersion: String(rev),
      ...(initialEventsEnd ? { annotations: { 'k8s.io/initial-events-end': 'true' } } : {}),
    },
  } as Obj;
}

export const isConflict = (e: unknown) => isBerthError(e, 'Conflict');
export type { Selector, FieldRequirement };

export type { ListOptions };
