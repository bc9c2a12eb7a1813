import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { API_VERSION } from '../../api/meta.ts';
import { CONTROLLER_FINALIZER } from '../../apiserver/admission.ts';
import type { Daemon, Task } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { evaluate, parseQuery } from '../../scheduler/query.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { Expectations } from '../runtime/expectations.ts';
import { specChanged } from '../service/controller.ts';
import { planDaemon, type DaemonInstance } from './plan.ts';

/**
 * The daemon controller: one task of each daemon on every eligible instance of its
 * cluster, bound at creation to that instance (daemons are not scheduled, they are
 * assigned), rolled instance by instance to a new daemon task definition.
 */
export function daemonController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  const exp = new Expectations();
  const c: Controller = new Controller({
    name: 'daemon',
    informers: [inf.daemons, inf.tasks, inf.instances, inf.daemonTaskDefinitions],
    workers: 2,
    log,
    metrics,
    reconcile: async (key, rlog) => {
      const [ns, name] = splitKey(key);
      const d = inf.daemons.get(key);
      if (!d) return;
      if (!exp.satisfied(key, Number(d.metadata.resourceVersion))) return { requeueAfterMs: 200 };
      const deleting = !!d.metadata.deletionTimestamp;
      const exprs = (d.spec.placementConstraints ?? []).filter((p) => p.type === 'memberOf').map((p) => parseQuery(p.expression ?? ''));
      const group = `daemon:${name}`;
      const instances: DaemonInstance[] = inf.instances.byIndex('namespace', ns).map((i) => {
        const view = inf.instanceView(i);
        return {
          id: i.metadata.name,
          status: i.spec.status,
          agentConnected: view.agentConnected,
          eligible: exprs.every((e) => evaluate(e, view)),
          appTasks: [...view.taskGroups].filter(([g]) => !g.startsWith('daemon:')).reduce((s, [, n]) => s + n, 0),
        };
      });
      const tasks = inf.tasks.byIndex('group', `${ns}/${group}`);
      const plan = planDaemon({
        taskDefinition: d.spec.daemonTaskDefinition,
        instances,
        tasks: tasks.map((t) => ({ name: t.metadata.name, containerInstance: t.spec.containerInstance, taskDefinition: t.spec.daemonTaskDefinition ?? t.spec.taskDefinition, desiredStatus: t.spec.desiredStatus, lastStatus: t.status?.lastStatus ?? 'PENDING' })),
        maxUnavailable: d.spec.deploymentConfiguration?.maxUnavailable,
        deleting,
      });
      for (const s of plan.stop) {
        exp.expect(key, [s.task]);
        try {
          await client.patch('Task', ns, s.task, { spec: { desiredStatus: 'STOPPED', stopReason: s.reason, stopCode: 'ServiceSchedulerInitiated' } });
        } catch (e) {
          exp.observed(key, s.task);
          if (!isBerthError(e, 'NotFound')) throw e;
        }
      }
      const failures: string[] = [];
      for (const s of plan.start) {
        const task: Task = {
          apiVersion: API_VERSION,
          kind: 'Task',
          metadata: { name: randomUUID().replace(/-/g, ''), namespace: ns, labels: { 'berth.dev/daemon': name }, ownerReferences: [{ apiVersion: API_VERSION, kind: 'Daemon', name, uid: d.metadata.uid!, controller: true }] },
          spec: { taskDefinition: s.taskDefinition, daemonTaskDefinition: s.taskDefinition, group, startedBy: `daemon/${name}`, desiredStatus: 'RUNNING' },
        } as Task;
        exp.expect(key, [task.metadata.name]);
        try {
          await client.create(task);
        } catch (e) {
          exp.observed(key, task.metadata.name);
          throw e;
        }
        const r = await client.bind(ns, [{ task: task.metadata.name, containerInstance: s.containerInstance }]);
        const res = r.results[0];
        if (!res.bound) {
          failures.push(`${s.containerInstance}: ${res.reason} ${res.detail ?? ''}`.trim());
          // an unbindable copy would sit pending forever: stop it, try again later
          await client.patch('Task', ns, task.metadata.name, { spec: { desiredStatus: 'STOPPED', stopReason: `Daemon task could not be placed: ${res.detail ?? res.reason}` } });
        }
      }
      const status: Daemon['status'] = {
        ...d.status!,
        desiredCount: plan.desiredCount,
        runningCount: plan.runningCount,
        pendingCount: plan.pendingCount - failures.length,
        updatedCount: plan.updatedCount - failures.length,
        status: deleting ? 'DELETE_IN_PROGRESS' : 'ACTIVE',
        observedGeneration: d.metadata.generation ?? 1,
      };
      if (failures.length) {
        const message = `(daemon ${name}) was unable to place a task on ${failures.length} instance(s): ${failures.slice(0, 3).join('; ')}`;
        const events = status.events ?? [];
        if (events[0]?.message !== message) status.events = [{ id: randomUUID(), createdAt: new Date().toISOString(), message }, ...events].slice(0, 100);
      }
      if (JSON.stringify(status) !== JSON.stringify(d.status)) {
        const out = await client.updateStatus<Daemon>({ ...d, status });
        exp.expect(key, [], Number(out.metadata.resourceVersion));
      }
      if (plan.start.length || plan.stop.length) rlog.debug({ started: plan.start.length, stopped: plan.stop.length }, 'acted');
      if (plan.finished && deleting) {
        const fin = (d.metadata.finalizers ?? []).filter((f: string) => f !== CONTROLLER_FINALIZER);
        await client.patch('Daemon', ns, name, { metadata: { finalizers: fin } });
        return;
      }
      return { requeueAfterMs: failures.length ? 5_000 : 30_000 };
    },
  });
  const enqueueNs = (ns: string) => {
    for (const d of inf.daemons.byIndex('namespace', ns)) c.enqueue(`${ns}/${d.metadata.name}`);
  };
  inf.daemons.on({ add: (d) => c.enqueue(`${d.metadata.namespace}/${d.metadata.name}`), update: (p, d) => (specChanged(p, d) ? c.enqueue(`${d.metadata.namespace}/${d.metadata.name}`) : undefined) });
  const keyOf = (t: Task) => (t.spec.group?.startsWith('daemon:') ? `${t.metadata.namespace}/${t.spec.group.slice(7)}` : undefined);
  inf.tasks.on({
    add: (t) => {
      const k = keyOf(t);
      if (k) {
        exp.observed(k, t.metadata.name);
        c.enqueue(k);
      }
    },
    update: (p, t) => {
      const k = keyOf(t);
      if (k) {
        if (t.spec.desiredStatus === 'STOPPED') exp.observed(k, t.metadata.name);
        if (p.status?.lastStatus !== t.status?.lastStatus || p.spec.desiredStatus !== t.spec.desiredStatus) c.enqueue(k);
      } else if (p.status?.lastStatus !== 'STOPPED' && t.status?.lastStatus === 'STOPPED') enqueueNs(t.metadata.namespace!); // draining instances: app tasks gone
    },
    delete: (t) => {
      const k = keyOf(t);
      if (k) {
        exp.observed(k, t.metadata.name);
        c.enqueue(k);
      }
    },
  });
  inf.instances.on({
    add: (i) => enqueueNs(i.metadata.namespace!),
    update: (p, i) => {
      if (p.spec.status !== i.spec.status || JSON.stringify(p.spec.attributes) !== JSON.stringify(i.spec.attributes) || p.status?.agentConnected !== i.status?.agentConnected) enqueueNs(i.metadata.namespace!);
    },
    delete: (i) => enqueueNs(i.metadata.namespace!),
  });
  return c;
}
