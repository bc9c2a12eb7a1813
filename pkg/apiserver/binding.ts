import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { GROUP, VERSION, storeKey } from '../api/meta.ts';
import type { ContainerInstance, Task } from '../api/kinds.ts';
import { Allocation, allocate, capacityOf, choosePorts, demandOf, emptyAllocation, fitFailure, hostPortsMismatch, usedPorts, type TaskDemand } from '../api/allocation.ts';
import { HostPortAssignment } from '../api/resources.ts';
import type { TaskDefinitionSpec } from '../api/taskdefinition.ts';
import { parseOrInvalid } from '../api/validate.ts';
import { badRequest } from '../errors/errors.ts';
import type { Compare, Op } from '../store/store.ts';
import { allocationKey } from './admission.ts';
import { FENCE_HEADER, parseFence } from './fence.ts';
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

export type BindingFailureReason = 'MISSING' | 'ALREADY_BOUND' | 'STOPPED' | 'INACTIVE' | 'RESOURCE:CPU' | 'RESOURCE:MEMORY' | 'RESOURCE:PORTS' | 'CONFLICT' | 'INVALID';

export interface BindingResult {
  task: string;
  containerInstance: string;
  bound: boolean;
  hostPorts?: HostPortAssignment[];
  reason?: BindingFailureReason;
  detail?: string;
  resourceVersion?: string;
}

interface Planned {
  i: number;
  task: Obj;
  next: Obj;
  ak: string;
}

/**
 * Binds many pending tasks to container instances in ONE store transaction, comparing the
 * revision of every task and of every instance's allocation record (the "shared state,
 * optimistic concurrency" of seed 001). A task that does not fit fails alone; when the
 * txn meets a conflict, the bindings it does not touch are committed, and the conflicted
 * ones are re-evaluated once from fresh state. No host port is ever held twice on an
 * instance and no instance is over-committed, however many binders race.
 */
export class Binder {
  constructor(private readonly registry: Registry) {}

  private demand(task: Task): TaskDemand | undefined {
    const daemon = task.spec.daemonTaskDefinition !== undefined;
    const td = this.registry.cache.get(storeKey(daemon ? 'daemontaskdefinitions' : 'taskdefinitions', undefined, task.spec.taskDefinition));
    if (!td) return undefined;
    return demandOf((td as unknown as { spec: TaskDefinitionSpec }).spec, task.spec.overrides, { daemon });
  }

  /** `ctx.fence`: a controller's lease fence, compared in the binding txn (LeaseLost when it no longer holds). */
  async bind(cluster: string, req: BindingRequest, ctx: RequestContext = {}): Promise<BindingResult[]> {
    const results: BindingResult[] = req.bindings.map((b) => ({ task: b.task, containerInstance: b.containerInstance, bound: false }));
    let pending = req.bindings.map((_, i) => i);
    for (let round = 0; round < 3 && pending.length > 0; round++) {
      await this.registry.fresh();
      const plan = this.plan(cluster, req, pending, results);
      if (plan.planned.length === 0) break;
      const r = await this.registry.txn(plan.compares, plan.ops, ctx);
      if (r.succeeded) {
        for (const p of plan.planned) {
          results[p.i].bound = true;
          results[p.i].resourceVersion = String(r.revision);
          delete results[p.i].reason;
          delete results[p.i].detail;
        }
        break;
      }
      const failed = new Set(r.failed);
      const touched = plan.planned.filter((p) => failed.has(storeKey('tasks', cluster, p.task.metadata.name)) || failed.has(p.ak));
      const clean = plan.planned.filter((p) => !touched.includes(p));
      for (const p of touched) Object.assign(results[p.i], { reason: 'CONFLICT', detail: 'the task or the instance changed meanwhile' });
      // the untouched ones are re-planned (their state did not change) with the conflicted
      // ones re-evaluated from fresh state once more
      pending = round === 0 ? [...clean.map((p) => p.i), ...touched.map((p) => p.i)] : clean.map((p) => p.i);
    }
    return results;
  }

  private plan(cluster: string, req: BindingRequest, indexes: number[], results: BindingResult[]) {
    const cache = this.registry.cache;
    const compares: Compare[] = [];
    const ops: Op[] = [];
    const planned: Planned[] = [];
    const allocs = new Map<string, { a: Allocation; rev: number; ci: ContainerInstance }>();
    const fail = (i: number, reason: BindingFailureReason, detail: string) => Object.assign(results[i], { bound: false, reason, detail });
    for (const i of indexes) {
      const b = req.bindings[i];
      const tk = storeKey('tasks', cluster, b.task);
      const task = cache.get(tk) as unknown as Task | undefined;
      if (!task) {
        fail(i, 'MISSING', `task "${b.task}" not found in cluster "${cluster}"`);
        continue;
      }
      if (task.spec.containerInstance) {
        if (task.spec.containerInstance === b.containerInstance) Object.assign(results[i], { bound: true, hostPorts: task.spec.hostPorts ?? [], resourceVersion: task.metadata.resourceVersion, reason: undefined, detail: undefined });
        else fail(i, 'ALREADY_BOUND', `task "${b.task}" is bound to ${task.spec.containerInstance}`);
        continue;
      }
      if (task.spec.desiredStatus === 'STOPPED' || task.status?.lastStatus === 'STOPPED') {
        fail(i, 'STOPPED', `task "${b.task}" is stopped or stopping`);
        continue;
      }
      const ak = allocationKey(cluster, b.containerInstance);
      let entry = allocs.get(ak);
      if (!entry) {
        const ci = cache.get(storeKey('containerinstances', cluster, b.containerInstance)) as unknown as ContainerInstance | undefined;
        const cur = cache.get(ak);
        if (!ci) {
          fail(i, 'MISSING', `container instance "${b.containerInstance}" not found in cluster "${cluster}"`);
          continue;
        }
        const a = cur ? (cur as unknown as Allocation) : emptyAllocation();
        entry = { a: { cpu: a.cpu, memory: a.memory, tasks: a.tasks }, rev: cur ? Number(cur.metadata.resourceVersion) : 0, ci };
        allocs.set(ak, entry);
      }
      if (entry.ci.spec.status === 'INACTIVE') {
        fail(i, 'INACTIVE', `container instance "${b.containerInstance}" is INACTIVE`);
        continue;
      }
      const demand = this.demand(task);
      if (!demand) {
        fail(i, 'MISSING', `task definition "${task.spec.taskDefinition}" not found`);
        continue;
      }
      const cap = capacityOf(entry.ci.spec.registeredResources);
      let hostPorts = b.hostPorts;
      if (!hostPorts) {
        const chosen = choosePorts(demand, usedPorts(entry.a, cap), entry.ci.spec.dynamicHostPortRange ?? [32768, 60999]);
        if (typeof chosen === 'string') {
          fail(i, 'RESOURCE:PORTS', chosen);
          continue;
        }
        hostPorts = chosen;
      } else {
        const bad = hostPortsMismatch(demand, hostPorts);
        if (bad) {
          fail(i, 'INVALID', bad);
          continue;
        }
      }
      const why = fitFailure(cap, entry.a, demand, hostPorts);
      if (why) {
        fail(i, why.reason, why.detail);
        continue;
      }
      entry.a = allocate(entry.a, b.task, demand, hostPorts);
      const next = structuredClone(task) as unknown as Obj;
      (next.spec as Task['spec']).containerInstance = b.containerInstance;
      (next.spec as Task['spec']).hostPorts = hostPorts;
      const rv = next.metadata.resourceVersion;
      delete next.metadata.resourceVersion;
      compares.push({ key: tk, modRevision: Number(rv) });
      ops.push({ type: 'put', key: tk, value: JSON.stringify(next) });
      results[i].hostPorts = hostPorts;
      planned.push({ i, task: task as unknown as Obj, next, ak });
    }
    for (const [ak, e] of allocs) {
      if (!planned.some((p) => p.ak === ak)) continue;
      compares.push({ key: ak, modRevision: e.rev });
      ops.push({ type: 'put', key: ak, value: JSON.stringify(e.a) });
    }
    return { compares, ops, planned };
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
    if (!registry.cache.get(storeKey('clusters', undefined, cluster))) {
      throw badRequest(`cluster "${cluster}" not found`);
    }
    const results = await binder.bind(cluster, body, { fence });
    sendJson(res, 200, { apiVersion: `${GROUP}/${VERSION}`, kind: 'BindingResult', results });
    return true;
  };
}
