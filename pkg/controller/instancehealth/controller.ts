import type { Logger } from 'pino';
import type { ContainerInstance, InstanceLease, Task } from '../../api/kinds.ts';
import { INSTANCE_LEASE_HEADER } from '../../apiserver/instancelease.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import type { SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { inParallel } from '../runtime/parallel.ts';
import { controllerOf, stopTask } from '../runtime/writes.ts';
import type { Condition } from '../../api/meta.ts';
import { AGENT_CONNECTED_CONDITION, DEFAULT_HEALTH, observe, planGc, planInstanceHealth, type GcObject, type HealthConfig, type Observed } from './plan.ts';

const ms = (s?: string) => (s ? Date.parse(s) : 0);

const agentCondition = (i: ContainerInstance) => i.status?.conditions?.find((c) => c.type === AGENT_CONNECTED_CONDITION);

/** The instance's conditions with AgentConnected set to `c` (stamped now: every write of it is a transition). */
const withAgentCondition = (i: ContainerInstance, c: Omit<Condition, 'type' | 'lastTransitionTime'>): Condition[] => [
  ...(i.status?.conditions ?? []).filter((x) => x.type !== AGENT_CONNECTED_CONDITION),
  { type: AGENT_CONNECTED_CONDITION, ...c, lastTransitionTime: new Date().toISOString() },
];

/**
 * Instance health: per cluster, marks instances whose agent went quiet as disconnected
 * (the scheduler stops using them) and, after a grace period, stops their service and
 * daemon tasks so those are replaced elsewhere. Runs on every instance change and on a
 * timer, since silence produces no events.
 *
 * It never evicts on its own say-so alone: an instance is lost only once it is recorded
 * disconnected (a compare-and-swap write, on the instance and on its lease at the revision
 * judged, that a heartbeat landing meanwhile makes fail),
 * and a fresh read of the instance confirms it just before its tasks are stopped. When most
 * of a cluster looks lost at once, nothing is evicted: that is the controller's own
 * staleness far more often than the cluster's.
 */
export function instanceHealthController(client: Client, inf: SharedInformers, log: Logger, cfg: HealthConfig = DEFAULT_HEALTH, metrics?: ControllerMetrics): Controller {
  const period = Math.max(500, Math.min(cfg.heartbeatTimeoutMs / 4, 10_000));
  // when this controller last SAW each instance's heartbeat (a renewal of its InstanceLease, or
  // a change of its lastHeartbeat from an agent that keeps no lease), by its own clock (like
  // Kubernetes' node lifecycle controller's probeTimestamp): neither the agents' clocks nor a
  // lagging cache can make a live instance look silent. An instance first seen counts as heard from now.
  const heard = new Map<string, Observed>();
  const key = (i: { metadata: { namespace?: string; name: string } }) => `${i.metadata.namespace}/${i.metadata.name}`;
  const see = (k: string, seen: { lease?: string; heartbeat?: string }) => heard.set(k, observe(heard.get(k), seen, Date.now()));
  const heardAt = (k: string) => heard.get(k)?.at ?? see(k, {}).get(k)!.at;
  const leaseRev = (ns: string, id: string) => inf.instanceLeases.get(`${ns}/${id}`)?.metadata.resourceVersion;
  let haltedNoted = '';
  const c: Controller = new Controller({
    name: 'instancehealth',
    informers: [inf.instances, inf.tasks, inf.instanceLeases],
    client,
    workers: 1,
    log,
    metrics,
    reconcile: async (ns, { log: rlog, client }) => {
      const instances = inf.instances.byIndex('namespace', ns);
      const plan = planInstanceHealth(
        instances.map((i) => {
          const connected = i.status?.agentConnected ?? false;
          const cond = agentCondition(i);
          // when the disconnect was recorded: it survives a restart of this controller, unlike heardAt
          const disconnectedAt = !connected && cond?.status === 'False' && cond.lastTransitionTime ? ms(cond.lastTransitionTime) : undefined;
          return { id: i.metadata.name, agentConnected: connected, lastHeartbeat: heardAt(key(i)), status: i.spec.status, ...(disconnectedAt ? { disconnectedAt } : {}) };
        }),
        (id) =>
          inf.tasksOn(ns, id).map((t) => ({ name: t.metadata.name, containerInstance: t.spec.containerInstance, desiredStatus: t.spec.desiredStatus, lastStatus: t.status?.lastStatus ?? 'PENDING', owned: !!controllerOf(t) })),
        Date.now(),
        cfg,
      );
      for (const id of plan.disconnect) {
        // looked up now: the instance may have gone while an earlier write was in flight
        const cur = inf.instances.get(`${ns}/${id}`);
        if (!cur) continue;
        rlog.info({ instance: id }, 'agent stopped sending heartbeats; marking it disconnected');
        try {
          // conditional on the version we judged: a heartbeat that landed meanwhile wins. The condition records when (by
          // this controller's clock), so a loss that is long over is told from one happening now, across restarts
          const silentS = Math.round(cfg.heartbeatTimeoutMs / 1000);
          const conditions = withAgentCondition(cur, { status: 'False', reason: 'HeartbeatTimeout', message: `no heartbeat from the agent for more than ${silentS} s` });
          // and on the lease revision we judged (none seen: 0): a renewal we did not see (our lease watch behind) wins too
          const judged = client.scoped({ headers: { [INSTANCE_LEASE_HEADER]: leaseRev(ns, id) ?? '0' } });
          await judged.updateStatus<ContainerInstance>({ ...cur, status: { ...cur.status!, agentConnected: false, conditions } });
        } catch (e) {
          if (!isBerthError(e, 'Conflict') && !isBerthError(e, 'NotFound')) throw e;
        }
      }
      // disconnected without a recorded time (a record from before the condition was kept): recorded now, once, so a
      // loss long over counts as lost "now" for one disruption window in all, not again after every restart (R3-3).
      // Conditional on the version read, like the disconnect: a heartbeat or another writer landing meanwhile wins.
      for (const id of plan.backfill) {
        const cur = inf.instances.get(`${ns}/${id}`);
        if (!cur || cur.status?.agentConnected !== false) continue;
        const conditions = withAgentCondition(cur, { status: 'False', reason: 'DisconnectTimeUnknown', message: 'recorded disconnected before the time of the disconnect was kept; counted from now' });
        try {
          await client.updateStatus<ContainerInstance>({ ...cur, status: { ...cur.status, conditions } });
        } catch (e) {
          if (!isBerthError(e, 'Conflict') && !isBerthError(e, 'NotFound')) throw e;
        }
      }
      // an agent that came back: its condition says so again (one write per reconnection; the agent does not write conditions)
      for (const i of instances) {
        if (!(i.status?.agentConnected && agentCondition(i)?.status === 'False')) continue;
        const conditions = withAgentCondition(i, { status: 'True', reason: 'HeartbeatsResumed', message: 'the agent sends heartbeats again' });
        await client.patch('ContainerInstance', ns, i.metadata.name, { status: { conditions } }, { status: true }).catch((e) => {
          if (!isBerthError(e, 'NotFound')) throw e;
        });
      }
      metrics?.gauge('berth_instancehealth_evictions_halted', `cluster="${ns}"`, plan.halted ? 1 : 0);
      if (plan.halted) {
        const note = `${ns}:${plan.halted.lost}/${plan.halted.of}`;
        if (note !== haltedNoted) rlog.warn({ ...plan.halted, longLost: plan.longLost ?? 0 }, 'most instances of the cluster look lost at once: not evicting any task (this controller may be the one that is cut off)');
        haltedNoted = note;
        return { requeueAfterMs: period };
      }
      haltedNoted = '';
      // confirm each lost instance from a fresh read, not the cache, just before stopping its tasks
      const confirmed = new Set<string>();
      for (const id of new Set(plan.lost.map((l) => l.instance))) {
        const fresh = await client.tryGet<ContainerInstance>('ContainerInstance', ns, id);
        const freshLease = await client.tryGet<InstanceLease>('InstanceLease', ns, id);
        const cached = inf.instances.get(`${ns}/${id}`);
        // silent: no renewal of its lease since the one judged (an agent without a lease: no new lastHeartbeat)
        const judgedLease = leaseRev(ns, id);
        const silent = judgedLease !== undefined ? freshLease?.metadata.resourceVersion === judgedLease : !freshLease && fresh?.status?.lastHeartbeat === cached?.status?.lastHeartbeat;
        if (fresh && fresh.status?.agentConnected === false && silent) confirmed.add(id);
        else if (fresh) heard.set(`${ns}/${id}`, { ...heard.get(`${ns}/${id}`), at: Date.now() }); // it spoke after all: our cache is behind
      }
      const lost = plan.lost.filter((l) => confirmed.has(l.instance));
      if (lost.length) rlog.info({ tasks: lost.length, instances: confirmed.size }, 'tasks on a lost instance; stopping them so they are replaced');
      await inParallel(lost, async (l) => void (await stopTask(client, ns, l.task, l.reason)), 16);
      return { requeueAfterMs: period };
    },
  });
  inf.instances.on({
    add: (i) => {
      heard.set(key(i), { ...heard.get(key(i)), heartbeat: i.status?.lastHeartbeat, at: Date.now() });
      c.enqueue(i.metadata.namespace!);
    },
    update: (p, i) => {
      // an instance with a lease is served with the lease's latest renewTime as lastHeartbeat,
      // so any write of it (the disconnect's own) shows a "new" lastHeartbeat: its renewals are
      // heard through the lease's revision, and its lastHeartbeat is no heartbeat (else a lost
      // instance counted as heard at its disconnect and was lost a heartbeat timeout late)
      if (!inf.instanceLeases.get(key(i))) see(key(i), { heartbeat: i.status?.lastHeartbeat });
      if (p.status?.agentConnected !== i.status?.agentConnected) c.enqueue(i.metadata.namespace!);
    },
    delete: (i) => heard.delete(key(i)),
  });
  // a renewal is a heartbeat; it enqueues nothing (silence is found by the timer, a reconnection by the instance's write)
  inf.instanceLeases.on({
    add: (l) => see(key(l), { lease: l.metadata.resourceVersion }),
    update: (_p, l) => see(key(l), { lease: l.metadata.resourceVersion }),
  });
  return c;
}

/**
 * Garbage collection:
 * - STOPPED tasks stay describable for the retention (one hour in ECS), then are deleted.
 * - By owner: a task whose controller (Service or Daemon) no longer exists under that uid
 *   is stopped, whatever happened to the owner's finalizer (`kubectl replace` without it,
 *   then a delete), and then collected like any stopped task. The owner's absence is
 *   confirmed by a fresh read first (Kubernetes' garbage collector does the same: a cache
 *   can lag the owner's creation).
 * Per cluster, on a timer and when an owner goes.
 */
export function gcController(client: Client, inf: SharedInformers, log: Logger, retentionMs = 3_600_000, metrics?: ControllerMetrics): Controller {
  const period = Math.max(1000, Math.min(retentionMs / 4, 60_000));
  const ownerInCache = (t: Task) => {
    const ref = controllerOf(t)!;
    const o = ref.kind === 'Service' ? inf.services.get(`${t.metadata.namespace}/${ref.name}`) : ref.kind === 'Daemon' ? inf.daemons.get(`${t.metadata.namespace}/${ref.name}`) : undefined;
    return o?.metadata.uid === ref.uid;
  };
  /** a task whose owner is (as far as the cache knows) gone, and that still runs or claims to */
  const orphaned = (t: Task) => {
    const ref = controllerOf(t);
    return !!ref && (ref.kind === 'Service' || ref.kind === 'Daemon') && t.spec.desiredStatus === 'RUNNING' && !ownerInCache(t);
  };
  const c: Controller = new Controller({
    name: 'gc',
    informers: [inf.tasks, inf.instances, inf.services, inf.daemons],
    client,
    workers: 1,
    log,
    metrics,
    reconcile: async (ns, { log: rlog, client }) => {
      // by owner: group the orphans by owner, read each owner once
      const byOwner = new Map<string, Task[]>();
      inf.tasks.forIndex('namespace', ns, (t) => {
        if (!orphaned(t)) return;
        const ref = controllerOf(t)!;
        const k = `${ref.kind}/${ref.name}/${ref.uid}`;
        (byOwner.get(k) ?? byOwner.set(k, []).get(k)!).push(t);
      });
      let collected = 0;
      for (const [k, ts] of byOwner) {
        const [kind, name, uid] = k.split('/');
        const fresh = await client.tryGet(kind, ns, name);
        if (fresh && fresh.metadata.uid === uid) continue; // there after all: the cache is behind
        await inParallel(ts, async (t) => void (await stopTask(client, ns, t.metadata.name, `Its ${kind.toLowerCase()} ${name} no longer exists`)), 16);
        collected += ts.length;
      }
      if (collected) rlog.info({ tasks: collected, owners: byOwner.size }, 'stopped tasks whose service or daemon no longer exists');
      const objects: GcObject[] = inf.tasks.byIndex('stopped', ns).map((t) => ({ plural: 'tasks', namespace: ns, name: t.metadata.name, finishedAt: ms(t.status?.stoppedAt ?? t.status?.executionStoppedAt) || ms(t.metadata.creationTimestamp) }));
      const doomed = planGc(objects, Date.now(), retentionMs);
      for (const o of doomed) {
        await client.delete('Task', ns, o.name).catch((e) => {
          if (!isBerthError(e, 'NotFound')) throw e;
        });
      }
      if (doomed.length) rlog.info({ deleted: doomed.length }, 'deleted stopped tasks past retention');
      return { requeueAfterMs: period };
    },
  });
  // a task that stops is due only after the retention: look again within a period, not at
  // once (one pass per stopped task was the controller-manager's hot spot while thousands stopped)
  inf.tasks.on({
    add: (t) => (t.status?.lastStatus === 'STOPPED' ? c.enqueueAfter(t.metadata.namespace!, period) : orphaned(t) ? c.enqueueAfter(t.metadata.namespace!, 1000) : undefined),
    update: (p, t) => (p.status?.lastStatus !== 'STOPPED' && t.status?.lastStatus === 'STOPPED' ? c.enqueueAfter(t.metadata.namespace!, period) : undefined),
  });
  // an owner that goes: its tasks are looked at soon (the owner's own controller normally stopped them first)
  const ownerGone = (o: { metadata: { namespace?: string; uid?: string } }) => {
    if (inf.tasks.indexSize('owner', o.metadata.uid ?? '')) c.enqueueAfter(o.metadata.namespace!, 1000);
  };
  inf.services.on({ delete: ownerGone });
  inf.daemons.on({ delete: ownerGone });
  inf.instances.on({ add: (i) => c.enqueueAfter(i.metadata.namespace!, period) });
  return c;
}
