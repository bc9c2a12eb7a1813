/**
 * The task engine's state machine, pure (after the ECS agent's agent/engine/task_manager.go,
 * docker_task_engine.go and agent/api/task/task.go).
 *
 * Each container has a desired and a known status over NONE < PULLED < CREATED < RUNNING <
 * STOPPED. Desired status only moves forward. `plan(task, now)` decides what to do next for
 * every container (pull, create, start, stop, restart, or mark stopped) honouring dependsOn
 * (START, COMPLETE, SUCCESS, HEALTHY) and the implicit dependencies of links and
 * volumesFrom, essential-container semantics, restart policies and stop timeouts. The caller
 * performs the actions on a ContainerRuntime and feeds results back through `observe` and
 * `actionFailed`. Nothing here does I/O or reads a clock.
 */
import type { ContainerDefinition } from '../../api/taskdefinition.ts';
import { STATUSES, type ContainerStatus, type HealthStatus } from '../runtime/runtime.ts';

export { STATUSES, type ContainerStatus };

export const rank = (s: ContainerStatus): number => STATUSES.indexOf(s);
export const minStatus = (a: ContainerStatus, b: ContainerStatus): ContainerStatus => (rank(a) <= rank(b) ? a : b);
export const maxStatus = (a: ContainerStatus, b: ContainerStatus): ContainerStatus => (rank(a) >= rank(b) ? a : b);

/** Desired status only moves forward: the later of the two. */
export const advanceDesired = (current: ContainerStatus, next: ContainerStatus): ContainerStatus => maxStatus(current, next);

export type DependencyCondition = 'START' | 'COMPLETE' | 'SUCCESS' | 'HEALTHY';

export const ESSENTIAL_EXITED = 'Essential container in task exited';
export const DEFAULT_RESTART_ATTEMPT_PERIOD_S = 300;

export interface EngineContainer {
  name: string;
  essential: boolean;
  desired: ContainerStatus;
  known: ContainerStatus;
  exitCode?: number;
  health: HealthStatus;
  hasHealthCheck: boolean;
  dependsOn: Array<{ containerName: string; condition: DependencyCondition }>;
  /** implicit dependencies: links (need the target RUNNING to start) and volumesFrom (CREATED to create) */
  links: string[];
  volumesFrom: string[];
  restartPolicy?: { enabled: boolean; ignoredExitCodes: number[]; restartAttemptPeriodS: number };
  restartCount: number;
  /** ms epoch of the last transition to RUNNING */
  startedAt?: number;
  stopTimeoutMs: number;
  /** startTimeout: how long dependents wait for this container's COMPLETE/SUCCESS/HEALTHY after it started */
  startTimeoutMs?: number;
  reason?: string;
  /** the action issued and not yet answered; no second action is issued meanwhile */
  pending?: ActionKind;
}

export interface EngineTask {
  arn: string;
  desired: 'RUNNING' | 'STOPPED';
  containers: EngineContainer[];
  stoppedReason?: string;
}

export type ActionKind = 'pull' | 'create' | 'start' | 'stop' | 'restart';

export type Action =
  | { kind: 'pull' | 'create' | 'start' | 'restart'; container: string }
  | { kind: 'stop'; container: string; timeoutMs: number };

export interface Waiting {
  container: string;
  on: string;
  condition: DependencyCondition | 'LINK' | 'VOLUMES_FROM';
}

export interface Plan {
  /** the task with desired statuses advanced and pending actions recorded */
  task: EngineTask;
  actions: Action[];
  waiting: Waiting[];
  /** the task's known status after this plan */
  known: ContainerStatus;
}

/** Build the engine's view of a task from its container definitions. */
export function newEngineTask(arn: string, defs: ContainerDefinition[], defaultStopTimeoutMs: number): EngineTask {
  return {
    arn,
    desired: 'RUNNING',
    containers: defs.map((d) => ({
      name: d.name,
      essential: d.essential ?? true,
      desired: 'RUNNING',
      known: 'NONE',
      health: 'UNKNOWN',
      hasHealthCheck: !!d.healthCheck && d.healthCheck.command[0] !== 'NONE',
      dependsOn: (d.dependsOn ?? []).map((x) => ({ containerName: x.containerName, condition: x.condition })),
      links: (d.links ?? []).map((l) => l.split(':')[0]),
      volumesFrom: (d.volumesFrom ?? []).map((v) => v.sourceContainer),
      restartPolicy: d.restartPolicy?.enabled
        ? {
            enabled: true,
            ignoredExitCodes: d.restartPolicy.ignoredExitCodes ?? [],
            restartAttemptPeriodS: d.restartPolicy.restartAttemptPeriod ?? DEFAULT_RESTART_ATTEMPT_PERIOD_S,
          }
        : undefined,
      restartCount: 0,
      stopTimeoutMs: d.stopTimeout !== undefined ? d.stopTimeout * 1000 : defaultStopTimeoutMs,
      startTimeoutMs: d.startTimeout !== undefined ? d.startTimeout * 1000 : undefined,
    })),
  };
}

/**
 * Task known status: the minimum of its containers' known statuses (STOPPED ranks highest, so
 * an exited non-essential container does not lower it). When an essential container stops,
 * `plan` moves the task's desired status to STOPPED at once; like the ECS agent
 * (task.go updateTaskKnownStatus) the task is reported STOPPED once the others have stopped.
 */
export function taskKnownStatus(task: EngineTask): ContainerStatus {
  if (task.containers.length === 0) return 'NONE';
  return task.containers.map((c) => c.known).reduce(minStatus);
}

type DepState = 'satisfied' | 'waiting' | 'never';

/**
 * Is `dep`'s condition met for starting its dependent? A dependency whose startTimeout passed
 * (measured from its start) without meeting COMPLETE, SUCCESS or HEALTHY can never be met
 * (ECS agent: dependencygraph hasDependencyTimedOut).
 */
export function dependencyState(dep: EngineContainer | undefined, condition: DependencyCondition, now?: number): DepState {
  if (!dep) return 'never';
  const state = conditionState(dep, condition);
  if (state === 'waiting' && condition !== 'START' && now !== undefined && dep.startTimeoutMs && dep.startedAt !== undefined && now > dep.startedAt + dep.startTimeoutMs) {
    return 'never';
  }
  return state;
}

function conditionState(dep: EngineContainer, condition: DependencyCondition): DepState {
  switch (condition) {
    case 'START':
      return rank(dep.known) >= rank('RUNNING') ? 'satisfied' : 'waiting';
    case 'COMPLETE':
      return dep.known === 'STOPPED' ? 'satisfied' : 'waiting';
    case 'SUCCESS':
      if (dep.known !== 'STOPPED') return 'waiting';
      return dep.exitCode === 0 ? 'satisfied' : 'never';
    case 'HEALTHY':
      if (!dep.hasHealthCheck) return 'never';
      if (dep.known === 'RUNNING' && dep.health === 'HEALTHY') return 'satisfied';
      if (dep.known === 'STOPPED' && dep.desired === 'STOPPED') return 'never';
      return 'waiting';
  }
}

/** Should a container that exited be restarted (restart policy, ignored codes, attempt period)? */
export function shouldRestart(c: EngineContainer, now: number): boolean {
  const p = c.restartPolicy;
  if (!p?.enabled || c.known !== 'STOPPED') return false;
  if (c.exitCode !== undefined && p.ignoredExitCodes.includes(c.exitCode)) return false;
  // a container must have run for restartAttemptPeriod before a restart is attempted
  if (c.startedAt === undefined) return false;
  return now - c.startedAt >= p.restartAttemptPeriodS * 1000;
}

const clone = (t: EngineTask): EngineTask => structuredClone(t);

/** Decide the next actions. Pure: returns a new task, never mutates its argument. */
export function plan(input: EngineTask, now: number): Plan {
  const task = clone(input);
  const by = new Map(task.containers.map((c) => [c.name, c]));
  const actions: Action[] = [];
  const waiting: Waiting[] = [];

  // 1. exits: restart, or settle the container's desired status; essential exits stop the task
  for (const c of task.containers) {
    if (c.known !== 'STOPPED' || c.desired === 'STOPPED' || c.pending) continue;
    if (task.desired === 'RUNNING' && shouldRestart(c, now)) {
      c.pending = 'restart';
      c.restartCount++;
      actions.push({ kind: 'restart', container: c.name });
      continue;
    }
    c.desired = 'STOPPED';
    if (c.essential && task.desired === 'RUNNING') {
      task.desired = 'STOPPED';
      task.stoppedReason ??= ESSENTIAL_EXITED;
    }
  }

  // 2. dependencies that can never be met fail their dependents
  if (task.desired === 'RUNNING') {
    for (const c of task.containers) {
      if (c.desired === 'STOPPED' || rank(c.known) >= rank('RUNNING')) continue;
      const never = c.dependsOn.find((d) => dependencyState(by.get(d.containerName), d.condition, now) === 'never');
      if (never) {
        c.desired = 'STOPPED';
        c.reason = `DependencyConditionNotMet: dependency "${never.containerName}" can never satisfy condition ${never.condition}`;
        if (c.essential) {
          task.desired = 'STOPPED';
          task.stoppedReason ??= c.reason;
        }
      }
    }
  }

  // 3. a stopping task stops every container
  if (task.desired === 'STOPPED') for (const c of task.containers) c.desired = advanceDesired(c.desired, 'STOPPED');

  // 4. the transition table
  for (const c of task.containers) {
    if (c.pending) continue;
    if (c.desired === 'STOPPED') {
      if (c.known === 'STOPPED') continue;
      if (rank(c.known) < rank('RUNNING')) {
        // never started: nothing to stop
        c.known = 'STOPPED';
        continue;
      }
      // dependents stop before their dependencies
      const dependents = task.containers.filter(
        (o) => o !== c && o.known !== 'STOPPED' && (o.dependsOn.some((d) => d.containerName === c.name) || o.links.includes(c.name) || o.volumesFrom.includes(c.name)),
      );
      if (dependents.length) {
        for (const d of dependents) waiting.push({ container: c.name, on: d.name, condition: 'COMPLETE' });
        continue;
      }
      c.pending = 'stop';
      actions.push({ kind: 'stop', container: c.name, timeoutMs: c.stopTimeoutMs });
      continue;
    }
    // desired RUNNING
    switch (c.known) {
      case 'NONE':
        c.pending = 'pull';
        actions.push({ kind: 'pull', container: c.name });
        break;
      case 'PULLED': {
        const blockers: Waiting[] = [];
        for (const v of c.volumesFrom) if (rank(by.get(v)?.known ?? 'NONE') < rank('CREATED')) blockers.push({ container: c.name, on: v, condition: 'VOLUMES_FROM' });
        for (const l of c.links) if (rank(by.get(l)?.known ?? 'NONE') < rank('CREATED')) blockers.push({ container: c.name, on: l, condition: 'LINK' });
        for (const d of c.dependsOn) if (dependencyState(by.get(d.containerName), d.condition) !== 'satisfied') blockers.push({ container: c.name, on: d.containerName, condition: d.condition });
        if (blockers.length) waiting.push(...blockers);
        else {
          c.pending = 'create';
          actions.push({ kind: 'create', container: c.name });
        }
        break;
      }
      case 'CREATED': {
        const blockers: Waiting[] = [];
        for (const l of c.links) if (rank(by.get(l)?.known ?? 'NONE') < rank('RUNNING')) blockers.push({ container: c.name, on: l, condition: 'LINK' });
        for (const d of c.dependsOn) if (dependencyState(by.get(d.containerName), d.condition) !== 'satisfied') blockers.push({ container: c.name, on: d.containerName, condition: d.condition });
        if (blockers.length) waiting.push(...blockers);
        else {
          c.pending = 'start';
          actions.push({ kind: 'start', container: c.name });
        }
        break;
      }
      default:
        break;
    }
  }
  return { task, actions, waiting, known: taskKnownStatus(task) };
}

export interface Observation {
  known: ContainerStatus;
  exitCode?: number;
  health?: HealthStatus;
  reason?: string;
  /** ms epoch */
  at: number;
}

/**
 * Record what the runtime reports for a container. Known status moves forward, except that a
 * restart (STOPPED -> RUNNING) is accepted while a restart is pending. Clears the pending action
 * when its result arrives.
 */
export function observe(input: EngineTask, container: string, o: Observation): EngineTask {
  const task = clone(input);
  const c = task.containers.find((x) => x.name === container);
  if (!c) return task;
  const restarting = c.pending === 'restart' && c.known === 'STOPPED' && o.known === 'RUNNING';
  if (restarting || rank(o.known) > rank(c.known)) {
    c.known = o.known;
    if (o.known === 'RUNNING') {
      c.startedAt = o.at;
      c.exitCode = undefined;
    }
  }
  if (o.exitCode !== undefined && c.known === 'STOPPED') c.exitCode = o.exitCode;
  // an inspect that raced a start can arrive after it: a view of an earlier state (CREATED,
  // health UNKNOWN) must not undo what the newer one (RUNNING, HEALTHY) said
  const stale = !restarting && rank(o.known) < rank(c.known);
  if (o.health && !stale) c.health = o.health;
  if (o.reason) c.reason = o.reason;
  const target: Record<ActionKind, ContainerStatus> = { pull: 'PULLED', create: 'CREATED', start: 'RUNNING', restart: 'RUNNING', stop: 'STOPPED' };
  if (c.pending === 'restart') {
    if (restarting) c.pending = undefined;
  } else if (c.pending && rank(c.known) >= rank(target[c.pending])) c.pending = undefined;
  return task;
}

/** An action failed (e.g. CannotPullContainerError): the container stops with that reason. */
export function actionFailed(input: EngineTask, container: string, reason: string): EngineTask {
  const task = clone(input);
  const c = task.containers.find((x) => x.name === container);
  if (!c) return task;
  const wasStop = c.pending === 'stop';
  c.pending = undefined;
  if (wasStop) return task; // retried by the next plan
  c.reason = reason;
  c.known = 'STOPPED';
  c.desired = 'STOPPED';
  if (c.essential && task.desired === 'RUNNING') {
    task.desired = 'STOPPED';
    task.stoppedReason ??= `${ESSENTIAL_EXITED}: ${reason}`;
  }
  return task;
}

/** Ask the task to stop (StopTask, scale-in): desired only moves forward. */
export function requestStop(input: EngineTask, reason: string): EngineTask {
  const task = clone(input);
  if (task.desired !== 'STOPPED') {
    task.desired = 'STOPPED';
    task.stoppedReason ??= reason;
  }
  for (const c of task.containers) c.desired = advanceDesired(c.desired, 'STOPPED');
  return task;
}
