import type { Logger } from 'pino';
import type { Task } from '../../api/kinds.ts';
import { NOMINATED_ANNOTATION } from '../../apiserver/admission.ts';
import { allocate } from '../../api/allocation.ts';
import type { HostPortAssignment } from '../../api/resources.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { schedule, type TaskRequest } from '../../scheduler/scheduler.ts';
import { parseQuery } from '../../scheduler/query.ts';
import { holdForDaemons, type DaemonClaim } from '../../scheduler/daemons.ts';
import { demandOf } from '../../api/allocation.ts';
import type { SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { recordServiceEvent } from '../service/events.ts';

/**
 * Placement: binds every pending task of a cluster in one pass. The key is the cluster:
 * all its unbound tasks are scheduled as one batch (so the batch sees its own
 * placements) and committed with one binding call (one store txn per batch of up to
 * 5,000). Tasks that no instance can take stay PENDING and are retried when instances or
 * allocations change; a service's task that cannot be placed becomes a service event in
 * ECS's words.
 */
export const BATCH = 5000;
/** how long a new pending task waits for others to join its batch */
export const BATCH_WINDOW_MS = 50;

/** Tasks this controller places; daemons' are assigned by the daemon controller instead. */
const scheduled = (t: Task) => !t.spec.daemonTaskDefinition && !t.metadata.annotations?.[NOMINATED_ANNOTATION];

export function placementController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  // the cluster's Daemons and DAEMON-strategy services, with their demand
  const daemonClaims = (ns: string): DaemonClaim[] => {
    const memberOf = (pcs: Array<{ type: string; expression?: string }> | undefined) => (pcs ?? []).filter((p) => p.type === 'memberOf').map((p) => parseQuery(p.expression ?? ''));
    const claims: DaemonClaim[] = [];
    for (const d of inf.daemons.byIndex('namespace', ns)) {
      if (d.metadata.deletionTimestamp) continue;
      const td = inf.daemonTaskDefinitions.get(d.spec.daemonTaskDefinition);
      claims.push({ group: `daemon:${d.metadata.name}`, memberOf: memberOf(d.spec.placementConstraints), demand: td ? demandOf(td.spec, undefined, { daemon: true }) : undefined });
    }
    for (const s of inf.services.byIndex('namespace', ns)) {
      if (s.spec.schedulingStrategy !== 'DAEMON' || s.metadata.deletionTimestamp) continue;
      const td = inf.taskDefinitions.get(s.spec.taskDefinition);
      claims.push({ group: `service:${s.metadata.name}`, memberOf: memberOf(s.spec.placementConstraints), demand: td ? demandOf(td.spec, undefined, { daemon: false }) : undefined });
    }
    return claims;
  };
  const lastFailure = new Map<string, string>();
  // bindings made but not yet seen in the task cache (kube-scheduler's "assumed pods"):
  // without them the next batch would see the instances emptier than they are
  const assumed = new Map<string, { ns: string; instance: string; hostPorts: HostPortAssignment[]; at: number }>();
  const c: Controller = new Controller({
    name: 'placement',
    informers: [inf.tasks, inf.instances, inf.daemons, inf.services, inf.taskDefinitions, inf.daemonTaskDefinitions],
    workers: 2,
    log,
    metrics,
    reconcile: async (ns, rlog) => {
      const pending = inf.tasks
        .byIndex('unbound', ns)
        .filter(scheduled)
        .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') || a.metadata.name.localeCompare(b.metadata.name))
        .slice(0, BATCH);
      const now = Date.now();
      for (const [k, a] of assumed) if (now - a.at > 30_000) assumed.delete(k);
      const unassumed = pending.filter((t) => !assumed.has(`${ns}/${t.metadata.name}`));
      if (unassumed.length === 0) return assumed.size ? { requeueAfterMs: 1000 } : undefined;
      const instances = inf.instances.byIndex('namespace', ns).map((i) => inf.instanceView(i));
      // daemons first: an instance takes application tasks only once every daemon of the
      // cluster that belongs (and fits) on it has its task bound there (seed 003)
      holdForDaemons(instances, daemonClaims(ns));
      const views = new Map(instances.map((v) => [v.name, v]));
      for (const [k, a] of assumed) {
        if (a.ns !== ns) continue;
        const t = inf.tasks.get(k);
        // the watch event can beat the binding call's answer: then the cache counts it already
        if (!t || t.spec.containerInstance) {
          assumed.delete(k);
          continue;
        }
        const v = views.get(a.instance);
        const d = inf.demand(t);
        if (!v || !d) continue;
        v.allocation = allocate(v.allocation, t.metadata.name, d, a.hostPorts);
        const g = t.spec.group ?? '';
        v.taskGroups.set(g, (v.taskGroups.get(g) ?? 0) + 1);
      }
      const requests: TaskRequest[] = [];
      for (const t of unassumed) {
        const demand = inf.demand(t);
        if (!demand) continue; // its task definition is not in the cache yet: a TD event will requeue
        requests.push({
          name: t.metadata.name,
          demand,
          group: t.spec.group,
          constraints: t.spec.placementConstraints,
          strategies: t.spec.placementStrategy?.length ? t.spec.placementStrategy : t.spec.group?.startsWith('service:') ? [{ type: 'spread', field: 'instanceId' }] : [{ type: 'spread', field: 'instanceId' }, { type: 'random' }],
        });
      }
      const r = schedule(instances, requests);
      let retry = r.failures.length > 0;
      if (r.placements.length) {
        const res = await client.bind(ns, r.placements.map((p) => ({ task: p.task, containerInstance: p.instance })));
        for (const x of res.results) if (x.bound) assumed.set(`${ns}/${x.task}`, { ns, instance: x.containerInstance, hostPorts: (x.hostPorts ?? []) as HostPortAssignment[], at: Date.now() });
        const failed = res.results.filter((x) => !x.bound);
        if (failed.length) {
          rlog.debug({ failed: failed.length, first: failed[0] }, 'some bindings failed; retrying from fresh state');
          retry = true;
        }
        rlog.debug({ bound: res.results.length - failed.length, unplaceable: r.failures.length }, 'placed');
      }
      // report why tasks cannot be placed: once per service and reason
      const byTask = new Map(pending.map((t) => [t.metadata.name, t] as [string, Task]));
      const reported = new Set<string>();
      for (const f of r.failures) {
        const t = byTask.get(f.task);
        const group = t?.spec.group;
        if (!group?.startsWith('service:') || reported.has(group)) continue;
        reported.add(group);
        const name = group.slice('service:'.length);
        if (lastFailure.get(`${ns}/${name}`) === f.message) continue;
        try {
          await recordServiceEvent(client, ns, name, `(service ${name}) ${f.message}`);
          lastFailure.set(`${ns}/${name}`, f.message);
        } catch (e) {
          if (!isBerthError(e, 'NotFound')) throw e;
        }
      }
      for (const p of r.placements) {
        const g = byTask.get(p.task)?.spec.group;
        if (g?.startsWith('service:')) lastFailure.delete(`${ns}/${g.slice(8)}`);
      }
      // what could not be placed is retried when something changes, and in any case soon
      return retry ? { requeueAfterMs: r.placements.length ? 50 : 2000 } : undefined;
    },
  });
  const isDaemonService = (t: Task) => !!t.spec.group?.startsWith('service:') && inf.services.get(`${t.metadata.namespace}/${t.spec.group.slice(8)}`)?.spec.schedulingStrategy === 'DAEMON';
  const enqueueTask = (t: Task) => {
    if (t.spec.containerInstance) assumed.delete(`${t.metadata.namespace}/${t.metadata.name}`);
    // a short window lets a burst of new tasks share one pass over the cluster's instances
    if (!t.spec.containerInstance && t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED' && scheduled(t)) c.enqueueAfter(t.metadata.namespace!, BATCH_WINDOW_MS);
  };
  inf.tasks.on({
    add: enqueueTask,
    update: (prev, t) => {
      enqueueTask(t);
      // a daemon task bound on an instance opens it to application tasks
      if ((t.spec.group?.startsWith('daemon:') || isDaemonService(t)) && !prev.spec.containerInstance && t.spec.containerInstance && inf.tasks.byIndex('unbound', t.metadata.namespace!).length) c.enqueue(t.metadata.namespace!);
      // freed capacity: a task that stopped may make room for pending ones
      if (prev.status?.lastStatus !== 'STOPPED' && t.status?.lastStatus === 'STOPPED' && inf.tasks.byIndex('unbound', t.metadata.namespace!).length) c.enqueue(t.metadata.namespace!);
    },
    delete: (t) => {
      assumed.delete(`${t.metadata.namespace}/${t.metadata.name}`);
      if (inf.tasks.byIndex('unbound', t.metadata.namespace!).length) c.enqueue(t.metadata.namespace!);
    },
  });
  const onInstance = (i: { metadata: { namespace?: string } }) => {
    if (inf.tasks.byIndex('unbound', i.metadata.namespace!).length) c.enqueue(i.metadata.namespace!);
  };
  inf.instances.on({ add: onInstance, update: (_p, i) => onInstance(i) });
  const onTd = () => {
    for (const ns of new Set(inf.tasks.list().filter((t) => !t.spec.containerInstance).map((t) => t.metadata.namespace!))) c.enqueue(ns);
  };
  inf.taskDefinitions.on({ add: onTd });
  inf.daemonTaskDefinitions.on({ add: onTd });
  // a daemon that goes away (or changes where it belongs) releases the instances it held
  inf.daemons.on({ update: (_p, d) => onInstance(d), delete: onInstance });
  inf.services.on({ update: (_p, s) => (s.spec.schedulingStrategy === 'DAEMON' ? onInstance(s) : undefined), delete: (s) => (s.spec.schedulingStrategy === 'DAEMON' ? onInstance(s) : undefined) });
  return c;
}
