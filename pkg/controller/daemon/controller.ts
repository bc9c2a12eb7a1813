import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { NOMINATED_ANNOTATION } from '../../apiserver/admission.ts';
import { demandOf, type TaskDemand } from '../../api/allocation.ts';
import type { Daemon, Service, Task } from '../../api/kinds.ts';
import { daemonRevision, namesBareFamily, serviceTaskDefinition, taskRevision } from '../../api/resources.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { evaluate, parseQuery } from '../../scheduler/query.ts';
import type { InstanceView } from '../../scheduler/scheduler.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { Expectations } from '../runtime/expectations.ts';
import { controllerOf, createOwnedTask, dropControllerFinalizer, ownedTask, stopOwnedTask, stopTask } from '../runtime/writes.ts';
import { followFamily, specChanged } from '../service/controller.ts';
import { withEvent } from '../service/events.ts';
import { daemonServiceMaxUnavailable, planDaemon, shouldRun, type DaemonInstance } from './plan.ts';

/** Backoff per (daemon, instance) after a failed copy: 1 s, doubling, up to 5 minutes (Kubernetes' failedPodsBackoff). */
export const DAEMON_BACKOFF_BASE_MS = 1000;
export const DAEMON_BACKOFF_MAX_MS = 5 * 60_000;

/** Why a daemon's copy would not fit on an instance now (CPU, memory: daemons take no host ports). */
function noFit(v: InstanceView, d: TaskDemand | undefined): DaemonInstance['noFit'] {
  if (!d) return undefined;
  if (v.allocation.cpu + d.cpu > v.capacity.cpu) return { reason: 'RESOURCE:CPU', detail: `needs ${d.cpu} CPU units, ${v.capacity.cpu - v.allocation.cpu} remain` };
  if (v.allocation.memory + d.memory > v.capacity.memory) return { reason: 'RESOURCE:MEMORY', detail: `needs ${d.memory} MiB, ${v.capacity.memory - v.allocation.memory} remain` };
  return undefined;
}

/**
 * A Daemon whose spec names a bare family runs the family's newest ACTIVE revision: one
 * registered after what it took (status.followedRevision) is taken, as a service follows its
 * family. A revision named explicitly stays pinned.
 */
export function followDaemonFamily(d: Daemon, inf: Pick<SharedInformers, 'daemonTaskDefinitions'>): { taskDefinition: string; followedRevision: number } | undefined {
  const family = d.spec.daemonTaskDefinition;
  const took = d.status?.followedRevision;
  if (!namesBareFamily(family) || took === undefined) return undefined;
  let newest: number | undefined;
  inf.daemonTaskDefinitions.forIndex('family', family, (td) => {
    if (td.status?.status === 'ACTIVE' && td.status.revision > (newest ?? took)) newest = td.status.revision;
  });
  return newest === undefined ? undefined : { taskDefinition: `${family}:${newest}`, followedRevision: newest };
}

/**
 * The daemon controller: one task of each daemon on every eligible instance of its
 * cluster, bound at creation to that instance (daemons are not scheduled, they are
 * assigned), rolled instance by instance to a new daemon task definition. A daemon that
 * does not fit an instance creates nothing there (one event says where and why); a copy
 * the binder refuses stays pending and is bound again after a backoff; a copy that fails
 * on its instance is acknowledged (asked to stop) and replaced after a backoff.
 */
export function daemonController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  const exp = new Expectations();
  const backoff = new Map<string, { delay: number; until: number }>();
  const failAt = (key: string, instance: string, now = Date.now()) => {
    const k = `${key}|${instance}`;
    const prev = backoff.get(k);
    const delay = prev ? Math.min(prev.delay * 2, DAEMON_BACKOFF_MAX_MS) : DAEMON_BACKOFF_BASE_MS;
    backoff.set(k, { delay, until: now + delay });
  };
  // instances where a daemon does not fit: room freed there (a task stopping) re-enqueues the daemon
  const blocked = new Map<string, Set<string>>();
  // the instances each daemon could not place a copy on at its last pass (an event says when that set grows)
  const unplacedBefore = new Map<string, Set<string>>();
  const setBlocked = (key: string, ns: string, instances: string[]) => {
    for (const [inst, keys] of blocked) {
      keys.delete(key);
      if (!keys.size) blocked.delete(inst);
    }
    for (const i of instances) {
      const k = `${ns}/${i}`;
      (blocked.get(k) ?? blocked.set(k, new Set()).get(k)!).add(key);
    }
  };
  const c: Controller = new Controller({
    name: 'daemon',
    informers: [inf.daemons, inf.services, inf.tasks, inf.instances, inf.daemonTaskDefinitions, inf.taskDefinitions],
    client,
    // a new term awaits none of the previous term's writes: its caches already show them (they reach the acquisition)
    onTermStart: () => exp.reset(),
    workers: 2,
    log,
    metrics,
    reconcile: async (key, { log: rlog, client }) => {
      // keys: `NS/NAME` for a Daemon, `service:NS/NAME` for a service with schedulingStrategy DAEMON
      const isService = key.startsWith('service:');
      const [ns, name] = splitKey(isService ? key.slice('service:'.length) : key);
      const d = isService ? undefined : inf.daemons.get(key);
      const svc = isService ? inf.services.get(`${ns}/${name}`) : undefined;
      const owner = d ?? svc;
      if (!owner || (svc && svc.spec.schedulingStrategy !== 'DAEMON')) {
        setBlocked(key, ns, []);
        return;
      }
      if (!exp.satisfied(key, Number(owner.metadata.resourceVersion))) return { requeueAfterMs: 200 };
      const now = Date.now();
      const deleting = !!owner.metadata.deletionTimestamp;
      // a DAEMON service naming a bare family follows it, as a replica service does
      const followed = svc && !deleting ? followFamily(svc, inf) : undefined;
      // a Daemon takes a newer revision of its family in a status write first: admission checks
      // that revision's ports against the cluster's other daemons before any copy of it starts
      const next = d && !deleting ? followDaemonFamily(d, inf) : undefined;
      if (d && next) {
        const out = await client.updateStatus({ ...d, status: { ...d.status!, ...next } } as Daemon).catch((e) => {
          if (isBerthError(e, 'NotFound')) return undefined;
          if (!isBerthError(e, 'Invalid')) throw e;
          rlog.warn({ taskDefinition: next.taskDefinition, err: (e as Error).message }, 'the daemon cannot take the newer revision of its family');
          return null;
        });
        if (out === undefined) return;
        if (out) {
          exp.expect(key, [], Number(out.metadata.resourceVersion));
          return { requeueAfterMs: 0 };
        }
      }
      const taskDefinition = d ? daemonRevision(d) : (followed?.taskDefinition ?? serviceTaskDefinition(svc!));
      const tdSpec = d ? inf.daemonTaskDefinitions.get(taskDefinition)?.spec : inf.taskDefinitions.get(taskDefinition)?.spec;
      const demand = tdSpec ? demandOf(tdSpec, undefined, { daemon: !!d }) : undefined;
      const exprs = (owner.spec.placementConstraints ?? []).filter((p) => p.type === 'memberOf').map((p) => parseQuery(p.expression ?? ''));
      const group = d ? `daemon:${name}` : `service:${name}`;
      const instances: DaemonInstance[] = inf.instances.byIndex('namespace', ns).map((i) => {
        const view = inf.instanceView(i);
        let appTasks = 0;
        for (const [g, n] of view.taskGroups) if (!g.startsWith('daemon:') && g !== group) appTasks += n;
        return {
          id: i.metadata.name,
          status: i.spec.status,
          agentConnected: view.agentConnected,
          eligible: exprs.every((e) => evaluate(e, view)),
          appTasks,
          noFit: noFit(view, demand),
          backoffUntil: backoff.get(`${key}|${i.metadata.name}`)?.until,
        };
      });
      // owned by this object (its uid), nothing else: a task someone started with the group is not the daemon's
      const tasks = inf.tasks.byIndex('owner', owner.metadata.uid!);
      // a copy RUNNING again ends its instance's backoff
      for (const t of tasks) if (t.status?.lastStatus === 'RUNNING' && t.spec.containerInstance) backoff.delete(`${key}|${t.spec.containerInstance}`);
      const desired = instances.filter(shouldRun).length;
      const plan = planDaemon({
        taskDefinition,
        instances,
        tasks: tasks.map((t) => ({
          name: t.metadata.name,
          containerInstance: t.spec.containerInstance,
          nominated: t.metadata.annotations?.[NOMINATED_ANNOTATION],
          taskDefinition: taskRevision(t),
          desiredStatus: t.spec.desiredStatus,
          lastStatus: t.status?.lastStatus ?? 'PENDING',
          stoppedReason: t.status?.stoppedReason,
        })),
        // DAEMON services honour their deployment configuration (minimumHealthyPercent); Daemons their maxUnavailable
        maxUnavailable: d ? d.spec.deploymentConfiguration?.maxUnavailable : daemonServiceMaxUnavailable(desired, svc!.spec.deploymentConfiguration?.minimumHealthyPercent),
        deleting,
        now,
      });
      // a copy that failed on its instance: acknowledged (asked to stop, keeping its reason), and the instance backs off
      for (const f of plan.failed) {
        failAt(key, f.containerInstance, now);
        exp.expect(key, [f.task]);
        const written = await stopTask(client, ns, f.task, f.reason, null).catch((e) => {
          exp.observed(key, f.task);
          throw e;
        });
        if (!written) exp.observed(key, f.task);
      }
      for (const s of plan.stop) await stopOwnedTask(client, exp, key, ns, s.task, s.reason);
      const refused: string[] = [];
      const bindTo = async (task: string, instance: string) => {
        const r = await client.bind(ns, [{ task, containerInstance: instance }]);
        const res = r.results[0];
        if (res.bound) return;
        // it stays pending (one copy per instance, no churn); the binding is tried again after a backoff
        failAt(key, instance);
        refused.push(`${instance}: ${res.reason}`);
      };
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
        await bindTo(task.metadata.name, s.containerInstance);
      }
      for (const b of plan.bind) await bindTo(b.task, b.containerInstance);
      setBlocked(key, ns, plan.cannotPlace.map((p) => p.containerInstance));

      const at = new Date(now).toISOString();
      const counts = { desiredCount: plan.desiredCount, runningCount: plan.runningCount, pendingCount: plan.pendingCount };
      let events = owner.status?.events ?? [];
      const event = (message: string) => (events = withEvent(events, message, at));
      // one event when instances start being unable to take the daemon (no figures in it, and none when fewer are left)
      const unplaced = [...plan.cannotPlace.map((p) => `${p.containerInstance}: ${p.reason}`), ...refused].sort();
      const before = unplacedBefore.get(key) ?? new Set<string>();
      const unplacedNow = new Set([...plan.cannotPlace.map((p) => p.containerInstance), ...refused.map((r) => r.split(':')[0])]);
      const grew = [...unplacedNow].some((i) => !before.has(i));
      if (unplacedNow.size) unplacedBefore.set(key, unplacedNow);
      else unplacedBefore.delete(key);
      if (unplaced.length && grew) event(`(${d ? 'daemon' : 'service'} ${name}) was unable to place a task on ${unplaced.length} instance(s): ${unplaced.slice(0, 3).join('; ')}${unplaced.length > 3 ? '; ...' : ''}`);
      const steady = !deleting && plan.start.length === 0 && plan.stop.length === 0 && plan.bind.length === 0 && !unplacedNow.size && plan.runningCount === plan.desiredCount && plan.updatedCount === plan.desiredCount;
      if (svc && steady) event(`(service ${name}) has reached a steady state.`);
      let status: Record<string, unknown>;
      if (d) {
        status = { ...d.status!, ...counts, updatedCount: plan.updatedCount, status: deleting ? 'DELETE_IN_PROGRESS' : 'ACTIVE', observedGeneration: d.metadata.generation ?? 1, events };
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
          createdAt: changed ? at : prev.createdAt,
          updatedAt: changed || JSON.stringify([prev.runningCount, prev.pendingCount, prev.desiredCount, prev.rolloutState]) !== JSON.stringify([plan.runningCount, counts.pendingCount, plan.desiredCount, steady ? 'COMPLETED' : 'IN_PROGRESS']) ? at : prev.updatedAt,
        };
        status = { ...svc!.status!, ...followed, ...counts, status: deleting ? (plan.finished ? 'INACTIVE' : 'DRAINING') : 'ACTIVE', deployments: [deployment], observedGeneration: svc!.metadata.generation ?? 1, events };
      }
      if (JSON.stringify(status) !== JSON.stringify(owner.status)) {
        const out = await client.updateStatus({ ...owner, status } as Daemon | Service).catch((e) => {
          if (isBerthError(e, 'NotFound')) return undefined;
          throw e;
        });
        if (!out) return;
        exp.expect(key, [], Number(out.metadata.resourceVersion));
      }
      if (plan.start.length || plan.stop.length || plan.bind.length) rlog.debug({ started: plan.start.length, stopped: plan.stop.length, rebound: plan.bind.length }, 'acted');
      if (plan.finished && deleting && plan.failed.length === 0) {
        await dropControllerFinalizer(client, d ? 'Daemon' : 'Service', ns, owner);
        return;
      }
      const retryAt = [plan.nextAttemptAt, ...(refused.length ? [Math.min(...[...backoff.entries()].filter(([k]) => k.startsWith(`${key}|`)).map(([, b]) => b.until))] : [])].filter((x): x is number => x !== undefined);
      return { requeueAfterMs: retryAt.length ? Math.max(50, Math.min(...retryAt) - Date.now() + 10) : 30_000 };
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
  inf.taskDefinitions.on({
    add: (td) => {
      const family = td.metadata.name.split(':')[0];
      for (const s of inf.services.list()) if (s.spec.schedulingStrategy === 'DAEMON' && s.spec.taskDefinition === family) c.enqueue(serviceKey(s.metadata.namespace!, s.metadata.name));
    },
  });
  // a new revision of a family that Daemons follow (their spec names the bare family)
  inf.daemonTaskDefinitions.on({
    add: (td) => {
      const family = td.metadata.name.split(':')[0];
      for (const d of inf.daemons.list()) if (d.spec.daemonTaskDefinition === family) c.enqueue(`${d.metadata.namespace}/${d.metadata.name}`);
    },
  });
  const keyOf = (t: Task) => {
    const ref = controllerOf(t);
    if (!ref) return undefined;
    if (ref.kind === 'Daemon') return `${t.metadata.namespace}/${ref.name}`;
    if (ref.kind === 'Service' && inf.services.get(`${t.metadata.namespace}/${ref.name}`)?.spec.schedulingStrategy === 'DAEMON') return serviceKey(t.metadata.namespace!, ref.name);
    return undefined;
  };
  /** an application task freed room (or left a DRAINING instance): the daemons waiting there look again */
  const freed = (t: Task) => {
    const inst = `${t.metadata.namespace}/${t.spec.containerInstance}`;
    for (const k of blocked.get(inst) ?? []) c.enqueue(k);
    if (inf.instances.get(inst)?.spec.status === 'DRAINING') enqueueNs(t.metadata.namespace!);
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
        if (p.status?.lastStatus !== t.status?.lastStatus || p.spec.desiredStatus !== t.spec.desiredStatus || p.spec.containerInstance !== t.spec.containerInstance) c.enqueue(k);
      } else if (t.spec.containerInstance && p.status?.lastStatus !== 'STOPPED' && t.status?.lastStatus === 'STOPPED') freed(t);
    },
    delete: (t) => {
      const k = keyOf(t);
      if (k) {
        exp.observed(k, t.metadata.name);
        c.enqueue(k);
      } else if (t.spec.containerInstance && t.status?.lastStatus !== 'STOPPED') freed(t);
    },
  });
  inf.instances.on({
    add: (i) => enqueueNs(i.metadata.namespace!),
    update: (p, i) => {
      if (
        p.spec.status !== i.spec.status ||
        JSON.stringify(p.spec.attributes) !== JSON.stringify(i.spec.attributes) ||
        p.status?.agentConnected !== i.status?.agentConnected ||
        JSON.stringify(p.spec.registeredResources) !== JSON.stringify(i.spec.registeredResources)
      )
        enqueueNs(i.metadata.namespace!);
    },
    delete: (i) => enqueueNs(i.metadata.namespace!),
  });
  return c;
}
