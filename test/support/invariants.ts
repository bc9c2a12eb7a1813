/**
 * Test support: an invariant checker for fault scenarios. Every 100 ms it reads the real
 * state through the API (tasks, container instances, services, task definitions) and
 * records the worst value of each invariant:
 *
 * - service.maxLive: live tasks of a service (desired RUNNING and not STOPPED) never above
 *   floor(desiredCount * maximumPercent / 100);
 * - service.minHealthy: RUNNING tasks never below ceil(desiredCount * minimumHealthyPercent / 100)
 *   once the service has settled (one deployment, exactly desiredCount tasks, all RUNNING),
 *   except inside a declared fault window (a lost host takes its tasks with it: ECS's bounds
 *   are for deployments, not for hardware failures). While the desired count changes (a
 *   scale-up's new tasks are still starting, a scale-down's old ones still stopping) the
 *   bounds of the last settled count and the new one both apply, the looser of each: a
 *   rolling deployment at one count is held to ECS's bounds exactly;
 * - daemon.perInstance: at most one live copy of a daemon per instance;
 * - instance.overcommit: CPU and memory of the live tasks bound to an instance within its
 *   registered resources;
 * - instance.hostPorts: no host port (with its protocol) held by two live tasks of one instance;
 * - instance.falseDisconnect: no instance outside a fault window marked disconnected (only the
 *   instances an agent runs for, when the checker is told which: an instance a client registered
 *   without an agent, as R9's fuzzer sample does, is rightly marked disconnected).
 *
 * A sample that fails (the API unreachable) is counted, not judged.
 */
import type { ContainerInstance, Service, Task } from '../../pkg/api/kinds.ts';
import { taskRevision } from '../../pkg/api/resources.ts';
import type { Client } from '../../pkg/client/client.ts';

export interface InvariantResult {
  /** the worst value observed (a count, or a ratio for over-commit) */
  worst: number;
  /** the bound the worst value is compared against */
  limit: number;
  violations: number;
  /** the first violation, for the failure message */
  first?: string;
}

export interface CheckerReport {
  samples: number;
  failedSamples: number;
  invariants: Record<string, InvariantResult>;
  violations: string[];
}

interface Usage {
  cpu: number;
  memory: number;
}

const live = (t: Task) => t.spec.desiredStatus !== 'STOPPED' && t.status?.lastStatus !== 'STOPPED';

/**
 * A service's bounds: at most floor(count * maximumPercent / 100) live tasks, at least
 * ceil(count * minimumHealthyPercent / 100) RUNNING (ECS's defaults 200 and 100). `settled`
 * is the desired count the service was last seen settled at: while the count moves from it
 * to `desired`, the looser bound of the two counts applies.
 */
export function serviceBounds(o: { desired: number; settled?: number; maximumPercent?: number; minimumHealthyPercent?: number }): { maxLive: number; minHealthy: number } {
  const settled = o.settled ?? o.desired;
  return {
    maxLive: Math.floor((Math.max(o.desired, settled) * (o.maximumPercent ?? 200)) / 100),
    minHealthy: Math.ceil((Math.min(o.desired, settled) * (o.minimumHealthyPercent ?? 100)) / 100),
  };
}

export class InvariantChecker {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private readonly results = new Map<string, InvariantResult>();
  private samples = 0;
  private failed = 0;
  /** instances (ids) inside a fault window: minHealthy and falseDisconnect are not judged for them */
  private readonly faulted = new Set<string>();
  private faultWindow = false;
  private readonly tdUsage = new Map<string, Promise<Usage>>();
  /** per service (namespace/name): the desired count it was last seen settled at */
  private readonly settled = new Map<string, number>();

  constructor(private readonly o: { client: Client; cluster: string; intervalMs?: number; agentInstances?: () => Iterable<string> }) {}

  start(): void {
    const tick = () => {
      this.running = this.sample().finally(() => {
        this.running = undefined;
        if (this.timer) this.timer = setTimeout(tick, this.o.intervalMs ?? 100);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<CheckerReport> {
    const t = this.timer;
    this.timer = undefined;
    if (t) clearTimeout(t);
    await this.running;
    return this.report();
  }

  /** A fault is being injected on these instances (or the whole system with none given). */
  faultBegins(instances: string[] = []): void {
    this.faultWindow = true;
    for (const i of instances) this.faulted.add(i);
  }

  faultEnds(): void {
    this.faultWindow = false;
    this.faulted.clear();
  }

  /**
   * An invariant the scenario measures itself (acknowledged writes lost, a convergence time
   * against its bound, writes of a deposed leader): kept with the sampled ones, judged alike.
   */
  note(name: string, value: number, limit: number, detail = '', higherIsWorse = true): void {
    this.observe(name, value, limit, higherIsWorse, () => detail);
  }

  report(): CheckerReport {
    const invariants = Object.fromEntries([...this.results].sort(([a], [b]) => a.localeCompare(b)));
    const violations = Object.entries(invariants).filter(([, r]) => r.violations > 0).map(([k, r]) => `${k}: ${r.violations} violation(s), worst ${r.worst} vs limit ${r.limit}; first: ${r.first}`);
    return { samples: this.samples, failedSamples: this.failed, invariants, violations };
  }

  /**
   * Records one observation. `higherIsWorse`: the value must stay <= limit; otherwise >= limit.
   * The worst value is kept even when it is within the bound.
   */
  private observe(name: string, value: number, limit: number, higherIsWorse: boolean, detail: () => string): void {
    const r = this.results.get(name) ?? { worst: value, limit, violations: 0 };
    if (higherIsWorse ? value > r.worst : value < r.worst) r.worst = value;
    r.limit = higherIsWorse ? Math.min(r.limit, limit) : Math.max(r.limit, limit);
    const bad = higherIsWorse ? value > limit : value < limit;
    if (bad) {
      r.violations++;
      r.first ??= `${new Date().toISOString()} ${detail()}`;
    }
    this.results.set(name, r);
  }

  private usageOf(t: Task): Promise<Usage> {
    const daemon = t.spec.daemonTaskDefinition !== undefined;
    const name = taskRevision(t);
    const key = `${daemon ? 'd' : 't'}/${name}`;
    let p = this.tdUsage.get(key);
    if (!p) {
      p = this.o.client.get(daemon ? 'DaemonTaskDefinition' : 'TaskDefinition', undefined, name).then((td) => {
        const cs = (td.spec.containerDefinitions ?? []) as Array<{ cpu?: number; memory?: number; memoryReservation?: number }>;
        const cpu = td.spec.cpu ? Number(td.spec.cpu) : cs.reduce((s, c) => s + (c.cpu ?? 0), 0);
        const memory = td.spec.memory ? Number(td.spec.memory) : cs.reduce((s, c) => s + (c.memoryReservation ?? c.memory ?? 0), 0);
        return { cpu, memory };
      });
      p.catch(() => this.tdUsage.delete(key));
      this.tdUsage.set(key, p);
    }
    return p;
  }

  private async sample(): Promise<void> {
    let tasks: Task[];
    let cis: ContainerInstance[];
    let services: Service[];
    try {
      [tasks, cis, services] = await Promise.all([
        this.o.client.list<Task>('Task', this.o.cluster).then((r) => r.items),
        this.o.client.list<ContainerInstance>('ContainerInstance', this.o.cluster).then((r) => r.items),
        this.o.client.list<Service>('Service', this.o.cluster).then((r) => r.items),
      ]);
    } catch {
      this.failed++;
      return;
    }
    this.samples++;
    const liveTasks = tasks.filter(live);

    for (const s of services) {
      if (s.metadata.deletionTimestamp) continue;
      const key = `${s.metadata.namespace}/${s.metadata.name}`;
      const desired = s.spec.desiredCount ?? 0;
      const dc = s.spec.deploymentConfiguration ?? {};
      const mine = liveTasks.filter((t) => t.spec.group === `service:${s.metadata.name}`);
      const runningAll = mine.filter((t) => t.status?.lastStatus === 'RUNNING');
      // settled: one deployment, and exactly the desired count of tasks, all RUNNING
      if (s.status?.deployments?.length === 1 && mine.length === desired && runningAll.length === desired) this.settled.set(key, desired);
      const settled = this.settled.get(key);
      // the bounds are ECS's for a deployment at a desired count; when the count changes, the
      // tasks of the old count may live until they are stopped and the new ones need time to
      // start: from the last settled count to the new one, the looser of the two holds
      const { maxLive, minHealthy } = serviceBounds({ desired, settled, maximumPercent: dc.maximumPercent, minimumHealthyPercent: dc.minimumHealthyPercent });
      this.observe(`service.${s.metadata.name}.maxLive`, mine.length, maxLive, true, () => `${mine.length} live tasks, desired ${desired} (settled at ${settled}), maximumPercent ${dc.maximumPercent ?? 200}: ${mine.map((t) => `${t.metadata.name}@${t.spec.containerInstance}:${t.status?.lastStatus}`).join(' ')}`);
      const running = runningAll.filter((t) => !this.faulted.has(t.spec.containerInstance ?? ''));
      // judged once the service has settled (before that, it is starting)
      if (settled !== undefined && !this.faultWindow) {
        this.observe(`service.${s.metadata.name}.minHealthy`, running.length, minHealthy, false, () => `${running.length} RUNNING, desired ${desired} (settled at ${settled}), minimumHealthyPercent ${dc.minimumHealthyPercent ?? 100}`);
      }
    }

    const perInstance = new Map<string, Task[]>();
    for (const t of liveTasks) {
      if (!t.spec.containerInstance) continue;
      const l = perInstance.get(t.spec.containerInstance) ?? [];
      l.push(t);
      perInstance.set(t.spec.containerInstance, l);
    }
    let worstDaemon = 0;
    let daemonDetail = '';
    let worstPorts = 0;
    let portDetail = '';
    for (const [ci, ts] of perInstance) {
      const daemons = new Map<string, number>();
      for (const t of ts) if (t.spec.daemonTaskDefinition) daemons.set(t.spec.group ?? t.spec.daemonTaskDefinition, (daemons.get(t.spec.group ?? t.spec.daemonTaskDefinition) ?? 0) + 1);
      for (const [d, n] of daemons) if (n > worstDaemon) [worstDaemon, daemonDetail] = [n, `${n} live copies of ${d} on ${ci}`];
      const ports = new Map<string, number>();
      for (const t of ts) for (const h of t.spec.hostPorts ?? []) ports.set(`${h.hostPort}/${h.protocol ?? 'tcp'}`, (ports.get(`${h.hostPort}/${h.protocol ?? 'tcp'}`) ?? 0) + 1);
      for (const [p, n] of ports) if (n > worstPorts) [worstPorts, portDetail] = [n, `host port ${p} held by ${n} live tasks on ${ci}`];
    }
    this.observe('daemon.perInstance', worstDaemon, 1, true, () => daemonDetail);
    this.observe('instance.hostPorts', worstPorts, 1, true, () => portDetail);

    let worstRatio = 0;
    let ratioDetail = '';
    const withAgents = this.o.agentInstances ? new Set(this.o.agentInstances()) : undefined;
    for (const ci of cis) {
      const reg = ci.spec.registeredResources ?? [];
      const cpuCap = reg.find((r) => r.name === 'CPU')?.integerValue ?? Infinity;
      const memCap = reg.find((r) => r.name === 'MEMORY')?.integerValue ?? Infinity;
      let cpu = 0;
      let mem = 0;
      for (const t of perInstance.get(ci.metadata.name) ?? []) {
        try {
          const u = await this.usageOf(t);
          cpu += u.cpu;
          mem += u.memory;
        } catch {
          /* a task definition that cannot be read is not judged */
        }
      }
      const ratio = Math.max(cpu / cpuCap, mem / memCap);
      if (ratio > worstRatio) [worstRatio, ratioDetail] = [ratio, `${ci.metadata.name}: cpu ${cpu}/${cpuCap}, memory ${mem}/${memCap}`];
      if (!this.faulted.has(ci.metadata.name) && ci.spec.status !== 'INACTIVE' && (!withAgents || withAgents.has(ci.metadata.name))) {
        this.observe('instance.falseDisconnect', ci.status?.agentConnected === false ? 1 : 0, 0, true, () => `${ci.metadata.name} marked disconnected outside a fault on it`);
      }
    }
    this.observe('instance.overcommit', Math.round(worstRatio * 1000) / 1000, 1, true, () => ratioDetail);
  }
}
