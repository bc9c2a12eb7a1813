import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { GROUP, NOMINATED_ANNOTATION, VERSION, storeKey } from '../api/meta.ts';
import type { ContainerInstance, Task } from '../api/kinds.ts';
import { allocate, capacityOf, choosePorts, demandOf, emptyAllocation, fitFailure, gateOf, hostPortsMismatch, usedPorts } from '../api/allocation.ts';
import type { Allocation, InstanceGate, TaskAllocation, TaskDemand } from '../api/allocation.ts';
import { HostPortAssignment, taskRevision } from '../api/resources.ts';
import type { TaskDefinitionSpec } from '../api/taskdefinition.ts';
import { parseOrInvalid } from '../api/validate.ts';
import { badRequest } from '../errors/errors.ts';
import type { Compare, Op } from '../store/store.ts';
import { EMBEDDED_TXN_LIMITS, ETCD_TXN_LIMITS, type TxnLimits } from '../store/limits.ts';
import { allocationKey } from './admission.ts';
import { FENCE_HEADER, parseFence, roomBeside } from './fence.ts';
import type { Obj, Registry, RequestContext } from './registry.ts';
import { sendJson, type ApiRequest } from './server.ts';

export const BindingRequest = z.strictObject({
  bindings: z
    .array(
      z.strictObject({
        /** the task's name (id) */
        task: z.string().min(1),
        containerInstance: z.string().min(1),
        /** host ports chosen by the caller; absent: fixed ones as declared, dynamic ones chosen here */
        hostPorts: z.array(HostPortAssignment).optional(),
      }),
    )
    .min(1, { error: 'bindings must not be empty' })
    .max(5000, { error: 'at most 5000 bindings per call' }),
});
export type BindingRequest = z.infer<typeof BindingRequest>;

export type BindingFailureReason =
  | 'MISSING'
  | 'ALREADY_BOUND'
  | 'STOPPED'
  | 'INACTIVE'
  | 'DRAINING'
  | 'AGENT'
  | 'RESOURCE:CPU'
  | 'RESOURCE:MEMORY'
  | 'RESOURCE:PORTS'
  | 'CONFLICT'
  | 'INVALID';

export interface BindingResult {
  task: string;
  containerInstance: string;
  bound: boolean;
  hostPorts?: HostPortAssignment[];
  reason?: BindingFailureReason;
  detail?: string;
  resourceVersion?: string;
}

/** rounds of a binding call: the first plan, then re-plans of what met a conflict, from fresh state */
const BIND_ROUNDS = 6;

export { EMBEDDED_TXN_LIMITS, ETCD_TXN_LIMITS, type TxnLimits };

/** One task to bind: an existing task (from the cache), or one created in the same txn (RunTask). */
interface Item {
  i: number;
  task: Task;
  instance: string;
  hostPorts?: HostPortAssignment[];
  /** created in the same txn: no compare on its key, its put comes with the create */
  isNew: boolean;
}

/** An instance as a plan sees it: its allocation record, and the gate the record carries. */
interface InstanceEntry {
  ak: string;
  /** the allocation as planned so far: the record plus this plan's tasks (mutated as tasks are added) */
  a: Allocation;
  /** the record as read */
  base: Allocation;
  rev: number;
  gate: InstanceGate;
  /** a record written before gates existed: the instance's own revision is compared instead */
  ciCompare?: Compare;
  /** a txn of this call on this record failed: its later slices are not committed */
  broken?: boolean;
}

interface Planned {
  i: number;
  ak: string;
  /** the task's key and the bound object to write */
  key: string;
  next: Obj;
  taskRev: number;
  isNew: boolean;
  share: TaskAllocation;
  bytes: number;
}

/** one txn of a binding call: slices of instances' tasks, each slice with its instance's record */
interface Chunk {
  items: Planned[];
}

/** what a chunk's txn did: committed, or left (touched: those whose own keys conflicted) */
interface ChunkOutcome {
  committed: Planned[];
  revision: number;
  touched: Set<number>;
  left: Planned[];
}

type Refusal = { reason: BindingFailureReason; detail: string };

const refusal = (g: InstanceGate): Refusal | undefined => {
  if (g.status === 'INACTIVE') return { reason: 'INACTIVE', detail: 'the container instance is INACTIVE' };
  if (g.status === 'DRAINING') return { reason: 'DRAINING', detail: 'the container instance is DRAINING: it takes no new tasks' };
  if (g.status !== 'ACTIVE') return { reason: 'INACTIVE', detail: `the container instance is ${g.status}` };
  if (!g.agentConnected) return { reason: 'AGENT', detail: 'the agent of the container instance is not connected' };
  return undefined;
};

const allocValue = (a: Allocation, gate: InstanceGate) => JSON.stringify({ cpu: a.cpu, memory: a.memory, tasks: a.tasks, instance: gate });

/**
 * Binds pending tasks to container instances, comparing the revision of every task and of
 * every instance's allocation record (the "shared state, optimistic concurrency" of the ECS
 * Developer Guide; Nomad's plan applier). The record also carries the instance's gate (status,
 * agent connection, registered resources): a binding on an instance that became DRAINING,
 * INACTIVE or disconnected, or was re-registered smaller, fails at commit (C14, D12).
 *
 * A call commits in as few txns as the limits allow: each txn holds whole per-instance
 * slices, and an instance's record is written in the txn of its tasks. Each binding's result
 * says whether it committed; a txn that meets a conflict leaves its bindings unbound, and
 * they are re-planned from fresh state, up to five times, with a short growing jitter.
 * No host port is ever held twice on an instance and no instance is over-committed,
 * however many binders race, on however many apiservers.
 */
export class Binder {
  constructor(
    private readonly registry: Registry,
    readonly limits: TxnLimits = ETCD_TXN_LIMITS,
  ) {}

  private demand(task: Task): TaskDemand | undefined {
    const daemon = task.spec.daemonTaskDefinition !== undefined;
    const td = this.registry.cache.get(storeKey(daemon ? 'daemontaskdefinitions' : 'taskdefinitions', undefined, taskRevision(task)));
    if (!td) return undefined;
    return demandOf((td as unknown as { spec: TaskDefinitionSpec }).spec, task.spec.overrides, { daemon });
  }

  /** `ctx.fence`: a controller's lease fence, compared in the binding txn (LeaseLost when it no longer holds). */
  async bind(cluster: string, req: BindingRequest, ctx: RequestContext = {}): Promise<BindingResult[]> {
    const results: BindingResult[] = req.bindings.map((b) => ({ task: b.task, containerInstance: b.containerInstance, bound: false }));
    // a task named twice in one call is bound by its first binding (one txn cannot write its key twice)
    const named = new Set<string>();
    let pending: number[] = [];
    req.bindings.forEach((b, i) => {
      if (named.has(b.task)) this.fail(results[i], 'INVALID', `task "${b.task}" is named twice in this call`);
      else pending.push(i);
      named.add(b.task);
    });
    const conflicts = new Map<number, number>();
    for (let round = 0; round < BIND_ROUNDS && pending.length > 0; round++) {
      // another writer won a race for these instances: let it land, a little later each time
      if (round > 0) await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 5 * 2 ** round)));
      await this.registry.fresh();
      const items: Item[] = [];
      for (const i of pending) {
        const b = req.bindings[i];
        const task = this.registry.cache.get(storeKey('tasks', cluster, b.task)) as unknown as Task | undefined;
        if (!task) {
          this.fail(results[i], 'MISSING', `task "${b.task}" not found in cluster "${cluster}"`);
          continue;
        }
        if (task.spec.containerInstance) {
          if (task.spec.containerInstance === b.containerInstance) {
            Object.assign(results[i], { bound: true, hostPorts: task.spec.hostPorts ?? [], resourceVersion: task.metadata.resourceVersion, reason: undefined, detail: undefined });
          } else this.fail(results[i], 'ALREADY_BOUND', `task "${b.task}" is bound to ${task.spec.containerInstance}`);
          continue;
        }
        if (task.spec.desiredStatus === 'STOPPED' || task.status?.lastStatus === 'STOPPED') {
          this.fail(results[i], 'STOPPED', `task "${b.task}" is stopped or stopping`);
          continue;
        }
        const nominated = task.metadata.annotations?.[NOMINATED_ANNOTATION];
        if (nominated && nominated !== b.containerInstance) {
          this.fail(results[i], 'INVALID', `task "${b.task}" is nominated for container instance ${nominated}`);
          continue;
        }
        items.push({ i, task, instance: b.containerInstance, hostPorts: b.hostPorts, isNew: false });
      }
      const { planned, entries } = this.plan(cluster, items, results);
      if (planned.length === 0) break;
      const next: number[] = [];
      for (const chunk of this.chunks(planned, entries, roomBeside(ctx.fence, this.limits))) {
        const out = await this.commit(chunk, entries, ctx);
        for (const p of out.committed) {
          Object.assign(results[p.i], { bound: true, resourceVersion: String(out.revision), reason: undefined, detail: undefined });
        }
        for (const p of out.left) {
          if (out.touched.has(p.i)) {
            Object.assign(results[p.i], { bound: false, reason: 'CONFLICT', detail: 'the task or the instance changed meanwhile' });
            // a binding that conflicted is re-evaluated from fresh state, a few times
            const n = (conflicts.get(p.i) ?? 0) + 1;
            conflicts.set(p.i, n);
            if (n >= BIND_ROUNDS - 1) continue;
          } else {
            Object.assign(results[p.i], { bound: false, reason: 'CONFLICT', detail: 'not committed: another binding of its txn met a conflict' });
          }
          next.push(p.i);
        }
      }
      pending = next;
    }
    return results;
  }

  /**
   * Binds tasks that are created in the same txn (RunTask, StartTask): each object gets its
   * instance and host ports, and the returned compares and ops carry the instances'
   * allocation records. A task that cannot go where asked is left out, with its reason.
   */
  planNew(cluster: string, tasks: Array<{ obj: Obj; instance: string }>): { compares: Compare[]; ops: Op[]; failures: Map<number, Refusal> } {
    const results: BindingResult[] = tasks.map((t) => ({ task: t.obj.metadata.name, containerInstance: t.instance, bound: false }));
    const items: Item[] = tasks.map((t, i) => ({ i, task: t.obj as unknown as Task, instance: t.instance, isNew: true }));
    const { planned, entries } = this.plan(cluster, items, results);
    const compares: Compare[] = [];
    const ops: Op[] = [];
    const failures = new Map<number, Refusal>();
    results.forEach((r, i) => r.reason && failures.set(i, { reason: r.reason, detail: r.detail ?? '' }));
    for (const p of planned) {
      const spec = tasks[p.i].obj.spec as Task['spec'];
      spec.containerInstance = (p.next.spec as Task['spec']).containerInstance;
      spec.hostPorts = (p.next.spec as Task['spec']).hostPorts;
    }
    for (const e of new Set(planned.map((p) => entries.get(p.ak)!))) {
      compares.push({ key: e.ak, modRevision: e.rev });
      if (e.ciCompare) compares.push(e.ciCompare);
      ops.push({ type: 'put', key: e.ak, value: allocValue(e.a, e.gate) });
    }
    return { compares, ops, failures };
  }

  private fail(r: BindingResult, reason: BindingFailureReason, detail: string) {
    Object.assign(r, { bound: false, reason, detail });
  }

  /** Checks each binding against its instance as this cache sees it, and charges the instance. */
  private plan(cluster: string, items: Item[], results: BindingResult[]): { planned: Planned[]; entries: Map<string, InstanceEntry> } {
    const cache = this.registry.cache;
    const planned: Planned[] = [];
    const entries = new Map<string, InstanceEntry>();
    for (const it of items) {
      const ak = allocationKey(cluster, it.instance);
      let entry = entries.get(ak);
      if (!entry) {
        const rec = cache.get(ak) as unknown as (Allocation & Obj) | undefined;
        let gate = rec?.instance;
        let ciCompare: Compare | undefined;
        if (!gate) {
          const ciKey = storeKey('containerinstances', cluster, it.instance);
          const ci = cache.get(ciKey) as unknown as ContainerInstance | undefined;
          if (!ci) {
            this.fail(results[it.i], 'MISSING', `container instance "${it.instance}" not found in cluster "${cluster}"`);
            continue;
          }
          gate = gateOf(ci);
          ciCompare = { key: ciKey, modRevision: Number(ci.metadata.resourceVersion) };
        }
        const base: Allocation = rec ? { cpu: rec.cpu, memory: rec.memory, tasks: rec.tasks } : emptyAllocation();
        const rev = rec ? Number(rec.metadata.resourceVersion) : 0;
        entry = { ak, a: { cpu: base.cpu, memory: base.memory, tasks: { ...base.tasks } }, base, rev, gate, ciCompare };
        entries.set(ak, entry);
      }
      const refused = refusal(entry.gate);
      if (refused) {
        this.fail(results[it.i], refused.reason, `container instance "${it.instance}": ${refused.detail}`);
        continue;
      }
      const demand = this.demand(it.task);
      if (!demand) {
        this.fail(results[it.i], 'MISSING', `task definition "${taskRevision(it.task)}" not found`);
        continue;
      }
      const cap = capacityOf(entry.gate.registeredResources);
      let hostPorts = it.hostPorts;
      if (!hostPorts) {
        const chosen = choosePorts(demand, usedPorts(entry.a, cap), entry.gate.dynamicHostPortRange ?? [32768, 60999]);
        if (typeof chosen === 'string') {
          this.fail(results[it.i], 'RESOURCE:PORTS', chosen);
          continue;
        }
        hostPorts = chosen;
      } else {
        const bad = hostPortsMismatch(demand, hostPorts);
        if (bad) {
          this.fail(results[it.i], 'INVALID', bad);
          continue;
        }
      }
      const why = fitFailure(cap, entry.a, demand, hostPorts);
      if (why) {
        this.fail(results[it.i], why.reason, why.detail);
        continue;
      }
      const share = allocate(emptyAllocation(), it.task.metadata.name, demand, hostPorts).tasks[it.task.metadata.name];
      entry.a.cpu += share.cpu;
      entry.a.memory += share.memory;
      entry.a.tasks[it.task.metadata.name] = share;
      const next = structuredClone(it.task) as unknown as Obj;
      (next.spec as Task['spec']).containerInstance = it.instance;
      (next.spec as Task['spec']).hostPorts = hostPorts;
      const taskRev = Number(next.metadata.resourceVersion ?? 0);
      delete next.metadata.resourceVersion;
      const key = storeKey('tasks', cluster, it.task.metadata.name);
      const bytes = it.isNew ? 0 : key.length * 2 + JSON.stringify(next).length + 32;
      results[it.i].hostPorts = hostPorts;
      planned.push({ i: it.i, ak, key, next, taskRev, isNew: it.isNew, share, bytes });
    }
    return { planned, entries };
  }

  /**
   * Splits a plan into txns within the limits: an instance's tasks go together as far as
   * they fit, and each txn that holds some of an instance's tasks also holds its record.
   */
  private chunks(planned: Planned[], entries: Map<string, InstanceEntry>, limits: TxnLimits): Chunk[] {
    const byInstance = new Map<string, Planned[]>();
    for (const p of planned) {
      const l = byInstance.get(p.ak);
      if (l) l.push(p);
      else byInstance.set(p.ak, [p]);
    }
    const { maxOps, maxBytes } = limits;
    const chunks: Chunk[] = [];
    let cur: Planned[] = [];
    let ops = 0;
    let compares = 0;
    let bytes = 0;
    const inCur = new Set<string>();
    for (const [ak, list] of byInstance) {
      const e = entries.get(ak)!;
      // the record grows with the instance's tasks: budget it at its size with all of them
      const recBytes = ak.length * 2 + allocValue(e.a, e.gate).length + 32;
      const recCompares = e.ciCompare ? 2 : 1;
      for (const p of list) {
        let withRec = !inCur.has(ak);
        const full = ops + 1 + (withRec ? 1 : 0) > maxOps || compares + 1 + (withRec ? recCompares : 0) > maxOps || bytes + p.bytes + (withRec ? recBytes : 0) > maxBytes;
        if (cur.length && full) {
          chunks.push({ items: cur });
          cur = [];
          ops = compares = bytes = 0;
          inCur.clear();
          withRec = true;
        }
        cur.push(p);
        ops += 1 + (withRec ? 1 : 0);
        compares += 1 + (withRec ? recCompares : 0);
        bytes += p.bytes + (withRec ? recBytes : 0);
        inCur.add(ak);
      }
    }
    if (cur.length) chunks.push({ items: cur });
    return chunks;
  }

  /**
   * One txn: the chunk's tasks, and each of its instances' records as they are after the
   * chunk. Tasks of an instance whose earlier txn in this call failed are left out (their
   * record would build on what did not commit).
   */
  private async commit(chunk: Chunk, entries: Map<string, InstanceEntry>, ctx: RequestContext): Promise<ChunkOutcome> {
    const compares: Compare[] = [];
    const ops: Op[] = [];
    const slices = new Map<string, Planned[]>();
    const left: Planned[] = [];
    for (const p of chunk.items) {
      if (entries.get(p.ak)!.broken) {
        left.push(p);
        continue;
      }
      compares.push({ key: p.key, modRevision: p.taskRev });
      ops.push({ type: 'put', key: p.key, value: JSON.stringify(p.next) });
      const l = slices.get(p.ak);
      if (l) l.push(p);
      else slices.set(p.ak, [p]);
    }
    if (slices.size === 0) return { committed: [], revision: 0, touched: new Set(), left };
    const after = new Map<string, Allocation>();
    for (const [ak, list] of slices) {
      const e = entries.get(ak)!;
      // the record after this slice: the record as read, what earlier txns of this call
      // committed on it, and these tasks
      const a: Allocation = { cpu: e.base.cpu, memory: e.base.memory, tasks: { ...e.base.tasks } };
      for (const p of list) {
        a.cpu += p.share.cpu;
        a.memory += p.share.memory;
        a.tasks[p.next.metadata.name] = p.share;
      }
      after.set(ak, a);
      compares.push({ key: ak, modRevision: e.rev });
      if (e.ciCompare) compares.push(e.ciCompare);
      ops.push({ type: 'put', key: ak, value: allocValue(a, e.gate) });
    }
    const r = await this.registry.txn(compares, ops, ctx);
    const sent = [...slices.values()].flat();
    if (r.succeeded) {
      for (const [ak, a] of after) {
        const e = entries.get(ak)!;
        e.base = a;
        e.rev = r.revision;
        // the record carries the gate now
        e.ciCompare = undefined;
      }
      return { committed: sent, revision: r.revision, touched: new Set(), left };
    }
    const failed = new Set(r.failed);
    const touched = new Set<number>();
    for (const p of sent) {
      const e = entries.get(p.ak)!;
      if (failed.has(p.key) || failed.has(p.ak) || (e.ciCompare && failed.has(e.ciCompare.key))) touched.add(p.i);
    }
    for (const ak of slices.keys()) entries.get(ak)!.broken = true;
    return { committed: [], revision: r.revision, touched, left: [...left, ...sent] };
  }
}

/** The HTTP face: POST /apis/berth.dev/v1/namespaces/CLUSTER/bindings */
export function bindingRoute(registry: Registry, binder: Binder) {
  const re = new RegExp(`^/apis/${GROUP.replace('.', '\\.')}/${VERSION}/namespaces/([^/]+)/bindings$`);
  return async (r: ApiRequest, res: ServerResponse): Promise<boolean> => {
    const m = re.exec(r.path);
    if (!m) return false;
    if (r.method !== 'POST') throw badRequest('bindings accept only POST');
    const cluster = decodeURIComponent(m[1]);
    r.authorize({ verb: 'create', resource: 'bindings', namespace: cluster });
    const fence = parseFence(r.raw.headers[FENCE_HEADER], registry.cache, (namespace, name) => r.authorize({ verb: 'update', resource: 'leases', namespace, name }));
    const body = parseOrInvalid(BindingRequest, await r.body(), '', 'Binding', cluster);
    if (!(await registry.lookup(storeKey('clusters', undefined, cluster)))) {
      throw badRequest(`cluster "${cluster}" not found`);
    }
    const results = await binder.bind(cluster, body, { fence });
    sendJson(res, 200, { apiVersion: `${GROUP}/${VERSION}`, kind: 'BindingResult', results });
    return true;
  };
}
