import { Kinds, type Task, type TaskDefinition } from '../api/kinds.ts';
import { newId } from '../api/arn.ts';
import { allocate, choosePorts, demandOf, usedPorts, type TaskDemand } from '../api/allocation.ts';
import type { PlacementConstraint, PlacementStrategy } from '../api/taskdefinition.ts';
import type { TaskSpec } from '../api/resources.ts';
import { storeKey } from '../api/meta.ts';
import { isBerthError } from '../errors/errors.ts';
import { infeasible, schedule, type InstanceView, type TaskRequest } from '../scheduler/scheduler.ts';
import { parseQuery, type Expr } from '../scheduler/query.ts';
import { clusterOf, describeMany, getOrUndefined, idOf, instanceViews, newObj, type OpContext, type Operation } from './context.ts';
import { int, list, obj, oneOf, paginate, str, strList, unsupported, type Input } from './params.ts';
import { compact, taskToEcs } from './shapes.ts';
import { getTd, tdRef } from './taskdefs.ts';
import { clientException, invalidParameter } from './wire.ts';

/**
 * Tasks: RunTask places synchronously with the shared scheduler and commits through the
 * binder (the same binding call the placement controller uses); tasks nothing can take are
 * not created and come back as `failures` with ECS's reasons. StartTask binds to the
 * instances the caller names. StopTask sets the desired status; the agent does the rest.
 */

const TASK = Kinds.Task;

export interface Failure {
  arn?: string;
  reason: string;
  detail?: string;
}

/** The task's definition from the cache: a daemon's task runs a daemon task definition (a subset of the same shape). */
function tdOf(c: OpContext, t: Task): TaskDefinition | undefined {
  const key = t.spec.daemonTaskDefinition ? storeKey('daemontaskdefinitions', undefined, t.spec.daemonTaskDefinition) : storeKey('taskdefinitions', undefined, t.spec.taskDefinition);
  return c.registry.cache.get(key) as unknown as TaskDefinition | undefined;
}

export const taskShape = (c: OpContext, t: Task, include: string[] = []) => taskToEcs(t, c.parts.arns, tdOf(c, t), include);

/** The task definition a RunTask/StartTask names: must exist and be ACTIVE (ECS's ClientException). */
async function runnableTd(c: OpContext, ref: string): Promise<TaskDefinition> {
  c.authorize({ verb: 'get', resource: 'taskdefinitions', name: ref });
  let td: TaskDefinition;
  try {
    td = await getTd(c, ref);
  } catch {
    throw clientException('TaskDefinition not found.');
  }
  if (td.status?.status !== 'ACTIVE') throw clientException('TaskDefinition is inactive');
  return td;
}

interface TaskInputs {
  td: TaskDefinition;
  spec: Partial<TaskSpec> & { taskDefinition: string };
  demand: TaskDemand;
}

/** The members RunTask and StartTask share, as a Task spec, validated by a dry-run create. */
async function taskInputs(c: OpContext, cluster: string, i: Input, extra: Record<string, unknown>): Promise<TaskInputs> {
  const ref = tdRef(str(i, 'taskDefinition', { required: true })!);
  unsupported(i, ['capacityProviderStrategy', 'platformVersion', 'volumeConfigurations']);
  if (i.enableExecuteCommand === true) throw invalidParameter('enableExecuteCommand is not supported by berth.');
  const overrides = obj(i, 'overrides');
  const startedBy = str(i, 'startedBy', { max: 128 });
  const tags = list(i, 'tags');
  const td = await runnableTd(c, ref);
  const family = td.status?.family ?? td.metadata.name.split(':')[0];
  const spec = compact({
    taskDefinition: td.metadata.name,
    overrides: overrides ? cleanOverrides(overrides) : undefined,
    group: str(i, 'group', { max: 255 }) ?? `family:${family}`,
    startedBy,
    tags: tags?.length ? tags : undefined,
    ...extra,
  }) as TaskInputs['spec'];
  // the one validation: admission on a dry run (the same checks a real create makes)
  await c.registry.create(TASK, cluster, newObj('Task', newId(), spec, cluster), { ...c.req, dryRun: true });
  return { td, spec, demand: demandOf(td.spec, spec.overrides) };
}

/** The SDK sends empty lists for members a caller left out of a container override. */
function cleanOverrides(o: Input): Input {
  const out: Input = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === null || v === undefined) continue;
    if (k === 'inferenceAcceleratorOverrides' || k === 'ephemeralStorage') continue;
    if (k === 'containerOverrides' && Array.isArray(v)) {
      out[k] = v.map((co) => {
        const x: Input = {};
        for (const [ck, cv] of Object.entries(co as Input)) if (cv !== null && cv !== undefined && !(Array.isArray(cv) && cv.length === 0 && ck !== 'command')) x[ck] = cv;
        return x;
      });
    } else out[k] = v;
  }
  return out;
}

/** The memberOf expressions (already checked by schedule) and distinctInstance of a request. */
function constraintsOf(req: TaskRequest): { memberOf: Expr[]; distinct: boolean } {
  const memberOf: Expr[] = [];
  for (const pc of req.constraints ?? []) {
    if (pc.type !== 'memberOf') continue;
    try {
      memberOf.push(parseQuery(pc.expression ?? ''));
    } catch {
      /* reported by schedule as INVALID */
    }
  }
  return { memberOf, distinct: (req.constraints ?? []).some((pc) => pc.type === 'distinctInstance') };
}

/** ECS-style failures: per instance and reason, for tasks no instance could take. */
function placementFailures(c: OpContext, cluster: string, views: InstanceView[], failed: TaskRequest[]): Failure[] {
  const seen = new Set<string>();
  const out: Failure[] = [];
  for (const req of failed) {
    const { memberOf, distinct } = constraintsOf(req);
    for (const v of views) {
      const why = infeasible(v, req, memberOf, distinct);
      if (!why) continue;
      const arn = c.parts.arns.containerInstance(cluster, v.name);
      const key = `${arn}|${why.reason}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ arn, reason: why.reason, detail: why.detail });
    }
  }
  return out;
}

/** Views charged with a batch's placements, so failures are judged against what is left. */
function charge(views: InstanceView[], placed: Array<{ instance: string; task: string; demand: TaskDemand }>): InstanceView[] {
  const copy = views.map((v) => ({ ...v, allocation: { ...v.allocation, tasks: { ...v.allocation.tasks } }, taskGroups: new Map(v.taskGroups) }));
  for (const p of placed) {
    const v = copy.find((x) => x.name === p.instance);
    if (!v) continue;
    const ports = choosePorts(p.demand, usedPorts(v.allocation, v.capacity), v.dynamicHostPortRange ?? [32768, 60999]);
    v.allocation = allocate(v.allocation, p.task, p.demand, Array.isArray(ports) ? ports : []);
  }
  return copy;
}

/**
 * Creates the tasks and binds each to its instance (one binding call). Tasks whose binding
 * fails (an instance filled up meanwhile) are removed again and reported.
 */
async function createAndBind(c: OpContext, cluster: string, spec: TaskInputs['spec'], placements: Array<{ task: string; instance: string }>): Promise<{ bound: string[]; failures: Failure[] }> {
  if (placements.length === 0) return { bound: [], failures: [] };
  c.authorize({ verb: 'create', resource: 'tasks', namespace: cluster });
  c.authorize({ verb: 'create', resource: 'bindings', namespace: cluster });
  for (const p of placements) {
    await c.registry.create(TASK, cluster, newObj('Task', p.task, structuredClone(spec), cluster), c.req);
  }
  const results = await c.parts.binder.bind(cluster, { bindings: placements.map((p) => ({ task: p.task, containerInstance: p.instance })) });
  const bound: string[] = [];
  const failures: Failure[] = [];
  for (const r of results) {
    if (r.bound) {
      bound.push(r.task);
      continue;
    }
    failures.push({ arn: c.parts.arns.containerInstance(cluster, r.containerInstance), reason: r.reason ?? 'CONFLICT', detail: r.detail });
    try {
      await c.registry.delete(TASK, cluster, r.task, c.req);
    } catch (e) {
      if (!isBerthError(e, 'NotFound')) throw e;
    }
  }
  return { bound, failures };
}

async function shapes(c: OpContext, cluster: string, ids: string[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const id of ids) {
    const t = await getOrUndefined(c, TASK, cluster, id);
    if (t) out.push(taskShape(c, t as unknown as Task));
  }
  return out;
}

export const RunTask: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const count = int(i, 'count', { min: 1, max: 10, message: `count must be between 1 and 10 (got ${String(i.count)}).` }) ?? 1;
  const launchType = oneOf(i, 'launchType', ['EC2', 'EXTERNAL', 'FARGATE'] as const);
  if (launchType === 'FARGATE') throw invalidParameter('launchType FARGATE is not supported by berth; use EC2 or EXTERNAL.');
  const placementConstraints = list<PlacementConstraint>(i, 'placementConstraints', { max: 10 });
  const placementStrategy = list<PlacementStrategy>(i, 'placementStrategy', { max: 5 });
  const clientToken = str(i, 'clientToken', { max: 64 });
  c.authorize({ verb: 'create', resource: 'tasks', namespace: cluster });
  if (clientToken) {
    // idempotent: the tasks an earlier call with this token started
    await c.registry.fresh();
    const earlier = (await c.registry.list(TASK, cluster)).items.filter((t) => (t as unknown as Task).spec.clientToken === clientToken);
    if (earlier.length) return { tasks: earlier.map((t) => taskShape(c, t as unknown as Task)), failures: [] };
  }
  const { td, spec, demand } = await taskInputs(c, cluster, i, {
    placementConstraints: placementConstraints?.length ? placementConstraints : undefined,
    placementStrategy: placementStrategy?.length ? placementStrategy : undefined,
    launchType: launchType ?? 'EC2',
    clientToken,
  });
  let views = await instanceViews(c, cluster);
  if (views.length === 0) throw invalidParameter('No Container Instances were found in your cluster.');
  // ECS: the task definition's constraints apply as well as the call's
  const constraints = [...(td.spec.placementConstraints ?? []), ...(spec.placementConstraints ?? [])];
  const strategies = spec.placementStrategy?.length ? spec.placementStrategy : [{ type: 'spread' as const, field: 'instanceId' }, { type: 'random' as const }];
  let requests: TaskRequest[] = Array.from({ length: count }, () => ({ name: newId(), demand, group: spec.group, constraints, strategies }));
  const bound: string[] = [];
  const failures: Failure[] = [];
  // a binding can lose a race with another writer: re-plan those from fresh state, twice
  for (let round = 0; round < 3 && requests.length; round++) {
    const r = schedule(views, requests);
    const invalid = r.failures.find((f) => f.reason === 'INVALID');
    if (invalid) throw invalidParameter(invalid.message);
    const byName = new Map(requests.map((q) => [q.name, q]));
    failures.push(
      ...placementFailures(
        c,
        cluster,
        charge(views, r.placements.map((p) => ({ instance: p.instance, task: p.task, demand }))),
        r.failures.map((f) => byName.get(f.task)!),
      ),
    );
    const res = await createAndBind(c, cluster, spec, r.placements.map((p) => ({ task: p.task, instance: p.instance })));
    bound.push(...res.bound);
    const lost = new Set(res.failures.length ? r.placements.map((p) => p.task).filter((t) => !res.bound.includes(t)) : []);
    if (lost.size === 0) break;
    if (round === 2) failures.push(...res.failures);
    requests = [...lost].map(() => ({ name: newId(), demand, group: spec.group, constraints, strategies }));
    views = await instanceViews(c, cluster);
  }
  return { tasks: await shapes(c, cluster, bound), failures: dedupe(failures) };
};

function dedupe(fs: Failure[]): Failure[] {
  const seen = new Set<string>();
  return fs.filter((f) => {
    const k = `${f.arn}|${f.reason}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export const StartTask: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const targets = strList(i, 'containerInstances', { required: true, min: 1, max: 10 })!;
  c.authorize({ verb: 'create', resource: 'tasks', namespace: cluster });
  const { spec, demand } = await taskInputs(c, cluster, i, { launchType: 'EC2' });
  const views = await instanceViews(c, cluster);
  const failures: Failure[] = [];
  const placements: Array<{ task: string; instance: string }> = [];
  for (const given of targets) {
    const { name, clusterMismatch } = idOf(given, 'container-instance', cluster);
    const arn = c.parts.arns.containerInstance(cluster, name);
    const v = clusterMismatch ? undefined : views.find((x) => x.name === name);
    if (!v) {
      failures.push({ arn, reason: 'MISSING' });
      continue;
    }
    const req: TaskRequest = { name: newId(), demand, group: spec.group };
    const why = infeasible(v, req, [], false);
    if (why) {
      failures.push({ arn, reason: why.reason, detail: why.detail });
      continue;
    }
    // later targets (the same instance twice) see this one
    const ports = choosePorts(demand, usedPorts(v.allocation, v.capacity), v.dynamicHostPortRange ?? [32768, 60999]);
    v.allocation = allocate(v.allocation, req.name, demand, Array.isArray(ports) ? ports : []);
    placements.push({ task: req.name, instance: name });
  }
  const res = await createAndBind(c, cluster, spec, placements);
  return { tasks: await shapes(c, cluster, res.bound), failures: [...failures, ...res.failures] };
};

export const StopTask: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const { name, clusterMismatch } = idOf(str(i, 'task', { required: true })!, 'task', cluster);
  const reason = str(i, 'reason', { max: 1024 }) ?? 'Task stopped by user';
  if (clusterMismatch) throw invalidParameter('The referenced task was not found.');
  c.authorize({ verb: 'patch', resource: 'tasks', namespace: cluster, name });
  const cur = (await c.registry.get(TASK, cluster, name)) as unknown as Task;
  if (cur.spec.desiredStatus === 'STOPPED') return { task: taskShape(c, cur) };
  const out = await c.registry.patch(TASK, cluster, name, 'merge', { spec: { desiredStatus: 'STOPPED', stopReason: reason, stopCode: 'UserInitiated' } }, undefined, c.req);
  return { task: taskShape(c, out as unknown as Task) };
};

export const DescribeTasks: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const ids = strList(i, 'tasks', { required: true, min: 1, max: 100 })!;
  const include = strList(i, 'include') ?? [];
  const r = await describeMany(c, cluster, ids, { resource: 'task', kind: TASK, arn: (cl, n) => c.parts.arns.task(cl, n) }, (o) => taskShape(c, o as unknown as Task, include));
  return { tasks: r.found, failures: r.failures };
};

export const ListTasks: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const ci = str(i, 'containerInstance');
  const instance = ci ? idOf(ci, 'container-instance', cluster).name : undefined;
  const family = str(i, 'family');
  const startedBy = str(i, 'startedBy');
  const serviceName = str(i, 'serviceName');
  const daemonName = str(i, 'daemonName');
  if (serviceName && daemonName) throw invalidParameter('serviceName and daemonName cannot both be given: a task belongs to a service or to a daemon.');
  const desiredStatus = oneOf(i, 'desiredStatus', ['RUNNING', 'PENDING', 'STOPPED'] as const) ?? 'RUNNING';
  const launchType = oneOf(i, 'launchType', ['EC2', 'EXTERNAL', 'FARGATE', 'MANAGED_INSTANCES'] as const);
  c.authorize({ verb: 'list', resource: 'tasks', namespace: cluster });
  const items = (await c.registry.list(TASK, cluster)).items
    .map((o) => o as unknown as Task)
    .filter(
      (t) =>
        // ECS: a desiredStatus of PENDING matches nothing (tasks are never desired PENDING)
        desiredStatus !== 'PENDING' &&
        t.spec.desiredStatus === desiredStatus &&
        (!instance || t.spec.containerInstance === instance) &&
        (!family || t.spec.taskDefinition.split(':')[0] === family) &&
        (!startedBy || t.spec.startedBy === startedBy) &&
        (!serviceName || t.spec.group === `service:${serviceName}`) &&
        (!daemonName || t.spec.group === `daemon:${daemonName}`) &&
        (!launchType || (t.spec.launchType ?? 'EC2') === launchType),
    );
  const { page, nextToken } = paginate(items, (t) => t.metadata.name, i, { defaultMax: 100, max: 100 });
  return compact({ taskArns: page.map((t) => t.status?.taskArn ?? c.parts.arns.task(cluster, t.metadata.name)), nextToken });
};
