import type { ContainerInstance, InstanceLease } from '../api/kinds.ts';
import { storeKey } from '../api/meta.ts';
import { badRequest, conflict, invalid } from '../errors/errors.ts';
import type { Admission, Obj, Registry, WriteContext } from './registry.ts';
import type { WatchCache } from './watchcache.ts';

/**
 * Instance leases: an agent's heartbeat is a renewal of a small InstanceLease (named after
 * its instance, in its cluster), as a kubelet renews its node Lease, so the ContainerInstance
 * is written only when what it says changes and a heartbeat is no instance event (placement,
 * the daemon and service controllers, every watcher of instances see nothing of it).
 *
 * - The instance health controller times renewals as it observes them and records a silent
 *   instance disconnected with a status write that carries `Berth-Instance-Lease: REVISION`,
 *   the lease revision it judged: the write's txn compares the lease at that revision, so a
 *   renewal landing meanwhile (or one the controller's watch never delivered) defeats it, as
 *   a heartbeat written to the instance used to.
 * - A renewal's response carries `status.agentConnected`, the instance's as this apiserver
 *   has it (computed on every read, never stored): an agent that was recorded disconnected
 *   learns it there and writes its instance's status again.
 * - Reads of a ContainerInstance show `status.lastHeartbeat` from its lease's renewTime
 *   when that is newer than the one stored.
 * - Deregistering the instance deletes its lease in the same txn.
 */
export const INSTANCE_LEASE_HEADER = 'berth-instance-lease';

export const instanceLeaseKey = (cluster: string, instance: string) => storeKey('instanceleases', cluster, instance);

/** The header's revision: a non-negative integer (0: the writer saw no lease), else a 400. */
export function parseInstanceLeaseRevision(header: string | string[] | undefined): number {
  const v = (Array.isArray(header) ? header.join(',') : (header ?? '')).trim();
  if (!/^\d{1,19}$/.test(v)) throw badRequest(`${INSTANCE_LEASE_HEADER}: "${v}" is not a lease revision (a non-negative integer; 0 when the instance has no lease)`);
  return Number(v);
}

/**
 * A container instance status write that carries the lease revision its writer judged by:
 * refused at once when this apiserver's cache already shows a later renewal, and compared in
 * the write's txn (which is what guarantees it: this cache may trail the store).
 */
export function compareInstanceLease(w: WriteContext, cluster: string, instance: string): void {
  const rev = w.ctx.instanceLeaseRevision;
  if (rev === undefined) return;
  const key = instanceLeaseKey(cluster, instance);
  const cur = w.registry.cache.get(key);
  const seen = cur ? Number(cur.metadata.resourceVersion) : 0;
  if (seen > rev) throw conflict('containerinstances', instance, `Operation cannot be fulfilled on containerinstances.berth.dev "${instance}": its lease was renewed after revision ${rev}`);
  w.compares.push({ key, modRevision: rev });
}

/** The instance as read: its lastHeartbeat is the lease's renewTime when that is newer. */
export function withLeaseHeartbeat(cache: WatchCache, o: Obj): Obj {
  const lease = cache.get(instanceLeaseKey(o.metadata.namespace!, o.metadata.name)) as InstanceLease | undefined;
  const renewed = lease?.spec?.renewTime;
  if (!renewed) return o;
  const st = (o.status ?? {}) as NonNullable<ContainerInstance['status']>;
  if (st.lastHeartbeat && Date.parse(st.lastHeartbeat) >= Date.parse(renewed)) return o;
  return { ...o, status: { ...st, lastHeartbeat: renewed } };
}

/** Deregistration takes the instance's lease with it (in the deregistering txn). */
export function deleteInstanceLease(w: WriteContext, cluster: string, instance: string): void {
  const key = instanceLeaseKey(cluster, instance);
  const cur = w.registry.cache.get(key);
  if (!cur) return;
  w.compares.push({ key, modRevision: Number(cur.metadata.resourceVersion) });
  w.ops.push({ type: 'delete', key });
}

export class InstanceLeaseAdmission implements Admission {
  constructor(private readonly registry: Registry) {}

  private check(o: Obj) {
    const spec = o.spec as InstanceLease['spec'];
    if (spec.holderIdentity !== o.metadata.name) {
      throw invalid('InstanceLease', o.metadata.name, [{ field: 'spec.holderIdentity', message: `must be the container instance id the lease is named after ("${o.metadata.name}")` }]);
    }
  }

  async create(o: Obj, _w: WriteContext) {
    this.check(o);
    delete o.status; // computed on reads
  }

  async update(next: Obj, _prev: Obj, _w: WriteContext, sub: 'status' | undefined) {
    if (sub === 'status') throw badRequest('the status of an instance lease is computed (the instance\'s agentConnected); it cannot be written');
    this.check(next);
    delete next.status;
  }

  decorate(o: Obj): Obj {
    const ci = this.registry.cache.get(storeKey('containerinstances', o.metadata.namespace, o.metadata.name)) as ContainerInstance | undefined;
    if (!ci) return o;
    return { ...o, status: { agentConnected: ci.status?.agentConnected ?? false } };
  }
}
