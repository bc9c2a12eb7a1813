import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Secret, Service, Task } from '../../api/kinds.ts';
import { referencedNames, referencesSecret, candidateNames } from '../../secrets/refs.ts';
import { namesBareFamily, serviceTaskDefinition, taskRevision } from '../../api/resources.ts';
import type { Client } from '../../client/client.ts';
import { withTags, type Tag } from '../../api/taskdefinition.ts';
import { isBerthError } from '../../errors/errors.ts';
import { splitKey, type SharedInformers } from '../informers.ts';
import { Controller, type ControllerMetrics } from '../runtime/controller.ts';
import { Expectations } from '../runtime/expectations.ts';
import { adoptTask, controllerOf, createOwnedTask, dropControllerFinalizer, ownedTask, stopOwnedTask } from '../runtime/writes.ts';
import { inParallel } from '../runtime/parallel.ts';
import { HEALTHY_AFTER_MS, planService, REDEPLOY_ON_SECRET_CHANGE, RESTARTED_AT_ANNOTATION, type PlanTask } from './plan.ts';
import { drainMsOfLoadBalancer, drainMsOfTargetGroup, targetSetOf, type LoadBalancerSpec, type TargetGroupSpec } from '../../api/loadbalancing.ts';
import { DEREGISTRATION_ANNOTATION, deregistrationOf, targetSetLabel, targetSetObject, targetsOf } from '../targets/controller.ts';
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
/**
 * A spec naming a bare family (`web`) runs the family's newest ACTIVE revision: one registered
 * after what the service took (status.followedRevision) is rolled out, as re-resolving the
 * family would. A revision named explicitly (`web:3`, an ARN) stays pinned.
 */
export function followFamily(svc: Service, inf: SharedInformers): { taskDefinition: string; followedRevision: number } | undefined {
  const family = svc.spec.taskDefinition;
  const took = svc.status?.followedRevision;
  if (!namesBareFamily(family) || took === undefined) return undefined;
  let newest: number | undefined;
  inf.taskDefinitions.forIndex('family', family, (td) => {
    if (td.status?.status === 'ACTIVE' && td.status.revision > (newest ?? took)) newest = td.status.revision;
  });
  return newest === undefined ? undefined : { taskDefinition: `${family}:${newest}`, followedRevision: newest };
}

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
    informers: [inf.services, inf.tasks, inf.instances, inf.taskDefinitions, inf.loadBalancers, inf.targetGroups],
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
      // behind load balancers: each task's targets, per target set the service registers in
      const sets = (svc.spec.loadBalancers ?? []).flatMap((e) => {
        const ref = targetSetOf(e);
        if (!ref) return [];
        const obj = targetSetObject(inf, ref);
        const drainMs = !obj ? 0 : ref.kind === 'TargetGroup' ? drainMsOfTargetGroup(obj.spec as TargetGroupSpec) : drainMsOfLoadBalancer(obj.spec as LoadBalancerSpec);
        return [{ label: targetSetLabel(ref, obj), targets: targetsOf(obj), drainMs }];
      });
      const targetsOfTask = (t: Task) => sets.map((s) => ({ set: s, target: s.targets.find((x) => x.task === taskKey(t)) }));
      const now = Date.now();
      const tasks: PlanTask[] = mine.map((t) => {
        const dereg = t.spec.desiredStatus === 'RUNNING' ? deregistrationOf(t) : undefined;
        // looked up per task: a map of the cluster's 2,000 instances per reconcile was the hot spot
        const ci = t.spec.containerInstance ? inf.instances.get(`${ns}/${t.spec.containerInstance}`) : undefined;
        const tdSpec = inf.taskDefinitionSpec(t);
        return {
          name: t.metadata.name,
          deploymentId: t.spec.deploymentId,
          taskDefinition: taskRevision(t),
          // draining before its stop: as far as the plan goes, it is asked to stop already
          desiredStatus: dereg ? 'STOPPED' : t.spec.desiredStatus,
          lastStatus: t.status?.lastStatus ?? 'PENDING',
          containerInstance: t.spec.containerInstance,
          onDrainingInstance: !!t.spec.containerInstance && (!ci || ci.spec.status !== 'ACTIVE'),
          onLostInstance: !!ci && ci.status?.agentConnected === false,
          healthStatus: t.status?.healthStatus,
          hasHealthCheck: !!tdSpec?.containerDefinitions.some((cd) => cd.essential !== false && cd.healthCheck),
          startedAt: starts.startedAt(taskKey(t), agentStart(t), ms(t.metadata.creationTimestamp)),
          createdAt: ms(t.metadata.creationTimestamp),
          stopReason: dereg ? dereg.reason : t.spec.stopReason,
          ...(sets.length
            ? {
                lb: (() => {
                  const mineT = targetsOfTask(t);
                  return { healthy: mineT.every((x) => x.target?.state === 'healthy'), failedIn: mineT.find((x) => x.target?.state === 'unhealthy')?.set.label };
                })(),
              }
            : {}),
        };
      });
      const followed = deleting ? undefined : followFamily(svc, inf);
      const taskDefinition = followed?.taskDefinition ?? serviceTaskDefinition(svc);
      const primary = svc.status?.deployments?.find((d) => d.status === 'PRIMARY');
      const plan = planService({
        name,
        generation: svc.metadata.generation ?? 1,
        spec: svc.spec,
        taskDefinition,
        // status.taskDefinition and the deployments are written together (a rollback too): a primary on another
        // revision means the service was moved to a newer revision of its family
        followed: !!followed || (!!primary && primary.taskDefinition !== taskDefinition),
        status: svc.status,
        tasks,
        deleting,
        now,
        newId: () => randomUUID().replace(/-/g, '').slice(0, 20),
        healthyAfterMs,
        restart: { restartedAt: svc.spec.restartedAt, annotation: svc.metadata.annotations?.[RESTARTED_AT_ANNOTATION], secrets: secretVersions(svc, inf, taskDefinition) },
      });
      // a rollback: the target's task definition becomes the service's, as in ECS (DescribeServices shows it), so a
      // later change of anything else does not deploy the failed revision again. It is recorded in the status (the
      // spec keeps what the user wrote), in the same write as the deployments that roll back.
      const cur = svc;
      // status first: it records a new deployment id before tasks carry it
      const generation = cur.metadata.generation ?? 1;
      const status = { ...plan.status, ...followed, ...(plan.rollbackTo !== undefined ? { taskDefinition: plan.rollbackTo } : {}), observedGeneration: generation, conditions: plan.status.conditions?.map((x) => ({ ...x, observedGeneration: generation })) };
      if (comparable(status) !== comparable(cur.status)) {
        const out = await client.updateStatus<Service>({ ...cur, status }).catch((e) => {
          if (isBerthError(e, 'NotFound')) return undefined; // deleted meanwhile: its delete event ends this
          throw e;
        });
        if (!out) return;
        exp.expect(key, [], Number(out.metadata.resourceVersion));
      }

      // a task with registered targets drains first: marked for deregistration now, stopped once the delay has passed
      let drainWaitMs: number | undefined;
      const byName = new Map(mine.map((t) => [t.metadata.name, t]));
      await inParallel(plan.stop, async (s) => {
        const t = byName.get(s.task);
        const registered = t ? targetsOfTask(t).filter((x) => x.target && x.target.state !== 'draining') : [];
        if (t && registered.length && registered.some((x) => x.set.drainMs > 0)) {
          exp.expect(key, [s.task]);
          try {
            await client.patch('Task', ns, s.task, { metadata: { resourceVersion: t.metadata.resourceVersion, annotations: { [DEREGISTRATION_ANNOTATION]: JSON.stringify({ reason: s.reason, at: new Date(now).toISOString() }) } } });
          } catch (e) {
            exp.observed(key, s.task);
            if (!isBerthError(e, 'NotFound') && !isBerthError(e, 'Conflict')) throw e;
          }
          drainWaitMs = Math.min(drainWaitMs ?? Infinity, Math.max(...registered.map((x) => x.set.drainMs)));
          return;
        }
        await stopOwnedTask(client, exp, key, ns, s.task, s.reason);
      });
      // tasks whose deregistration delay has passed get their stop
      await inParallel(mine.filter((t) => t.spec.desiredStatus === 'RUNNING' && deregistrationOf(t)), async (t) => {
        const d = deregistrationOf(t)!;
        const delay = Math.max(0, ...targetsOfTask(t).filter((x) => x.target).map((x) => x.set.drainMs));
        const left = Date.parse(d.at) + delay - now;
        if (left > 0 && t.status?.lastStatus !== 'STOPPED') {
          drainWaitMs = Math.min(drainWaitMs ?? Infinity, left);
          return;
        }
        await stopOwnedTask(client, exp, key, ns, t.metadata.name, d.reason);
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
          ...taskTagsOf(svc, inf.taskDefinitions.get(s.taskDefinition)?.spec.tags),
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
      const next = plan.throttledForMs !== undefined ? plan.throttledForMs + 10 : waitingHealthy ? Math.min(soon, healthyAfterMs + 50) : soon;
      return { requeueAfterMs: drainWaitMs !== undefined ? Math.min(next, drainWaitMs + 20) : next };
    },
  });
  // the restart annotation is metadata (no new generation), and news too
  const restartAnnotated = (p: Service, s: Service) => p.metadata.annotations?.[RESTARTED_AT_ANNOTATION] !== s.metadata.annotations?.[RESTARTED_AT_ANNOTATION];
  inf.services.on({ add: (s) => c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`), update: (p, s) => (specChanged(p, s) || restartAnnotated(p, s) ? c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`) : undefined) });
  // a new revision of a family that services follow (their spec names the bare family)
  inf.taskDefinitions.on({
    add: (td) => {
      const family = td.metadata.name.split(':')[0];
      inf.services.forIndex('follows', family, (s) => c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`));
    },
  });
  // a secret's new version: the services that opted in and read it roll (their restart request's secrets changed)
  const onSecret = (sec: Secret) => {
    for (const svc of inf.services.list()) {
      if (!redeploysOnSecretChange(svc)) continue;
      if (referencesSecret(referencedNames(inf.taskDefinitions.get(serviceTaskDefinition(svc))?.spec), sec.metadata.name)) c.enqueue(`${svc.metadata.namespace}/${svc.metadata.name}`);
    }
  };
  inf.secrets.on({ add: onSecret, update: (p, s) => (p.status?.version !== s.status?.version ? onSecret(s) : undefined), delete: onSecret });
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
      if (t.spec.desiredStatus === 'STOPPED' || deregistrationOf(t)) exp.observed(key, t.metadata.name);
      if (
        p.status?.lastStatus !== t.status?.lastStatus ||
        p.status?.healthStatus !== t.status?.healthStatus ||
        p.spec.desiredStatus !== t.spec.desiredStatus ||
        deregistrationOf(p)?.at !== deregistrationOf(t)?.at ||
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
  // a target's health (berth-lb's checks) decides whether its task counts as healthy: revisit its service
  const onTargets = (p: { status?: { targets?: Array<{ task: string; service: string; state: string }> } } | undefined, o: { status?: { targets?: Array<{ task: string; service: string; state: string }> } }) => {
    const before = new Map((p?.status?.targets ?? []).map((t) => [t.task, t.state]));
    const keys = new Set<string>();
    for (const t of o.status?.targets ?? []) if (before.get(t.task) !== t.state) keys.add(t.service);
    const now = new Set((o.status?.targets ?? []).map((t) => t.task));
    for (const t of p?.status?.targets ?? []) if (!now.has(t.task)) keys.add(t.service);
    for (const k of keys) c.enqueue(k);
  };
  inf.loadBalancers.on({ add: (o) => onTargets(undefined, o), update: onTargets });
  inf.targetGroups.on({ add: (o) => onTargets(undefined, o), update: onTargets });
  inf.instances.on({
    update: (p, i) => {
      if (p.spec.status !== i.spec.status || p.status?.agentConnected !== i.status?.agentConnected) onInstance(i);
    },
    delete: onInstance,
  });
  return c;
}

/**
 * The tags a service gives its tasks (ECS's propagateTags): the service's own with SERVICE, its
 * task definition's with TASK_DEFINITION; and with enableECSManagedTags the ones ECS adds
 * (aws:ecs:clusterName, aws:ecs:serviceName). A key given earlier wins.
 */
export function taskTagsOf(svc: Pick<Service, 'metadata' | 'spec'>, taskDefinitionTags?: Tag[]): { tags?: Tag[] } {
  const tags = withTags(
    [],
    svc.spec.propagateTags === 'SERVICE' ? svc.spec.tags : svc.spec.propagateTags === 'TASK_DEFINITION' ? taskDefinitionTags : undefined,
    svc.spec.enableECSManagedTags ? [{ key: 'aws:ecs:clusterName', value: svc.metadata.namespace! }, { key: 'aws:ecs:serviceName', value: svc.metadata.name }] : undefined,
  );
  return tags.length ? { tags } : {};
}

/** the service opted in to a new deployment when a secret it reads changes (annotation or tag REDEPLOY_ON_SECRET_CHANGE = "true") */
export function redeploysOnSecretChange(svc: Pick<Service, 'metadata' | 'spec'>): boolean {
  return svc.metadata.annotations?.[REDEPLOY_ON_SECRET_CHANGE] === 'true' || !!svc.spec.tags?.some((t) => t.key === REDEPLOY_ON_SECRET_CHANGE && t.value === 'true');
}

/**
 * What an opted-in service's tasks read: every berth Secret its task definition may resolve a
 * reference to, with its version (`-` where there is none yet), sorted. Undefined when the
 * service has not opted in, or its task definition is not known yet.
 */
export function secretVersions(svc: Service, inf: Pick<SharedInformers, 'taskDefinitions' | 'secrets'>, taskDefinition: string): string | undefined {
  if (!redeploysOnSecretChange(svc)) return undefined;
  const td = inf.taskDefinitions.get(taskDefinition);
  if (!td) return undefined;
  const names = [...referencedNames(td.spec)].flatMap((n) => candidateNames(n)).sort();
  return names.map((n) => `${n}@${inf.secrets.get(n)?.status?.version ?? '-'}`).join(',');
}
