import { allocate, capacityOf, choosePorts, fitFailure, usedPorts, type Allocation, type Capacity, type TaskDemand } from '../api/allocation.ts';
import type { ContainerInstance, Task } from '../api/kinds.ts';
import type { HostPortAssignment } from '../api/resources.ts';
import type { PlacementConstraint, PlacementStrategy } from '../api/taskdefinition.ts';
import { evaluate, parseQuery, QueryError, type Expr } from './query.ts';

/**
 * Placement as pure functions: feasibility checkers that each say why they rejected an
 * instance, and strategies (random, spread, binpack) chained the way ECS chains them, each
 * one breaking the previous one's ties. `schedule` places a batch in order, charging each
 * placement to an in-memory copy of the instances so later tasks see earlier ones; the
 * apiserver's binding call is what commits (and re-checks) them.
 */

export interface InstanceView {
  name: string;
  status: 'ACTIVE' | 'DRAINING' | 'INACTIVE' | string;
  agentConnected: boolean;
  /** attribute name -> value (undefined value: the attribute exists without one) */
  attributes: Record<string, string | undefined>;
  ec2InstanceId?: string;
  agentVersion?: string;
  registeredAt?: string;
  capacity: Capacity;
  allocation: Allocation;
  dynamicHostPortRange?: [number, number];
  /** live (not stopped) tasks on the instance by group */
  taskGroups: Map<string, number>;
  runningTasksCount: number;
}

export interface TaskRequest {
  name: string;
  demand: TaskDemand;
  group?: string;
  constraints?: PlacementConstraint[];
  strategies?: PlacementStrategy[];
}

export type FailureReason = 'AGENT' | 'INACTIVE' | 'RESOURCE:CPU' | 'RESOURCE:MEMORY' | 'RESOURCE:PORTS' | 'ATTRIBUTE' | 'DISTINCT_INSTANCE';

export interface Placement {
  task: string;
  instance: string;
  hostPorts: HostPortAssignment[];
}

export interface PlacementFailure {
  task: string;
  /** how many instances each check rejected */
  reasons: Partial<Record<FailureReason, number>>;
  /** the check the most instances failed on, in ECS's words */
  reason: FailureReason | 'NO_INSTANCES' | 'INVALID';
  message: string;
}

export interface ScheduleResult {
  placements: Placement[];
  failures: PlacementFailure[];
}

/** Built-in attributes every instance carries, plus its custom ones. */
export function instanceAttributes(custom: Array<{ name: string; value?: string }> | undefined): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const a of custom ?? []) out[a.name] = a.value;
  return out;
}

/** Feasibility: undefined when the task may go on the instance, else why not. */
export function infeasible(
  inst: InstanceView,
  task: TaskRequest,
  memberOf: Expr[],
  distinct: boolean,
  /** the instance's used ports, when the caller keeps them (schedule() does, per batch) */
  used?: (inst: InstanceView) => { tcp: Set<number>; udp: Set<number> },
): { reason: FailureReason; detail: string } | undefined {
  if (inst.status !== 'ACTIVE') return { reason: 'INACTIVE', detail: `the instance is ${inst.status}` };
  if (!inst.agentConnected) return { reason: 'AGENT', detail: 'the agent is not connected' };
  if (distinct && task.group && (inst.taskGroups.get(task.group) ?? 0) > 0) return { reason: 'DISTINCT_INSTANCE', detail: `it already runs a task of group ${task.group}` };
  for (const e of memberOf) {
    if (!evaluate(e, { ...inst, taskGroups: inst.taskGroups })) return { reason: 'ATTRIBUTE', detail: 'a memberOf constraint does not hold' };
  }
  // most tasks ask for no host port: then the instance's ports are not looked at
  const ports = task.demand.ports.length ? choosePorts(task.demand, used?.(inst) ?? usedPorts(inst.allocation, inst.capacity), inst.dynamicHostPortRange ?? [32768, 60999]) : [];
  if (typeof ports === 'string') return { reason: 'RESOURCE:PORTS', detail: ports };
  const f = fitFailure(inst.capacity, inst.allocation, task.demand, ports);
  return f ? { reason: f.reason, detail: f.detail } : undefined;
}

const remaining = (i: InstanceView, what: 'cpu' | 'memory') => i.capacity[what] - i.allocation[what];

/**
 * Order the feasible instances: each strategy scores (lower is better) and later ones
 * break earlier ones' ties; the last tie-break is random. Spread by an attribute prefers
 * the attribute value whose instances run the fewest tasks of the group.
 */
export function rank(candidates: InstanceView[], all: InstanceView[], task: TaskRequest, strategies: PlacementStrategy[], rnd: () => number): InstanceView[] {
  const scorers = scorersFor(candidates, all, task, strategies, rnd);
  const last = new Map(candidates.map((i) => [i.name, rnd()]));
  const scored = candidates.map((i) => ({ i, s: [...scorers.map((f) => f(i)), last.get(i.name)!] }));
  scored.sort((a, b) => {
    for (let k = 0; k < a.s.length; k++) if (a.s[k] !== b.s[k]) return a.s[k] - b.s[k];
    return 0;
  });
  return scored.map((x) => x.i);
}

/** One scoring function per strategy (lower is better). */
function scorersFor(candidates: InstanceView[], all: InstanceView[], task: TaskRequest, strategies: PlacementStrategy[], rnd: () => number): Array<(i: InstanceView) => number> {
  const group = task.group ?? '';
  const groupCount = (i: InstanceView) => (group ? (i.taskGroups.get(group) ?? 0) : [...i.taskGroups.values()].reduce((a, b) => a + b, 0));
  return strategies.map((s): ((i: InstanceView) => number) => {
    if (s.type === 'random') {
      const r = new Map(candidates.map((i) => [i.name, rnd()]));
      return (i) => r.get(i.name)!;
    }
    if (s.type === 'binpack') {
      const what = s.field?.toLowerCase() === 'cpu' ? 'cpu' : 'memory';
      return (i) => remaining(i, what);
    }
    const field = s.field ?? 'instanceId';
    if (field === 'instanceId' || field === 'host') return groupCount;
    const attr = field.replace(/^attribute:/, '');
    const perValue = new Map<string, number>();
    for (const i of all) {
      if (i.status !== 'ACTIVE') continue;
      const v = i.attributes[attr] ?? '';
      perValue.set(v, (perValue.get(v) ?? 0) + groupCount(i));
    }
    return (i) => perValue.get(i.attributes[attr] ?? '') ?? 0;
  });
}

/**
 * The instance `rank` would put first, found in one pass (no sort): per task the scheduler
 * needs only the best of up to thousands of candidates. Ties on every strategy are broken
 * at random, like rank's last key.
 */
export function best(candidates: InstanceView[], all: InstanceView[], task: TaskRequest, strategies: PlacementStrategy[], rnd: () => number): InstanceView | undefined {
  const scorers = scorersFor(candidates, all, task, strategies, rnd);
  const k = scorers.length;
  // no allocation per candidate: thousands of candidates for each of thousands of tasks
  const topScore = new Array<number>(k).fill(0);
  let top: InstanceView | undefined;
  let ties = 1;
  for (const i of candidates) {
    let cmp = 0;
    if (top) {
      for (let j = 0; j < k && cmp === 0; j++) cmp = scorers[j](i) - topScore[j];
      if (cmp > 0) continue;
    }
    if (!top || cmp < 0) {
      top = i;
      for (let j = 0; j < k; j++) topScore[j] = scorers[j](i);
      ties = 1;
    } else {
      // tied on every strategy: reservoir sampling gives each tied instance an equal chance
      ties++;
      if (rnd() * ties < 1) top = i;
    }
  }
  return top;
}

const REASON_WORDS: Record<FailureReason, string> = {
  'RESOURCE:CPU': 'has insufficient CPU units available',
  'RESOURCE:MEMORY': 'has insufficient memory available',
  'RESOURCE:PORTS': 'is already using a port required by your task',
  AGENT: 'has no connected agent',
  INACTIVE: 'is not ACTIVE',
  ATTRIBUTE: 'does not match the required attributes (memberOf)',
  DISTINCT_INSTANCE: 'already runs a task of the group (distinctInstance)',
};

/** ECS's sentence for a task nothing could take; the service event prefixes "(service NAME)". */
export function failureMessage(f: Pick<PlacementFailure, 'reason' | 'reasons'>): string {
  if (f.reason === 'NO_INSTANCES') return 'was unable to place a task because no container instances were found in your cluster.';
  if (f.reason === 'INVALID') return 'was unable to place a task because its placement constraints are invalid.';
  const counts = Object.entries(f.reasons)
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${r} on ${n} instance${n === 1 ? '' : 's'}`)
    .join(', ');
  return `was unable to place a task because no container instance met all of its requirements. The closest matching container-instance ID ${REASON_WORDS[f.reason]}. (${counts})`;
}

/** How close an instance came: later checks mean closer (resources are checked last). */
const CLOSENESS: FailureReason[] = ['INACTIVE', 'AGENT', 'DISTINCT_INSTANCE', 'ATTRIBUTE', 'RESOURCE:PORTS', 'RESOURCE:CPU', 'RESOURCE:MEMORY'];

export function schedule(instances: InstanceView[], tasks: TaskRequest[], rnd: () => number = Math.random): ScheduleResult {
  // work on copies: each placement is charged so later tasks of the batch see it
  const pool = instances.map((i) => ({ ...i, allocation: { ...i.allocation, tasks: { ...i.allocation.tasks } }, taskGroups: new Map(i.taskGroups) }));
  const placements: Placement[] = [];
  const failures: PlacementFailure[] = [];
  const parsed = new Map<string, Expr | QueryError>();
  // each pool instance's used host ports, built on first need and kept up to date as the batch places tasks
  const usedCache = new Map<InstanceView, { tcp: Set<number>; udp: Set<number> }>();
  for (const t of tasks) {
    const memberOf: Expr[] = [];
    let bad: string | undefined;
    for (const c of t.constraints ?? []) {
      if (c.type !== 'memberOf') continue;
      const src = c.expression ?? '';
      let e = parsed.get(src);
      if (!e) {
        try {
          e = parseQuery(src);
        } catch (err) {
          e = err instanceof QueryError ? err : new QueryError(String(err), 0);
        }
        parsed.set(src, e);
      }
      if (e instanceof QueryError) bad = `memberOf expression "${src}": ${e.message}`;
      else memberOf.push(e);
    }
    if (bad) {
      failures.push({ task: t.name, reasons: {}, reason: 'INVALID', message: bad });
      continue;
    }
    if (pool.length === 0) {
      failures.push({ task: t.name, reasons: {}, reason: 'NO_INSTANCES', message: failureMessage({ reason: 'NO_INSTANCES', reasons: {} }) });
      continue;
    }
    const distinct = (t.constraints ?? []).some((c) => c.type === 'distinctInstance');
    const used = (i: InstanceView) => {
      let u = usedCache.get(i);
      if (!u) usedCache.set(i, (u = usedPorts(i.allocation, i.capacity)));
      return u;
    };
    const reasons: Partial<Record<FailureReason, number>> = {};
    const feasible: typeof pool = [];
    for (const inst of pool) {
      const why = infeasible(inst, t, memberOf, distinct, used);
      if (why) reasons[why.reason] = (reasons[why.reason] ?? 0) + 1;
      else feasible.push(inst);
    }
    if (feasible.length === 0) {
      const reason = CLOSENESS.slice().reverse().find((r) => reasons[r]) ?? 'INACTIVE';
      failures.push({ task: t.name, reasons, reason, message: failureMessage({ reason, reasons }) });
      continue;
    }
    const chosen = best(feasible, pool, t, t.strategies?.length ? t.strategies : [{ type: 'spread', field: 'instanceId' }], rnd)!;
    const ports = t.demand.ports.length ? (choosePorts(t.demand, used(chosen), chosen.dynamicHostPortRange ?? [32768, 60999]) as HostPortAssignment[]) : [];
    chosen.allocation = allocate(chosen.allocation, t.name, t.demand, ports);
    for (const p of ports) used(chosen)[p.protocol].add(p.hostPort);
    if (t.group) chosen.taskGroups.set(t.group, (chosen.taskGroups.get(t.group) ?? 0) + 1);
    else chosen.taskGroups.set('', (chosen.taskGroups.get('') ?? 0) + 1);
    placements.push({ task: t.name, instance: chosen.name, hostPorts: ports });
  }
  return { placements, failures };
}

/**
 * An instance as the scheduler sees it: its registration, the live tasks bound to it (for
 * groups and counts) and what is allocated on it. Shared by the placement controller
 * (from informers) and the ECS API's RunTask (from the apiserver cache).
 */
export function instanceView(ci: ContainerInstance, tasks: Iterable<Task>, allocation: Allocation): InstanceView {
  const attributes: Record<string, string | undefined> = {};
  for (const a of ci.spec.attributes ?? []) attributes[a.name] = a.value;
  const taskGroups = new Map<string, number>();
  let running = 0;
  for (const t of tasks) {
    if (t.status?.lastStatus === 'STOPPED' || t.spec.desiredStatus === 'STOPPED') continue;
    const g = t.spec.group ?? '';
    taskGroups.set(g, (taskGroups.get(g) ?? 0) + 1);
    if (t.status?.lastStatus === 'RUNNING') running++;
  }
  return {
    name: ci.metadata.name,
    status: ci.spec.status === 'ACTIVE' ? (ci.status?.status === 'INACTIVE' ? 'INACTIVE' : 'ACTIVE') : ci.spec.status,
    agentConnected: ci.status?.agentConnected ?? false,
    attributes,
    ec2InstanceId: ci.spec.ec2InstanceId,
    agentVersion: ci.status?.versionInfo?.agentVersion,
    registeredAt: ci.status?.registeredAt,
    capacity: capacityOf(ci.spec.registeredResources),
    allocation,
    dynamicHostPortRange: ci.spec.dynamicHostPortRange,
    taskGroups,
    runningTasksCount: running,
  };
}
