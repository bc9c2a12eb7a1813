import { storeKey } from '../api/meta.ts';
import { badRequest, leaseLost } from '../errors/errors.ts';
import type { TxnLimits } from '../store/limits.ts';
import type { Compare, TxnResult } from '../store/store.ts';
import type { Admission, Obj, WriteContext } from './registry.ts';
import type { WatchCache } from './watchcache.ts';

/**
 * Lease fencing: two controller-managers that both believe they lead cannot both write.
 *
 * Every txn that changes who holds a Lease (its holderIdentity or acquireTime: an
 * acquisition, a release, a delete) also puts the lease's fence key. The fence key's
 * modRevision is therefore the revision of the acquiring write, which the new holder got
 * back as the Lease's resourceVersion. A controller sends `Berth-Lease-Fence:
 * NS/LEASE=REVISION` on every write; the registry (and the binder) add the compare
 * `{fence key, modRevision: REVISION}` to the txn that commits the write. Once someone else
 * acquires the lease the compare fails, the write is not applied, and the sender gets a 412
 * `LeaseLost`. Renewals do not touch the fence key.
 */
export const FENCE_HEADER = 'berth-lease-fence';

export interface Fence {
  namespace: string;
  lease: string;
  /** the revision of the write that acquired the lease */
  revision: number;
  key: string;
}

export const fenceKey = (namespace: string, lease: string) => storeKey('leasefences', namespace, lease);

/** The header value a holder sends: `NS/LEASE=REVISION`. */
export const fenceHeader = (namespace: string, lease: string, revision: string | number) => `${namespace}/${lease}=${revision}`;

/**
 * The fence a request carries, or undefined. A malformed header or one naming a lease that
 * does not exist is a 400; `authorize` is asked whether the caller may hold that lease
 * (update it), so only identities allowed to hold leases can fence their writes.
 */
export function parseFence(header: string | string[] | undefined, cache: WatchCache, authorize: (namespace: string, lease: string) => void): Fence | undefined {
  if (header === undefined) return undefined;
  const v = Array.isArray(header) ? header.join(',') : header;
  const m = /^([a-z0-9][-a-z0-9.]*)\/([a-z0-9][-a-z0-9.]*)=(\d+)$/.exec(v.trim());
  if (!m) throw badRequest(`${FENCE_HEADER}: "${v}" is not NAMESPACE/LEASE=REVISION`);
  const [, namespace, lease, rev] = m;
  authorize(namespace, lease);
  if (!cache.get(storeKey('leases', namespace, lease))) throw badRequest(`${FENCE_HEADER}: lease ${namespace}/${lease} does not exist`);
  const fence = { namespace, lease, revision: Number(rev), key: fenceKey(namespace, lease) };
  // refused at once when the cache already shows a later acquisition (a write that commits nothing, such as a
  // binding that binds nothing, is refused too); the compare in the write's txn is what guarantees it
  const cur = cache.get(fence.key);
  if (cur && Number(cur.metadata.resourceVersion) !== fence.revision) throw lost(fence);
  return fence;
}

const lost = (fence: Fence) => leaseLost(`the lease ${fence.namespace}/${fence.lease} was acquired by another holder after revision ${fence.revision}; this write was not applied`);

/**
 * The limits left for a request's own compares and ops once its fence's compare is counted
 * (R5-3: a controller's fenced batch filled to the limit was one compare over it, and etcd
 * refused the txn).
 */
export const roomBeside = (fence: Fence | undefined, limits: TxnLimits): TxnLimits =>
  fence ? { maxOps: limits.maxOps - 1, maxBytes: limits.maxBytes - fence.key.length - 16 } : limits;

/** The compares of a txn, with the fence's when the request carries one. */
export const withFence = (fence: Fence | undefined, compares: Compare[]): Compare[] => (fence ? [...compares, { key: fence.key, modRevision: fence.revision }] : compares);

/** A failed txn whose fence compare did not hold: the sender lost its lease, whatever else failed. */
export function checkFence(fence: Fence | undefined, r: TxnResult): void {
  if (fence && !r.succeeded && r.failed.includes(fence.key)) throw lost(fence);
}

/** Leases: a change of holder (or of acquireTime) moves the fence, in the same txn. */
export class LeaseAdmission implements Admission {
  private bump(o: Obj, w: WriteContext) {
    const spec = o.spec as { holderIdentity?: string; acquireTime?: string } | undefined;
    w.ops.push({ type: 'put', key: fenceKey(o.metadata.namespace!, o.metadata.name), value: JSON.stringify({ metadata: { name: o.metadata.name, namespace: o.metadata.namespace }, holderIdentity: spec?.holderIdentity ?? '', acquireTime: spec?.acquireTime }) });
  }

  async create(o: Obj, w: WriteContext) {
    this.bump(o, w);
  }

  async update(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined) {
    if (sub === 'status') return;
    const n = next.spec as { holderIdentity?: string; acquireTime?: string };
    const p = prev.spec as { holderIdentity?: string; acquireTime?: string };
    if ((n.holderIdentity ?? '') !== (p.holderIdentity ?? '') || n.acquireTime !== p.acquireTime) this.bump(next, w);
  }

  async delete(o: Obj, w: WriteContext): Promise<undefined> {
    this.bump({ ...o, spec: { holderIdentity: '' } } as Obj, w);
    return undefined;
  }
}
