import type { Logger } from 'pino';
import { capacityOf, demandOf, emptyAllocation, type Allocation, type TaskAllocation, type TaskDemand } from '../api/allocation.ts';
import type { ContainerInstance, Daemon, DaemonTaskDefinition, Endpoints, InstanceLease, LoadBalancerObj, Secret, Service, TargetGroup, Task, TaskDefinition } from '../api/kinds.ts';
import { targetSetKey, targetSetOf } from '../api/loadbalancing.ts';
import { namesBareFamily, taskRevision } from '../api/resources.ts';
import { effectiveTaskDefinition, type TaskDefinitionSpec } from '../api/taskdefinition.ts';
import type { Client } from '../client/client.ts';
import { Informer, objKey } from '../client/informer.ts';
import { instanceView, type InstanceView } from '../scheduler/scheduler.ts';

/** What one task adds to its instance's ledger entry. */
interface Contribution {
  /** `ns/instance` it is bound to */
  instance?: string;
  /** what it holds there (bound and not STOPPED, the binder's rule); undefined while its task definition is unknown */
  alloc?: TaskAllocation;
  /** its group, while it is live (neither stopped nor asked to stop) */
  group?: string;
  running: boolean;
}

/** One instance as the controllers need it, kept up to date event by event. */
class InstanceLedger {
  /** the allocation record, edited in place (read only to everyone else) */
  readonly allocation: Allocation = emptyAllocation();
  readonly tcp = new Set<number>();
  readonly udp = new Set<number>();
  private readonly refs = { tcp: new Map<number, number>(), udp: new Map<number, number>() };
  readonly groups = new Map<string, number>();
  running = 0;
  private reserved = { tcp: [] as number[], udp: [] as number[] };

  private port(proto: 'tcp' | 'udp', p: number, d: 1 | -1) {
    const m = this.refs[proto];
    const n = (m.get(p) ?? 0) + d;
    if (n > 0) {
      m.set(p, n);
      this[proto].add(p);
    } else {
      m.delete(p);
      this[proto].delete(p);
    }
  }

  /** the instance's own reserved ports (its registration) */
  reserve(tcp: number[], udp: number[]) {
    for (const p of this.reserved.tcp) this.port('tcp', p, -1);
    for (const p of this.reserved.udp) this.port('udp', p, -1);
    this.reserved = { tcp, udp };
    for (const p of tcp) this.port('tcp', p, 1);
    for (const p of udp) this.port('udp', p, 1);
  }

  apply(name: string, c: Contribution, d: 1 | -1) {
    if (c.alloc) {
      this.allocation.cpu += d * c.alloc.cpu;
      this.allocation.memory += d * c.alloc.memory;
      if (d > 0) this.allocation.tasks[name] = c.alloc;
      else delete this.allocation.tasks[name];
      for (const p of c.alloc.tcp) this.port('tcp', p, d);
      for (const p of c.alloc.udp) this.port('udp', p, d);
    }
    if (c.group !== undefined) {
      const n = (this.groups.get(c.group) ?? 0) + d;
      if (n > 0) this.groups.set(c.group, n);
      else this.groups.delete(c.group);
    }
    if (c.running) this.running += d;
  }

  get empty() {
    return this.groups.size === 0 && Object.keys(this.allocation.tasks).length === 0 && this.reserved.tcp.length + this.reserved.udp.length === 0;
  }
}

/**
 * The informers every controller shares (one list+watch per kind per process, like
 * client-go's SharedInformerFactory) with the indexes they look things up by, and a ledger
 * per instance (allocation, used ports, live task groups, running count) that the task and
 * instance handlers keep up to date one event at a time, the way kube-scheduler's cache
 * does: building an instance's view costs O(1), not a pass over its tasks.
 */
export class SharedInformers {
  readonly tasks: Informer<Task>;
  readonly instances: Informer<ContainerInstance>;
  /** the agents' heartbeats (instance health alone watches them: a renewal is no instance event) */
  readonly instanceLeases: Informer<InstanceLease>;
  readonly services: Informer<Service>;
  readonly daemons: Informer<Daemon>;
  readonly taskDefinitions: Informer<TaskDefinition>;
  readonly daemonTaskDefinitions: Informer<DaemonTaskDefinition>;
  readonly loadBalancers: Informer<LoadBalancerObj>;
  readonly targetGroups: Informer<TargetGroup>;
  readonly endpoints: Informer<Endpoints>;
  /** Secrets' metadata (values are never served to the controllers): their versions, for services that redeploy when one changes */
  readonly secrets: Informer<Secret>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private started = new Set<Informer<any>>();
  private readonly ledger = new Map<string, InstanceLedger>();
  private readonly contributions = new Map<string, Contribution>();

  constructor(client: Client, log: Logger, resyncMs = 30_000) {
    const o = { log, resyncMs };
    this.tasks = new Informer<Task>(client, 'Task', o)
      .addIndex('instance', (t) => (t.spec.containerInstance ? [`${t.metadata.namespace}/${t.spec.containerInstance}`] : []))
      .addIndex('group', (t) => (t.spec.group ? [`${t.metadata.namespace}/${t.spec.group}`] : []))
      .addIndex('owner', (t) => (t.metadata.ownerReferences ?? []).filter((r) => r.controller).map((r) => r.uid))
      .addIndex('unbound', (t) => (!t.spec.containerInstance && t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED' ? [t.metadata.namespace!] : []))
      .addIndex('stopped', (t) => (t.status?.lastStatus === 'STOPPED' ? [t.metadata.namespace!] : []))
      .addIndex('namespace', (t) => [t.metadata.namespace!])
      .addIndex('taskDefinition', (t) => [this.tdKey(t)]);
    this.instances = new Informer<ContainerInstance>(client, 'ContainerInstance', o).addIndex('namespace', (i) => [i.metadata.namespace!]);
    this.instanceLeases = new Informer<InstanceLease>(client, 'InstanceLease', o);
    this.services = new Informer<Service>(client, 'Service', o)
      .addIndex('namespace', (s) => [s.metadata.namespace!])
      .addIndex('targetSet', (s) => (s.spec.loadBalancers ?? []).flatMap((e) => {
        const r = targetSetOf(e);
        return r ? [targetSetKey(r)] : [];
      }))
      // the family a service follows: its spec names the bare family, so each new revision rolls out
      .addIndex('follows', (s) => (namesBareFamily(s.spec.taskDefinition) ? [s.spec.taskDefinition] : []));
    this.loadBalancers = new Informer<LoadBalancerObj>(client, 'LoadBalancer', o);
    this.targetGroups = new Informer<TargetGroup>(client, 'TargetGroup', o);
    this.daemons = new Informer<Daemon>(client, 'Daemon', o).addIndex('namespace', (d) => [d.metadata.namespace!]);
    this.taskDefinitions = new Informer<TaskDefinition>(client, 'TaskDefinition', { log }).addIndex('family', (td) => [td.metadata.name.split(':')[0]]);
    this.daemonTaskDefinitions = new Informer<DaemonTaskDefinition>(client, 'DaemonTaskDefinition', { log }).addIndex('family', (td) => [td.metadata.name.split(':')[0]]);
    this.endpoints = new Informer<Endpoints>(client, 'Endpoints', o);
    this.secrets = new Informer<Secret>(client, 'Secret', { log });
    // the ledger's handlers are registered first, so every controller's handler sees it up to date
    this.tasks.on({ add: (t) => this.account(t), update: (_p, t) => this.account(t), delete: (t) => this.account(t, true) });
    const reserve = (i: ContainerInstance) => {
      const cap = capacityOf(i.spec.registeredResources);
      this.entry(objKey(i)).reserve(cap.reservedTcp, cap.reservedUdp);
    };
    this.instances.on({
      add: reserve,
      update: (_p, i) => reserve(i),
      delete: (i) => {
        const e = this.ledger.get(objKey(i));
        e?.reserve([], []);
        if (e?.empty) this.ledger.delete(objKey(i));
      },
    });
    // a task whose definition arrives after it has no allocation yet: account it again
    const recount = (prefix: string) => (td: TaskDefinition | DaemonTaskDefinition) => this.tasks.forIndex('taskDefinition', `${prefix}:${td.metadata.name}`, (t) => this.account(t));
    this.taskDefinitions.on({ add: recount('t') });
    this.daemonTaskDefinitions.on({ add: recount('d') });
  }

  private tdKey(t: Task) {
    return `${t.spec.daemonTaskDefinition !== undefined ? 'd' : 't'}:${taskRevision(t)}`;
  }

  private entry(key: string): InstanceLedger {
    let e = this.ledger.get(key);
    if (!e) this.ledger.set(key, (e = new InstanceLedger()));
    return e;
  }

  /** Moves a task's contribution in the ledger from what it was to what it is now. */
  private account(t: Task, gone = false) {
    const key = objKey(t);
    const before = this.contributions.get(key);
    const ns = t.metadata.namespace!;
    const instance = t.spec.containerInstance ? `${ns}/${t.spec.containerInstance}` : undefined;
    let now: Contribution | undefined;
    if (!gone && instance) {
      const stopped = t.status?.lastStatus === 'STOPPED';
      const live = !stopped && t.spec.desiredStatus !== 'STOPPED';
      const d = stopped ? undefined : this.demand(t);
      const hp = t.spec.hostPorts ?? [];
      now = {
        instance,
        alloc: d ? { cpu: d.cpu, memory: d.memory, tcp: hp.filter((h) => h.protocol === 'tcp').map((h) => h.hostPort), udp: hp.filter((h) => h.protocol === 'udp').map((h) => h.hostPort) } : undefined,
        group: live ? (t.spec.group ?? '') : undefined,
        running: live && t.status?.lastStatus === 'RUNNING',
      };
    }
    if (before?.instance) {
      const e = this.entry(before.instance);
      e.apply(t.metadata.name, before, -1);
      if (e.empty && !this.instances.get(before.instance)) this.ledger.delete(before.instance);
    }
    if (now?.instance) {
      this.entry(now.instance).apply(t.metadata.name, now, 1);
      this.contributions.set(key, now);
    } else this.contributions.delete(key);
  }

  /** Starts these informers (once each) and waits for their first lists. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async start(...which: Array<Informer<any>>): Promise<void> {
    for (const i of which) {
      if (this.started.has(i)) continue;
      this.started.add(i);
      i.start();
    }
    await Promise.all(which.map((i) => i.waitForSync()));
  }

  stop(): void {
    for (const i of this.started) i.stop();
  }

  /** the task's definition with ECS's defaults applied (the stored spec is as the user wrote it) */
  taskDefinitionSpec(t: Task): TaskDefinitionSpec | undefined {
    const daemon = t.spec.daemonTaskDefinition !== undefined;
    const td = daemon ? this.daemonTaskDefinitions.get(taskRevision(t)) : this.taskDefinitions.get(taskRevision(t));
    return td ? (effectiveTaskDefinition(td.spec, daemon) as TaskDefinitionSpec) : undefined;
  }

  demand(t: Task): TaskDemand | undefined {
    const spec = this.taskDefinitionSpec(t);
    return spec ? demandOf(spec, t.spec.overrides, { daemon: t.spec.daemonTaskDefinition !== undefined }) : undefined;
  }

  tasksOn(ns: string, instance: string): Task[] {
    return this.tasks.byIndex('instance', `${ns}/${instance}`);
  }

  /**
   * An instance as the scheduler sees it, from the ledger: O(1) (its task groups are copied,
   * so the caller may charge the view; the allocation record and port sets are the ledger's
   * own and must not be edited).
   */
  instanceView(i: ContainerInstance): InstanceView {
    const e = this.ledger.get(objKey(i)) ?? new InstanceLedger();
    return instanceView(i, [], e.allocation, { taskGroups: new Map(e.groups), running: e.running, usedPorts: { tcp: e.tcp, udp: e.udp } });
  }
}

export { objKey };

/** `ns/name` -> [ns, name] */
export const splitKey = (key: string): [string, string] => {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
};
