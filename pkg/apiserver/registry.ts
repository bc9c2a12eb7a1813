import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/log.ts';
import { API_VERSION, SYSTEM_NAMESPACE, storeKey, type KindInfo, type ListOptions } from '../api/meta.ts';
import { validateObject, type Limits, DEFAULT_LIMITS, sameJson } from '../api/validate.ts';
import { badRequest, conflict, invalid, isBerthError, notFound, BerthError } from '../errors/errors.ts';
import type { Op, Compare, Store } from '../store/store.ts';
import { mergePatch, jsonPatch } from './patch.ts';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector, type FieldRequirement, type Selector } from './selectors.ts';
import { WatchCache, type CacheWatcher, type Obj, type WatchType } from './watchcache.ts';
import { decodeContinue, encodeContinue } from '../store/keys.ts';
import { checkFence, withFence, type Fence } from './fence.ts';

export type { Obj };

export interface RequestContext {
  /** the authenticated user, for admission decisions and audit */
  user?: string;
  dryRun?: boolean;
  /** `Strict` (default), `Warn` or `Ignore`; berth's schemas are always strict */
  fieldValidation?: string;
  /** a bootstrap identity registering an instance receives a node credential */
  issueNodeCredential?: boolean;
  /** the lease fence the request carries (Berth-Lease-Fence): every txn it commits also compares it */
  fence?: Fence;
}

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
  /** decorate an object on its way out (computed fields) */
  decorate?(obj: Obj): Obj;
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

export interface ListResult {
  items: Obj[];
  resourceVersion: string;
  continue?: string;
  remainingItemCount?: number;
}

export interface WatchOptions {
  labelSelector?: string;
  fieldSelector?: string;
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** list-then-watch: send the current state as ADDED first (no or "0" resourceVersion) */
  sendInitialEvents?: boolean;
}

export type WatchSink = (type: WatchType | 'BOOKMARK', obj: Obj) => void;

const now = () => new Date().toISOString();

/**
 * The generic REST storage of every kind: CRUD with optimistic concurrency, status
 * subresource, patches, finalizers, selectors, paging, and watches served from the watch
 * cache. Kind-specific rules plug in as Admission hooks.
 */
export class Registry {
  private lastWriteRev = 0;
  private readonly admission = new Map<string, Admission>();

  constructor(
    readonly store: Store,
    readonly cache: WatchCache,
    readonly log: Logger,
    readonly limits: Limits = DEFAULT_LIMITS,
  ) {}

  use(kind: string, a: Admission) {
    this.admission.set(kind, a);
  }

  private adm(kind: KindInfo): Admission {
    return this.admission.get(kind.kind) ?? {};
  }

  noteWrite(rev: number) {
    if (rev > this.lastWriteRev) this.lastWriteRev = rev;
  }

  /** Waits until the cache has seen this apiserver's latest write (read-your-writes). */
  async fresh(): Promise<void> {
    await this.cache.waitFor(this.lastWriteRev);
  }

  key(kind: KindInfo, ns: string | undefined, name: string) {
    return storeKey(kind.plural, kind.namespaced ? ns : undefined, name);
  }

  private checkNamespace(kind: KindInfo, ns: string | undefined) {
    if (kind.namespaced && !ns) throw badRequest(`${kind.plural} live in a cluster: give the namespace (the cluster name)`);
    if (!kind.namespaced && ns) throw badRequest(`${kind.plural} are not namespaced; drop the namespace`);
    if (kind.namespaced && !(kind.kind === 'Lease' && ns === SYSTEM_NAMESPACE)) {
      const cl = this.cache.get(storeKey('clusters', undefined, ns!));
      if (!cl || (cl as { status?: { status?: string } }).status?.status === 'INACTIVE') {
        throw notFound('clusters', ns!, `cluster "${ns}" not found`, 'ClusterNotFoundException');
      }
    }
  }

  private out(kind: KindInfo, o: Obj): Obj {
    const a = this.adm(kind);
    return a.decorate ? a.decorate(o) : o;
  }

  resolveName(kind: KindInfo, ns: string | undefined, name: string): string {
    return this.adm(kind).resolveName?.(name, ns) ?? name;
  }

  /** The stored object, from the cache after this apiserver's writes (undefined when absent). */
  async peek(kind: KindInfo, ns: string | undefined, name: string): Promise<Obj | undefined> {
    await this.fresh();
    return this.cache.get(this.key(kind, ns, this.resolveName(kind, ns, name)));
  }

  async get(kind: KindInfo, ns: string | undefined, name: string): Promise<Obj> {
    const o = await this.peek(kind, ns, name);
    if (!o) throw notFound(kind.plural, name, `${kind.plural} "${name}" not found`);
    return this.aliased(kind, name, this.out(kind, o));
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

  async list(kind: KindInfo, ns: string | undefined, opts: ListOptions = {}): Promise<ListResult> {
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = parseFieldSelector(opts.fieldSelector, kind.fieldSelectors);
    await this.fresh();
    let after = '';
    if (opts.continue) after = decodeContinue(opts.continue, `/berth/${kind.plural}/`).nextKey;
    const idx = fields.find((f) => f.op === 'eq' && this.cache.isIndexed(kind.plural, f.field));
    const all = this.cache.list(kind.plural, ns, idx ? { field: idx.field, value: idx.value } : undefined);
    const items: Obj[] = [];
    const limit = opts.limit && opts.limit > 0 ? opts.limit : Infinity;
    let next: string | undefined;
    let remaining = 0;
    for (const [key, o] of all) {
      if (after && key < after) continue;
      if (!matchesLabels(labels, o.metadata.labels) || !matchesFields(fields, o)) continue;
      if (items.length >= limit) {
        if (next === undefined) next = key;
        remaining++;
        continue;
      }
      items.push(this.out(kind, o));
    }
    const rv = String(this.cache.revision);
    return {
      items,
      resourceVersion: rv,
      ...(next !== undefined ? { continue: encodeContinue(this.cache.revision, next, `/berth/${kind.plural}/`), remainingItemCount: remaining } : {}),
    };
  }

  /**
   * A watch served from the cache. Without a resourceVersion (or "0"), the current state is
   * sent first as ADDED events, like Kubernetes. Returns a stop function.
   */
  async watch(kind: KindInfo, ns: string | undefined, opts: WatchOptions, sink: WatchSink): Promise<() => void> {
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = parseFieldSelector(opts.fieldSelector, kind.fieldSelectors);
    await this.fresh();
    const matches = (o: Obj) => matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o);
    const idx = fields.find((f) => f.op === 'eq' && this.cache.isIndexed(kind.plural, f.field));
    const w: CacheWatcher = {
      plural: kind.plural,
      namespace: kind.namespaced ? ns : undefined,
      matches,
      send: (type, obj) => sink(type, this.out(kind, obj)),
      ...(idx ? { index: { field: idx.field, value: idx.value } } : {}),
    };
    const rv = opts.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== '0' && !/^\d+$/.test(rv)) {
      throw badRequest(`resourceVersion: "${rv}" is not a valid resource version`);
    }
    let from: number;
    if (!rv || rv === '0' || opts.sendInitialEvents) {
      from = this.cache.revision;
      for (const [, o] of this.cache.list(kind.plural, w.namespace, idx ? { field: idx.field, value: idx.value } : undefined)) {
        if (matches(o)) sink('ADDED', this.out(kind, o));
      }
      if (opts.sendInitialEvents && opts.allowWatchBookmarks) {
        sink('BOOKMARK', bookmark(kind, from, true));
      }
    } else {
      from = Number(rv);
    }
    return this.cache.addWatcher(w, from);
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
    const o: Obj = { apiVersion: API_VERSION, kind: kind.kind, metadata: { ...v.metadata }, spec: v.spec } as Obj;
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

  async create(kind: KindInfo, ns: string | undefined, body: unknown, ctx: RequestContext = {}): Promise<{ obj: Obj; created: boolean }> {
    // admission reads the cache (a service resolves its task definition, a namespaced object
    // needs its cluster): it must see this apiserver's own earlier writes, or a create right
    // after another races the watch
    await this.fresh();
    this.checkNamespace(kind, ns);
    for (let attempt = 0; ; attempt++) {
      const w: WriteContext = { registry: this, compares: [], ops: [], ctx };
      let o = this.validate(kind, body, ns);
      // like Kubernetes kinds with a status subresource: a client's status is not taken on
      // create (admission may set one: a task definition's revision and ARN)
      delete o.status;
      const a = this.adm(kind);
      if (a.normalize) {
        const r = await a.normalize(o, ns, w);
        if ('existing' in r) return { obj: this.out(kind, r.existing), created: false };
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
      if (a.create) await a.create(o, w);
      if (o.status !== undefined) o.status = this.validateStatus(kind, o.status, o.metadata.name);
      const key = this.key(kind, ns, o.metadata.name);
      if (ctx.dryRun) return { obj: this.out(kind, o), created: true };
      const r = await this.commit(ctx, [{ key, modRevision: 0 }, ...w.compares], [{ type: 'put', key, value: JSON.stringify(o) }, ...w.ops]);
      if (r.succeeded) {
        this.noteWrite(r.revision);
        o.metadata.resourceVersion = String(r.revision);
        const out = this.out(kind, o);
        return { obj: w.response ? w.response(structuredClone(out)) : out, created: true };
      }
      if (r.failed.includes(key)) throw alreadyExistsFor(kind, o.metadata.name);
      if (attempt >= 5) throw conflict(kind.plural, o.metadata.name);
      await this.fresh();
    }
  }

  /**
   * PUT: the whole object (or its status). Requires metadata.resourceVersion, like custom
   * resources in Kubernetes: a stale one fails with 409 Conflict.
   */
  async update(kind: KindInfo, ns: string | undefined, name: string, body: unknown, sub: 'status' | undefined, ctx: RequestContext = {}): Promise<Obj> {
    this.checkNamespace(kind, ns);
    const rv = (body as { metadata?: { resourceVersion?: unknown } })?.metadata?.resourceVersion;
    if (rv === undefined || rv === '') {
      throw invalid(kind.kind, name, [{ field: 'metadata.resourceVersion', message: 'must be specified for an update' }]);
    }
    const bodyName = (body as { metadata?: { name?: unknown } })?.metadata?.name;
    if (bodyName !== undefined && bodyName !== name && this.resolveName(kind, ns, String(bodyName)) !== this.resolveName(kind, ns, name)) {
      throw badRequest(`the name of the object (${String(bodyName)}) does not match the name on the URL (${name})`);
    }
    return this.aliased(kind, name, await this.write(kind, ns, name, sub, ctx, () => body, String(rv)));
  }

  /** PATCH: merge patch or JSON patch on the current object; retried on conflict unless the patch pins a resourceVersion. */
  async patch(kind: KindInfo, ns: string | undefined, name: string, type: 'merge' | 'json', patch: unknown, sub: 'status' | undefined, ctx: RequestContext = {}): Promise<Obj> {
    this.checkNamespace(kind, ns);
    if (type === 'merge' && (typeof patch !== 'object' || patch === null || Array.isArray(patch))) {
      throw badRequest('a merge patch must be a JSON object');
    }
    return this.aliased(kind, name, await this.write(kind, ns, name, sub, ctx, (cur) => (type === 'merge' ? mergePatch(cur, patch) : jsonPatch(cur, patch))));
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
    const a = this.adm(kind);
    for (let attempt = 0; ; attempt++) {
      const name = this.resolveName(kind, ns, reqName);
      const key = this.key(kind, ns, name);
      await this.fresh();
      const cur = this.cache.get(key);
      if (!cur) throw notFound(kind.plural, reqName, `${kind.plural} "${reqName}" not found`);
      if (expectRv !== undefined && expectRv !== cur.metadata.resourceVersion) throw conflict(kind.plural, reqName);
      const curClone = structuredClone(cur);
      // the patch is applied to the object without its version, so a version in the result
      // is one the client asked for (a precondition); without it the write retries on conflict
      const probe = structuredClone(cur);
      delete (probe.metadata as { resourceVersion?: string }).resourceVersion;
      const changed = mutate(probe) as Obj;
      if (typeof changed !== 'object' || changed === null || Array.isArray(changed)) throw badRequest('the result of the patch is not an object');
      const patchedRv = (changed.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
      if (patchedRv !== undefined && patchedRv !== cur.metadata.resourceVersion) throw conflict(kind.plural, reqName);
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
        if (!sameJson(next.spec, curClone.spec)) {
          if (kind.immutableSpec) {
            // revisions are immutable: a changed spec addressed by its family registers the
            // next revision (this is how `kubectl apply` of an edited file lands); addressed
            // by an explicit revision it is refused
            if (!reqName.includes(':') && !reqName.startsWith('arn:')) {
              const family = name.split(':')[0];
              const { labels, annotations } = next.metadata as Record<string, unknown>;
              const body = { apiVersion: API_VERSION, kind: kind.kind, metadata: { name: family, labels, annotations }, spec: next.spec };
              return (await this.create(kind, ns, body, ctx)).obj;
            }
            throw invalid(kind.kind, name, [{ field: 'spec', message: `${kind.plural} revisions are immutable; apply the family "${name.split(':')[0]}" to register a new revision`, reason: 'FieldValueForbidden' }]);
          }
        }
      }
      if (a.update) await a.update(next, curClone, w, sub);
      // generation counts spec changes as admission leaves them (`web` resolving to the same
      // `web:3` is no change)
      if (sub !== 'status' && !kind.immutableSpec && !sameJson(next.spec, curClone.spec)) {
        (next.metadata as Record<string, unknown>).generation = Number((curClone.metadata as Record<string, unknown>).generation ?? 1) + 1;
      }
      delete next.metadata.resourceVersion;
      const prevComparable = { ...curClone, metadata: { ...curClone.metadata, resourceVersion: undefined } };
      if (w.ops.length === 0 && (sub === 'status' ? sameJson(next.status, curClone.status) : sameJson(next, prevComparable))) {
        return this.out(kind, cur); // nothing changed: no write
      }
      // finalizers: a deleting object whose last finalizer went away is removed now
      const finalizing =
        (next.metadata as Record<string, unknown>).deletionTimestamp !== undefined &&
        !((next.metadata as Record<string, unknown>).finalizers as string[] | undefined)?.length;
      if (ctx.dryRun) return this.out(kind, { ...next, metadata: { ...next.metadata, resourceVersion: cur.metadata.resourceVersion } });
      if (finalizing) this.addTombstone(kind, ns, next, w);
      const r = await this.commit(
        ctx,
        [{ key, modRevision: Number(cur.metadata.resourceVersion) }, ...w.compares],
        [finalizing ? { type: 'delete', key } : { type: 'put', key, value: JSON.stringify(next) }, ...w.ops],
      );
      if (r.succeeded) {
        this.noteWrite(r.revision);
        next.metadata.resourceVersion = String(r.revision);
        return this.out(kind, next);
      }
      if (expectRv !== undefined || patchedRv !== undefined) throw conflict(kind.plural, reqName);
      if (attempt >= 10) throw conflict(kind.plural, reqName);
      this.noteWrite(r.revision);
    }
  }

  /**
   * DELETE: with finalizers, marks deletionTimestamp; admission may turn a delete into a
   * state change (task definitions are deregistered, not removed). `preconditionRv` gives
   * optimistic concurrency.
   */
  async delete(kind: KindInfo, ns: string | undefined, reqName: string, ctx: RequestContext = {}, preconditionRv?: string): Promise<Obj> {
    this.checkNamespace(kind, ns);
    const a = this.adm(kind);
    for (let attempt = 0; ; attempt++) {
      const name = this.resolveName(kind, ns, reqName);
      const key = this.key(kind, ns, name);
      await this.fresh();
      const cur = this.cache.get(key);
      if (!cur) throw notFound(kind.plural, reqName, `${kind.plural} "${reqName}" not found`);
      if (preconditionRv && preconditionRv !== cur.metadata.resourceVersion) throw conflict(kind.plural, reqName);
      const w: WriteContext = { registry: this, compares: [], ops: [], ctx, reqName };
      const curClone = structuredClone(cur);
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
      if (preconditionRv || attempt >= 10) throw conflict(kind.plural, reqName);
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

function alreadyExistsFor(kind: KindInfo, name: string): BerthError {
  return new BerthError('AlreadyExists', `${kind.plural} "${name}" already exists`, { kind: kind.plural, name });
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
