import { createHash } from 'node:crypto';
import { Kinds, type ContainerInstance, type Task, type TaskDefinition } from '../api/kinds.ts';
import { newId } from '../api/arn.ts';
import { allocate, choosePorts, demandOf, usedPorts, type TaskDemand } from '../api/allocation.ts';
import { withTags, type PlacementConstraint, type PlacementStrategy, type Tag } from '../api/taskdefinition.ts';
import { NetworkConfiguration, taskRevision, type TaskSpec } from '../api/resources.ts';
import { storeKey } from '../api/meta.ts';
import { contentHash } from '../api/validate.ts';
import type { PreparedCreate } from '../apiserver/registry.ts';
import { infeasible, schedule, type InstanceView, type TaskRequest } from '../scheduler/scheduler.ts';
import { parseQuery, type Expr } from '../scheduler/query.ts';
import { clusterOf, describeMany, getOrUndefined, idOf, instanceViews, newObj, type OpContext, type Operation } from './context.ts';
import { bool, int, list, obj, oneOf, paginate, str, strList, unsupported, type Input } from './params.ts';
import { compact, taskToEcs } from './shapes.ts';
import { getTd, tdRef } from './taskdefs.ts';
import { clientException, EcsError, invalidParameter } from './wire.ts';

/**
 * Tasks: RunTask places synchronously with the shared scheduler and commits its tasks
 * created AND bound in one txn, through the binder's checks (the same ones the placement
 * controller's binding call gets); tasks nothing can take are not created and come back as
 * `failures` with ECS's reasons. StartTask binds to the instances the caller names, the same
 * way. StopTask sets the desired status; the agent does the rest.
 */

const TASK = Kinds.Task;

export interface Failure {
  arn?: string;
  reason: string;
  detail?: string;
}

/** The task's definition from the cache: a daemon's task runs a daemon task definition (a subset of the same shape). */
function tdOf(c: OpContext, t: Task): TaskDefinition | undefined {
  const key = storeKey(t.spec.daemonTaskDefinition ? 'daemontaskdefinitions' : 'taskdefinitions', undefined, taskRevision(t));
  return c.registry.cache.get(key) as unknown as TaskDefinition | undefined;
}

/** The instance a task is bound to, from the cache (its CPU architecture is the task's attribute). */
const instanceOf = (c: OpContext, t: Task): ContainerInstance | undefined =>
  t.spec.containerInstance ? (c.registry.cache.get(storeKey('containerinstances', t.metadata.namespace, t.spec.containerInstance)) as unknown as ContainerInstance | undefined) : undefined;

export const taskShape = (c: OpContext, t: Task, include: string[] = []) => taskToEcs(t, c.parts.arns, tdOf(c, t), include, instanceOf(c, t));

/** The task definition a RunTask/StartTask names: must exist and be ACTIVE (ECS's ClientException). */
async function runnableTd(c: OpContext, ref: string): Promise<TaskDefinition> {
  c.authorize({ verb: 'get', resource: 'taskdefinitions', name: ref });
  // a family runs its latest revision as the store has it: one registered a moment ago on
  // another apiserver counts (C5)
  if (!ref.includes(':')) await c.registry.cache.waitFor(await c.registry.store.currentRevision());
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
  unsupported(i, ['capacityProviderStrategy', 'platformVersion', 'volumeConfigurations', 'referenceId']);
  if (bool(i, 'enableExecuteCommand')) throw invalidParameter('enableExecuteCommand: berth has no ECS Exec (ExecuteCommand) yet, so no command could be run in the task: leave it out or false.');
  noVpc(i);
  const overrides = obj(i, 'overrides');
  const startedBy = str(i, 'startedBy', { max: 128 });
  const propagate = oneOf(i, 'propagateTags', ['TASK_DEFINITION', 'NONE', 'SERVICE'] as const);
  if (propagate === 'SERVICE') throw invalidParameter('propagateTags SERVICE: a task that RunTask or StartTask starts has no service; use TASK_DEFINITION or NONE.');
  const managed = bool(i, 'enableECSManagedTags') ?? false;
  const td = await runnableTd(c, ref);
  const tags = withTags(list<Tag>(i, 'tags') ?? [], propagate === 'TASK_DEFINITION' ? td.spec.tags : undefined, managed ? [{ key: 'aws:ecs:clusterName', value: cluster }] : undefined);
  const family = td.status?.family ?? td.metadata.name.split(':')[0];
  const spec = compact({
    taskDefinition: td.metadata.name,
    overrides: overrides ? cleanOverrides(overrides) : undefined,
    group: str(i, 'group', { max: 255 }) ?? `family:${family}`,
    startedBy,
    tags: tags.length ? tags : undefined,
    ...extra,
  }) as TaskInputs['spec'];
  // the one validation: admission on a dry run (the same checks a real create makes)
  await c.registry.create(TASK, cluster, newObj('Task', newId(), spec, cluster), { ...c.req, dryRun: true });
  return { td, spec, demand: demandOf(td.spec, spec.overrides) };
}

/** RunTask/StartTask networkConfiguration, checked as a service's is (berth has no VPC to place a task in). */
function noVpc(i: Input) {
  const nc = obj(i, 'networkConfiguration');
  if (!nc) return;
  const r = NetworkConfiguration.safeParse(nc);
  if (!r.success) throw invalidParameter(r.error.issues.map((iss) => `networkConfiguration.${iss.path.join('.')}: ${iss.message}`).join('; '));
}

/** The SDK sends empty lists for members a caller left out of a container override. */
function cleanOverrides(o: Input): Input {
  const out: Input = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === null || v === undefined) continue;
    if (k === 'inferenceAcceleratorOverrides' || k === 'ephemeralStorage') {
      if (Array.isArray(v) ? v.length === 0 : Object.keys(v as object).length === 0) continue;
      throw invalidParameter(`overrides.${k} is not supported by berth (no Elastic Inference, no Fargate ephemeral storage).`);
    }
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

/** Where a RunTask's client token is kept, in its cluster's scope: the tasks it started (swept after CLIENT_TOKEN_TTL_MS). */
export const clientTokenKey = (cluster: string, token: string) => storeKey('clienttokens', cluster, createHash('sha256').update(token).digest('hex'));

interface TokenRecord {
  clientToken: string;
  /** the request's parameters (ECS: the same token with other parameters is a ConflictException) */
  request: string;
  tasks: string[];
  createdAt: string;
}

/** The token's record; its revision is compared by the next write of it. */
interface Token {
  key: string;
  value: Omit<TokenRecord, 'tasks'>;
  rev: number;
}

type Refused = Failure & { index: number };
type Committed = { bound: string[]; refused: Refused[]; conflicted: number[]; tokenTaken?: boolean };

/**
 * Creates the tasks bound to their instances: each instance's tasks in ONE txn with their
 * creates, the instance's allocation record (compared, with its gate), the cluster's guards
 * and the client token's record. The placement controller never sees these tasks unbound
 * (C13), and a txn that meets a conflict creates nothing: its placements come back as
 * `conflicted`, to be planned again. A task its instance refuses at commit (it filled up, or
 * was drained, meanwhile) is left out with the reason. One txn per instance keeps a race on
 * one instance's record from failing the others.
 */
async function createBound(
  c: OpContext,
  cluster: string,
  spec: TaskInputs['spec'],
  placements: Array<{ task: string; instance: string }>,
  token?: Token,
  earlier: string[] = [],
): Promise<Committed> {
  c.authorize({ verb: 'create', resource: 'tasks', namespace: cluster });
  c.authorize({ verb: 'create', resource: 'bindings', namespace: cluster });
  const out: Committed = { bound: [], refused: [], conflicted: [] };
  const groups = new Map<string, number[]>();
  placements.forEach((p, i) => groups.set(p.instance, [...(groups.get(p.instance) ?? []), i]));
  for (const [instance, indexes] of groups) {
    const prepared: PreparedCreate[] = [];
    for (const i of indexes) {
      const r = await c.registry.prepareCreate(TASK, cluster, newObj('Task', placements[i].task, structuredClone(spec), cluster), c.req);
      if ('existing' in r) throw invalidParameter(`task "${placements[i].task}" exists`);
      prepared.push(r);
    }
    const plan = c.parts.binder.planNew(cluster, prepared.map((p) => ({ obj: p.obj, instance })));
    const arn = c.parts.arns.containerInstance(cluster, instance);
    for (const [k, f] of plan.failures) out.refused.push({ index: indexes[k], arn, reason: f.reason, detail: f.detail });
    const go = prepared.filter((_, k) => !plan.failures.has(k));
    if (go.length === 0) continue;
    const extra = { compares: [...plan.compares], ops: [...plan.ops] };
    if (token) {
      const record: TokenRecord = { ...token.value, tasks: [...earlier, ...out.bound, ...go.map((p) => p.obj.metadata.name)] };
      extra.compares.push({ key: token.key, modRevision: token.rev });
      extra.ops.push({ type: 'put', key: token.key, value: JSON.stringify({ metadata: { name: token.key.split('/').pop() }, ...record }) });
    }
    const r = await c.registry.commitCreates(go, extra);
    if (r.succeeded) {
      if (token) token.rev = r.revision;
      out.bound.push(...go.map((p) => p.obj.metadata.name));
      continue;
    }
    if (token && r.failed.includes(token.key)) return { ...out, tokenTaken: true };
    out.conflicted.push(...indexes.filter((_, k) => !plan.failures.has(k)));
  }
  return out;
}

/** What an earlier RunTask with this token started (undefined: none yet); a retry with other parameters is refused. */
async function earlierRun(c: OpContext, cluster: string, key: string, request: string): Promise<unknown | undefined> {
  await c.registry.fresh();
  const rec = c.registry.cache.get(key) as unknown as TokenRecord | undefined;
  if (!rec) return undefined;
  if (rec.request !== request) throw new EcsError('ConflictException', 'The clientToken was used before with other parameters: use a new token for a new request.');
  return { tasks: await shapes(c, cluster, rec.tasks), failures: [] };
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
  if (clientToken !== undefined && !/^[\x21-\x7e]+$/.test(clientToken)) throw invalidParameter('clientToken: up to 64 ASCII characters from ! to ~ (33-126).');
  c.authorize({ verb: 'create', resource: 'tasks', namespace: cluster });
  let token: Token | undefined;
  if (clientToken) {
    // idempotent: a retry (of a call that timed out, say, on this or another apiserver)
    // gets the tasks the first call started; the record is created in that call's txn (C4)
    const { clientToken: _t, ...params } = i;
    void _t;
    const request = contentHash(params);
    const key = clientTokenKey(cluster, clientToken);
    const before = await earlierRun(c, cluster, key, request);
    if (before) return before;
    token = { key, value: { clientToken, request, createdAt: new Date().toISOString() }, rev: 0 };
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
  // a commit can lose a race with another writer (the placement controller, another
  // RunTask): nothing of it was created, so it is planned again from fresh state
  for (let round = 0; round < RUN_ROUNDS && requests.length; round++) {
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
    if (r.placements.length === 0) break;
    const res = await createBound(c, cluster, spec, r.placements.map((p) => ({ task: p.task, instance: p.instance })), token, bound);
    bound.push(...res.bound);
    if (res.tokenTaken) {
      // a concurrent call with this token committed first: its tasks are the answer
      const other = await earlierRun(c, cluster, token!.key, token!.value.request);
      if (other) return other;
    }
    const lost = r.placements.length - res.bound.length;
    if (lost === 0) break;
    if (round === RUN_ROUNDS - 1) {
      failures.push(...res.refused.map(({ index: _i, ...f }) => f));
      if (res.conflicted.length) failures.push({ reason: 'CONFLICT', detail: 'the instances changed while the tasks were placed; try again' });
      break;
    }
    requests = Array.from({ length: lost }, () => ({ name: newId(), demand, group: spec.group, constraints, strategies }));
    // others are writing the same instances: back off a little, growing, before planning again
    await new Promise((res) => setTimeout(res, Math.random() * Math.min(200, 10 * 2 ** round)));
    views = await instanceViews(c, cluster);
  }
  return { tasks: await shapes(c, cluster, bound), failures: dedupe(failures) };
};

/** how often RunTask and StartTask plan again after a commit lost a race */
const RUN_ROUNDS = 10;

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
  let placements: Array<{ task: string; instance: string }> = [];
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
  const bound: string[] = [];
  for (let attempt = 1; placements.length; attempt++) {
    const res = await createBound(c, cluster, spec, placements);
    bound.push(...res.bound);
    failures.push(...res.refused.map(({ index: _i, ...f }) => f));
    // what a conflict left uncreated is tried again, on the instance the caller named
    placements = res.conflicted.map((k) => placements[k]);
    if (placements.length && attempt >= RUN_ROUNDS) {
      const detail = 'the instance changed while the task was placed; try again';
      failures.push(...placements.map((p) => ({ arn: c.parts.arns.containerInstance(cluster, p.instance), reason: 'CONFLICT', detail })));
      break;
    }
    if (!placements.length) break;
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(200, 10 * 2 ** attempt)));
    // the cache has what the conflict met before the next plan
    await c.registry.fresh();
  }
  return { tasks: await shapes(c, cluster, bound), failures };
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
        (!family || taskRevision(t).split(':')[0] === family) &&
        (!startedBy || t.spec.startedBy === startedBy) &&
        (!serviceName || t.spec.group === `service:${serviceName}`) &&
        (!daemonName || t.spec.group === `daemon:${daemonName}`) &&
        (!launchType || (t.spec.launchType ?? 'EC2') === launchType),
    );
  const { page, nextToken } = paginate(items, (t) => t.metadata.name, i, { defaultMax: 100, max: 100 });
  return compact({ taskArns: page.map((t) => t.status?.taskArn ?? c.parts.arns.task(cluster, t.metadata.name)), nextToken });
};
