import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Service, Task } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { Expectations } from '../runtime/expectations.ts';
import { adoptTask, controllerOf, createOwnedTask, dropControllerFinalizer, ownedTask, stopOwnedTask } from '../runtime/writes.ts';
import { inParallel } from '../runtime/parallel.ts';
import { HEALTHY_AFTER_MS, planService, type PlanTask } from './plan.ts';
import { ObservedStarts } from './starts.ts';

/**
 * The service controller: for each service, read it and the tasks it owns from the caches,
 * let `planService` decide, then create tasks, stop tasks and write the status
 * (optimistically, at the version it read: a conflict re-queues and re-plans from fresh
 * state). Placement is not its business: it creates unbound tasks and the placement
 * controller binds them.
 *
 * Ownership is the controller ownerReference and nothing else (the sample-controller's
 * GetControllerOf): a task another client started with `group: service:NAME` is not the
 * service's, and is left alone. An orphan that a deployment of the service started (its
 * deploymentId is one of the service's) is adopted explicitly, after a fresh read of the
 * service, with a write conditional on the task's version.
 */
const ms = (s?: string) => (s ? Date.parse(s) : 0);
/** the agent's stamp of the task's start (its clock) */
const agentStart = (t?: Task) => (t?.status?.startedAt ? Date.parse(t.status.startedAt) : undefined);
const taskKey = (t: Task) => `${t.metadata.namespace}/${t.metadata.name}`;

/** A status without the deployments' `updatedAt`, which the plan stamps on every pass: no write when only that differs. */
const comparable = (s: unknown) => JSON.stringify(s, (k, v) => (k === 'updatedAt' ? undefined : v));

/** Our own status writes come back as updates: only spec, deletion and finalizer changes are news. */
export const specChanged = (p: { metadata: { generation?: number; deletionTimestamp?: string; finalizers?: string[] } }, o: typeof p) =>
  p.metadata.generation !== o.metadata.generation || p.metadata.deletionTimestamp !== o.metadata.deletionTimestamp || String(p.metadata.finalizers) !== String(o.metadata.finalizers);

/** The service key a task belongs to: its controller's, or (an adoption candidate) its group's when it has no controller and a deployment id. */
export function serviceKeyOf(t: Task): string | undefined {
  const ref = controllerOf(t);
  if (ref) return ref.kind === 'Service' ? `${t.metadata.namespace}/${ref.name}` : undefined;
  if (t.spec.deploymentId && t.spec.group?.startsWith('service:')) return `${t.metadata.namespace}/${t.spec.group.slice(8)}`;
  return undefined;
}

export interface ServiceControllerOptions {
  /** how long a task without health checks must run to count as healthy (ECS: 40 s) */
  healthyAfterMs?: number;
}

export function serviceController(client: Client, inf: SharedInformers, log: Logger, metrics?: ControllerMetrics, opts: ServiceControllerOptions = {}): Controller {
  const exp = new Expectations();
  // starts by this controller's clock: the 40 s rule and the breaker never compare the agent's clock with ours (R2-9)
  const starts = new ObservedStarts();
  const healthyAfterMs = opts.healthyAfterMs ?? HEALTHY_AFTER_MS;
  const c: Controller = new Controller({
    name: 'service',
    informers: [inf.services, inf.tasks, inf.instances, inf.taskDefinitions],
    client,
    // a new term awaits none of the previous term's writes: its caches already show them (they reach the acquisition)
    onTermStart: () => exp.reset(),
    workers: 4,
    log,
    metrics,
    reconcile: async (key, { log: rlog, client }) => {
      const [ns, name] = splitKey(key);
      const svc = inf.services.get(key);
      if (!svc) return;
      if (svc.spec.schedulingStrategy === 'DAEMON') return; // DAEMON-strategy services are the daemon controller's
      // our last writes must be in the cache before we plan again, or we would act twice
      if (!exp.satisfied(key, Number(svc.metadata.resourceVersion))) return { requeueAfterMs: 200 };
      const deleting = !!svc.metadata.deletionTimestamp;
      const uid = svc.metadata.uid!;
      const owner = { kind: 'Service' as const, name, uid };

      const group = inf.tasks.byIndex('group', `${ns}/service:${name}`);
      const deploymentIds = new Set((svc.status?.deployments ?? []).map((d) => d.id));
      // explicit adoption: only an orphan that one of this service's deployments started
      const orphans = deleting ? [] : group.filter((t) => !controllerOf(t) && t.spec.deploymentId && deploymentIds.has(t.spec.deploymentId) && t.status?.lastStatus !== 'STOPPED');
      if (orphans.length) {
        let adopted = 0;
        for (const t of orphans) if (await adoptTask(client, ns, owner, t)) adopted++;
        if (adopted) rlog.info({ adopted }, 'adopted orphan tasks started by the service\'s deployments');
        return { requeueAfterMs: 200 }; // plan once the cache shows them owned
      }
      const mine = inf.tasks.byIndex('owner', uid);
      const tasks: PlanTask[] = mine.map((t) => {
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
          onLostInstance: !!ci && ci.status?.agentConnected === false,
          healthStatus: t.status?.healthStatus,
          hasHealthCheck: !!tdSpec?.containerDefinitions.some((cd) => cd.essential !== false && cd.healthCheck),
          startedAt: starts.startedAt(taskKey(t), agentStart(t), ms(t.metadata.creationTimestamp)),
          createdAt: ms(t.metadata.creationTimestamp),
          stopReason: t.spec.stopReason,
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
        healthyAfterMs,
      });
      // a rollback: the target's task definition becomes the service's, as in ECS (DescribeServices shows it), so a
      // later change of anything else does not deploy the failed revision again. Spec first, at the version planned
      // from (a user's write meanwhile conflicts, and the next pass plans from it); the status then records the
      // rollback as observed at the generation this write made.
      let cur = svc;
      if (plan.rollbackTo !== undefined && plan.rollbackTo !== svc.spec.taskDefinition) {
        const out = await client
          .patch<Service>('Service', ns, name, { metadata: { resourceVersion: svc.metadata.resourceVersion }, spec: { taskDefinition: plan.rollbackTo } })
          .catch((e) => {
            if (isBerthError(e, 'NotFound')) return undefined;
            // the target may not be named in a spec any more (say, its revision was deleted): the rollback itself goes on
            if (isBerthError(e, 'Invalid')) {
              rlog.warn({ err: e.message, taskDefinition: plan.rollbackTo }, 'rolled back, but could not make the rollback target the service\'s task definition');
              return svc;
            }
            throw e;
          });
        if (!out) return;
        cur = out;
      }
      // status first: it records a new deployment id before tasks carry it
      const generation = cur.metadata.generation ?? 1;
      const status = { ...plan.status, observedGeneration: generation, conditions: plan.status.conditions?.map((x) => ({ ...x, observedGeneration: generation })) };
      if (comparable(status) !== comparable(cur.status)) {
        const out = await client.updateStatus<Service>({ ...cur, status }).catch((e) => {
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
        const task = ownedTask(ns, owner, {
          taskDefinition: s.taskDefinition,
          group: `service:${name}`,
          startedBy: s.deploymentId,
          deploymentId: s.deploymentId,
          desiredStatus: 'RUNNING',
          launchType: svc.spec.launchType,
          placementConstraints: svc.spec.placementConstraints,
          placementStrategy: svc.spec.placementStrategy,
          ...taskTagsOf(svc),
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
      // grace periods, health checks and the 40 s rule are time-based: look again in a while
      const soon = plan.start.length || plan.stop.length ? 5_000 : 30_000;
      const waitingHealthy = tasks.some((t) => t.lastStatus === 'RUNNING' && t.desiredStatus === 'RUNNING' && !t.hasHealthCheck && t.startedAt !== undefined && Date.now() - t.startedAt < healthyAfterMs);
      return { requeueAfterMs: plan.throttledForMs !== undefined ? plan.throttledForMs + 10 : waitingHealthy ? Math.min(soon, healthyAfterMs + 50) : soon };
    },
  });
  inf.services.on({ add: (s) => c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`), update: (p, s) => (specChanged(p, s) ? c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`) : undefined) });
  inf.tasks.on({
    // a task we created is seen when it appears; one we stopped when its desiredStatus is STOPPED
    add: (t) => {
      const key = serviceKeyOf(t);
      if (!key) return;
      starts.observe(taskKey(t), agentStart(t), undefined, true, ms(t.metadata.creationTimestamp));
      exp.observed(key, t.metadata.name);
      c.enqueue(key);
    },
    update: (p, t) => {
      const key = serviceKeyOf(t);
      if (!key) return;
      starts.observe(taskKey(t), agentStart(t), agentStart(p), false, ms(t.metadata.creationTimestamp));
      if (t.spec.desiredStatus === 'STOPPED') exp.observed(key, t.metadata.name);
      if (
        p.status?.lastStatus !== t.status?.lastStatus ||
        p.status?.healthStatus !== t.status?.healthStatus ||
        p.spec.desiredStatus !== t.spec.desiredStatus ||
        p.spec.containerInstance !== t.spec.containerInstance ||
        controllerOf(p)?.uid !== controllerOf(t)?.uid
      )
        c.enqueue(key);
    },
    delete: (t) => {
      starts.forget(taskKey(t));
      const key = serviceKeyOf(t);
      if (!key) return;
      exp.observed(key, t.metadata.name);
      c.enqueue(key);
    },
  });
  // services with tasks on an instance whose status or agent connection changed
  const onInstance = (i: { metadata: { namespace?: string; name: string } }) => {
    const keys = new Set<string>();
    inf.tasks.forIndex('instance', `${i.metadata.namespace}/${i.metadata.name}`, (t) => {
      const k = serviceKeyOf(t);
      if (k) keys.add(k);
    });
    for (const k of keys) c.enqueue(k);
  };
  inf.instances.on({
    update: (p, i) => {
      if (p.spec.status !== i.spec.status || p.status?.agentConnected !== i.status?.agentConnected) onInstance(i);
    },
    delete: onInstance,
  });
  return c;
}

/**
 * The tags a service gives its tasks: its own with propagateTags SERVICE, and with
 * enableECSManagedTags the ones ECS adds (aws:ecs:clusterName, aws:ecs:serviceName).
 */
export function taskTagsOf(svc: Pick<Service, 'metadata' | 'spec'>): { tags?: Array<{ key: string; value?: string }> } {
  const tags = [...(svc.spec.propagateTags === 'SERVICE' ? (svc.spec.tags ?? []) : [])];
  if (svc.spec.enableECSManagedTags) {
    tags.push({ key: 'aws:ecs:clusterName', value: svc.metadata.namespace! }, { key: 'aws:ecs:serviceName', value: svc.metadata.name });
  }
  return tags.length ? { tags } : {};
}
