import type { Logger } from 'pino';
import { demandOf, emptyAllocation, allocate, type Allocation, type TaskDemand } from '../api/allocation.ts';
import type { ContainerInstance, Daemon, DaemonTaskDefinition, Service, Task, TaskDefinition } from '../api/kinds.ts';
import type { TaskDefinitionSpec } from '../api/taskdefinition.ts';
import type { Client } from '../client/client.ts';
import { Informer, objKey } from '../client/informer.ts';
import { instanceView, type InstanceView } from '../scheduler/scheduler.ts';

/**
 * The informers every controller shares (one list+watch per kind per process, like
 * client-go's SharedInformerFactory) with the indexes they look things up by, and the
 * derived views built from them (a task's demand; an instance as the scheduler sees it).
 */
export class SharedInformers {
  readonly tasks: Informer<Task>;
  readonly instances: Informer<ContainerInstance>;
  readonly services: Informer<Service>;
  readonly daemons: Informer<Daemon>;
  readonly taskDefinitions: Informer<TaskDefinition>;
  readonly daemonTaskDefinitions: Informer<DaemonTaskDefinition>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private started = new Set<Informer<any>>();

  constructor(client: Client, log: Logger, resyncMs = 30_000) {
    const o = { log, resyncMs };
    this.tasks = new Informer<Task>(client, 'Task', o)
      .addIndex('instance', (t) => (t.spec.containerInstance ? [`${t.metadata.namespace}/${t.spec.containerInstance}`] : []))
      .addIndex('group', (t) => (t.spec.group ? [`${t.metadata.namespace}/${t.spec.group}`] : []))
      .addIndex('unbound', (t) => (!t.spec.containerInstance && t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED' ? [t.metadata.namespace!] : []))
      .addIndex('stopped', (t) => (t.status?.lastStatus === 'STOPPED' ? [t.metadata.namespace!] : []));
    this.instances = new Informer<ContainerInstance>(client, 'ContainerInstance', o).addIndex('namespace', (i) => [i.metadata.namespace!]);
    this.services = new Informer<Service>(client, 'Service', o).addIndex('namespace', (s) => [s.metadata.namespace!]);
    this.daemons = new Informer<Daemon>(client, 'Daemon', o).addIndex('namespace', (d) => [d.metadata.namespace!]);
    this.taskDefinitions = new Informer<TaskDefinition>(client, 'TaskDefinition', { log });
    this.daemonTaskDefinitions = new Informer<DaemonTaskDefinition>(client, 'DaemonTaskDefinition', { log });
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

  taskDefinitionSpec(t: Task): TaskDefinitionSpec | undefined {
    const daemon = t.spec.daemonTaskDefinition !== undefined;
    const td = daemon ? this.daemonTaskDefinitions.get(t.spec.daemonTaskDefinition!) : this.taskDefinitions.get(t.spec.taskDefinition);
    return td?.spec as TaskDefinitionSpec | undefined;
  }

  demand(t: Task): TaskDemand | undefined {
    const spec = this.taskDefinitionSpec(t);
    return spec ? demandOf(spec, t.spec.overrides, { daemon: t.spec.daemonTaskDefinition !== undefined }) : undefined;
  }

  tasksOn(ns: string, instance: string): Task[] {
    return this.tasks.byIndex('instance', `${ns}/${instance}`);
  }

  /** What is allocated on an instance: its bound tasks that have not STOPPED (the binder's rule). */
  allocationOf(ns: string, instance: string): Allocation {
    let a = emptyAllocation();
    for (const t of this.tasksOn(ns, instance)) {
      if (t.status?.lastStatus === 'STOPPED') continue;
      const d = this.demand(t);
      if (!d) continue;
      a = allocate(a, t.metadata.name, d, t.spec.hostPorts ?? []);
    }
    return a;
  }

  instanceView(i: ContainerInstance): InstanceView {
    return instanceView(i, this.tasksOn(i.metadata.namespace!, i.metadata.name), this.allocationOf(i.metadata.namespace!, i.metadata.name));
  }
}

export { objKey };

/** `ns/name` -> [ns, name] */
export const splitKey = (key: string): [string, string] => {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
};
