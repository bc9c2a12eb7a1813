import type { Logger } from 'pino';
import type { Task } from '../../api/kinds.ts';
import { NOMINATED_ANNOTATION } from '../../apiserver/admission.ts';
import { daemonRevision, serviceTaskDefinition, type HostPortAssignment } from '../../api/resources.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { portsOf, scheduleAsync, type InstanceView, type TaskRequest } from '../../scheduler/scheduler.ts';
import { parseQuery } from '../../scheduler/query.ts';
import { holdForDaemons, type DaemonClaim } from '../../scheduler/daemons.ts';
import { demandOf, type TaskDemand } from '../../api/allocation.ts';
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
 *
 * It reacts only to what changes placement: a task that becomes pending, capacity freed on
 * an instance, an instance whose status, attributes, resources or agent connection changed,
 * a daemon bound or gone. A heartbeat is not a placement event. A periodic backstop pass
 * stands in for anything missed.
 */
export const BATCH = 5000;
/** how long a new pending task waits for others to join its batch */
export const BATCH_WINDOW_MS = 50;
/** tasks nothing could take are tried again this often (and whenever capacity is freed) */
export const UNPLACEABLE_RETRY_MS = 2000;
/** the backstop: every cluster is looked at this often whatever happens */
export const BACKSTOP_MS = 30_000;

/** Tasks this controller places; daemons' are assigned by the daemon controller instead. */
const scheduled = (t: Task) => !t.spec.daemonTaskDefinition && !t.metadata.annotations?.[NOMINATED_ANNOTATION];
/** A task waiting for this controller. */
const pending = (t: Task | undefined) => !!t && !t.spec.containerInstance && t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED' && scheduled(t);
/** A bound task that holds resources on its instance. */
const holding = (t: Task) => !!t.spec.containerInstance && t.status?.lastStatus !== 'STOPPED';

/** Charges a view (a copy) with a task the cache does not show yet; the ledger's own records are left alone. */
function charge(v: InstanceView, d: TaskDemand, group: string, hostPorts: HostPortAssignment[]) {
  v.allocation = { cpu: v.allocation.cpu + d.cpu, memory: v.allocation.memory + d.memory, tasks: v.allocation.tasks };
  if (hostPorts.length) {
    const used = portsOf(v);
    const tcp = new Set(used.tcp);
    const udp = new Set(used.udp);
    for (const h of hostPorts) (h.protocol === 'udp' ? udp : tcp).add(h.hostPort);
    v.usedPorts = { tcp, udp };
  }
  v.taskGroups.set(group, (v.taskGroups.get(group) ?? 0) + 1);
}

export function placementController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  // the cluster's Daemons and DAEMON-strategy services, with their demand
  const daemonClaims = (ns: string): DaemonClaim[] => {
    const memberOf = (pcs: Array<{ type: string; expression?: string }> | undefined) => (pcs ?? []).filter((p) => p.type === 'memberOf').map((p) => parseQuery(p.expression ?? ''));
    const claims: DaemonClaim[] = [];
    for (const d of inf.daemons.byIndex('namespace', ns)) {
      if (d.metadata.deletionTimestamp) continue;
      const td = inf.daemonTaskDefinitions.get(daemonRevision(d));
      claims.push({ group: `daemon:${d.metadata.name}`, memberOf: memberOf(d.spec.placementConstraints), demand: td ? demandOf(td.spec, undefined, { daemon: true }) : undefined });
    }
    for (const s of inf.services.byIndex('namespace', ns)) {
      if (s.spec.schedulingStrategy !== 'DAEMON' || s.metadata.deletionTimestamp) continue;
      const td = inf.taskDefinitions.get(serviceTaskDefinition(s));
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
    client,
    workers: 2,
    log,
    metrics,
    reconcile: async (ns, { log: rlog, client, signal }) => {
      const waiting = inf.tasks
        .byIndex('unbound', ns)
        .filter(scheduled)
        .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') || a.metadata.name.localeCompare(b.metadata.name))
        .slice(0, BATCH);
      const now = Date.now();
      for (const [k, a] of assumed) if (now - a.at > 30_000) assumed.delete(k);
      const unassumed = waiting.filter((t) => !assumed.has(`${ns}/${t.metadata.name}`));
      if (unassumed.length === 0) return { requeueAfterMs: assumed.size ? 1000 : BACKSTOP_MS };
      // O(1) per instance: the views come from the ledger the handlers keep
      const instances = inf.instances.byIndex('namespace', ns).map((i) => inf.instanceView(i));
      // daemons first: an instance takes application tasks only once every daemon of the
      // cluster that belongs (and fits) on it has its task bound there (ECS's managed daemons
      // documentation)
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
        if (v && d) charge(v, d, t.spec.group ?? '', a.hostPorts);
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
      // a big batch gives the event loop back while it works (lease renewals share it)
      const r = await scheduleAsync(instances, requests, { signal });
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
      const byTask = new Map(waiting.map((t) => [t.metadata.name, t] as [string, Task]));
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
      // what could not be placed is retried when capacity changes, and in any case soon;
      // a full batch (more waiting than one batch takes) goes on at once
      if (waiting.length >= BATCH && r.placements.length) return { requeueAfterMs: 0 };
      return { requeueAfterMs: retry ? (r.placements.length ? 50 : UNPLACEABLE_RETRY_MS) : BACKSTOP_MS };
    },
  });
  const isDaemonTask = (t: Task) => t.spec.group?.startsWith('daemon:') || (!!t.spec.group?.startsWith('service:') && inf.services.get(`${t.metadata.namespace}/${t.spec.group.slice(8)}`)?.spec.schedulingStrategy === 'DAEMON');
  /** a pass soon, if anything in the cluster waits (an index size: no list is built) */
  const poke = (ns: string) => {
    if (inf.tasks.indexSize('unbound', ns) > 0) c.enqueue(ns);
  };
  inf.tasks.on({
    // a short window lets a burst of new tasks share one pass over the cluster's instances
    add: (t) => (pending(t) ? c.enqueueAfter(t.metadata.namespace!, BATCH_WINDOW_MS) : undefined),
    update: (prev, t) => {
      const ns = t.metadata.namespace!;
      if (t.spec.containerInstance) assumed.delete(`${ns}/${t.metadata.name}`);
      if (pending(t) && !pending(prev)) c.enqueueAfter(ns, BATCH_WINDOW_MS);
      // a daemon task bound on an instance opens it to application tasks
      if (!prev.spec.containerInstance && t.spec.containerInstance && isDaemonTask(t)) poke(ns);
      // freed capacity: a task that stopped may make room for pending ones
      if (holding(prev) && !holding(t)) poke(ns);
    },
    delete: (t) => {
      assumed.delete(`${t.metadata.namespace}/${t.metadata.name}`);
      if (holding(t)) poke(t.metadata.namespace!);
    },
  });
  inf.instances.on({
    add: (i) => poke(i.metadata.namespace!),
    update: (p, i) => {
      // only what placement reads: a heartbeat (lastHeartbeat) changes none of it
      const changed =
        p.spec.status !== i.spec.status ||
        p.status?.status !== i.status?.status ||
        p.status?.agentConnected !== i.status?.agentConnected ||
        JSON.stringify(p.spec.attributes) !== JSON.stringify(i.spec.attributes) ||
        JSON.stringify(p.spec.registeredResources) !== JSON.stringify(i.spec.registeredResources) ||
        String(p.spec.dynamicHostPortRange) !== String(i.spec.dynamicHostPortRange);
      if (changed) poke(i.metadata.namespace!);
    },
  });
  const onTd = (prefix: string) => (td: { metadata: { name: string } }) => {
    const nss = new Set<string>();
    inf.tasks.forIndex('taskDefinition', `${prefix}:${td.metadata.name}`, (t) => (pending(t) ? nss.add(t.metadata.namespace!) : undefined));
    for (const ns of nss) c.enqueue(ns);
  };
  inf.taskDefinitions.on({ add: onTd('t') });
  inf.daemonTaskDefinitions.on({ add: onTd('d') });
  // a daemon that goes away (or changes where it belongs) releases the instances it held
  const onDaemon = (p: { metadata: { generation?: number; deletionTimestamp?: string; namespace?: string } }, d: typeof p) => {
    if (p.metadata.generation !== d.metadata.generation || p.metadata.deletionTimestamp !== d.metadata.deletionTimestamp) poke(d.metadata.namespace!);
  };
  inf.daemons.on({ update: onDaemon, delete: (d) => poke(d.metadata.namespace!) });
  inf.services.on({ update: (p, s) => (s.spec.schedulingStrategy === 'DAEMON' ? onDaemon(p, s) : undefined), delete: (s) => (s.spec.schedulingStrategy === 'DAEMON' ? poke(s.metadata.namespace!) : undefined) });
  return c;
}
