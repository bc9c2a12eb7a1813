/**
 * The daemon controller's decisions, pure: one task of a daemon on every eligible instance
 * (like Kubernetes' DaemonSet `nodeShouldRunDaemonPod`, split into should-run and
 * should-continue-running), rolled to a new task definition instance by instance (daemons
 * share the instance's `daemon_bridge` namespace, so an old and a new copy cannot both hold
 * a port: stop old, then start new), with at most `maxUnavailable` instances without a
 * running copy at once. On a DRAINING instance the daemon stops last, after the application
 * tasks there.
 */

export interface DaemonInstance {
  id: string;
  status: 'ACTIVE' | 'DRAINING' | 'INACTIVE';
  agentConnected: boolean;
  /** the daemon's placement constraints hold on this instance */
  eligible: boolean;
  /** live non-daemon tasks bound to this instance */
  appTasks: number;
}

export interface DaemonTask {
  name: string;
  containerInstance?: string;
  taskDefinition: string;
  desiredStatus: 'RUNNING' | 'STOPPED';
  lastStatus: string;
}

export interface DaemonPlanInput {
  taskDefinition: string;
  instances: DaemonInstance[];
  tasks: DaemonTask[];
  maxUnavailable?: number;
  deleting: boolean;
}

export interface DaemonPlan {
  /** create one task of `taskDefinition` bound to each of these instances */
  start: Array<{ containerInstance: string; taskDefinition: string }>;
  stop: Array<{ task: string; reason: string }>;
  desiredCount: number;
  runningCount: number;
  pendingCount: number;
  updatedCount: number;
  finished: boolean;
}

/** Should a new copy be placed here? */
export const shouldRun = (i: DaemonInstance) => i.status === 'ACTIVE' && i.eligible;

/** May an existing copy stay? On DRAINING it stays until the application tasks are gone. */
export const shouldContinueRunning = (i: DaemonInstance | undefined) =>
  !!i && i.status !== 'INACTIVE' && (i.status === 'ACTIVE' ? i.eligible : i.appTasks > 0);

const live = (t: DaemonTask) => t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED';

export function planDaemon(input: DaemonPlanInput): DaemonPlan {
  const start: DaemonPlan['start'] = [];
  const stop: DaemonPlan['stop'] = [];
  const byInstance = new Map<string, DaemonTask[]>();
  for (const t of input.tasks) {
    if (!live(t)) continue;
    const key = t.containerInstance ?? '';
    const list = byInstance.get(key) ?? [];
    list.push(t);
    byInstance.set(key, list);
  }
  const instances = new Map(input.instances.map((i) => [i.id, i]));
  const stoppingOn = new Set(input.tasks.filter((t) => t.desiredStatus === 'STOPPED' && t.lastStatus !== 'STOPPED' && t.containerInstance).map((t) => t.containerInstance!));
  // unbound or on unknown instances: they can never run
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
    if (shouldRun(i)) desiredCount++;
    // duplicates (two copies on one instance): keep the newest definition's, oldest first
    const sorted = [...tasks].sort((a, b) => Number(b.taskDefinition === input.taskDefinition) - Number(a.taskDefinition === input.taskDefinition));
    for (const extra of sorted.slice(1)) stop.push({ task: extra.name, reason: 'Duplicate daemon task on the instance' });
    const current = sorted[0];
    if (!current) {
      // a copy still stopping holds the shared namespace's ports: the new one waits for it
      if (stoppingOn.has(i.id)) {
        if (shouldRun(i)) unavailable++;
        continue;
      }
      if (shouldRun(i)) {
        start.push({ containerInstance: i.id, taskDefinition: input.taskDefinition });
        unavailable++;
      }
      continue;
    }
    if (current.lastStatus !== 'RUNNING') unavailable++;
    if (current.taskDefinition !== input.taskDefinition && i.status === 'ACTIVE') rolls.push(i);
  }
  // roll old copies instance by instance within maxUnavailable (stop now, start next round)
  const budget = Math.max(0, (input.maxUnavailable ?? 1) - unavailable);
  for (const i of rolls.slice(0, budget)) {
    const t = (byInstance.get(i.id) ?? [])[0];
    if (t) stop.push({ task: t.name, reason: `Daemon rolling to ${input.taskDefinition}` });
  }
  const liveAll = input.tasks.filter(live);
  const stopping = new Set(stop.map((s) => s.task));
  const remaining = liveAll.filter((t) => !stopping.has(t.name));
  return {
    start,
    stop,
    desiredCount,
    runningCount: remaining.filter((t) => t.lastStatus === 'RUNNING').length,
    pendingCount: remaining.filter((t) => t.lastStatus !== 'RUNNING').length + start.length,
    updatedCount: remaining.filter((t) => t.taskDefinition === input.taskDefinition).length + start.length,
    finished: input.deleting && liveAll.length === 0,
  };
}
