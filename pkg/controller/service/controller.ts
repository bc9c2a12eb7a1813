import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Service, Task } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { Expectations } from '../runtime/expectations.ts';
import { createOwnedTask, dropControllerFinalizer, ownedTask, stopOwnedTask } from '../runtime/writes.ts';
import { inParallel } from '../runtime/parallel.ts';
import { withEvent } from './events.ts';
import { planService, type PlanTask } from './plan.ts';

/**
 * The service controller: for each service, read it and the tasks of its group from the
 * caches, let `planService` decide, then create tasks, stop tasks and write the status
 * (optimistically, at the version it read: a conflict re-queues and re-plans from fresh
 * state). Placement is not its business: it creates unbound tasks and the placement
 * controller binds them.
 */
const ms = (s?: string) => (s ? Date.parse(s) : 0);

/** A status without the deployments' `updatedAt`, which the plan stamps on every pass: no write when only that differs. */
const comparable = (s: unknown) => JSON.stringify(s, (k, v) => (k === 'updatedAt' ? undefined : v));

/** Our own status writes come back as updates: only spec, deletion and finalizer changes are news. */
export const specChanged = (p: { metadata: { generation?: number; deletionTimestamp?: string; finalizers?: string[] } }, o: typeof p) =>
  p.metadata.generation !== o.metadata.generation || p.metadata.deletionTimestamp !== o.metadata.deletionTimestamp || String(p.metadata.finalizers) !== String(o.metadata.finalizers);

export function serviceController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics): Controller {
  const exp = new Expectations();
  const c: Controller = new Controller({
    name: 'service',
    informers: [inf.services, inf.tasks, inf.instances, inf.taskDefinitions],
    workers: 4,
    log,
    metrics,
    reconcile: async (key, rlog) => {
      const [ns, name] = splitKey(key);
      const svc = inf.services.get(key);
      if (!svc) return;
      if (svc.spec.schedulingStrategy === 'DAEMON') return; // DAEMON-strategy services are the daemon controller's
      // our last writes must be in the cache before we plan again, or we would act twice
      if (!exp.satisfied(key, Number(svc.metadata.resourceVersion))) return { requeueAfterMs: 200 };
      const deleting = !!svc.metadata.deletionTimestamp;

      // a service deleted and created again under its name does not own its predecessor's tasks
      const mine = (t: Task) => !t.metadata.ownerReferences?.some((o) => o.controller && o.uid !== svc.metadata.uid);
      const tasks: PlanTask[] = inf.tasks.byIndex('group', `${ns}/service:${name}`).filter(mine).map((t) => {
        // looked up per task: a map of the cluster's 2,000 instances per reconcile was the hot spot
        const ci = t.spec.containerInstance ? inf.instances.get(`${ns}/${t.spec.containerInstance}`) : undefined;
        const tdSpec = inf.taskDefinitionSpec(t);
        return {
          name: t.metadata.name,
          deploymentId: t.spec.deploymentId,
          taskDefinition: t.spec.taskDefinition,
          desiredStatus: t.spec.desiredStatus,
          lastStatus: t.status?.lastStatus ?? 'PENDING',
          containerInstance: t.spec.containerInstance,
          onDrainingInstance: !!t.spec.containerInstance && (!ci || ci.spec.status !== 'ACTIVE'),
          healthStatus: t.status?.healthStatus,
          hasHealthCheck: !!tdSpec?.containerDefinitions.some((cd) => cd.healthCheck),
          startedAt: t.status?.startedAt ? ms(t.status.startedAt) : undefined,
          createdAt: ms(t.metadata.creationTimestamp),
          failed: t.status?.lastStatus === 'STOPPED' && t.spec.desiredStatus === 'RUNNING',
        };
      });
      const plan = planService({
        name,
        generation: svc.metadata.generation ?? 1,
        spec: svc.spec,
        taskDefinition: svc.spec.taskDefinition,
        status: svc.status,
        tasks,
        deleting,
        now: Date.now(),
        newId: () => randomUUID().replace(/-/g, '').slice(0, 20),
      });
      // status first: it records a new deployment id before tasks carry it
      const status = { ...plan.status, observedGeneration: svc.metadata.generation ?? 1 };
      // ECS throttles a service whose tasks keep failing to start: after 3 failures in a row
      // (none reached RUNNING since), launches wait 5 s, doubling, up to 15 minutes
      let throttleMs = 0;
      if (plan.start.length) {
        const lastRunning = Math.max(0, ...tasks.map((t) => t.startedAt ?? 0));
        const streak = tasks.filter((t) => t.failed && t.createdAt > lastRunning).length;
        if (streak >= 3) {
          const backoff = Math.min(5_000 * 2 ** Math.min(streak - 3, 12), 15 * 60_000);
          const since = Date.now() - Math.max(...tasks.map((t) => t.createdAt));
          if (since < backoff) {
            throttleMs = backoff - since;
            plan.start = [];
            const message = `(service ${name}) is unable to consistently start tasks successfully.`;
            status.events = withEvent(status.events, message);
          }
        }
      }
      if (comparable(status) !== comparable(svc.status)) {
        const out = await client.updateStatus<Service>({ ...svc, status }).catch((e) => {
          if (isBerthError(e, 'NotFound')) return undefined; // deleted meanwhile: its delete event ends this
          throw e;
        });
        if (!out) return;
        exp.expect(key, [], Number(out.metadata.resourceVersion));
      }
      
      await inParallel(plan.stop, async (s) => {
        await stopOwnedTask(client, exp, key, ns, s.task, s.reason);
      });
      const creates: Array<{ deploymentId: string; taskDefinition: string }> = [];
      for (const s of plan.start) for (let k = 0; k < s.count; k++) creates.push(s);
      await inParallel(creates, async (s) => {
        const task = ownedTask(ns, { kind: 'Service', name, uid: svc.metadata.uid! }, {
          taskDefinition: s.taskDefinition,
          group: `service:${name}`,
          startedBy: s.deploymentId,
          deploymentId: s.deploymentId,
          desiredStatus: 'RUNNING',
          launchType: svc.spec.launchType,
          placementConstraints: svc.spec.placementConstraints,
          placementStrategy: svc.spec.placementStrategy,
          ...(svc.spec.propagateTags === 'SERVICE' && svc.spec.tags ? { tags: svc.spec.tags } : {}),
        } as Task['spec']);
        await createOwnedTask(client, exp, key, task);
      });
      if (plan.start.length || plan.stop.length) rlog.debug({ started: creates.length, stopped: plan.stop.length }, 'acted');
      if (plan.finished && deleting) {
        // the status above says INACTIVE; removing the object leaves that record describable
        // (ECS DescribeServices) for the apiserver's retention, and frees the name
        await dropControllerFinalizer(client, 'Service', ns, svc);
        return;
      }
      // grace periods and health checks are time-based: look again in a while
      return { requeueAfterMs: throttleMs ? throttleMs + 10 : plan.start.length || plan.stop.length ? 5_000 : 30_000 };
    },
  });
  inf.services.on({ add: (s) => c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`), update: (p, s) => (specChanged(p, s) ? c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`) : undefined) });
  const keyOf = (t: Task) => (t.spec.group?.startsWith('service:') ? `${t.metadata.namespace}/${t.spec.group.slice(8)}` : undefined);
  inf.tasks.on({
    // a task we created is seen when it appears; one we stopped when its desiredStatus is STOPPED
    add: (t) => {
      const key = keyOf(t);
      if (!key) return;
      exp.observed(key, t.metadata.name);
      c.enqueue(key);
    },
    update: (p, t) => {
      const key = keyOf(t);
      if (!key) return;
      if (t.spec.desiredStatus === 'STOPPED') exp.observed(key, t.metadata.name);
      if (p.status?.lastStatus !== t.status?.lastStatus || p.status?.healthStatus !== t.status?.healthStatus || p.spec.desiredStatus !== t.spec.desiredStatus || p.spec.containerInstance !== t.spec.containerInstance) c.enqueue(key);
    },
    delete: (t) => {
      const key = keyOf(t);
      if (!key) return;
      exp.observed(key, t.metadata.name);
      c.enqueue(key);
    },
  });
  inf.instances.on({
    update: (p, i) => {
      if (p.spec.status === i.spec.status) return;
      for (const s of inf.services.byIndex('namespace', i.metadata.namespace!)) c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`);
    },
    delete: (i) => {
      for (const s of inf.services.byIndex('namespace', i.metadata.namespace!)) c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`);
    },
  });
  return c;
}
