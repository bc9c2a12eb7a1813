import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { NOMINATED_ANNOTATION } from '../../apiserver/admission.ts';
import type { Daemon, Task } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { evaluate, parseQuery } from '../../scheduler/query.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { Expectations } from '../runtime/expectations.ts';
import { createOwnedTask, dropControllerFinalizer, ownedTask, stopOwnedTask } from '../runtime/writes.ts';
import { specChanged } from '../service/controller.ts';
import { withEvent } from '../service/events.ts';
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
    informers: [inf.daemons, inf.services, inf.tasks, inf.instances, inf.daemonTaskDefinitions],
    workers: 2,
    log,
    metrics,
    reconcile: async (key, rlog) => {
      // keys: `NS/NAME` for a Daemon, `service:NS/NAME` for a service with schedulingStrategy DAEMON
      const isService = key.startsWith('service:');
      const [ns, name] = splitKey(isService ? key.slice('service:'.length) : key);
      const d = isService ? undefined : inf.daemons.get(key);
      const svc = isService ? inf.services.get(`${ns}/${name}`) : undefined;
      const owner = d ?? svc;
      if (!owner || (svc && svc.spec.schedulingStrategy !== 'DAEMON')) return;
      if (!exp.satisfied(key, Number(owner.metadata.resourceVersion))) return { requeueAfterMs: 200 };
      const deleting = !!owner.metadata.deletionTimestamp;
      const taskDefinition = d ? d.spec.daemonTaskDefinition : svc!.spec.taskDefinition;
      const exprs = (owner.spec.placementConstraints ?? []).filter((p) => p.type === 'memberOf').map((p) => parseQuery(p.expression ?? ''));
      const group = d ? `daemon:${name}` : `service:${name}`;
      const instances: DaemonInstance[] = inf.instances.byIndex('namespace', ns).map((i) => {
        const view = inf.instanceView(i);
        return {
          id: i.metadata.name,
          status: i.spec.status,
          agentConnected: view.agentConnected,
          eligible: exprs.every((e) => evaluate(e, view)),
          appTasks: [...view.taskGroups].filter(([g]) => !g.startsWith('daemon:') && g !== group).reduce((s, [, n]) => s + n, 0),
        };
      });
      const tasks = inf.tasks.byIndex('group', `${ns}/${group}`);
      const plan = planDaemon({
        taskDefinition,
        instances,
        tasks: tasks.map((t) => ({ name: t.metadata.name, containerInstance: t.spec.containerInstance, taskDefinition: t.spec.daemonTaskDefinition ?? t.spec.taskDefinition, desiredStatus: t.spec.desiredStatus, lastStatus: t.status?.lastStatus ?? 'PENDING' })),
        maxUnavailable: d?.spec.deploymentConfiguration?.maxUnavailable,
        deleting,
      });
      for (const s of plan.stop) {
        await stopOwnedTask(client, exp, key, ns, s.task, s.reason);
      }
      const failures: string[] = [];
      for (const s of plan.start) {
        // assigned, not scheduled: the placement controller leaves it to this binding
        const task = ownedTask(
          ns,
          { kind: d ? 'Daemon' : 'Service', name, uid: owner.metadata.uid! },
          (d
            ? { taskDefinition: s.taskDefinition, daemonTaskDefinition: s.taskDefinition, group, startedBy: `daemon/${name}`, desiredStatus: 'RUNNING' }
            : { taskDefinition: s.taskDefinition, group, startedBy: svc!.status?.deployments?.[0]?.id ?? `ecs-svc/${name}`, deploymentId: svc!.status?.deployments?.[0]?.id, desiredStatus: 'RUNNING' }) as Task['spec'],
          { [NOMINATED_ANNOTATION]: s.containerInstance },
        );
        await createOwnedTask(client, exp, key, task);
        const r = await client.bind(ns, [{ task: task.metadata.name, containerInstance: s.containerInstance }]);
        const res = r.results[0];
        if (!res.bound) {
          failures.push(`${s.containerInstance}: ${res.reason} ${res.detail ?? ''}`.trim());
          // an unbindable copy would sit pending forever: stop it, try again later
          await client.patch('Task', ns, task.metadata.name, { spec: { desiredStatus: 'STOPPED', stopReason: `Daemon task could not be placed: ${res.detail ?? res.reason}` } });
        }
      }
      const now = new Date().toISOString();
      const counts = { desiredCount: plan.desiredCount, runningCount: plan.runningCount, pendingCount: plan.pendingCount - failures.length };
      let events = owner.status?.events ?? [];
      const event = (message: string) => (events = withEvent(events, message, now));
      if (failures.length) event(`(${d ? 'daemon' : 'service'} ${name}) was unable to place a task on ${failures.length} instance(s): ${failures.slice(0, 3).join('; ')}`);
      const steady = !deleting && plan.start.length === 0 && plan.stop.length === 0 && plan.runningCount === plan.desiredCount && plan.updatedCount === plan.desiredCount;
      if (svc && steady) event(`(service ${name}) has reached a steady state.`);
      let status: Record<string, unknown>;
      if (d) {
        status = { ...d.status!, ...counts, updatedCount: plan.updatedCount - failures.length, status: deleting ? 'DELETE_IN_PROGRESS' : 'ACTIVE', observedGeneration: d.metadata.generation ?? 1, events };
      } else {
        const prev = svc!.status?.deployments?.[0];
        const changed = !prev || prev.taskDefinition !== taskDefinition;
        const id = changed ? `ecs-svc/${randomUUID().replace(/-/g, '').slice(0, 20)}` : prev.id;
        const deployment = {
          id,
          status: 'PRIMARY' as const,
          taskDefinition,
          desiredCount: plan.desiredCount,
          runningCount: plan.runningCount,
          pendingCount: counts.pendingCount,
          failedTasks: 0,
          rolloutState: steady ? ('COMPLETED' as const) : ('IN_PROGRESS' as const),
          rolloutStateReason: steady ? 'ECS deployment completed.' : 'ECS deployment in progress.',
          createdAt: changed ? now : prev.createdAt,
          updatedAt: changed || JSON.stringify([prev.runningCount, prev.pendingCount, prev.desiredCount, prev.rolloutState]) !== JSON.stringify([plan.runningCount, counts.pendingCount, plan.desiredCount, steady ? 'COMPLETED' : 'IN_PROGRESS']) ? now : prev.updatedAt,
        };
        status = { ...svc!.status!, ...counts, status: deleting ? (plan.finished ? 'INACTIVE' : 'DRAINING') : 'ACTIVE', deployments: [deployment], observedGeneration: svc!.metadata.generation ?? 1, events };
      }
      if (JSON.stringify(status) !== JSON.stringify(owner.status)) {
        const out = await client.updateStatus({ ...owner, status } as typeof owner).catch((e) => {
          if (isBerthError(e, 'NotFound')) return undefined;
          throw e;
        });
        if (!out) return;
        exp.expect(key, [], Number(out.metadata.resourceVersion));
      }
      if (plan.start.length || plan.stop.length) rlog.debug({ started: plan.start.length, stopped: plan.stop.length }, 'acted');
      if (plan.finished && deleting) {
        await dropControllerFinalizer(client, d ? 'Daemon' : 'Service', ns, owner);
        return;
      }
      return { requeueAfterMs: failures.length ? 5_000 : 30_000 };
    },
  });
  const serviceKey = (ns: string, name: string) => `service:${ns}/${name}`;
  const enqueueNs = (ns: string) => {
    for (const d of inf.daemons.byIndex('namespace', ns)) c.enqueue(`${ns}/${d.metadata.name}`);
    for (const s of inf.services.byIndex('namespace', ns)) if (s.spec.schedulingStrategy === 'DAEMON') c.enqueue(serviceKey(ns, s.metadata.name));
  };
  inf.daemons.on({ add: (d) => c.enqueue(`${d.metadata.namespace}/${d.metadata.name}`), update: (p, d) => (specChanged(p, d) ? c.enqueue(`${d.metadata.namespace}/${d.metadata.name}`) : undefined) });
  inf.services.on({
    add: (s) => (s.spec.schedulingStrategy === 'DAEMON' ? c.enqueue(serviceKey(s.metadata.namespace!, s.metadata.name)) : undefined),
    update: (p, s) => (s.spec.schedulingStrategy === 'DAEMON' && specChanged(p, s) ? c.enqueue(serviceKey(s.metadata.namespace!, s.metadata.name)) : undefined),
  });
  const keyOf = (t: Task) => {
    const g = t.spec.group ?? '';
    if (g.startsWith('daemon:')) return `${t.metadata.namespace}/${g.slice(7)}`;
    if (g.startsWith('service:') && inf.services.get(`${t.metadata.namespace}/${g.slice(8)}`)?.spec.schedulingStrategy === 'DAEMON') return serviceKey(t.metadata.namespace!, g.slice(8));
    return undefined;
  };
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
