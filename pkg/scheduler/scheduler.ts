import { capacityOf, choosePorts, usedPorts, type Allocation, type Capacity, type TaskDemand } from '../api/allocation.ts';
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
 *
 * A batch does not score every instance for every task (Nomad's `LimitIterator`): each
 * task's candidates are walked in the order of its FIRST strategy (fewest tasks of the
 * group for spread, least remaining resource for binpack, a shuffled rotation for random),
 * so the first feasible instances found are the best by that strategy, exactly as ECS
 * ranks them; among those tied on it, at most `candidateLimit` feasible ones are scored by
 * the rest of the chain. When a binpack follows a spread (ECS's "AZ-balanced binpack",
 * `spread(instanceId)` then binpack), the instances tied on the spread are themselves walked
 * in binpack order, so the chain is exact on both keys and the limit bounds only the ties
 * on both. An instance found infeasible for a task stays infeasible for every
 * later task of the same shape in the batch (allocations only grow), so it is dropped from
 * that shape's walk: a batch costs about O(instances) per task shape plus O(limit) per
 * task, not O(instances) per task.
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
  /** what is allocated (read only: it may be a live ledger's record) */
  allocation: Allocation;
  /** the host ports in use, reserved or allocated; derived from `allocation` when absent */
  usedPorts?: { tcp: ReadonlySet<number>; udp: ReadonlySet<number> };
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
  /** the instance that came closest (failed on the latest check) */
  closest?: string;
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

/** The host ports in use on an instance. */
export const portsOf = (i: InstanceView) => i.usedPorts ?? usedPorts(i.allocation, i.capacity);

/** Feasibility: undefined when the task may go on the instance, else why not. */
export function infeasible(
  inst: InstanceView,
  task: TaskRequest,
  memberOf: Expr[],
  distinct: boolean,
  /** the instance's used ports, when the caller keeps them */
  used?: (inst: InstanceView) => { tcp: ReadonlySet<number>; udp: ReadonlySet<number> },
): { reason: FailureReason; detail: string } | undefined {
  if (inst.status !== 'ACTIVE') return { reason: 'INACTIVE', detail: `the instance is ${inst.status}` };
  if (!inst.agentConnected) return { reason: 'AGENT', detail: 'the agent is not connected' };
  if (distinct && task.group && (inst.taskGroups.get(task.group) ?? 0) > 0) return { reason: 'DISTINCT_INSTANCE', detail: `it already runs a task of group ${task.group}` };
  for (const e of memberOf) {
    if (!evaluate(e, inst)) return { reason: 'ATTRIBUTE', detail: 'a memberOf constraint does not hold' };
  }
  // most tasks ask for no host port: then the instance's ports are not looked at; chosen
  // ports are free by construction, so only CPU and memory remain to check
  if (task.demand.ports.length) {
    const ports = choosePorts(task.demand, used?.(inst) ?? portsOf(inst), inst.dynamicHostPortRange ?? [32768, 60999]);
    if (typeof ports === 'string') return { reason: 'RESOURCE:PORTS', detail: ports };
  }
  const { capacity: cap, allocation: a } = inst;
  if (a.cpu + task.demand.cpu > cap.cpu) return { reason: 'RESOURCE:CPU', detail: `needs ${task.demand.cpu} CPU units, ${cap.cpu - a.cpu} remain` };
  if (a.memory + task.demand.memory > cap.memory) return { reason: 'RESOURCE:MEMORY', detail: `needs ${task.demand.memory} MiB, ${cap.memory - a.memory} remain` };
  return undefined;
}

const remaining = (i: InstanceView, what: 'cpu' | 'memory') => i.capacity[what] - i.allocation[what];
const binpackField = (s: PlacementStrategy): 'cpu' | 'memory' => (s.field?.toLowerCase() === 'cpu' ? 'cpu' : 'memory');
const spreadAttr = (s: PlacementStrategy) => {
  const field = s.field ?? 'instanceId';
  return field === 'instanceId' || field === 'host' ? undefined : field.replace(/^attribute:/, '');
};

/** Tasks of the group on an instance (all its tasks when the task has no group): what spread counts. */
const groupCount = (i: InstanceView, group: string) => (group ? (i.taskGroups.get(group) ?? 0) : [...i.taskGroups.values()].reduce((a, b) => a + b, 0));

/** Per attribute value, the tasks of the group on the ACTIVE instances with that value. */
function valueTotals(all: InstanceView[], attr: string, group: string): Map<string, number> {
  const perValue = new Map<string, number>();
  for (const i of all) {
    if (i.status !== 'ACTIVE') continue;
    const v = i.attributes[attr] ?? '';
    perValue.set(v, (perValue.get(v) ?? 0) + groupCount(i, group));
  }
  return perValue;
}

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

/** One scoring function per strategy (lower is better). `totals` serves spread-by-attribute sums the caller keeps. */
function scorersFor(
  candidates: InstanceView[],
  all: InstanceView[],
  task: TaskRequest,
  strategies: PlacementStrategy[],
  rnd: () => number,
  totals: (attr: string, group: string) => Map<string, number> = (attr, group) => valueTotals(all, attr, group),
): Array<(i: InstanceView) => number> {
  const group = task.group ?? '';
  return strategies.map((s): ((i: InstanceView) => number) => {
    if (s.type === 'random') {
      const r = new Map(candidates.map((i) => [i.name, rnd()]));
      return (i) => r.get(i.name)!;
    }
    if (s.type === 'binpack') {
      const what = binpackField(s);
      return (i) => remaining(i, what);
    }
    const attr = spreadAttr(s);
    if (attr === undefined) return (i) => groupCount(i, group);
    const perValue = totals(attr, group);
    return (i) => perValue.get(i.attributes[attr] ?? '') ?? 0;
  });
}

/**
 * The instance `rank` would put first, found in one pass (no sort): per task the scheduler
 * needs only the best of its candidates. Ties on every strategy are broken at random, like
 * rank's last key.
 */
export function best(
  candidates: InstanceView[],
  all: InstanceView[],
  task: TaskRequest,
  strategies: PlacementStrategy[],
  rnd: () => number,
  totals?: (attr: string, group: string) => Map<string, number>,
): InstanceView | undefined {
  const scorers = scorersFor(candidates, all, task, strategies, rnd, totals);
  const k = scorers.length;
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

/** ECS's sentence for a task nothing could take (it names the closest instance); the service event prefixes "(service NAME)". */
export function failureMessage(f: Pick<PlacementFailure, 'reason' | 'reasons' | 'closest'>): string {
  if (f.reason === 'NO_INSTANCES') return 'was unable to place a task because no container instances were found in your cluster.';
  if (f.reason === 'INVALID') return 'was unable to place a task because its placement constraints are invalid.';
  const counts = Object.entries(f.reasons)
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${r} on ${n} instance${n === 1 ? '' : 's'}`)
    .join(', ');
  return `was unable to place a task because no container instance met all of its requirements. The closest matching container-instance${f.closest ? ` ${f.closest}` : ''} ${REASON_WORDS[f.reason]}. (${counts})`;
}

/** How close an instance came: later checks mean closer (resources are checked last). */
const CLOSENESS: FailureReason[] = ['INACTIVE', 'AGENT', 'DISTINCT_INSTANCE', 'ATTRIBUTE', 'RESOURCE:PORTS', 'RESOURCE:CPU', 'RESOURCE:MEMORY'];

/**
 * How many feasible candidates, tied on the first strategy, the rest of the chain scores:
 * max(2, ceil(log2 n)) as Nomad's LimitIterator; when a later strategy spreads, more (up to
 * 100), as Nomad widens its limit for spread, so the second key stays close to exact.
 */
export function candidateLimit(n: number, strategies: PlacementStrategy[]): number {
  const log = Math.max(2, Math.ceil(Math.log2(Math.max(2, n))));
  return strategies.slice(1).some((s) => s.type === 'spread') ? Math.max(log, Math.min(n, 100)) : log;
}

/** The field of a binpack that directly follows a spread: the spread's ties are then walked in binpack order (exact on both keys). */
const secondBinpack = (strategies: PlacementStrategy[]): 'cpu' | 'memory' | undefined =>
  strategies[0]?.type === 'spread' && strategies[1]?.type === 'binpack' ? binpackField(strategies[1]) : undefined;

/** One instance of the batch's working copy: charged with the batch's placements. */
interface PoolInstance extends InstanceView {
  ports: { tcp: ReadonlySet<number>; udp: ReadonlySet<number> };
  ownPorts: boolean;
}

/** What a walk's visitor answers: drop (infeasible for good), skip, take, stop (the walk), next (the rest of this bucket). */
type Visit = 'drop' | 'skip' | 'take' | 'stop' | 'next';
/** `key`: the instance's score by the first strategy; `key2`: by the second when the walker orders buckets by it (a binpack). */
type Visitor = (i: PoolInstance, key: number, key2?: number) => Visit;

/** Where a task's candidates come from, in the order of its first strategy. */
interface Walker {
  /** visits instances best-first by the first strategy (and within a bucket of ties, by the second when it is a binpack) */
  walk(visit: Visitor): void;
  /** an instance's allocation or groups changed (a placement) */
  moved(i: PoolInstance): void;
}

/** A bucket of instances tied on a walker's first key. */
interface Bucket {
  readonly size: number;
  add(i: PoolInstance): void;
  delete(i: PoolInstance): void;
  /** the instance's remaining resources changed */
  reposition(i: PoolInstance): void;
  /** visits the bucket's instances; 'stop' when the visitor stopped the walk */
  walk(visit: Visitor, key: number): 'stop' | undefined;
}

/** A bucket in no particular order (insertion). */
class SetBucket implements Bucket {
  private readonly s = new Set<PoolInstance>();
  get size() {
    return this.s.size;
  }
  add(i: PoolInstance) {
    this.s.add(i);
  }
  delete(i: PoolInstance) {
    this.s.delete(i);
  }
  reposition() {}
  walk(visit: Visitor, key: number): 'stop' | undefined {
    // removing from a Set while iterating it is safe
    for (const i of this.s) {
      const r = visit(i, key);
      if (r === 'drop') this.s.delete(i);
      if (r === 'stop') return 'stop';
      if (r === 'next') return undefined;
    }
    return undefined;
  }
}

/**
 * A bucket ordered as binpack orders it: least remaining `field` first, visited from the
 * first instance with at least `need()` of it. Instances are grouped by the remaining they
 * were filed under (a set per amount, the amounts sorted), so re-filing one a placement
 * charged costs two set operations, not a move in a sorted array: every task shape's walker
 * re-files the instance a placement charged.
 */
class SortedBucket implements Bucket {
  private readonly byLeft = new Map<number, Set<PoolInstance>>();
  /** the amounts of `byLeft`, ascending */
  private amounts: number[] = [];
  private readonly filed = new Map<PoolInstance, number>();
  private n = 0;
  constructor(
    private readonly field: 'cpu' | 'memory',
    private readonly need: () => number,
    /** the sorted remaining is the walk's first key (binpack first), not its second */
    private readonly primary = false,
    items: Iterable<PoolInstance> = [],
  ) {
    for (const i of items) {
      const k = remaining(i, field);
      let set = this.byLeft.get(k);
      if (!set) this.byLeft.set(k, (set = new Set()));
      set.add(i);
      this.filed.set(i, k);
      this.n++;
    }
    this.amounts = [...this.byLeft.keys()].sort((a, b) => a - b);
  }
  get size() {
    return this.n;
  }
  private lowerBound(x: number) {
    const a = this.amounts;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  add(i: PoolInstance) {
    if (this.filed.has(i)) return;
    const k = remaining(i, this.field);
    let set = this.byLeft.get(k);
    if (!set) {
      this.byLeft.set(k, (set = new Set()));
      this.amounts.splice(this.lowerBound(k), 0, k);
    }
    set.add(i);
    this.filed.set(i, k);
    this.n++;
  }
  delete(i: PoolInstance) {
    const k = this.filed.get(i);
    if (k === undefined) return;
    const set = this.byLeft.get(k)!;
    set.delete(i);
    if (set.size === 0) {
      this.byLeft.delete(k);
      // a new array, not an edit: a walk in progress keeps the amounts it started with
      const at = this.lowerBound(k);
      this.amounts = [...this.amounts.slice(0, at), ...this.amounts.slice(at + 1)];
    }
    this.filed.delete(i);
    this.n--;
  }
  reposition(i: PoolInstance) {
    const k = this.filed.get(i);
    if (k === undefined || k === remaining(i, this.field)) return;
    this.delete(i);
    this.add(i);
  }
  walk(visit: Visitor, key: number): 'stop' | undefined {
    const amounts = this.amounts;
    const dropped: PoolInstance[] = [];
    let out: 'stop' | 'next' | undefined;
    for (let k = this.lowerBound(this.need()); k < amounts.length && !out; k++) {
      const left = amounts[k];
      const set = this.byLeft.get(left);
      if (!set) continue;
      for (const i of set) {
        const r = this.primary ? visit(i, left) : visit(i, key, left);
        if (r === 'drop') dropped.push(i);
        if (r === 'stop' || r === 'next') {
          out = r;
          break;
        }
      }
    }
    for (const i of dropped) this.delete(i);
    return out === 'stop' ? 'stop' : undefined;
  }
}

/** The bucket kind of a walker whose first key ties many instances: sorted when the second strategy is a binpack. */
type BucketOf = () => Bucket;

/** A shuffled rotation: every walk starts where the last one stopped. */
class RandomWalker implements Walker {
  private at = 0;
  private list: PoolInstance[];
  constructor(list: PoolInstance[]) {
    this.list = [...list];
  }
  walk(visit: Visitor) {
    const n = this.list.length;
    const dropped = new Set<PoolInstance>();
    let next = this.at;
    for (let k = 0; k < n; k++) {
      const i = this.list[(this.at + k) % n];
      const r = visit(i, 0);
      if (r === 'drop') dropped.add(i);
      if (r === 'take' || r === 'stop') next = (this.at + k + 1) % n;
      if (r === 'stop') break;
    }
    this.at = next;
    if (dropped.size) {
      const before = this.list[this.at];
      this.list = this.list.filter((i) => !dropped.has(i));
      this.at = Math.max(0, this.list.indexOf(before));
    }
  }
  moved() {}
}

/** Buckets by a small integer key (tasks of the group on the instance), lowest first. */
class LevelWalker implements Walker {
  private readonly levels = new Map<number, Bucket>();
  private readonly at = new Map<PoolInstance, number>();
  private sorted: number[] = [];
  constructor(
    list: PoolInstance[],
    private readonly key: (i: PoolInstance) => number,
    private readonly bucket: BucketOf,
    /** the buckets are sorted (a binpack follows): placements re-file instances within their level */
    private readonly sortedBuckets = false,
  ) {
    for (const i of list) this.put(i, key(i));
  }
  private put(i: PoolInstance, k: number) {
    let s = this.levels.get(k);
    if (!s) {
      this.levels.set(k, (s = this.bucket()));
      this.sorted = [...this.levels.keys()].sort((a, b) => a - b);
    }
    s.add(i);
    this.at.set(i, k);
  }
  private remove(i: PoolInstance) {
    const k = this.at.get(i);
    if (k === undefined) return;
    this.at.delete(i);
    // (a bucket whose walk dropped its last instances may be gone already)
    const s = this.levels.get(k);
    if (!s) return;
    s.delete(i);
    if (s.size === 0) {
      this.levels.delete(k);
      this.sorted = this.sorted.filter((x) => x !== k);
    }
  }
  walk(visit: Visitor) {
    this.flush();
    // `remove` replaces `sorted` instead of editing it, so the levels walked stay as they were
    const levels = this.sorted;
    for (const k of levels) {
      const s = this.levels.get(k);
      if (!s) continue;
      const dropped: PoolInstance[] = [];
      const r = s.walk((i, key, key2) => {
        const v = visit(i, key, key2);
        if (v === 'drop') dropped.push(i);
        return v;
      }, k);
      for (const i of dropped) this.remove(i);
      if (r === 'stop') return;
    }
  }
  moved(i: PoolInstance) {
    const before = this.at.get(i);
    if (before === undefined) return;
    const k = this.key(i);
    if (k === before) {
      // a placement of another group: the level is unchanged; its place in a sorted bucket is fixed when this walker walks next
      if (this.sortedBuckets) this.dirty.add(i);
      return;
    }
    this.remove(i);
    this.put(i, k);
  }
  /** instances charged since the last walk whose place in their (sorted) level may have changed */
  private readonly dirty = new Set<PoolInstance>();
  private flush() {
    for (const i of this.dirty) {
      const k = this.at.get(i);
      if (k !== undefined) this.levels.get(k)?.reposition(i);
    }
    this.dirty.clear();
  }
}

/** Spread by an attribute: attribute values by their group total, lowest first; within a value, its instances. */
class ValueWalker implements Walker {
  private readonly members = new Map<string, Bucket>();
  constructor(
    list: PoolInstance[],
    private readonly attr: string,
    private readonly totals: () => Map<string, number>,
    bucket: BucketOf,
    /** the buckets are sorted (a binpack follows): placements re-file instances */
    private readonly sorted = false,
  ) {
    for (const i of list) {
      const v = i.attributes[attr] ?? '';
      let m = this.members.get(v);
      if (!m) this.members.set(v, (m = bucket()));
      m.add(i);
    }
  }
  walk(visit: Visitor) {
    for (const i of this.dirty) this.members.get(i.attributes[this.attr] ?? '')?.reposition(i);
    this.dirty.clear();
    const t = this.totals();
    const values = [...this.members.keys()].sort((a, b) => (t.get(a) ?? 0) - (t.get(b) ?? 0));
    for (const v of values) if (this.members.get(v)!.walk(visit, t.get(v) ?? 0) === 'stop') return;
  }
  /** instances charged since the last walk (their value never changes within a batch; their place among its instances may) */
  private readonly dirty = new Set<PoolInstance>();
  moved(i: PoolInstance) {
    if (this.sorted) this.dirty.add(i);
  }
}

/** Binpack: least remaining resource first, starting at the first instance with enough of it. */
class BinpackWalker implements Walker {
  private readonly list: SortedBucket;
  constructor(list: PoolInstance[], field: 'cpu' | 'memory', need: () => number) {
    this.list = new SortedBucket(field, need, true, list);
  }
  /** instances charged since the last walk: re-filed when this walker walks next (a batch of many shapes re-files each only when used) */
  private readonly dirty = new Set<PoolInstance>();
  walk(visit: Visitor) {
    for (const i of this.dirty) this.list.reposition(i);
    this.dirty.clear();
    this.list.walk(visit, 0);
  }
  moved(i: PoolInstance) {
    this.dirty.add(i);
  }
}

/** Parsed constraints of a task, or why they are invalid. */
function constraintsOf(t: TaskRequest, parsed: Map<string, Expr | QueryError>): { memberOf: Expr[]; distinct: boolean; bad?: string; dynamic: boolean } {
  const memberOf: Expr[] = [];
  let bad: string | undefined;
  let dynamic = false;
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
    else {
      memberOf.push(e);
      // task:group can turn true as the batch places tasks: such a shape is re-checked every time
      if (src.includes('task:group')) dynamic = true;
    }
  }
  return { memberOf, distinct: (t.constraints ?? []).some((c) => c.type === 'distinctInstance'), bad, dynamic };
}

/**
 * One batch: the working copy of the instances, the walkers of each task shape, and the
 * spread totals, all kept up to date placement by placement.
 */
class Batch {
  readonly pool: PoolInstance[];
  private readonly eligible: PoolInstance[];
  private readonly walkers = new Map<string, Walker>();
  private readonly failed = new Map<string, Omit<PlacementFailure, 'task'>>();
  private readonly totals = new Map<string, Map<string, number>>();
  private readonly parsed = new Map<string, Expr | QueryError>();
  readonly placements: Placement[] = [];
  readonly failures: PlacementFailure[] = [];

  constructor(
    instances: InstanceView[],
    private readonly rnd: () => number,
  ) {
    // the working copy: numbers and group counts copied, ports copied on first write, the allocation record shared (read only)
    this.pool = instances.map((i) => ({ ...i, allocation: { cpu: i.allocation.cpu, memory: i.allocation.memory, tasks: i.allocation.tasks }, taskGroups: new Map(i.taskGroups), ports: portsOf(i), ownPorts: false }));
    // only ACTIVE instances with a connected agent can take anything; the rest count only in failure reasons
    this.eligible = this.pool.filter((i) => i.status === 'ACTIVE' && i.agentConnected);
    // shuffled once (Nomad's SetNodes): ties and rotations do not favour the list order
    for (let k = this.eligible.length - 1; k > 0; k--) {
      const j = Math.floor(this.rnd() * (k + 1));
      [this.eligible[k], this.eligible[j]] = [this.eligible[j], this.eligible[k]];
    }
  }

  private total(attr: string, group: string): Map<string, number> {
    const k = `${attr}\u0000${group}`;
    let m = this.totals.get(k);
    if (!m) this.totals.set(k, (m = valueTotals(this.pool, attr, group)));
    return m;
  }

  private walker(shape: string, t: TaskRequest, strategies: PlacementStrategy[]): Walker {
    let w = this.walkers.get(shape);
    if (w) return w;
    const first = strategies[0];
    const group = t.group ?? '';
    if (first.type === 'binpack') {
      const f = binpackField(first);
      w = new BinpackWalker(this.eligible, f, () => t.demand[f]);
    } else if (first.type === 'spread') {
      const attr = spreadAttr(first);
      // a binpack after the spread (ECS's AZ-balanced binpack): the instances tied on the spread are walked in binpack order
      const inner = secondBinpack(strategies);
      const bucket: BucketOf = inner ? () => new SortedBucket(inner, () => t.demand[inner]) : () => new SetBucket();
      w = attr === undefined ? new LevelWalker(this.eligible, (i) => groupCount(i, group), bucket, !!inner) : new ValueWalker(this.eligible, attr, () => this.total(attr, group), bucket, !!inner);
    } else w = new RandomWalker(this.eligible);
    this.walkers.set(shape, w);
    return w;
  }

  place(t: TaskRequest): void {
    const c = constraintsOf(t, this.parsed);
    if (c.bad) {
      this.failures.push({ task: t.name, reasons: {}, reason: 'INVALID', message: c.bad });
      return;
    }
    if (this.pool.length === 0) {
      this.failures.push({ task: t.name, reasons: {}, reason: 'NO_INSTANCES', message: failureMessage({ reason: 'NO_INSTANCES', reasons: {} }) });
      return;
    }
    const strategies = t.strategies?.length ? t.strategies : [{ type: 'spread' as const, field: 'instanceId' }];
    const shape = JSON.stringify([t.group ?? '', t.demand, t.constraints ?? [], strategies]);
    // a static shape that failed once fails for the rest of the batch: allocations only grow
    const known = c.dynamic ? undefined : this.failed.get(shape);
    if (known) {
      this.failures.push({ task: t.name, ...known });
      return;
    }
    const limit = candidateLimit(this.eligible.length, strategies);
    let candidates: PoolInstance[] = [];
    let firstKey: number | undefined;
    /** with a binpack second, the least remaining among the feasible instances tied on the first key, so far */
    let bestKey2: number | undefined;
    const used = (i: InstanceView) => (i as PoolInstance).ports;
    const ordered = strategies[0].type !== 'random';
    this.walker(shape, t, strategies).walk((i, key, key2) => {
      // ordered walks: the instances after the first feasible one that score worse on the first strategy are no candidates
      if (ordered && firstKey !== undefined && key !== firstKey) return 'stop';
      // a bucket walked in binpack order: once past the best second key found (or full at it), the rest of the bucket is worse
      if (key2 !== undefined && bestKey2 !== undefined && (key2 > bestKey2 || (key2 === bestKey2 && candidates.length >= limit))) return 'next';
      if (infeasible(i, t, c.memberOf, c.distinct, used)) return c.dynamic ? 'skip' : 'drop';
      firstKey ??= key;
      if (key2 !== undefined && (bestKey2 === undefined || key2 < bestKey2)) {
        // a tighter fit in another bucket tied on the first key: the candidates so far are beaten on the second
        bestKey2 = key2;
        candidates = [];
      }
      candidates.push(i);
      if (!ordered) return 'stop';
      // the limit bounds the candidates tied on both keys; other buckets tied on the first key may still hold a tighter fit
      if (candidates.length >= limit) return key2 !== undefined ? 'next' : 'stop';
      return 'take';
    });
    if (candidates.length === 0) {
      const f = this.explain(t, c.memberOf, c.distinct);
      if (!c.dynamic) this.failed.set(shape, f);
      this.failures.push({ task: t.name, ...f });
      return;
    }
    const chosen = (candidates.length === 1 ? candidates[0] : best(candidates, this.pool, t, strategies, this.rnd, (a, g) => this.total(a, g))) as PoolInstance;
    this.charge(chosen, t);
  }

  /** Why nothing could take the task: every instance's reason, and the one that came closest. */
  private explain(t: TaskRequest, memberOf: Expr[], distinct: boolean): Omit<PlacementFailure, 'task'> {
    const reasons: Partial<Record<FailureReason, number>> = {};
    let closest: { name: string; rank: number } | undefined;
    for (const inst of this.pool) {
      const why = infeasible(inst, t, memberOf, distinct, (i) => (i as PoolInstance).ports);
      if (!why) continue;
      reasons[why.reason] = (reasons[why.reason] ?? 0) + 1;
      const rank = CLOSENESS.indexOf(why.reason);
      if (!closest || rank > closest.rank) closest = { name: inst.name, rank };
    }
    const reason = CLOSENESS.slice().reverse().find((r) => reasons[r]) ?? 'INACTIVE';
    return { reasons, reason, closest: closest?.name, message: failureMessage({ reason, reasons, closest: closest?.name }) };
  }

  private charge(chosen: PoolInstance, t: TaskRequest) {
    const ports = t.demand.ports.length ? (choosePorts(t.demand, chosen.ports, chosen.dynamicHostPortRange ?? [32768, 60999]) as HostPortAssignment[]) : [];
    chosen.allocation = { cpu: chosen.allocation.cpu + t.demand.cpu, memory: chosen.allocation.memory + t.demand.memory, tasks: chosen.allocation.tasks };
    if (ports.length) {
      if (!chosen.ownPorts) {
        chosen.ports = { tcp: new Set(chosen.ports.tcp), udp: new Set(chosen.ports.udp) };
        chosen.ownPorts = true;
      }
      for (const p of ports) (chosen.ports[p.protocol] as Set<number>).add(p.hostPort);
    }
    const g = t.group ?? '';
    chosen.taskGroups.set(g, (chosen.taskGroups.get(g) ?? 0) + 1);
    // the spread totals of every attribute this instance's value contributes to
    if (chosen.status === 'ACTIVE') {
      for (const [k, m] of this.totals) {
        const [attr, group] = k.split('\u0000');
        if (group && group !== g) continue;
        const v = chosen.attributes[attr] ?? '';
        m.set(v, (m.get(v) ?? 0) + 1);
      }
    }
    for (const w of this.walkers.values()) w.moved(chosen);
    this.placements.push({ task: t.name, instance: chosen.name, hostPorts: ports });
  }
}

/** Places a batch in order (later tasks see earlier placements). Synchronous; `scheduleAsync` yields while it works. */
export function schedule(instances: InstanceView[], tasks: TaskRequest[], rnd: () => number = Math.random): ScheduleResult {
  const b = new Batch(instances, rnd);
  for (const t of tasks) b.place(t);
  return { placements: b.placements, failures: b.failures };
}

/**
 * `schedule`, giving the event loop back every `sliceMs` (a big batch must not starve the
 * lease renewals and watches that share the loop).
 */
export async function scheduleAsync(instances: InstanceView[], tasks: TaskRequest[], opts: { rnd?: () => number; sliceMs?: number; signal?: AbortSignal } = {}): Promise<ScheduleResult> {
  const b = new Batch(instances, opts.rnd ?? Math.random);
  const slice = opts.sliceMs ?? 20;
  let t0 = performance.now();
  for (const t of tasks) {
    b.place(t);
    if (performance.now() - t0 > slice) {
      await new Promise((r) => setImmediate(r));
      opts.signal?.throwIfAborted();
      t0 = performance.now();
    }
  }
  return { placements: b.placements, failures: b.failures };
}

/** Group counts and running tasks of an instance's live tasks. */
export function taskGroupsOf(tasks: Iterable<Task>): { taskGroups: Map<string, number>; running: number } {
  const taskGroups = new Map<string, number>();
  let running = 0;
  for (const t of tasks) {
    if (t.status?.lastStatus === 'STOPPED' || t.spec.desiredStatus === 'STOPPED') continue;
    const g = t.spec.group ?? '';
    taskGroups.set(g, (taskGroups.get(g) ?? 0) + 1);
    if (t.status?.lastStatus === 'RUNNING') running++;
  }
  return { taskGroups, running };
}

/** The scheduler's status of an instance: its spec status, or INACTIVE once deregistered. */
export const viewStatus = (ci: ContainerInstance) => (ci.spec.status === 'ACTIVE' ? (ci.status?.status === 'INACTIVE' ? 'INACTIVE' : 'ACTIVE') : ci.spec.status);

/**
 * An instance as the scheduler sees it: its registration, the live tasks bound to it (for
 * groups and counts) and what is allocated on it. The ECS API's RunTask builds it from the
 * apiserver cache; the controllers from their ledger (`SharedInformers.instanceView`).
 */
export function instanceView(ci: ContainerInstance, tasks: Iterable<Task>, allocation: Allocation, extra: { taskGroups?: Map<string, number>; running?: number; usedPorts?: InstanceView['usedPorts'] } = {}): InstanceView {
  const attributes: Record<string, string | undefined> = {};
  for (const a of ci.spec.attributes ?? []) attributes[a.name] = a.value;
  const g = extra.taskGroups ? { taskGroups: extra.taskGroups, running: extra.running ?? 0 } : taskGroupsOf(tasks);
  return {
    name: ci.metadata.name,
    status: viewStatus(ci),
    agentConnected: ci.status?.agentConnected ?? false,
    attributes,
    ec2InstanceId: ci.spec.ec2InstanceId,
    agentVersion: ci.status?.versionInfo?.agentVersion,
    registeredAt: ci.status?.registeredAt,
    capacity: capacityOf(ci.spec.registeredResources),
    allocation,
    ...(extra.usedPorts ? { usedPorts: extra.usedPorts } : {}),
    dynamicHostPortRange: ci.spec.dynamicHostPortRange,
    taskGroups: g.taskGroups,
    runningTasksCount: g.running,
  };
}
