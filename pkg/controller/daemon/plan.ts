/**
 * The daemon controller's decisions, pure: one task of a daemon on every eligible instance
 * (like Kubernetes' DaemonSet `nodeShouldRunDaemonPod`, split into should-run and
 * should-continue-running), rolled to a new task definition instance by instance (daemons
 * share the instance's `daemon_bridge` namespace, so an old and a new copy cannot both hold
 * a port: stop old, then start new), with at most `maxUnavailable` instances without a
 * running copy at once. On a DRAINING instance the daemon stops last, after the application
 * tasks there.
 *
 * Beyond DaemonSet's shape:
 * - Eligible means ACTIVE, matching the daemon's constraints, and with a connected agent.
 *   An instance whose agent is gone neither wants a copy nor counts as unavailable (its
 *   copy cannot stop or start until the agent returns), so it never freezes a roll.
 * - "Cannot place": where the daemon does not fit (the instance is full) no copy is
 *   created; the instance is reported once and looked at again when room is freed.
 * - Backoff per (daemon, instance): after a copy failed there (the binder refused it, or it
 *   stopped without being asked), the next attempt waits (Kubernetes' failedPodsBackoff).
 *   A copy that failed is acknowledged (asked to stop, with its reason), so no task is left
 *   desired RUNNING and STOPPED.
 * - Out-of-budget replacement: an old copy that is not available (not RUNNING) is replaced
 *   whatever the budget (DaemonSet's `allowedReplacementPods`): it costs no availability.
 */

export interface DaemonInstance {
  id: string;
  status: 'ACTIVE' | 'DRAINING' | 'INACTIVE';
  agentConnected: boolean;
  /** the daemon's placement constraints hold on this instance */
  eligible: boolean;
  /** live non-daemon tasks bound to this instance */
  appTasks: number;
  /** why a new copy would not fit here now (undefined: it fits, or its demand is unknown) */
  noFit?: { reason: string; detail: string };
  /** a failed attempt here: the next waits until then (epoch ms) */
  backoffUntil?: number;
}

export interface DaemonTask {
  name: string;
  containerInstance?: string;
  /** an unbound copy's instance (the nominated-instance annotation) */
  nominated?: string;
  taskDefinition: string;
  desiredStatus: 'RUNNING' | 'STOPPED';
  lastStatus: string;
  /** why it stopped (status.stoppedReason) */
  stoppedReason?: string;
}

export interface DaemonPlanInput {
  taskDefinition: string;
  instances: DaemonInstance[];
  tasks: DaemonTask[];
  /** instances that may be without a running copy at once during a roll (default 1) */
  maxUnavailable?: number;
  deleting: boolean;
  /** epoch ms, for the backoffs */
  now?: number;
}

export interface DaemonPlan {
  /** create one task of `taskDefinition` bound to each of these instances */
  start: Array<{ containerInstance: string; taskDefinition: string }>;
  /** bind these pending (unbound) copies to their instance again */
  bind: Array<{ task: string; containerInstance: string }>;
  stop: Array<{ task: string; reason: string }>;
  /** copies that failed on their instance: asked to stop (acknowledged), and the instance backs off */
  failed: Array<{ task: string; containerInstance: string; reason: string }>;
  /** instances where the daemon belongs but does not fit */
  cannotPlace: Array<{ containerInstance: string; reason: string; detail: string }>;
  /** the earliest backoff that holds something back (epoch ms), to look again then */
  nextAttemptAt?: number;
  desiredCount: number;
  runningCount: number;
  pendingCount: number;
  updatedCount: number;
  finished: boolean;
}

/** Should a new copy be placed here? ACTIVE, eligible, and with a connected agent. */
export const shouldRun = (i: DaemonInstance) => i.status === 'ACTIVE' && i.eligible && i.agentConnected;

/** May an existing copy stay? On DRAINING it stays until the application tasks are gone. */
export const shouldContinueRunning = (i: DaemonInstance | undefined) =>
  !!i && i.status !== 'INACTIVE' && (i.status === 'ACTIVE' ? i.eligible : i.appTasks > 0);

const live = (t: DaemonTask) => t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED';
/** stopped without being asked: it failed on its instance */
const failedCopy = (t: DaemonTask) => t.desiredStatus === 'RUNNING' && t.lastStatus === 'STOPPED';

/** DAEMON services: instances that may lack a running copy = desired - ceil(desired * minimumHealthyPercent / 100), at least 1. */
export const daemonServiceMaxUnavailable = (desired: number, minimumHealthyPercent = 0) => Math.max(1, desired - Math.ceil((desired * minimumHealthyPercent) / 100));

export function planDaemon(input: DaemonPlanInput): DaemonPlan {
  const start: DaemonPlan['start'] = [];
  const bind: DaemonPlan['bind'] = [];
  const stop: DaemonPlan['stop'] = [];
  const failed: DaemonPlan['failed'] = [];
  const cannotPlace: DaemonPlan['cannotPlace'] = [];
  let nextAttemptAt: number | undefined;
  const later = (at: number) => (nextAttemptAt = Math.min(nextAttemptAt ?? at, at));
  const instances = new Map(input.instances.map((i) => [i.id, i]));
  const byInstance = new Map<string, DaemonTask[]>();
  const failedOn = new Set<string>();
  for (const t of input.tasks) {
    const where = t.containerInstance ?? t.nominated ?? '';
    if (failedCopy(t) && t.containerInstance) {
      failed.push({ task: t.name, containerInstance: t.containerInstance, reason: `Daemon task failed on its instance: ${t.stoppedReason ?? 'it stopped'}` });
      failedOn.add(t.containerInstance);
      continue;
    }
    if (!live(t)) continue;
    const list = byInstance.get(where) ?? [];
    list.push(t);
    byInstance.set(where, list);
  }
  const stoppingOn = new Set(input.tasks.filter((t) => t.desiredStatus === 'STOPPED' && t.lastStatus !== 'STOPPED' && t.containerInstance).map((t) => t.containerInstance!));
  // unbound without a nomination, or on unknown instances: they can never run
  for (const [ci, list] of byInstance) {
    if (ci && instances.has(ci)) continue;
    for (const t of list) stop.push({ task: t.name, reason: ci ? 'Container instance is gone' : 'Daemon task is not bound to an instance' });
  }
  let desiredCount = 0;
  let unavailable = 0;
  const rolls: DaemonInstance[] = [];
  for (const i of input.instances) {
    const tasks = byInstance.get(i.id) ?? [];
    const keep = !input.deleting && shouldContinueRunning(i);
    if (!keep) {
      for (const t of tasks) stop.push({ task: t.name, reason: input.deleting ? 'Daemon is being deleted' : i.status === 'DRAINING' ? 'Container instance is being drained' : 'Instance no longer eligible for the daemon' });
      continue;
    }
    const wanted = shouldRun(i);
    if (wanted) desiredCount++;
    // duplicates (two copies on one instance): keep the newest definition's, bound before unbound
    const rank = (t: DaemonTask) => Number(t.taskDefinition === input.taskDefinition) * 2 + Number(!!t.containerInstance);
    const sorted = [...tasks].sort((a, b) => rank(b) - rank(a));
    for (const extra of sorted.slice(1)) stop.push({ task: extra.name, reason: 'Duplicate daemon task on the instance' });
    const current = sorted[0];
    const inBackoff = i.backoffUntil !== undefined && i.backoffUntil > (input.now ?? 0);
    if (!current) {
      if (!wanted) continue;
      unavailable++;
      // a copy still stopping holds the shared namespace's ports: the new one waits for it
      if (stoppingOn.has(i.id)) continue;
      if (failedOn.has(i.id) || inBackoff) {
        if (i.backoffUntil !== undefined) later(i.backoffUntil);
        continue;
      }
      if (i.noFit) {
        cannotPlace.push({ containerInstance: i.id, ...i.noFit });
        continue;
      }
      start.push({ containerInstance: i.id, taskDefinition: input.taskDefinition });
      continue;
    }
    if (!current.containerInstance) {
      // a pending copy the binder refused: bind it again once the backoff is over
      if (wanted) unavailable++;
      if (!wanted) continue;
      if (inBackoff) later(i.backoffUntil!);
      else if (i.noFit) cannotPlace.push({ containerInstance: i.id, ...i.noFit });
      else bind.push({ task: current.name, containerInstance: i.id });
      continue;
    }
    // an instance whose agent is gone counts for nothing: its copy can neither stop nor start now
    if (!i.agentConnected) continue;
    const available = current.lastStatus === 'RUNNING';
    if (!available && wanted) unavailable++;
    if (current.taskDefinition !== input.taskDefinition && i.status === 'ACTIVE') {
      // an old copy that is not available is replaced outside the budget: it costs no availability
      if (!available) stop.push({ task: current.name, reason: `Daemon rolling to ${input.taskDefinition}` });
      else rolls.push(i);
    }
  }
  // roll old copies instance by instance within maxUnavailable (stop now, start next round)
  const budget = Math.max(0, (input.maxUnavailable ?? 1) - unavailable);
  for (const i of rolls.slice(0, budget)) {
    const t = (byInstance.get(i.id) ?? []).find((x) => x.containerInstance === i.id);
    if (t) stop.push({ task: t.name, reason: `Daemon rolling to ${input.taskDefinition}` });
  }
  const liveAll = input.tasks.filter(live);
  const stopping = new Set(stop.map((s) => s.task));
  const remaining = liveAll.filter((t) => !stopping.has(t.name));
  return {
    start,
    bind,
    stop,
    failed,
    cannotPlace,
    ...(nextAttemptAt !== undefined ? { nextAttemptAt } : {}),
    desiredCount,
    runningCount: remaining.filter((t) => t.lastStatus === 'RUNNING').length,
    pendingCount: remaining.filter((t) => t.lastStatus !== 'RUNNING').length + start.length,
    updatedCount: remaining.filter((t) => t.taskDefinition === input.taskDefinition).length + start.length,
    finished: input.deleting && liveAll.length === 0,
  };
}
