/**
 * The service controller's decisions as one pure function: given a service and the tasks
 * it owns (as observed), what to start, what to stop, and what the status now is. No I/O,
 * no clock (passed in), so every rule is table-tested and the reconcile loop around it only
 * reads, calls this, and writes.
 *
 * ECS semantics: the PRIMARY deployment is held at desiredCount; older deployments drain
 * while the number of healthy tasks stays >= ceil(desired * minimumHealthyPercent / 100)
 * and the number of live tasks stays <= floor(desired * maximumPercent / 100) at every
 * instant. Tasks on DRAINING instances are replaced within the same bounds. The circuit
 * breaker fails a deployment after min(max(ceil(desired / 2), 3), 200) tasks fail to reach
 * RUNNING and, with rollback, makes the previous deployment PRIMARY again.
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
  /** the bound instance is DRAINING (or gone / lost): replace this task */
  onDrainingInstance?: boolean;
  /** HEALTHY / UNHEALTHY / UNKNOWN from the containers' health checks */
  healthStatus?: string;
  /** the task definition has container health checks: it counts as healthy only when HEALTHY */
  hasHealthCheck?: boolean;
  /** when it reached RUNNING (epoch ms), for the health check grace period */
  startedAt?: number;
  createdAt: number;
  /** it stopped without ever reaching RUNNING, or an essential container failed */
  failed?: boolean;
}

export interface PlanInput {
  name: string;
  generation: number;
  spec: ServiceSpec & { desiredCount?: number };
  /** the service's resolved task definition (family:revision) */
  taskDefinition: string;
  status?: Partial<ServiceStatus>;
  tasks: PlanTask[];
  /** being deleted: scale to zero, then report INACTIVE */
  deleting: boolean;
  now: number;
  newId: () => string;
}

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
}

const MAX_EVENTS = 100;

/** min(max(ceil(desired / 2), 3), 200): ECS's circuit breaker threshold */
export const failureThreshold = (desired: number) => Math.min(Math.max(Math.ceil(desired * 0.5), 3), 200);

const live = (t: PlanTask) => t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED';
const running = (t: PlanTask) => live(t) && t.lastStatus === 'RUNNING';

/** Healthy: RUNNING, and HEALTHY when its containers have health checks. */
export function isHealthy(t: PlanTask): boolean {
  if (!running(t)) return false;
  if (t.healthStatus === 'UNHEALTHY') return false;
  return !t.hasHealthCheck || t.healthStatus === 'HEALTHY';
}

/** UNHEALTHY past the health check grace period: ECS stops and replaces it. */
export const isFailingHealth = (t: PlanTask, now: number, graceSeconds: number) =>
  running(t) && t.healthStatus === 'UNHEALTHY' && now - (t.startedAt ?? 0) >= graceSeconds * 1000;

const iso = (ms: number) => new Date(ms).toISOString();
const shortId = (name: string) => name;

export function planService(input: PlanInput): Plan {
  const { spec, now } = input;
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
  let deployments: Deployment[] = (prev.deployments ?? []).map((d) => ({ ...d }));
  let primary = deployments.find((d) => d.status === 'PRIMARY');
  const specChanged = (prev.observedGeneration ?? 0) < input.generation;
  if (!primary || (specChanged && primary.taskDefinition !== input.taskDefinition)) {
    for (const d of deployments) if (d.status === 'PRIMARY') d.status = 'ACTIVE';
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
  }
  primary.desiredCount = desired;

  const byDeployment = (id: string) => input.tasks.filter((t) => t.deploymentId === id);
  // tasks with no (or an unknown) deployment belong to no rollout: treat as old
  const known = new Set(deployments.map((d) => d.id));
  const orphanLive = input.tasks.filter((t) => live(t) && (!t.deploymentId || !known.has(t.deploymentId)));

  // ---- circuit breaker on the primary
  let rolledBackNow = false;
  const cb = dc.deploymentCircuitBreaker;
  const primaryFailed = byDeployment(primary.id).filter((t) => t.failed).length;
  primary.failedTasks = primaryFailed;
  if (cb?.enable && primary.rolloutState === 'IN_PROGRESS' && desired > 0 && primaryFailed >= failureThreshold(desired)) {
    primary.rolloutState = 'FAILED';
    primary.rolloutStateReason = `ECS deployment circuit breaker: tasks failed to start (${primaryFailed} failed).`;
    addEvent(`${svc} (deployment ${primary.id}) deployment failed: tasks failed to start.`);
    const previous = deployments.find((d) => d.status === 'ACTIVE');
    if (cb.rollback && previous) {
      rolledBackNow = true;
      primary.status = 'INACTIVE';
      previous.status = 'PRIMARY';
      previous.desiredCount = desired;
      previous.rolloutState = 'IN_PROGRESS';
      previous.rolloutStateReason = `ECS deployment circuit breaker: rolling back to deploymentId ${previous.id}.`;
      addEvent(`${svc} (deployment ${previous.id}) rolling back to deployment ${previous.id}.`);
      primary = previous;
    }
  }

  const start: StartOrder[] = [];
  const stop: StopOrder[] = [];
  const stopping = new Set<string>();
  const stopTask = (t: PlanTask, reason: string) => {
    if (stopping.has(t.name)) return;
    stopping.add(t.name);
    stop.push({ task: t.name, reason });
  };

  const liveAll = input.tasks.filter(live);
  const primaryLive = liveAll.filter((t) => t.deploymentId === primary!.id);
  const oldLive = liveAll.filter((t) => t.deploymentId !== primary!.id);
  const maxTotal = Math.floor((desired * maxPct) / 100);
  const minHealthy = Math.ceil((desired * minPct) / 100);

  // a failed (no rollback) primary stops being started: it keeps what runs
  const primaryCanStart = primary.rolloutState !== 'FAILED';

  // 0. tasks failing their health checks after the grace period are replaced
  for (const t of liveAll) if (isFailingHealth(t, now, grace)) stopTask(t, 'Task failed container health checks');

  // 1. primary tasks beyond desired: stop pending ones first, then from the most loaded instances
  const primaryKeep = primaryLive.filter((t) => !t.onDrainingInstance);
  if (primaryKeep.length > desired) {
    const extra = orderForScaleDown(primaryKeep).slice(0, primaryKeep.length - desired);
    for (const t of extra) stopTask(t, input.deleting ? 'Service is being deleted' : 'Service scaled down');
  }

  // 2. unhealthy-or-pending old tasks never count toward health: stop them as soon as the
  //    primary can take over (we never lower the healthy count by stopping them)
  let healthy = liveAll.filter((t) => !stopping.has(t.name) && isHealthy(t)).length;
  let total = liveAll.filter((t) => !stopping.has(t.name)).length;

  // 3. start primary tasks up to desired (counting replacements for draining ones), within maxTotal
  const primaryUseful = primaryKeep.filter((t) => !stopping.has(t.name)).length;
  const want = Math.max(0, desired - primaryUseful);
  const room = Math.max(0, maxTotal - total);
  // with maximumPercent 100 and nothing to stop first, ECS still makes progress by stopping before starting
  const canStart = primaryCanStart ? Math.min(want, room) : 0;
  if (canStart > 0) {
    start.push({ deploymentId: primary.id, taskDefinition: primary.taskDefinition, count: canStart });
    total += canStart;
  }

  // 4. stop old tasks (older deployments, orphans, and tasks on draining instances) while
  //    the healthy count stays >= minHealthy; non-healthy ones go first (they cost nothing)
  const replaceable = [...oldLive, ...primaryLive.filter((t) => t.onDrainingInstance)].filter((t) => !stopping.has(t.name));
  const oldSorted = [...replaceable].sort((a, b) => Number(isHealthy(a)) - Number(isHealthy(b)) || a.createdAt - b.createdAt);
  // how many old tasks are surplus: all of them once the primary is at desired and healthy;
  // before that, only as many as the bounds allow
  const primaryHealthy = primaryKeep.filter((t) => !stopping.has(t.name) && isHealthy(t)).length;
  for (const t of oldSorted) {
    const h = isHealthy(t);
    const reason = t.onDrainingInstance
      ? 'Container instance is being drained'
      : input.deleting
        ? 'Service is being deleted'
        : `Task stopped by deployment ${primary.id}`;
    if (input.deleting || desired === 0) {
      stopTask(t, reason);
      continue;
    }
    if (!h) {
      // stopping a not-healthy task never lowers the healthy count; do it when the primary
      // (or the room we have) will replace it, or when it exceeds what we need
      stopTask(t, reason);
      total--;
      continue;
    }
    if (healthy - 1 >= minHealthy && (primaryHealthy > 0 || healthy - 1 >= desired || minPct < 100 || total > maxTotal)) {
      stopTask(t, reason);
      healthy--;
      total--;
    }
  }
  // with maximumPercent == 100 no room to start: make room by stopping within minimumHealthy (done above);
  // the next reconcile starts into the freed room
  for (const t of orphanLive) if (!stopping.has(t.name) && input.deleting) stopTask(t, 'Service is being deleted');

  // ---- deployment bookkeeping
  const after = (t: PlanTask) => live(t) && !stopping.has(t.name);
  for (const d of deployments) {
    const ts = byDeployment(d.id);
    d.runningCount = ts.filter((t) => after(t) && t.lastStatus === 'RUNNING').length;
    d.pendingCount = ts.filter((t) => after(t) && t.lastStatus !== 'RUNNING').length + (d === primary ? canStart : 0);
    d.failedTasks = ts.filter((t) => t.failed).length;
    d.updatedAt = iso(now);
  }
  // old deployments with nothing left are gone (INACTIVE, dropped from the list like ECS);
  // one whose last tasks are being stopped by this very plan stays until the stops land,
  // so the list never reads "one deployment" while old tasks still run
  deployments = deployments.filter((d) => d === primary || d.runningCount + d.pendingCount > 0 || byDeployment(d.id).some(live));
  for (const d of deployments) if (d !== primary) d.status = 'ACTIVE';

  const runningCount = deployments.reduce((n, d) => n + d.runningCount, 0);
  const pendingCount = deployments.reduce((n, d) => n + d.pendingCount, 0);
  const steady = deployments.length === 1 && primary.runningCount === desired && primary.pendingCount === 0 && stop.length === 0 && start.length === 0;
  if (steady && primary.rolloutState === 'IN_PROGRESS') {
    primary.rolloutState = 'COMPLETED';
    primary.rolloutStateReason = 'ECS deployment completed.';
  }

  // ---- events (ECS's messages)
  if (stop.length > 0) {
    const names = stop.map((s) => `(task ${shortId(s.task)})`).join(' ');
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
  const progressing: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> =
    primary.rolloutState === 'IN_PROGRESS'
      ? { type: 'Progressing', status: 'True', reason: rollingBack ? 'RollingBack' : 'RolloutInProgress', message: primary.rolloutStateReason ?? 'ECS deployment in progress.' }
      : primary.rolloutState === 'FAILED'
        ? { type: 'Progressing', status: 'False', reason: 'RolloutFailed', message: primary.rolloutStateReason ?? 'the deployment failed' }
        : { type: 'Progressing', status: 'False', reason: rollingBack || prevProgress === 'RolledBack' ? 'RolledBack' : 'RolloutCompleted', message: `deployment ${primary.id} (${primary.taskDefinition}) completed` };
  const steadyCond: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> =
    serviceState !== 'ACTIVE'
      ? { type: 'Steady', status: 'False', reason: serviceState === 'DRAINING' ? 'Draining' : 'Inactive', message: serviceState === 'DRAINING' ? 'the service is being deleted: its tasks are stopping' : 'the service is deleted and all its tasks are stopping or stopped' }
      : steady
        ? { type: 'Steady', status: 'True', reason: 'SteadyState', message: `${desired} of ${desired} tasks running on ${primary.taskDefinition}` }
        : deployments.length > 1
          ? { type: 'Steady', status: 'False', reason: 'Deploying', message: `rolling to ${primary.taskDefinition}: ${primary.runningCount} of ${desired} running, ${deployments.length - 1} older deployment(s) draining` }
          : { type: 'Steady', status: 'False', reason: primary.runningCount < desired ? 'TasksPending' : 'Scaling', message: `${primary.runningCount} of ${desired} tasks running, ${primary.pendingCount} pending` };
  const conditions = [steadyCond, progressing].map((c) => withTransition(prev, c, now, input.generation));

  const status: ServiceStatus = {
    ...(prev as ServiceStatus),
    status: serviceState,
    conditions,
    desiredCount: desired,
    runningCount,
    pendingCount,
    deployments,
    events: events.slice(0, MAX_EVENTS),
    observedGeneration: input.generation,
  };
  return { start, stop, status, finished };
}

const prevCondition = (prev: Partial<ServiceStatus>, type: string) => prev.conditions?.find((c) => c.type === type);

/** A condition keeps its lastTransitionTime until its status changes (the Kubernetes rule). */
function withTransition(prev: Partial<ServiceStatus>, c: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>, now: number, generation: number): Condition {
  const before = prevCondition(prev, c.type);
  const lastTransitionTime = before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : iso(now);
  return { ...c, lastTransitionTime, observedGeneration: generation };
}

/**
 * Scale-down order: tasks not yet RUNNING first, then from the instances holding the most
 * of this service's tasks (keeps the spread balanced), newest first.
 */
export function orderForScaleDown(tasks: PlanTask[]): PlanTask[] {
  const perInstance = new Map<string, number>();
  for (const t of tasks) perInstance.set(t.containerInstance ?? '', (perInstance.get(t.containerInstance ?? '') ?? 0) + 1);
  const remaining = [...tasks];
  const out: PlanTask[] = [];
  while (remaining.length) {
    remaining.sort((a, b) => {
      const ra = a.lastStatus === 'RUNNING' ? 1 : 0;
      const rb = b.lastStatus === 'RUNNING' ? 1 : 0;
      if (ra !== rb) return ra - rb;
      const la = perInstance.get(a.containerInstance ?? '') ?? 0;
      const lb = perInstance.get(b.containerInstance ?? '') ?? 0;
      if (la !== lb) return lb - la;
      return b.createdAt - a.createdAt;
    });
    const t = remaining.shift()!;
    out.push(t);
    perInstance.set(t.containerInstance ?? '', (perInstance.get(t.containerInstance ?? '') ?? 1) - 1);
  }
  return out;
}
