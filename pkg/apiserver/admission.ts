import { Kinds, type Cluster, type ContainerInstance, type Task } from '../api/kinds.ts';
import { daemonRevision, namesBareFamily } from '../api/resources.ts';
import { API_VERSION, storeKey, type KindInfo } from '../api/meta.ts';
import { Arns, isArn, newId, parseArn } from '../api/arn.ts';
import { contentHash, sameJson } from '../api/validate.ts';
import { Allocation, capacityOf, emptyAllocation, gateOf, release, remainingResources } from '../api/allocation.ts';
import { effectiveTaskDefinition, type TaskDefinitionStatus } from '../api/taskdefinition.ts';
import { BerthError, badRequest, conflict, invalid, notFound } from '../errors/errors.ts';
import { credentialIndexKey, credentialKey, hashToken, newToken, type NodeCredential } from './auth.ts';
import { chargeRegistration } from './bootstraptokens.ts';
import { logsEndpointProblem } from './logs.ts';
import { nodeRestriction } from './noderestriction.ts';
import { cacheLookups } from './actions.ts';
import { writeAuthorization } from './writeauthz.ts';
import type { Admission, Obj, Registry, RequestContext, WriteContext } from './registry.ts';
import { LeaseAdmission } from './fence.ts';
import { compareInstanceLease, deleteInstanceLease, InstanceLeaseAdmission, withLeaseHeartbeat } from './instancelease.ts';
import { LoadBalancerAdmission, serviceLoadBalancerCauses, TargetSetAdmission } from './lbadmission.ts';

const now = () => new Date().toISOString();
const LAST_ORDER = ['PROVISIONING', 'PENDING', 'ACTIVATING', 'RUNNING', 'DEACTIVATING', 'STOPPING', 'DEPROVISIONING', 'STOPPED'];

/** The annotation that carries a fresh node credential in a registration response (never stored). */
export const NODE_TOKEN_ANNOTATION = 'berth.dev/node-token';
/** on a DaemonTaskDefinition: the ports its containers listen on in the shared daemon_bridge namespace */
export const DAEMON_PORTS_ANNOTATION = 'berth.dev/ports';
/** Finalizer the service and daemon controllers remove once every task is stopped. */
export const CONTROLLER_FINALIZER = 'berth.dev/controller';
export { NOMINATED_ANNOTATION } from '../api/meta.ts';

export const allocationKey = (cluster: string, instance: string) => storeKey('allocations', cluster, instance);
/**
 * A cluster's contents guard: every create of a task, service or container instance in the
 * cluster writes it, and DeleteCluster compares it, so a delete that did not see a create
 * fails and checks again (C4). Its value says nothing; its revision is the point.
 */
export const clusterContentsKey = (cluster: string) => storeKey('clustercontents', undefined, cluster);
/** the kinds whose presence keeps a cluster from being deleted (ECS's ClusterContains*) */
const CLUSTER_CONTENTS = new Set(['tasks', 'services', 'containerinstances']);
/**
 * A cluster's daemon ports guard: every daemon create or update that declares ports compares
 * and rewrites it, so two daemons on one port cannot both be admitted, whatever the caches
 * of the apiservers that admit them have seen (C4).
 */
export const daemonPortsKey = (cluster: string) => storeKey('daemonports', cluster, 'ports');

/**
 * The ports a daemon task definition revision declares (`berth.dev/ports`, e.g.
 * "udp/2000,tcp/8125"; a bare number is tcp), normalized: part of what the revision is, like
 * its spec (R1-6).
 */
export function daemonPortsOf(o: Obj | undefined): Set<string> {
  const raw = (o?.metadata as { annotations?: Record<string, string> } | undefined)?.annotations?.[DAEMON_PORTS_ANNOTATION] ?? '';
  return new Set(raw.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean).map((p) => (p.includes('/') ? p : `tcp/${p}`)));
}
const samePorts = (a: Obj | undefined, b: Obj | undefined) => sameJson([...daemonPortsOf(a)].sort(), [...daemonPortsOf(b)].sort());

/** The revision of a guard key as this cache has it (0: absent), for a compare. */
const revOf = (o: Obj | undefined) => (o ? Number(o.metadata.resourceVersion) : 0);

/**
 * Waits until this apiserver's cache has caught up with the store: before a task definition
 * family is resolved to its latest revision at write time, so a registration a moment ago on
 * another apiserver counts (a service updated to `web` right after `web:5` was registered
 * gets `web:5`).
 */
async function caughtUp(registry: Registry): Promise<void> {
  await registry.cache.waitFor(await registry.store.currentRevision());
}

/** `web` or its ARN without a revision: resolved to the latest ACTIVE revision. */
const isFamily = (ref: string) => !(isArn(ref) ? parseArn(ref).name : ref).includes(':');

type TD = Obj & { spec: Record<string, unknown>; status: TaskDefinitionStatus };

/** a revision deregistered now (INACTIVE) */
const deregistered = (t: Obj): Obj => ({ ...t, status: { ...(t.status as object), status: 'INACTIVE', deregisteredAt: now() } }) as Obj;

/**
 * Revisioned, immutable task definitions (and daemon task definitions): applying a family
 * registers the next revision unless the content equals the latest ACTIVE one; a family
 * name resolves to its latest ACTIVE revision; DELETE deregisters (INACTIVE), never removes.
 */
export class TaskDefinitionAdmission implements Admission {
  constructor(
    private readonly registry: Registry,
    private readonly kind: KindInfo,
    private readonly arns: Arns,
  ) {}

  /** every stored revision of a family, newest first */
  revisions(family: string): TD[] {
    return this.registry.cache
      .list(this.kind.plural, undefined, { field: 'status.family', value: family })
      .map(([, o]) => o as TD)
      .sort((a, b) => b.status.revision - a.status.revision);
  }

  latestActive(family: string): TD | undefined {
    return this.revisions(family).find((r) => r.status.status === 'ACTIVE');
  }

  resolveName(name: string): string | undefined {
    let n = name;
    if (isArn(n)) n = parseArn(n).name;
    if (n.includes(':')) return n;
    return this.latestActive(n)?.metadata.name;
  }

  /** resolveName at write time: a family resolves against the store's latest state, not a lagging cache's */
  async resolveFresh(name: string): Promise<string | undefined> {
    if (isFamily(name)) await caughtUp(this.registry);
    return this.resolveName(name);
  }

  private arn(name: string) {
    return this.kind.kind === 'DaemonTaskDefinition' ? this.arns.daemonTaskDefinition(name) : this.arns.taskDefinition(name);
  }

  /**
   * The next revision as this cache sees it. The create's txn compares the revision's key
   * (must not exist): when another registration (here or on another apiserver) took that
   * number first, the registry waits for it and normalizes again, so every concurrent
   * registration gets its own revision (C5).
   */
  async normalize(o: Obj, _ns: string | undefined, w: WriteContext): Promise<Obj | { existing: Obj }> {
    const [family, revStr] = o.metadata.name.split(':');
    // content is compared with ECS's defaults applied: `essential: true` written out or left to the default is one revision
    const hash = contentHash(effectiveTaskDefinition(o.spec, this.daemon));
    const revs = this.revisions(family);
    const latest = revs.find((r) => r.status.status === 'ACTIVE');
    const max = revs[0]?.status.revision ?? 0;
    if (revStr !== undefined) {
      const rev = Number(revStr);
      const same = revs.find((r) => r.status.revision === rev);
      if (same) {
        if (this.sameContent(same, o, hash)) return { existing: same };
        throw invalid(this.kind.kind, o.metadata.name, [{ field: 'spec', message: `revision ${rev} of "${family}" exists with other content; revisions are immutable`, reason: 'FieldValueForbidden' }]);
      }
      if (rev !== max + 1) {
        throw invalid(this.kind.kind, o.metadata.name, [{ field: 'metadata.name', message: `the next revision of "${family}" is ${max + 1}, not ${rev}` }]);
      }
    } else if (latest && this.sameContent(latest, o, hash) && !w.ctx.newRevision) {
      // applying what is registered is a no-op (ECS's RegisterTaskDefinition sets newRevision)
      return { existing: latest };
    }
    const revision = max + 1;
    const name = `${family}:${revision}`;
    return {
      ...o,
      metadata: { ...o.metadata, name },
      status: { family, revision, taskDefinitionArn: this.arn(name), status: 'ACTIVE', registeredAt: now(), contentHash: hash },
    } as Obj;
  }

  private get daemon() {
    return this.kind.kind === 'DaemonTaskDefinition';
  }

  /** a registered revision with this content: its spec, and a daemon task definition's declared ports */
  private sameContent(r: TD, o: Obj, hash: string): boolean {
    return r.status.contentHash === hash && (!this.daemon || samePorts(r, o));
  }

  /**
   * What a revision is (the registry registers a new revision when it changes): its spec with
   * ECS's defaults applied, as its registration compares it (R5-1: `essential: true` written
   * out is the revision that left it to the default), and a daemon's declared ports.
   */
  revisionContent(o: Obj): unknown {
    const spec = effectiveTaskDefinition(o.spec, this.daemon);
    return this.daemon ? { spec, ports: [...daemonPortsOf(o)].sort() } : spec;
  }

  async update(next: Obj, prev: Obj, _w: WriteContext, sub: 'status' | undefined) {
    if (sub !== 'status') {
      // R1-6: the ports a daemon listens on are checked against the cluster's other daemons
      // when a daemon takes the revision; changing them needs a new revision
      if (this.daemon && !samePorts(next, prev)) {
        const family = prev.metadata.name.split(':')[0];
        const message = `the ports of a revision cannot change (they were checked when daemons took it); apply the family "${family}" to register a new revision`;
        const field = `metadata.annotations[${DAEMON_PORTS_ANNOTATION}]`;
        throw invalid(this.kind.kind, prev.metadata.name, [{ field, message, reason: 'FieldValueForbidden' }]);
      }
      return;
    }
    const p = prev.status as TaskDefinitionStatus;
    const n = next.status as TaskDefinitionStatus;
    for (const f of ['family', 'revision', 'taskDefinitionArn', 'contentHash', 'registeredAt'] as const) {
      if (n[f] !== p[f]) throw invalid(this.kind.kind, prev.metadata.name, [{ field: `status.${f}`, message: 'is set by the server and cannot change' }]);
    }
    if (p.status === 'INACTIVE' && n.status === 'ACTIVE') {
      throw invalid(this.kind.kind, prev.metadata.name, [{ field: 'status.status', message: 'a deregistered (INACTIVE) revision cannot become ACTIVE again' }]);
    }
  }

  async delete(o: Obj, w: WriteContext): Promise<Obj | undefined> {
    const st = o.status as TaskDefinitionStatus;
    // addressed by family: every ACTIVE revision of it goes, so the family stops resolving;
    // `o` (the latest) last, in the registry's own txn
    if (w.reqName && !w.reqName.includes(':') && !isArn(w.reqName) && !w.ctx.dryRun) await this.deregisterOthers(st.family, o.metadata.name, w.ctx);
    return st.status === 'INACTIVE' ? o : deregistered(o);
  }

  /**
   * R1-4: the family's other ACTIVE revisions, oldest first, each deregistered atomically
   * (compared at its version), in as few txns as the store's limits allow; what met a newer
   * state is read again and retried. Families with hundreds of revisions are normal (CI
   * registers one per deploy); one txn for all of them exceeded etcd's 128 ops. Oldest
   * first: until the last txn the family still resolves to its latest revision, never to an
   * older one.
   */
  private async deregisterOthers(family: string, last: string, ctx: RequestContext): Promise<void> {
    for (let round = 0; ; round++) {
      const left = this.revisions(family)
        .filter((r) => r.metadata.name !== last && r.status.status === 'ACTIVE')
        .reverse();
      if (!left.length) return;
      if (round >= 10) throw conflict(this.kind.plural, family, `deregistering the revisions of "${family}" kept meeting concurrent writes; try again`);
      const failed = await this.registry.commitEach(
        left.map((r) => {
          const key = storeKey(this.kind.plural, undefined, r.metadata.name);
          const copy = deregistered(structuredClone(r));
          delete copy.metadata.resourceVersion;
          return { compares: [{ key, modRevision: Number(r.metadata.resourceVersion) }], ops: [{ type: 'put' as const, key, value: JSON.stringify(copy) }] };
        }),
        ctx,
      );
      if (!failed.length) return;
      await this.registry.fresh();
    }
  }
}

export class ClusterAdmission implements Admission {
  constructor(
    private readonly registry: Registry,
    private readonly arns: Arns,
  ) {}

  async create(o: Obj) {
    o.status = { status: 'ACTIVE', clusterArn: this.arns.cluster(o.metadata.name), registeredContainerInstancesCount: 0, runningTasksCount: 0, pendingTasksCount: 0, activeServicesCount: 0 };
  }

  /** a task, service or instance created in the cluster touches its contents guard */
  child(kind: KindInfo, ns: string, w: WriteContext) {
    if (!CLUSTER_CONTENTS.has(kind.plural)) return;
    w.ops.push({ type: 'put', key: clusterContentsKey(ns), value: JSON.stringify({ metadata: { name: ns } }) });
  }

  /**
   * ECS's DeleteCluster checks, against this cache; the txn compares the contents guard as
   * the cache has it, so a create this cache has not seen yet (here or on another apiserver)
   * makes the delete fail, and the registry checks again with that create in view.
   */
  async delete(o: Obj, w: WriteContext): Promise<undefined> {
    const c = this.registry.cache;
    // R1-7: every instance object counts, whatever its spec says: a deregistered instance is
    // no longer there (its INACTIVE record lives under another key), so one that is still
    // here is registered, with its allocation record and its node credential
    const instances = c.list('containerinstances', o.metadata.name);
    if (instances.length) {
      const message = `the cluster "${o.metadata.name}" cannot be deleted while container instances are registered (${instances.length}); deregister them first`;
      throw new BerthError('Conflict', message, { ecsType: 'ClusterContainsContainerInstancesException' });
    }
    const services = c.list('services', o.metadata.name).filter(([, s]) => (s as { status?: { status?: string } }).status?.status !== 'INACTIVE');
    if (services.length) {
      throw new BerthError('Conflict', `the cluster "${o.metadata.name}" cannot be deleted while services are active (${services.length})`, { ecsType: 'ClusterContainsServicesException' });
    }
    const tasks = c.list('tasks', o.metadata.name).filter(([, t]) => (t as Task).status?.lastStatus !== 'STOPPED');
    if (tasks.length) {
      throw new BerthError('Conflict', `the cluster "${o.metadata.name}" cannot be deleted while tasks are running (${tasks.length})`, { ecsType: 'ClusterContainsTasksException' });
    }
    const guard = c.get(clusterContentsKey(o.metadata.name));
    w.compares.push({ key: clusterContentsKey(o.metadata.name), modRevision: revOf(guard) });
    if (guard) w.ops.push({ type: 'delete', key: clusterContentsKey(o.metadata.name) });
    return undefined;
  }

  /** counts are computed on read, so they are always exact */
  decorate(o: Obj): Obj {
    const c = this.registry.cache;
    const ns = o.metadata.name;
    const tasks = c.list('tasks', ns).map(([, t]) => t as Task);
    const status = {
      ...(o.status as Cluster['status']),
      registeredContainerInstancesCount: c.list('containerinstances', ns).filter(([, i]) => (i as ContainerInstance).spec.status !== 'INACTIVE').length,
      runningTasksCount: tasks.filter((t) => t.status?.lastStatus === 'RUNNING').length,
      pendingTasksCount: tasks.filter((t) => t.status?.lastStatus !== 'RUNNING' && t.status?.lastStatus !== 'STOPPED').length,
      activeServicesCount: c.list('services', ns).filter(([, s]) => (s as { status?: { status?: string } }).status?.status === 'ACTIVE').length,
    };
    return { ...o, status };
  }
}

/**
 * Container instances: registration creates the allocation record in the same txn, records
 * the address the instance registered from and, for a bootstrap identity, issues the node
 * credential; deregistration revokes it (S4); reads carry exact remainingResources.
 */
export class ContainerInstanceAdmission implements Admission {
  constructor(
    private readonly registry: Registry,
    private readonly arns: Arns,
  ) {}

  async normalize(o: Obj): Promise<Obj> {
    if (!o.metadata.name) o.metadata.name = newId();
    return o;
  }

  /**
   * R1-7: INACTIVE is what deregistration makes of an instance (its record, beside the live
   * ones); a client sets ACTIVE or DRAINING, as ECS's UpdateContainerInstancesState does
   */
  private checkState(next: Obj, prev: Obj | undefined) {
    const n = (next.spec as ContainerInstance['spec']).status;
    const p = prev ? (prev.spec as ContainerInstance['spec']).status : undefined;
    if (n === p) return;
    const why =
      n === 'INACTIVE'
        ? 'an instance becomes INACTIVE by being deregistered (DELETE it, or DeregisterContainerInstance); set ACTIVE or DRAINING'
        : p === 'INACTIVE'
          ? 'an INACTIVE instance cannot become active again: deregister it and register the host anew'
          : undefined;
    if (why) throw invalid('ContainerInstance', next.metadata.name, [{ field: 'spec.status', message: why, reason: 'FieldValueNotSupported' }]);
  }

  async create(o: Obj, w: WriteContext) {
    const ns = o.metadata.namespace!;
    const spec = o.spec as ContainerInstance['spec'];
    this.checkState(o, undefined);
    if (!spec.registeredResources?.length) {
      throw invalid('ContainerInstance', o.metadata.name, [{ field: 'spec.registeredResources', message: 'is required: the CPU, MEMORY, PORTS and PORTS_UDP the instance offers', reason: 'FieldValueRequired' }]);
    }
    o.status = {
      containerInstanceArn: this.arns.containerInstance(ns, o.metadata.name),
      agentConnected: true,
      lastHeartbeat: now(),
      registeredAt: now(),
      status: 'ACTIVE',
      runningTasksCount: 0,
      pendingTasksCount: 0,
      ...(o.status as object),
      ...(w.ctx.sourceAddress ? { registeredAddress: w.ctx.sourceAddress } : {}),
    };
    const ak = allocationKey(ns, o.metadata.name);
    w.compares.push({ key: ak, modRevision: 0 });
    w.ops.push({ type: 'put', key: ak, value: JSON.stringify({ ...emptyAllocation(), instance: gateOf(o as unknown as ContainerInstance) }) });
    if (w.ctx.bootstrapToken) chargeRegistration(this.registry, w.ctx.bootstrapToken, w);
    if (w.ctx.user && w.ctx.issueNodeCredential) {
      const token = newToken();
      const cred: NodeCredential = { cluster: ns, instance: o.metadata.name, createdAt: now() };
      const hash = hashToken(token);
      w.ops.push({ type: 'put', key: credentialKey(hash), value: JSON.stringify({ metadata: { name: hash }, ...cred }) });
      w.ops.push({ type: 'put', key: credentialIndexKey(ns, o.metadata.name), value: JSON.stringify({ metadata: { name: o.metadata.name }, tokenHash: hash }) });
      w.response = (out) => ({ ...out, metadata: { ...out.metadata, annotations: { ...(out.metadata as { annotations?: Record<string, string> }).annotations, [NODE_TOKEN_ANNOTATION]: token } } });
    }
  }

  async delete(o: Obj, w: WriteContext): Promise<undefined> {
    const ns = o.metadata.namespace!;
    const active = this.registry.cache
      .list('tasks', ns, { field: 'spec.containerInstance', value: o.metadata.name })
      .filter(([, t]) => (t as Task).status?.lastStatus !== 'STOPPED');
    if (active.length) {
      throw new BerthError('Conflict', `container instance "${o.metadata.name}" still has ${active.length} task(s) that are not stopped; stop them or deregister with force`, { ecsType: 'InvalidParameterException' });
    }
    const ak = allocationKey(ns, o.metadata.name);
    const alloc = this.registry.cache.get(ak);
    if (alloc) {
      w.compares.push({ key: ak, modRevision: Number(alloc.metadata?.resourceVersion ?? 0) });
      w.ops.push({ type: 'delete', key: ak });
    }
    this.revokeCredentials(ns, o.metadata.name, w);
    deleteInstanceLease(w, ns, o.metadata.name);
    return undefined;
  }

  /**
   * S4: the node credential of a deregistered instance dies with it, in the same txn. Found
   * through the instance's index; credentials issued before the index existed are found by
   * a scan (deregistration is rare).
   */
  private revokeCredentials(ns: string, name: string, w: WriteContext) {
    const c = this.registry.cache;
    const hashes = new Set<string>();
    const idx = c.get(credentialIndexKey(ns, name)) as (Obj & { tokenHash?: string }) | undefined;
    if (idx) {
      w.ops.push({ type: 'delete', key: credentialIndexKey(ns, name) });
      if (idx.tokenHash) hashes.add(idx.tokenHash);
    }
    for (const [, cred] of c.list('nodecredentials', undefined)) {
      const nc = cred as Obj & Partial<NodeCredential>;
      if (nc.cluster === ns && nc.instance === name) hashes.add(cred.metadata.name);
    }
    for (const h of hashes) w.ops.push({ type: 'delete', key: credentialKey(h) });
  }

  /**
   * Status writes: the registered address is the server's (kept from the stored object;
   * an instance registered before it was recorded gets it from its own node's next write),
   * and the logs endpoint must be on it (S3).
   *
   * Any update that changes what a binding depends on (status, agent connection, registered
   * resources, port range) copies it into the allocation record in the same txn: bindings
   * compare that record, so none commits on the instance as it was (C14, D12). A heartbeat
   * changes none of it and leaves the record alone.
   */
  async update(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined) {
    if (sub !== 'status') this.checkState(next, prev);
    if (sub === 'status') {
      const ps = (prev.status ?? {}) as ContainerInstance['status'] & object;
      const ns = (next.status ?? {}) as ContainerInstance['status'] & object;
      const own = w.ctx.node && w.ctx.node.cluster === prev.metadata.namespace && w.ctx.node.instance === prev.metadata.name;
      const registeredAddress = ps.registeredAddress ?? (own ? w.ctx.sourceAddress : undefined);
      if (registeredAddress) ns.registeredAddress = registeredAddress;
      else delete ns.registeredAddress;
      // the logs token is the apiserver's (the logs proxy presents it; responses never show it):
      // a status written back from a read (the instance health controller's) keeps it, or the
      // logs of that instance would be refused until its agent's next heartbeat
      if (ns.logs && !ns.logs.token && ps.logs?.token && ns.logs.endpoint === ps.logs.endpoint) ns.logs = { ...ns.logs, token: ps.logs.token };
      next.status = ns;
      // a changed endpoint is checked here; one that was stored before (an instance registered
      // before addresses were recorded) is checked by the logs proxy when it is used
      if (ns.logs && ns.logs.endpoint !== ps.logs?.endpoint) {
        const problem = logsEndpointProblem(ns.logs.endpoint, ns.registeredAddress);
        if (problem) throw invalid('ContainerInstance', prev.metadata.name, [{ field: 'status.logs.endpoint', message: problem }]);
      }
      // a disconnect judged on the instance's lease commits only while the lease is as judged
      compareInstanceLease(w, prev.metadata.namespace!, prev.metadata.name);
    }
    const cluster = next.metadata.namespace!;
    const ak = allocationKey(cluster, next.metadata.name);
    const cur = this.registry.cache.get(ak) as unknown as (Allocation & Obj) | undefined;
    const gate = gateOf(next as unknown as ContainerInstance);
    if (!cur || (cur.instance && sameJson(cur.instance, gate))) return;
    w.compares.push({ key: ak, modRevision: revOf(cur) });
    w.ops.push({ type: 'put', key: ak, value: JSON.stringify({ cpu: cur.cpu, memory: cur.memory, tasks: cur.tasks, instance: gate }) });
  }

  /** a deregistered instance is described (INACTIVE, disconnected) for the retention, as in ECS */
  tombstone(o: Obj): Obj {
    const d = this.decorate(o);
    return { ...d, spec: { ...(d.spec as object), status: 'INACTIVE' }, status: { ...(d.status as object), status: 'INACTIVE', agentConnected: false } } as Obj;
  }

  decorate(o: Obj): Obj {
    const ns = o.metadata.namespace!;
    const a = this.registry.cache.get(allocationKey(ns, o.metadata.name)) as unknown as Allocation | undefined;
    const spec = o.spec as ContainerInstance['spec'];
    const cap = capacityOf(spec.registeredResources);
    const tasks = this.registry.cache.list('tasks', ns, { field: 'spec.containerInstance', value: o.metadata.name }).map(([, t]) => t as Task);
    const st = withLeaseHeartbeat(this.registry.cache, o).status as ContainerInstance['status'];
    return {
      ...o,
      status: {
        ...st,
        ...(st?.logs ? { logs: { endpoint: st.logs.endpoint } } : {}),
        remainingResources: remainingResources(cap, a ? { cpu: a.cpu, memory: a.memory, tasks: a.tasks } : emptyAllocation()),
        runningTasksCount: tasks.filter((t) => t.status?.lastStatus === 'RUNNING').length,
        pendingTasksCount: tasks.filter((t) => t.status?.lastStatus !== 'RUNNING' && t.status?.lastStatus !== 'STOPPED').length,
      },
    };
  }
}

/** what a task's spec write may change (R1-2): stopping it, and its tags */
const TASK_SPEC_WRITABLE: ReadonlySet<string> = new Set(['desiredStatus', 'stopReason', 'stopCode', 'tags']);

/**
 * Tasks: the task definition is resolved once at creation; the binding is set once (only
 * through the binding call); desiredStatus only moves forward; lastStatus only moves
 * forward; the allocation is released in the txn that records STOPPED or deletes the task.
 */
export class TaskAdmission implements Admission {
  constructor(
    private readonly registry: Registry,
    private readonly tds: TaskDefinitionAdmission,
    private readonly dtds: TaskDefinitionAdmission,
    private readonly arns: Arns,
  ) {}

  async normalize(o: Obj): Promise<Obj> {
    if (!o.metadata.name) o.metadata.name = newId();
    return o;
  }

  async create(o: Obj, w: WriteContext) {
    const spec = o.spec as Task['spec'];
    const ns = o.metadata.namespace!;
    const daemon = spec.daemonTaskDefinition !== undefined;
    const defs = daemon ? this.dtds : this.tds;
    const ref = daemon ? spec.daemonTaskDefinition! : spec.taskDefinition;
    const resolved = await defs.resolveFresh(ref);
    const td = resolved ? (this.registry.cache.get(storeKey(daemon ? 'daemontaskdefinitions' : 'taskdefinitions', undefined, resolved)) as TD | undefined) : undefined;
    const field = daemon ? 'spec.daemonTaskDefinition' : 'spec.taskDefinition';
    if (!td) throw invalid('Task', o.metadata.name, [{ field, message: `task definition "${ref}" not found (or it has no ACTIVE revision)` }], `Unable to find task definition '${ref}'`);
    const owned = spec.startedBy?.startsWith('ecs-svc/') || spec.group?.startsWith('service:') || daemon;
    if (td.status.status !== 'ACTIVE' && !owned) {
      throw invalid('Task', o.metadata.name, [{ field, message: `task definition "${resolved}" is INACTIVE; register a new revision` }], `TaskDefinition is inactive`);
    }
    // the spec keeps what was written (`web`, an ARN); the revision it runs is status.taskDefinition
    if (spec.containerInstance !== undefined) {
      throw invalid('Task', o.metadata.name, [{ field: 'spec.containerInstance', message: 'is set through the bindings call (or StartTask), not at creation' }]);
    }
    if (spec.hostPorts !== undefined) throw invalid('Task', o.metadata.name, [{ field: 'spec.hostPorts', message: 'is set by the bindings call' }]);
    const containers = (td.spec.containerDefinitions as Array<{ name: string; image: string }>).map((c) => ({ name: c.name, image: c.image, lastStatus: 'PENDING' as const }));
    o.status = {
      taskArn: this.arns.task(ns, o.metadata.name),
      lastStatus: spec.desiredStatus === 'STOPPED' ? 'STOPPED' : 'PENDING',
      containers,
      version: 1,
      taskDefinition: resolved!,
      ...(spec.desiredStatus === 'STOPPED' ? { stoppedAt: now(), stoppedReason: spec.stopReason ?? 'created stopped' } : {}),
    };
    void w;
  }

  async update(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined) {
    const n = next as unknown as Task;
    const p = prev as unknown as Task;
    const name = prev.metadata.name;
    const bad = (field: string, message: string) => {
      throw invalid('Task', name, [{ field, message, reason: 'FieldValueForbidden' }]);
    };
    // the revision a task runs was resolved at its creation: the server's, kept by every write
    // (a status written from a report or a read without it keeps it)
    const ran = (p.status as { taskDefinition?: string } | undefined)?.taskDefinition;
    if (ran !== undefined) n.status = { ...(n.status ?? { lastStatus: p.status?.lastStatus ?? 'PENDING' }), taskDefinition: ran } as Task['status'];
    if (sub !== 'status') {
      if (n.spec.taskDefinition !== p.spec.taskDefinition) bad('spec.taskDefinition', 'cannot change once the task exists');
      if (n.spec.daemonTaskDefinition !== p.spec.daemonTaskDefinition) bad('spec.daemonTaskDefinition', 'cannot change once the task exists');
      if (n.spec.containerInstance !== p.spec.containerInstance) bad('spec.containerInstance', 'is set once, through the bindings call');
      if (JSON.stringify(n.spec.hostPorts) !== JSON.stringify(p.spec.hostPorts)) bad('spec.hostPorts', 'is set once, through the bindings call');
      if (p.spec.desiredStatus === 'STOPPED' && n.spec.desiredStatus === 'RUNNING') bad('spec.desiredStatus', 'a task that is to stop cannot be made to run again');
      // R1-2: a task runs what it was created with (ECS: tasks are immutable once run, but for
      // StopTask and tags). Its overrides are what the agent starts and what the binding
      // charged its instance for; its group and startedBy are how services count it
      const ps = Kinds.Task.spec.safeParse(p.spec);
      const before = (ps.success ? ps.data : p.spec) as Record<string, unknown>;
      const after = n.spec as unknown as Record<string, unknown>;
      for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
        if (TASK_SPEC_WRITABLE.has(k) || sameJson(before[k], after[k])) continue;
        bad(`spec.${k}`, "cannot change once the task exists: a task's spec is fixed, but for desiredStatus (to STOPPED), stopReason, stopCode and tags");
      }
      if (n.spec.desiredStatus !== 'STOPPED') {
        for (const k of ['stopReason', 'stopCode'] as const) {
          if (!sameJson(before[k], after[k])) bad(`spec.${k}`, 'is set when the task is stopped: set desiredStatus to STOPPED with it');
        }
      }
      // a task never placed has no agent to stop it: it stops here and now
      if (n.spec.desiredStatus === 'STOPPED' && !n.spec.containerInstance && n.status?.lastStatus !== 'STOPPED') {
        n.status = { ...(n.status ?? { lastStatus: 'STOPPED' }), lastStatus: 'STOPPED', stoppedAt: now(), stoppingAt: now(), stoppedReason: n.spec.stopReason ?? 'Task stopped before it was placed', ...(n.spec.stopCode ? { stopCode: n.spec.stopCode } : {}) };
      }
      return;
    }
    const from = LAST_ORDER.indexOf(p.status?.lastStatus ?? 'PENDING');
    const to = LAST_ORDER.indexOf(n.status?.lastStatus ?? 'PENDING');
    if (to < from) bad('status.lastStatus', `cannot go back from ${p.status?.lastStatus} to ${n.status?.lastStatus}`);
    if (n.status?.lastStatus === 'STOPPED' && p.status?.lastStatus !== 'STOPPED' && p.spec.containerInstance) {
      this.releaseInTxn(prev, w);
    }
  }

  async delete(o: Obj, w: WriteContext): Promise<undefined> {
    const t = o as unknown as Task;
    if (t.spec.containerInstance && t.status?.lastStatus !== 'STOPPED') this.releaseInTxn(o, w);
    return undefined;
  }

  private releaseInTxn(task: Obj, w: WriteContext) {
    const t = task as unknown as Task;
    const ak = allocationKey(task.metadata.namespace!, t.spec.containerInstance!);
    const cur = this.registry.cache.get(ak);
    if (!cur) return;
    const a = cur as unknown as Allocation & Obj;
    if (!a.tasks?.[task.metadata.name]) return;
    const next = release({ cpu: a.cpu, memory: a.memory, tasks: a.tasks }, task.metadata.name);
    w.compares.push({ key: ak, modRevision: Number(cur.metadata.resourceVersion) });
    w.ops.push({ type: 'put', key: ak, value: JSON.stringify(a.instance ? { ...next, instance: a.instance } : next) });
  }
}

/** Services: the task definition resolves to a revision; ECS defaults; a controller finalizer. */
export class ServiceAdmission implements Admission {
  constructor(
    private readonly tds: TaskDefinitionAdmission,
    private readonly arns: Arns,
    private readonly registry?: Registry,
  ) {}

  /** the service's load balancers name targets that exist and a container port of its task definition */
  private checkLoadBalancers(o: Obj, taskDefinition: string) {
    if (!this.registry) return;
    // checked against the revision the service runs (the spec may name a bare family)
    const causes = serviceLoadBalancerCauses(this.registry, { ...(o.spec as { taskDefinition: string }), taskDefinition });
    if (causes.length) throw invalid('Service', o.metadata.name, causes);
  }

  /** the revision spec.taskDefinition names now; it goes to status.taskDefinition (the spec stays the user's) */
  private async resolve(o: Obj, field = 'spec.taskDefinition'): Promise<string> {
    const spec = o.spec as { taskDefinition: string };
    const r = await this.tds.resolveFresh(spec.taskDefinition);
    if (!r || !this.tds.revisions(r.split(':')[0]).some((t) => t.metadata.name === r)) {
      throw invalid('Service', o.metadata.name, [{ field, message: `task definition "${spec.taskDefinition}" not found (or it has no ACTIVE revision)` }]);
    }
    return r;
  }

  private defaults(o: Obj) {
    const spec = o.spec as { schedulingStrategy: string; desiredCount?: number; deploymentConfiguration?: Record<string, unknown> };
    const daemon = spec.schedulingStrategy === 'DAEMON';
    if (daemon && spec.desiredCount !== undefined && spec.desiredCount !== 0) {
      throw invalid('Service', o.metadata.name, [{ field: 'spec.desiredCount', message: 'The daemon scheduling strategy does not support a desired count for services.' }], 'The daemon scheduling strategy does not support a desired count for services.');
    }
    if (!daemon && spec.desiredCount === undefined) {
      throw invalid('Service', o.metadata.name, [{ field: 'spec.desiredCount', message: 'is required for the REPLICA scheduling strategy', reason: 'FieldValueRequired' }]);
    }
    const dc = { ...(spec.deploymentConfiguration ?? {}) };
    dc.minimumHealthyPercent ??= daemon ? 0 : 100;
    dc.maximumPercent ??= daemon ? 100 : 200;
    if (daemon && dc.maximumPercent !== 100) {
      throw invalid('Service', o.metadata.name, [{ field: 'spec.deploymentConfiguration.maximumPercent', message: 'must be 100 for the DAEMON scheduling strategy' }]);
    }
    if ((dc.minimumHealthyPercent as number) > (dc.maximumPercent as number)) {
      throw invalid('Service', o.metadata.name, [{ field: 'spec.deploymentConfiguration.minimumHealthyPercent', message: 'must not be greater than maximumPercent' }]);
    }
    spec.deploymentConfiguration = dc;
  }

  async create(o: Obj) {
    const taskDefinition = await this.resolve(o);
    this.defaults(o);
    this.checkLoadBalancers(o, taskDefinition);
    const spec = o.spec as { desiredCount?: number };
    const meta = o.metadata as { finalizers?: string[] };
    meta.finalizers = [...new Set([...(meta.finalizers ?? []), CONTROLLER_FINALIZER])];
    o.status = { serviceArn: this.arns.service(o.metadata.namespace!, o.metadata.name), status: 'ACTIVE', desiredCount: spec.desiredCount ?? 0, runningCount: 0, pendingCount: 0, deployments: [], events: [], ...resolvedStatus(o, taskDefinition) };
  }

  /** a deleted service is described (INACTIVE) for the retention; its name is free again at once */
  tombstone(o: Obj): Obj {
    return { ...o, status: { ...(o.status as object), status: 'INACTIVE' } } as Obj;
  }

  async update(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined) {
    if (sub === 'status') return;
    keepSystemFinalizer(next, prev, w);
    const ns = next.spec as { taskDefinition: string; schedulingStrategy: string };
    const ps = prev.spec as { taskDefinition: string; schedulingStrategy: string };
    if (ns.schedulingStrategy !== ps.schedulingStrategy) {
      throw invalid('Service', prev.metadata.name, [{ field: 'spec.schedulingStrategy', message: 'cannot change once the service exists' }]);
    }
    const st = next.status as { taskDefinition?: string; followedRevision?: number } | undefined;
    // resolved when the spec changes it (or ECS's UpdateService names it: the same name after a
    // rollback deploys it again there; on the resource API a write of the same value is no change)
    if (ns.taskDefinition !== ps.taskDefinition || (!st?.taskDefinition && !next.metadata.deletionTimestamp) || w.ctx.deploysTaskDefinition) {
      const { followedRevision: _was, ...rest } = st ?? {};
      next.status = { ...rest, ...resolvedStatus(next, await this.resolve(next)) };
    } else if (st?.followedRevision !== undefined && !next.metadata.deletionTimestamp) {
      // the spec follows its family: a write moves it to a newer revision registered since (the
      // controller does too); a family without an ACTIVE revision leaves it where it is. When the
      // store's latest state cannot be read in time, the write fails (503, retried): answering
      // with the revision a lagging cache still has would skip one registered before it (C5)
      const r = await this.tds.resolveFresh(ns.taskDefinition);
      const rev = r ? Number(r.split(':')[1]) : 0;
      if (r && rev > st.followedRevision) next.status = { ...st, taskDefinition: r, followedRevision: rev };
    }
    this.defaults(next);
    const runs = (next.status as { taskDefinition?: string } | undefined)?.taskDefinition ?? ns.taskDefinition;
    if (runs !== (prev.status as { taskDefinition?: string } | undefined)?.taskDefinition || JSON.stringify((next.spec as { loadBalancers?: unknown }).loadBalancers) !== JSON.stringify((prev.spec as { loadBalancers?: unknown }).loadBalancers)) this.checkLoadBalancers(next, runs);
  }
}

/** Daemons: the daemon task definition resolves to a revision; a controller finalizer. */
export class DaemonAdmission implements Admission {
  constructor(
    private readonly registry: Registry,
    private readonly dtds: TaskDefinitionAdmission,
    private readonly arns: Arns,
  ) {}

  /**
   * The ports a daemon listens on in the shared namespace. Daemon task definitions take no
   * portMappings (ECS's managed daemons documentation), so they are declared in the annotation
   * `berth.dev/ports` (e.g. "udp/2000,tcp/8125"); undeclared ports cannot be checked.
   */
  private ports(tdName: string): Set<string> {
    return daemonPortsOf(this.registry.cache.get(storeKey('daemontaskdefinitions', undefined, tdName)));
  }

  /**
   * Daemons share one `daemon_bridge` namespace per instance: two daemons of a cluster may
   * not listen on the same container port.
   */
  private checkPorts(o: Obj, revision: string, w: WriteContext) {
    const ns = o.metadata.namespace!;
    const mine = this.ports(revision);
    if (mine.size === 0) return;
    // the check below is as fresh as this cache; the guard, read from the same cache, is
    // compared and rewritten in the txn: a daemon admitted meanwhile (on any apiserver)
    // rewrote it, so this txn fails and the registry checks again with that daemon in view
    const guard = this.registry.cache.get(daemonPortsKey(ns));
    w.compares.push({ key: daemonPortsKey(ns), modRevision: revOf(guard) });
    const value = JSON.stringify({ metadata: { name: 'ports' }, last: { daemon: o.metadata.name, ports: [...mine] } });
    w.ops.push({ type: 'put', key: daemonPortsKey(ns), value });
    for (const [, other] of this.registry.cache.list('daemons', ns)) {
      if (other.metadata.name === o.metadata.name || (other.status as { status?: string } | undefined)?.status === 'INACTIVE') continue;
      const theirs = this.ports(daemonRevision(other as unknown as { spec: { daemonTaskDefinition: string }; status?: { taskDefinition?: string } }));
      for (const port of mine) {
        if (theirs.has(port)) {
          throw invalid('Daemon', o.metadata.name, [
            {
              field: 'spec.daemonTaskDefinition',
              message: `it listens on ${port}, which daemon "${other.metadata.name}" already uses; daemons share the instance's daemon_bridge network namespace, so their ports must differ`,
            },
          ]);
        }
      }
    }
  }

  /** the revision spec.daemonTaskDefinition names now; it goes to status.taskDefinition (the spec stays the user's) */
  private async resolve(o: Obj): Promise<string> {
    const spec = o.spec as { daemonTaskDefinition: string };
    const r = await this.dtds.resolveFresh(spec.daemonTaskDefinition);
    if (!r || !this.dtds.revisions(r.split(':')[0]).some((t) => t.metadata.name === r)) {
      throw invalid('Daemon', o.metadata.name, [{ field: 'spec.daemonTaskDefinition', message: `daemon task definition "${spec.daemonTaskDefinition}" not found (or it has no ACTIVE revision)` }]);
    }
    return r;
  }

  /** what the status records of the revision the daemon runs (a bare family is followed from it) */
  private resolvedStatus(o: Obj, revision: string) {
    const follows = namesBareFamily((o.spec as { daemonTaskDefinition: string }).daemonTaskDefinition);
    return { taskDefinition: revision, daemonTaskDefinitionArn: this.arns.daemonTaskDefinition(revision), ...(follows ? { followedRevision: Number(revision.split(':')[1]) } : {}) };
  }

  async create(o: Obj, w: WriteContext) {
    const revision = await this.resolve(o);
    this.checkPorts(o, revision, w);
    const meta = o.metadata as { finalizers?: string[] };
    meta.finalizers = [...new Set([...(meta.finalizers ?? []), CONTROLLER_FINALIZER])];
    o.status = { daemonArn: this.arns.daemon(o.metadata.namespace!, o.metadata.name), status: 'ACTIVE', desiredCount: 0, runningCount: 0, pendingCount: 0, updatedCount: 0, ...this.resolvedStatus(o, revision) };
  }

  async update(next: Obj, prev: Obj, w: WriteContext, sub: 'status' | undefined) {
    type St = { taskDefinition?: string; followedRevision?: number; daemonTaskDefinitionArn?: string } | undefined;
    const ps = prev.status as St;
    if (sub === 'status') {
      const ns = (next.status ?? {}) as NonNullable<St>;
      next.status = ns;
      if (!ns.taskDefinition || ns.taskDefinition === ps?.taskDefinition) {
        // the revision is the server's: a status written without it keeps it
        for (const k of ['taskDefinition', 'followedRevision', 'daemonTaskDefinitionArn'] as const) if (ps?.[k] !== undefined) (ns as Record<string, unknown>)[k] = ps[k];
        return;
      }
      // the controller takes a newer revision of the family the spec follows: it must be one,
      // ACTIVE, and its ports must not clash with the cluster's other daemons
      const family = (next.spec as { daemonTaskDefinition: string }).daemonTaskDefinition;
      const [f, rev] = ns.taskDefinition.split(':');
      const named = () => this.dtds.revisions(f).find((t) => t.metadata.name === ns.taskDefinition);
      // a revision this cache does not show yet may have been registered on another apiserver
      // (the controller's informer saw it): caught up first, so it is judged on the store's
      // state (503 when that cannot be read in time), not refused as invalid (C5)
      let td = named();
      if (!td && namesBareFamily(family) && f === family) {
        await caughtUp(this.registry);
        td = named();
      }
      if (!namesBareFamily(family) || f !== family || !td || td.status.status !== 'ACTIVE' || Number(rev) <= (ps?.followedRevision ?? 0)) {
        throw invalid('Daemon', prev.metadata.name, [{ field: 'status.taskDefinition', message: `can move only to a newer ACTIVE revision of the family the spec follows ("${family}")` }]);
      }
      this.checkPorts(next, ns.taskDefinition, w);
      Object.assign(ns, this.resolvedStatus(next, ns.taskDefinition));
      return;
    }
    keepSystemFinalizer(next, prev, w);
    if ((next.spec as { daemonTaskDefinition: string }).daemonTaskDefinition !== (prev.spec as { daemonTaskDefinition: string }).daemonTaskDefinition || (!ps?.taskDefinition && !next.metadata.deletionTimestamp)) {
      const revision = await this.resolve(next);
      const { followedRevision: _was, ...rest } = (next.status ?? {}) as NonNullable<St>;
      next.status = { ...rest, ...this.resolvedStatus(next, revision) };
      this.checkPorts(next, revision, w);
    }
  }
}

/** what a service's status records of the revision its spec resolved to (a bare family is followed from it) */
function resolvedStatus(o: Obj, taskDefinition: string): { taskDefinition: string; followedRevision?: number } {
  const follows = namesBareFamily((o.spec as { taskDefinition: string }).taskDefinition);
  return { taskDefinition, ...(follows ? { followedRevision: Number(taskDefinition.split(':')[1]) } : {}) };
}

/**
 * The controller's finalizer is the system's: a replace (PUT) whose body omits it keeps it
 * while the object is not being deleted, or a `kubectl replace -f` then `delete -f` would leave
 * the tasks running. A patch that removes it is a deliberate removal, as in Kubernetes (the
 * multi-apiserver workload's finalize-after-delete lost its delete to a kept finalizer).
 */
function keepSystemFinalizer(next: Obj, prev: Obj, w: WriteContext) {
  if (!w.ctx.replacesObject) return;
  const pm = prev.metadata as { finalizers?: string[] };
  const nm = next.metadata as { finalizers?: string[]; deletionTimestamp?: string };
  if (!pm.finalizers?.includes(CONTROLLER_FINALIZER) || nm.deletionTimestamp || nm.finalizers?.includes(CONTROLLER_FINALIZER)) return;
  nm.finalizers = [...(nm.finalizers ?? []), CONTROLLER_FINALIZER];
}

/** Installs every kind's admission on a registry; returns the task definition admissions. */
export function installAdmission(registry: Registry, arns: Arns) {
  const tds = new TaskDefinitionAdmission(registry, Kinds.TaskDefinition, arns);
  const dtds = new TaskDefinitionAdmission(registry, Kinds.DaemonTaskDefinition, arns);
  registry.use('TaskDefinition', tds);
  registry.use('DaemonTaskDefinition', dtds);
  registry.use('Cluster', new ClusterAdmission(registry, arns));
  registry.use('ContainerInstance', new ContainerInstanceAdmission(registry, arns));
  registry.use('Task', new TaskAdmission(registry, tds, dtds, arns));
  registry.use('Service', new ServiceAdmission(tds, arns, registry));
  registry.use('Daemon', new DaemonAdmission(registry, dtds, arns));
  registry.useValidator(nodeRestriction);
  registry.use('Lease', new LeaseAdmission());
  registry.use('InstanceLease', new InstanceLeaseAdmission(registry));
  registry.use('LoadBalancer', new LoadBalancerAdmission(registry, arns));
  registry.use('TargetGroup', new TargetSetAdmission('TargetGroup', arns));
  registry.useValidator(writeAuthorization(arns, cacheLookups(registry.cache)), 'admitted');
  return { tds, dtds };
}

/** Index fields of the watch cache: field selectors that are served by index. */
export const CACHE_INDEXES: Record<string, string[]> = {
  tasks: ['spec.containerInstance', 'spec.group', 'status.lastStatus', 'spec.startedBy'],
  taskdefinitions: ['status.family'],
  daemontaskdefinitions: ['status.family'],
};

export { API_VERSION, badRequest, notFound };
