import type { Logger } from 'pino';
import type { ContainerInstance } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import type { SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { inParallel } from '../runtime/parallel.ts';
import { DEFAULT_HEALTH, planGc, planInstanceHealth, type GcObject, type HealthConfig } from './plan.ts';

const ms = (s?: string) => (s ? Date.parse(s) : 0);

/**
 * Instance health: per cluster, marks instances whose agent went quiet as disconnected
 * (the scheduler stops using them) and, after a grace period, stops their service and
 * daemon tasks so those are replaced elsewhere. Runs on every instance change and on a
 * timer, since silence produces no events.
 */
export function instanceHealthController(client: Client, inf: SharedInformers, log: Logger, cfg: HealthConfig = DEFAULT_HEALTH, metrics?: ControllerMetrics): Controller {
  const period = Math.max(500, Math.min(cfg.heartbeatTimeoutMs / 4, 10_000));
  // when this controller last SAW each instance's heartbeat change, by its own clock (like
  // Kubernetes' node lifecycle controller's probeTimestamp): neither the agents' clocks nor
  // a lagging cache can make a live instance look silent. An instance first seen counts as
  // heard from now.
  const heardAt = new Map<string, number>();
  const key = (i: ContainerInstance) => `${i.metadata.namespace}/${i.metadata.name}`;
  const c: Controller = new Controller({
    name: 'instancehealth',
    informers: [inf.instances, inf.tasks],
    workers: 1,
    log,
    metrics,
    reconcile: async (ns, rlog) => {
      const instances = inf.instances.byIndex('namespace', ns);
      const plan = planInstanceHealth(
        instances.map((i) => {
          if (!heardAt.has(key(i))) heardAt.set(key(i), Date.now());
          return { id: i.metadata.name, agentConnected: i.status?.agentConnected ?? false, lastHeartbeat: heardAt.get(key(i))!, status: i.spec.status };
        }),
        (id) =>
          inf.tasksOn(ns, id).map((t) => ({ name: t.metadata.name, containerInstance: t.spec.containerInstance, desiredStatus: t.spec.desiredStatus, lastStatus: t.status?.lastStatus ?? 'PENDING', owned: !!t.spec.group && (t.spec.group.startsWith('service:') || t.spec.group.startsWith('daemon:')) })),
        Date.now(),
        cfg,
      );
      for (const id of plan.disconnect) {
        rlog.info({ instance: id }, 'agent stopped sending heartbeats; marking it disconnected');
        try {
          // conditional on the version we judged: a heartbeat that landed meanwhile wins
          const cur = inf.instances.get(`${ns}/${id}`)!;
          await client.updateStatus<ContainerInstance>({ ...cur, status: { ...cur.status!, agentConnected: false } });
        } catch (e) {
          if (!isBerthError(e, 'Conflict') && !isBerthError(e, 'NotFound')) throw e;
        }
      }
      if (plan.lost.length) rlog.info({ tasks: plan.lost.length }, 'tasks on a lost instance; stopping them so they are replaced');
      await inParallel(plan.lost, async (l) => {
        await client.patch('Task', ns, l.task, { spec: { desiredStatus: 'STOPPED', stopReason: l.reason, stopCode: 'TaskFailedToStart' } }).catch((e) => {
          if (!isBerthError(e, 'NotFound')) throw e;
        });
      }, 16);
      return { requeueAfterMs: period };
    },
  });
  inf.instances.on({
    add: (i) => {
      heardAt.set(key(i), Date.now());
      c.enqueue(i.metadata.namespace!);
    },
    update: (p, i) => {
      if (p.status?.lastHeartbeat !== i.status?.lastHeartbeat) heardAt.set(key(i), Date.now());
      if (p.status?.agentConnected !== i.status?.agentConnected) c.enqueue(i.metadata.namespace!);
    },
    delete: (i) => heardAt.delete(key(i)),
  });
  return c;
}

/**
 * Garbage collection: STOPPED tasks stay describable for the retention (one hour in ECS),
 * then are deleted. Per cluster, on a timer.
 */
export function gcController(client: Client, inf: SharedInformers, log: Logger, retentionMs = 3_600_000, metrics?: ControllerMetrics): Controller {
  const period = Math.max(1000, Math.min(retentionMs / 4, 60_000));
  const c: Controller = new Controller({
    name: 'gc',
    informers: [inf.tasks, inf.instances],
    workers: 1,
    log,
    metrics,
    reconcile: async (ns, rlog) => {
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
    add: (t) => (t.status?.lastStatus === 'STOPPED' ? c.enqueueAfter(t.metadata.namespace!, period) : undefined),
    update: (p, t) => (p.status?.lastStatus !== 'STOPPED' && t.status?.lastStatus === 'STOPPED' ? c.enqueueAfter(t.metadata.namespace!, period) : undefined),
  });
  inf.instances.on({ add: (i) => c.enqueueAfter(i.metadata.namespace!, period) });
  return c;
}
