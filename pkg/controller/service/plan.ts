/**
 * The service controller's decisions as one pure function: given a service and the tasks
 * it owns (as observed), what to start, what to stop, and what the status now is. No I/O,
 * no clock (passed in), so every rule is table-tested and the reconcile loop around it only
 * reads, calls this, and writes.
 *
 * ECS's deployment model, explicitly:
 *
 * - Bounds. The PRIMARY deployment is held at desiredCount; older deployments drain while
 *   the number of healthy tasks stays >= ceil(desired * minimumHealthyPercent / 100) and the
 *   number of tasks RUNNING or PENDING (including those asked to stop that have not yet
 *   stopped) stays <= floor(desired * maximumPercent / 100). Tasks on DRAINING instances
 *   are replaced within the same bounds.
 * - Healthy. A task counts towards the minimum healthy percent when it is RUNNING and, if an
 *   essential container has a health check, HEALTHY; without one, 40 s after it reached
 *   RUNNING (ECS's DeploymentConfiguration rule).
 * - History. The deployment list outlives the tasks: besides the PRIMARY and every
 *   deployment that still has tasks, the most recent COMPLETED deployment is kept (ACTIVE,
 *   possibly with no task) until the PRIMARY completes, because it is the rollback target.
 * - Circuit breaker (when enabled), per deployment, two stages: while no task of the
 *   deployment has reached RUNNING (stage 1), each task that stops without reaching RUNNING
 *   is a failure; once one has (stage 2), each task replaced for failing its health checks
 *   is. With resetOnHealthyTask (the default) a task that becomes healthy resets the count.
 *   At min(max(ceil(desired / 2), 3), 200) failures the deployment is FAILED and launches
 *   stop; with rollback, the most recent COMPLETED deployment becomes PRIMARY again
 *   (IN_PROGRESS, so not a rollback target itself until it completes) and its task
 *   definition becomes the service's (`rollbackTo`: a scale-out later does not deploy the
 *   failed revision again; naming it again in an update does). No COMPLETED
 *   deployment: the deployment stalls (nothing new is launched), as ECS does.
 * - Resume. A spec naming the task definition of a deployment still listed, COMPLETED or
 *   with healthy tasks, makes that deployment PRIMARY again instead of starting a new one
 *   (so a rollback whose status write was lost does not drain the target's healthy tasks
 *   to start copies of the same revision, review R3-2).
 * - Forced. A new restart request (spec.restartedAt, or the kubectl restartedAt annotation)
 *   starts a new deployment of the same task definition; the old tasks drain within the same
 *   bounds. The request acted on is kept in the status, so a rollback does not force again.
 * - Throttle. After 3 tasks in a row fail to start (none reached RUNNING since), launches
 *   wait 5 s, doubling, up to 15 minutes.
 */
import type { Condition } from '../../api/meta.ts';
import type { Deployment, ServiceEvent, ServiceSpec, ServiceStatus } from '../../api/resources.ts';

export interface PlanTask {
  name: string;
  deploymentId?: string;
  taskDefinition: string;
  desiredStatus: 'RUNNING' | 'STOPPED';
  lastStatus: string;
  /** bound instance, if any */
  containerInstance?: string;
  /** the bound instance is DRAINING (or gone): replace this task */
  onDrainingInstance?: boolean;
  /** the bound instance's agent is disconnected: a stop asked of it will not land until it returns */
  onLostInstance?: boolean;
  /** HEALTHY / UNHEALTHY / UNKNOWN from the containers' health checks */
  healthStatus?: string;
  /** an essential container has a health check: the task counts as healthy only when HEALTHY */
  hasHealthCheck?: boolean;
  /** when it reached RUNNING (epoch ms); absent: it never did */
  startedAt?: number;
  createdAt: number;
  /** the stop reason it was asked to stop with (spec.stopReason) */
  stopReason?: string;
  /**
   * The service registers its tasks in load balancers: whether every target of this task is
   * healthy there, and where one failed the load balancer's health checks (`target-group
   * ARN` or `elb NAME`). The task counts as healthy only when its targets are.
   */
  lb?: { healthy: boolean; failedIn?: string };
}

export interface PlanInput {
  name: string;
  generation: number;
  spec: ServiceSpec & { desiredCount?: number };
  /** the service's resolved task definition (family:revision) */
  taskDefinition: string;
  /** the task definition changed without a spec change (the family the spec names has a newer revision) */
  followed?: boolean;
  status?: Partial<ServiceStatus>;
  tasks: PlanTask[];
  /** being deleted: scale to zero, then report INACTIVE */
  deleting: boolean;
  now: number;
  newId: () => string;
  /** how long a task without health checks must have been RUNNING to count as healthy (ECS: 40 s) */
  healthyAfterMs?: number;
  /** the service's restart requests: a new value of either starts a new deployment of the same task definition */
  restart?: RestartRequest;
}

/** spec.restartedAt, the annotation kubectl's restart writes, and (opted in) the versions of the secrets the service's tasks read */
export interface RestartRequest {
  restartedAt?: string;
  annotation?: string;
  /**
   * `secretVersions`: what a service that opted in (REDEPLOY_ON_SECRET_CHANGE) reads, as
   * `name@version,...`. A change after one was recorded is a new deployment; the first seen only
   * records it (opting in restarts nothing).
   */
  secrets?: string;
}

/** A service opts in to a new deployment when a secret its task definition references changes: this annotation, or a tag of this key, set to "true". */
export const REDEPLOY_ON_SECRET_CHANGE = 'berth.dev/redeploy-on-secret-change';

/** The annotation `kubectl rollout restart` writes; on a service it forces a new deployment as spec.restartedAt does. */
export const RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt';

/**
 * Is there a restart request the controller has not acted on? A value that differs from the
 * one last acted on; a value removed is none (re-applying a manifest without it restarts nothing).
 */
export function newRestart(req: RestartRequest = {}, seen: RestartRequest = {}): boolean {
  return (
    (req.restartedAt !== undefined && req.restartedAt !== seen.restartedAt) ||
    (req.annotation !== undefined && req.annotation !== seen.annotation) ||
    secretsNewer(req.secrets, seen.secrets)
  );
}

/** `name@version,...` -> name -> version (undefined where the secret was not there) */
function versionsOf(list: string | undefined): Map<string, number | undefined> {
  const m = new Map<string, number | undefined>();
  for (const part of list ? list.split(',') : []) {
    const at = part.lastIndexOf('@');
    const v = Number(part.slice(at + 1));
    m.set(part.slice(0, at), Number.isInteger(v) ? v : undefined);
  }
  return m;
}

/**
 * A secret the service reads has a newer version than the one recorded. Only a version newer
 * than one seen counts: a secret first seen (its informer behind the service's, or created after
 * the service) records it, and a cache behind the recorded version is no change.
 */
function secretsNewer(req: string | undefined, seen: string | undefined): boolean {
  if (req === undefined || seen === undefined) return false;
  const was = versionsOf(seen);
  for (const [name, v] of versionsOf(req)) {
    const w = was.get(name);
    if (v !== undefined && w !== undefined && v > w) return true;
  }
  return false;
}

/** what to record: each referenced secret at the newest version seen (now or before) */
function mergedVersions(req: string, seen: string | undefined): string {
  const was = versionsOf(seen);
  return [...versionsOf(req)].map(([name, v]) => {
    const w = was.get(name);
    const best = v === undefined ? w : w === undefined ? v : Math.max(v, w);
    return `${name}@${best ?? '-'}`;
  }).join(',');
}

/** The restart request of a change of secrets only (its event says so). */
const bySecrets = (req: RestartRequest = {}, seen: RestartRequest = {}) =>
  secretsNewer(req.secrets, seen.secrets) && !newRestart({ restartedAt: req.restartedAt, annotation: req.annotation }, seen);

export interface StartOrder {
  deploymentId: string;
  taskDefinition: string;
  count: number;
}

export interface StopOrder {
  task: string;
  reason: string;
}

export interface Plan {
  start: StartOrder[];
  stop: StopOrder[];
  status: ServiceStatus;
  /** every task is stopped and the service is being deleted: drop the finalizer */
  finished: boolean;
  /** launches are throttled (tasks keep failing to start): look again in this long */
  throttledForMs?: number;
  /**
   * The circuit breaker rolled back in this pass: the rollback target's task definition. ECS
   * makes it the service's task definition (DescribeServices shows it), so a later change
   * of anything else (a scale-out) keeps the service on it, and only naming the failed
   * revision again deploys that one: the controller writes it into the spec.
   */
  rollbackTo?: string;
}

const MAX_EVENTS = 100;
/** ECS: a task without health checks counts as healthy 40 s after it reached RUNNING */
export const HEALTHY_AFTER_MS = 40_000;
/** The stop reason of a task replaced for failing its health checks (what stage 2 counts). */
export const HEALTH_STOP_REASON = 'Task failed container health checks';
/** The stop reason of a task replaced for failing a load balancer's health checks (ECS's words), then `(target-group ARN)`. */
export const ELB_HEALTH_STOP_PREFIX = 'Task failed ELB health checks in ';
/** At most this many counted failed task names are kept per deployment. */
const MAX_COUNTED = 400;

/** min(max(ceil(desired / 2), 3), 200): ECS's circuit breaker threshold */
export const failureThreshold = (desired: number) => Math.min(Math.max(Math.ceil(desired * 0.5), 3), 200);

const live = (t: PlanTask) => t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED';
const running = (t: PlanTask) => live(t) && t.lastStatus === 'RUNNING';
/** asked to stop, not stopped yet: still RUNNING or PENDING as far as maximumPercent goes (unless its agent is gone) */
const stoppingStill = (t: PlanTask) => t.desiredStatus === 'STOPPED' && t.lastStatus !== 'STOPPED' && !t.onLostInstance;
/** stage 1's failure: it stopped by itself without ever reaching RUNNING */
export const failedToStart = (t: PlanTask) => t.lastStatus === 'STOPPED' && t.desiredStatus === 'RUNNING' && t.startedAt === undefined;
/** stage 2's failure: the scheduler replaced it for failing its health checks */
export const replacedForHealth = (t: PlanTask) => t.desiredStatus === 'STOPPED' && (t.stopReason === HEALTH_STOP_REASON || !!t.stopReason?.startsWith(ELB_HEALTH_STOP_PREFIX));

/** Healthy: RUNNING, and HEALTHY when an essential container has a health check, else RUNNING for `afterMs` (40 s). */
export function isHealthy(t: PlanTask, now: number, afterMs = HEALTHY_AFTER_MS): boolean {
  if (!running(t)) return false;
  if (t.healthStatus === 'UNHEALTHY') return false;
  // behind a load balancer: healthy when its targets are (and its container health check, if any, passes)
  if (t.lb) return t.lb.healthy && (!t.hasHealthCheck || t.healthStatus === 'HEALTHY');
  if (t.hasHealthCheck) return t.healthStatus === 'HEALTHY';
  return t.startedAt !== undefined && now - t.startedAt >= afterMs;
}

/**
 * UNHEALTHY, or failing a load balancer's health checks, past the health check grace
 * period: ECS stops and replaces it. The stop reason, or undefined when it is not failing.
 */
export function healthFailure(t: PlanTask, now: number, graceSeconds: number): string | undefined {
  if (!running(t) || now - (t.startedAt ?? 0) < graceSeconds * 1000) return undefined;
  if (t.healthStatus === 'UNHEALTHY') return HEALTH_STOP_REASON;
  if (t.lb?.failedIn) return `${ELB_HEALTH_STOP_PREFIX}(${t.lb.failedIn})`;
  return undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (s?: string) => (s ? Date.parse(s) : 0);

/** The most recent COMPLETED deployment other than `except`: the only rollback target (ECS). */
export function rollbackTarget(deployments: Deployment[], except: Deployment): Deployment | undefined {
  return deployments.filter((d) => d !== except && d.rolloutState === 'COMPLETED').sort((a, b) => ms(b.createdAt) - ms(a.createdAt))[0];
}

export function planService(input: PlanInput): Plan {
  const { spec, now } = input;
  const wait = input.healthyAfterMs ?? HEALTHY_AFTER_MS;
  const healthy = (t: PlanTask) => isHealthy(t, now, wait);
  /** RUNNING, not UNHEALTHY, not counted as healthy yet: in its 40 s (or its health checks have not passed yet) */
  const warming = (t: PlanTask) => running(t) && t.healthStatus !== 'UNHEALTHY' && !healthy(t);
  const prev = input.status ?? {};
  const desired = input.deleting ? 0 : spec.schedulingStrategy === 'DAEMON' ? 0 : (spec.desiredCount ?? 0);
  const dc = spec.deploymentConfiguration ?? {};
  const minPct = dc.minimumHealthyPercent ?? 100;
  const maxPct = dc.maximumPercent ?? 200;
  const grace = spec.healthCheckGracePeriodSeconds ?? 0;
  const events: ServiceEvent[] = [...(prev.events ?? [])];
  const addEvent = (message: string) => {
    // de-duplicated: the same message as the newest is not repeated
    if (events[0]?.message === message) return;
    events.unshift({ id: input.newId(), createdAt: iso(now), message });
  };
  const svc = `(service ${input.name})`;

  // ---- deployments: a changed task definition (spec changed since we last acted) makes a new PRIMARY
  const deployments: Deployment[] = (prev.deployments ?? []).map((d) => structuredClone(d));
  let primary = deployments.find((d) => d.status === 'PRIMARY');
  const specChanged = (prev.observedGeneration ?? 0) < input.generation || !!input.followed;
  // a forced deployment: the restart request changed since the controller last acted on one
  const forced = !!primary && !input.deleting && newRestart(input.restart, prev.restart);
  let needNew = !primary || forced || (specChanged && primary.taskDefinition !== input.taskDefinition);
  if (needNew) {
    for (const d of deployments) if (d.status === 'PRIMARY') d.status = 'ACTIVE';
    // the task definition of a deployment we still have, COMPLETED or with healthy tasks (a rollback whose
    // status write was lost after its spec write landed, or a user naming the previous revision again while
    // it still runs): that deployment is PRIMARY again, rather than a new one replacing its healthy copies of
    // the same revision (R3-2). A FAILED one is not resumed: naming it again deploys it anew.
    // A forced deployment never resumes one: replacing the tasks that run is its point.
    const again = deployments
      .filter((d) => !forced && d.taskDefinition === input.taskDefinition && d.rolloutState !== 'FAILED')
      .filter((d) => d.rolloutState === 'COMPLETED' || input.tasks.some((t) => t.deploymentId === d.id && healthy(t)))
      .sort((a, b) => ms(b.createdAt) - ms(a.createdAt))[0];
    if (again) {
      again.status = 'PRIMARY';
      again.failedTasks = 0;
      again.rolloutState = 'IN_PROGRESS';
      again.rolloutStateReason = `ECS deployment ${again.id} is the service's deployment again: the service names its task definition again.`;
      again.updatedAt = iso(now);
      delete again.circuitBreaker;
      addEvent(`${svc} (deployment ${again.id}) is the primary deployment again.`);
      primary = again;
      needNew = false;
    }
  }
  if (needNew || !primary) {
    primary = {
      id: `ecs-svc/${input.newId()}`,
      status: 'PRIMARY',
      taskDefinition: input.taskDefinition,
      desiredCount: desired,
      pendingCount: 0,
      runningCount: 0,
      failedTasks: 0,
      rolloutState: 'IN_PROGRESS',
      rolloutStateReason: 'ECS deployment in progress.',
      createdAt: iso(now),
      updatedAt: iso(now),
    };
    deployments.unshift(primary);
    if (forced) addEvent(`${svc} (deployment ${primary.id}) is a forced new deployment of ${input.taskDefinition}${bySecrets(input.restart, prev.restart) ? ': a secret it references changed' : ''}.`);
  }
  primary.desiredCount = desired;

  const byDep = new Map<string, PlanTask[]>();
  for (const t of input.tasks) {
    const k = t.deploymentId ?? '';
    const l = byDep.get(k);
    if (l) l.push(t);
    else byDep.set(k, [t]);
  }
  const byDeployment = (id: string) => byDep.get(id) ?? [];
  const known = new Set(deployments.map((d) => d.id));
  // tasks with no (or an unknown) deployment belong to no rollout: treat as old
  const orphanLive = input.tasks.filter((t) => live(t) && (!t.deploymentId || !known.has(t.deploymentId)));

  const start: StartOrder[] = [];
  const stop: StopOrder[] = [];
  const stopping = new Set<string>();
  const stopTask = (t: PlanTask, reason: string) => {
    if (stopping.has(t.name)) return;
    stopping.add(t.name);
    stop.push({ task: t.name, reason });
  };

  // 0. tasks failing their health checks after the grace period are replaced (stage 2 counts these)
  const liveAll = input.tasks.filter(live);
  const healthStops = new Set<string>();
  for (const t of liveAll) {
    const failure = healthFailure(t, now, grace);
    if (!failure) continue;
    stopTask(t, failure);
    healthStops.add(t.name);
  }

  // ---- circuit breaker on the primary
  let rolledBackNow = false;
  let rollbackTo: string | undefined;
  const cb = dc.deploymentCircuitBreaker;
  if (cb?.enable && primary.rolloutState === 'IN_PROGRESS' && desired > 0) {
    const threshold = failureThreshold(desired);
    const bk = primary.circuitBreaker ?? { status: 'MONITORING' as const, stage: 1, threshold };
    bk.threshold = threshold;
    const mine = byDeployment(primary.id);
    const present = new Set(mine.map((t) => t.name));
    // a counted task that is gone (collected) cannot be seen again: it is forgotten, its count is kept
    const counted = new Set((bk.countedTasks ?? []).filter((n) => present.has(n)));
    let failures = primary.failedTasks ?? 0;
    // resetOnHealthyTask: a task that became healthy since the last reset sets the count back to 0
    if (cb.resetOnHealthyTask !== false) {
      const newest = Math.max(-1, ...mine.filter(healthy).map((t) => t.startedAt ?? 0));
      if (newest > ms(bk.resetBy)) {
        failures = 0;
        bk.resetBy = iso(newest);
      }
    }
    for (const t of mine) {
      if (counted.has(t.name)) continue;
      // stage 1 counts tasks that never reached RUNNING; both stages count health-check replacements
      const failed = (bk.stage === 1 && failedToStart(t)) || replacedForHealth(t) || healthStops.has(t.name);
      if (!failed) continue;
      counted.add(t.name);
      failures++;
    }
    if (bk.stage === 1 && mine.some((t) => t.startedAt !== undefined)) bk.stage = 2;
    bk.countedTasks = [...counted].slice(-MAX_COUNTED);
    primary.failedTasks = failures;
    primary.circuitBreaker = bk;
    if (failures >= threshold) {
      const failedDep = primary;
      failedDep.rolloutState = 'FAILED';
      failedDep.rolloutStateReason = `ECS deployment circuit breaker: ${bk.stage === 1 ? 'tasks failed to start' : 'tasks failed their health checks'} (${failures} failed).`;
      failedDep.circuitBreaker = { status: 'TRIGGERED', stage: bk.stage, threshold };
      addEvent(`${svc} (deployment ${failedDep.id}) deployment failed: ${bk.stage === 1 ? 'tasks failed to start' : 'tasks failed container health checks'}.`);
      const target = cb.rollback ? rollbackTarget(deployments, failedDep) : undefined;
      if (target) {
        rolledBackNow = true;
        rollbackTo = target.taskDefinition;
        failedDep.status = 'ACTIVE';
        target.status = 'PRIMARY';
        target.desiredCount = desired;
        target.failedTasks = 0;
        target.rolloutState = 'IN_PROGRESS';
        target.rolloutStateReason = `ECS deployment circuit breaker: rolling back to deploymentId ${target.id}.`;
        delete target.circuitBreaker;
        addEvent(`${svc} (deployment ${failedDep.id}) rolling back to deployment ${target.id}.`);
        primary = target;
      } else if (cb.rollback) {
        failedDep.rolloutStateReason += ' No COMPLETED deployment to roll back to: the deployment is stalled.';
      }
    }
  }
  if (!cb?.enable) delete primary.circuitBreaker;

  const p = primary;
  const primaryLive = liveAll.filter((t) => t.deploymentId === p.id);
  const oldLive = liveAll.filter((t) => t.deploymentId !== p.id);
  const maxTotal = Math.floor((desired * maxPct) / 100);
  const minHealthy = Math.ceil((desired * minPct) / 100);

  // a failed (and not rolled back) primary stops being started: it keeps what runs
  const primaryCanStart = p.rolloutState !== 'FAILED';

  // 1. primary tasks beyond desired: stop pending ones first, then from the most loaded instances
  const primaryKeep = primaryLive.filter((t) => !t.onDrainingInstance && !stopping.has(t.name));
  if (primaryKeep.length > desired) {
    for (const t of pickForScaleDown(primaryKeep, primaryKeep.length - desired)) stopTask(t, input.deleting ? 'Service is being deleted' : 'Service scaled down');
  }

  // what counts towards maximumPercent: every task RUNNING or PENDING, including the ones
  // asked to stop that have not stopped yet (ECS), except on instances whose agent is gone
  let healthyCount = liveAll.filter((t) => !stopping.has(t.name) && healthy(t)).length;
  let total = liveAll.length + input.tasks.filter(stoppingStill).length;

  // ---- throttle: after 3 failures to start in a row, launches wait (5 s doubling, up to 15 min)
  let throttledForMs: number | undefined;
  {
    const lastRunning = Math.max(0, ...input.tasks.map((t) => t.startedAt ?? 0));
    const streak = input.tasks.filter((t) => failedToStart(t) && t.createdAt > lastRunning).length;
    if (streak >= 3) {
      const backoff = Math.min(5_000 * 2 ** Math.min(streak - 3, 12), 15 * 60_000);
      const since = now - Math.max(...input.tasks.map((t) => t.createdAt));
      if (since < backoff) throttledForMs = backoff - since;
    }
  }

  // 2. start primary tasks up to desired (counting replacements for draining ones), within maxTotal
  const primaryUseful = primaryKeep.filter((t) => !stopping.has(t.name)).length;
  const want = Math.max(0, desired - primaryUseful);
  const room = Math.max(0, maxTotal - total);
  const canStart = primaryCanStart && throttledForMs === undefined ? Math.min(want, room) : 0;
  if (want > 0 && throttledForMs !== undefined && primaryCanStart) addEvent(`${svc} is unable to consistently start tasks successfully.`);
  if (canStart > 0) {
    start.push({ deploymentId: p.id, taskDefinition: p.taskDefinition, count: canStart });
    total += canStart;
  }

  // 3. stop old tasks (older deployments, orphans, and tasks on draining instances) while
  //    the healthy count stays >= minHealthy; non-healthy ones go first (they cost nothing)
  const replaceable = [...oldLive, ...primaryLive.filter((t) => t.onDrainingInstance)].filter((t) => !stopping.has(t.name));
  const oldSorted = [...replaceable].sort((a, b) => Number(healthy(a)) - Number(healthy(b)) || a.createdAt - b.createdAt);
  const primaryHealthy = primaryKeep.filter((t) => !stopping.has(t.name) && healthy(t)).length;
  for (const t of oldSorted) {
    const h = healthy(t);
    const reason = t.onDrainingInstance ? 'Container instance is being drained' : input.deleting ? 'Service is being deleted' : `Task stopped by deployment ${p.id}`;
    if (input.deleting || desired === 0) {
      stopTask(t, reason);
      continue;
    }
    if (!h && !warming(t)) {
      // stopping a pending or UNHEALTHY task never lowers the healthy count
      stopTask(t, reason);
      continue;
    }
    if (!h) {
      // RUNNING and not yet counted (the 40 s rule): it is about to be healthy, so it goes only
      // when the tasks that are healthy already keep the service within its bounds
      if (healthyCount >= minHealthy && (primaryHealthy > 0 || healthyCount >= desired || minPct < 100 || total > maxTotal)) stopTask(t, reason);
      continue;
    }
    if (healthyCount - 1 >= minHealthy && (primaryHealthy > 0 || healthyCount - 1 >= desired || minPct < 100 || total > maxTotal)) {
      stopTask(t, reason);
      healthyCount--;
    }
  }
  for (const t of orphanLive) if (!stopping.has(t.name) && input.deleting) stopTask(t, 'Service is being deleted');

  // ---- deployment bookkeeping
  const after = (t: PlanTask) => live(t) && !stopping.has(t.name);
  for (const d of deployments) {
    const ts = byDeployment(d.id);
    d.runningCount = ts.filter((t) => after(t) && t.lastStatus === 'RUNNING').length;
    d.pendingCount = ts.filter((t) => after(t) && t.lastStatus !== 'RUNNING').length + (d === p ? canStart : 0);
    d.updatedAt = iso(now);
  }
  const hasTasks = (d: Deployment) => byDeployment(d.id).some((t) => live(t) || stoppingStill(t));
  const oldTasksLeft = input.tasks.some((t) => t.deploymentId !== p.id && (after(t) || stoppingStill(t))) || primaryLive.some((t) => t.onDrainingInstance && after(t));
  const primaryHealthyAfter = primaryKeep.filter((t) => after(t) && healthy(t)).length;
  const steady = !oldTasksLeft && p.runningCount === desired && primaryHealthyAfter === desired && p.pendingCount === 0 && stop.length === 0 && start.length === 0;
  if (steady && p.rolloutState === 'IN_PROGRESS') {
    p.rolloutState = 'COMPLETED';
    p.rolloutStateReason = 'ECS deployment completed.';
    if (p.circuitBreaker) p.circuitBreaker = { status: 'MONITORING_COMPLETE', stage: p.circuitBreaker.stage, threshold: p.circuitBreaker.threshold };
  }
  // the history: the PRIMARY, what still has tasks, and the rollback target until the PRIMARY completes
  const target = p.rolloutState === 'COMPLETED' ? undefined : rollbackTarget(deployments, p);
  const kept = deployments.filter((d) => d === p || d === target || hasTasks(d) || (d.runningCount + d.pendingCount > 0));
  for (const d of kept) if (d !== p) d.status = 'ACTIVE';
  const ordered = [p, ...kept.filter((d) => d !== p).sort((a, b) => ms(b.createdAt) - ms(a.createdAt))];

  const runningCount = ordered.reduce((n, d) => n + d.runningCount, 0);
  const pendingCount = ordered.reduce((n, d) => n + d.pendingCount, 0);

  // ---- events (ECS's messages)
  if (stop.length > 0) {
    const names = stop.map((s) => `(task ${s.task})`).join(' ');
    addEvent(`${svc} has stopped ${stop.length} running tasks: ${names}.`);
  }
  if (steady && !input.deleting) {
    const wasSteady = prev.events?.[0]?.message === `${svc} has reached a steady state.`;
    if (!wasSteady || specChanged) addEvent(`${svc} has reached a steady state.`);
  }

  const finished = input.deleting && input.tasks.every((t) => !live(t) || stopping.has(t.name)) && stop.length === 0;
  const serviceState = input.deleting ? (finished ? 'INACTIVE' : 'DRAINING') : 'ACTIVE';

  // ---- conditions (for `kubectl wait --for=condition=Steady` and friends)
  const prevProgress = prevCondition(prev, 'Progressing')?.reason;
  const rollingBack = rolledBackNow || prevProgress === 'RollingBack';
  const failedPrimary = p.rolloutState === 'FAILED';
  const progressing: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> =
    p.rolloutState === 'IN_PROGRESS'
      ? { type: 'Progressing', status: 'True', reason: rollingBack ? 'RollingBack' : 'RolloutInProgress', message: p.rolloutStateReason ?? 'ECS deployment in progress.' }
      : failedPrimary
        ? { type: 'Progressing', status: 'False', reason: 'RolloutFailed', message: p.rolloutStateReason ?? 'the deployment failed' }
        : { type: 'Progressing', status: 'False', reason: rollingBack || prevProgress === 'RolledBack' ? 'RolledBack' : 'RolloutCompleted', message: `deployment ${p.id} (${p.taskDefinition}) completed` };
  const others = ordered.length - 1;
  const steadyCond: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> =
    serviceState !== 'ACTIVE'
      ? { type: 'Steady', status: 'False', reason: serviceState === 'DRAINING' ? 'Draining' : 'Inactive', message: serviceState === 'DRAINING' ? 'the service is being deleted: its tasks are stopping' : 'the service is deleted and all its tasks are stopping or stopped' }
      : steady
        ? { type: 'Steady', status: 'True', reason: 'SteadyState', message: `${desired} of ${desired} tasks running on ${p.taskDefinition}` }
        : oldTasksLeft && others > 0
          ? { type: 'Steady', status: 'False', reason: 'Deploying', message: `rolling to ${p.taskDefinition}: ${p.runningCount} of ${desired} running, ${others} older deployment(s) draining` }
          : { type: 'Steady', status: 'False', reason: p.runningCount < desired ? 'TasksPending' : 'Scaling', message: `${p.runningCount} of ${desired} tasks running, ${p.pendingCount} pending` };
  const conditions = [steadyCond, progressing].map((c) => withTransition(prev, c, now, input.generation));

  const status: ServiceStatus = {
    ...(prev as ServiceStatus),
    status: serviceState,
    conditions,
    desiredCount: desired,
    runningCount,
    pendingCount,
    deployments: ordered,
    events: events.slice(0, MAX_EVENTS),
    observedGeneration: input.generation,
  };
  // the requests acted on (a removed one stays remembered, so giving the same value back forces nothing)
  const restartedAt = input.restart?.restartedAt ?? prev.restart?.restartedAt;
  const annotation = input.restart?.annotation ?? prev.restart?.annotation;
  // the secrets' versions are recorded as they are now (opted out: forgotten, so opting in again restarts nothing)
  const secrets = input.restart?.secrets === undefined ? undefined : mergedVersions(input.restart.secrets, prev.restart?.secrets);
  if (restartedAt !== undefined || annotation !== undefined || secrets !== undefined) {
    status.restart = { ...(restartedAt !== undefined ? { restartedAt } : {}), ...(annotation !== undefined ? { annotation } : {}), ...(secrets !== undefined ? { secrets } : {}) };
  }
  return { start, stop, status, finished, ...(throttledForMs !== undefined ? { throttledForMs } : {}), ...(rollbackTo !== undefined ? { rollbackTo } : {}) };
}

const prevCondition = (prev: Partial<ServiceStatus>, type: string) => prev.conditions?.find((c) => c.type === type);

/** A condition keeps its lastTransitionTime until its status changes (the Kubernetes rule). */
function withTransition(prev: Partial<ServiceStatus>, c: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>, now: number, generation: number): Condition {
  const before = prevCondition(prev, c.type);
  const lastTransitionTime = before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : iso(now);
  return { ...c, lastTransitionTime, observedGeneration: generation };
}

/** A binary heap (smallest first by `less`). */
class Heap<T> {
  private readonly a: T[] = [];
  constructor(private readonly less: (x: T, y: T) => boolean) {}
  get size() {
    return this.a.length;
  }
  push(x: T) {
    const a = this.a;
    a.push(x);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length && last !== undefined) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l], a[m])) m = l;
        if (r < a.length && this.less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * The first `k` tasks to stop when scaling down: tasks not yet RUNNING first, then from the
 * instances holding the most of this service's tasks (keeps the spread balanced), newest
 * first. O(n log n) however many are picked (a heap of instances, each with its tasks newest
 * first), so deleting a 10,000-task service does not stall the event loop.
 */
export function pickForScaleDown(tasks: PlanTask[], k: number): PlanTask[] {
  const load = new Map<string, number>();
  const lists = new Map<string, { pending: PlanTask[]; running: PlanTask[] }>();
  for (const t of tasks) {
    const ci = t.containerInstance ?? '';
    load.set(ci, (load.get(ci) ?? 0) + 1);
    let l = lists.get(ci);
    if (!l) lists.set(ci, (l = { pending: [], running: [] }));
    (t.lastStatus === 'RUNNING' ? l.running : l.pending).push(t);
  }
  const newestFirst = (a: PlanTask, b: PlanTask) => b.createdAt - a.createdAt;
  for (const l of lists.values()) {
    l.pending.sort(newestFirst);
    l.running.sort(newestFirst);
  }
  const out: PlanTask[] = [];
  for (const phase of ['pending', 'running'] as const) {
    // an entry: an instance with the load it had when pushed and the head of its list
    type E = { ci: string; load: number; at: number };
    const heap = new Heap<E>((x, y) => x.load !== y.load ? x.load > y.load : x.at !== y.at ? x.at > y.at : x.ci < y.ci);
    const pos = new Map<string, number>();
    for (const [ci, l] of lists) {
      if (l[phase].length) {
        pos.set(ci, 0);
        heap.push({ ci, load: load.get(ci)!, at: l[phase][0].createdAt });
      }
    }
    while (out.length < k && heap.size) {
      const e = heap.pop()!;
      const l = lists.get(e.ci)![phase];
      const i = pos.get(e.ci)!;
      out.push(l[i]);
      load.set(e.ci, load.get(e.ci)! - 1);
      pos.set(e.ci, i + 1);
      if (i + 1 < l.length) heap.push({ ci: e.ci, load: load.get(e.ci)!, at: l[i + 1].createdAt });
    }
  }
  return out;
}

/** Every task in scale-down order (see `pickForScaleDown`). */
export const orderForScaleDown = (tasks: PlanTask[]) => pickForScaleDown(tasks, tasks.length);
