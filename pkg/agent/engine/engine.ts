/**
 * The task engine's state machine, pure (after the ECS agent's agent/engine/task_manager.go,
 * docker_task_engine.go and agent/api/task/task.go).
 *
 * Each container has a desired and a known status over NONE < PULLED < CREATED < RUNNING <
 * STOPPED. Desired status only moves forward; known status only moves forward; the task's
 * known status is the minimum of its containers' and is only ever raised (task.go
 * updateTaskKnownStatus). `plan(task, now)` decides what to do next for every container
 * (pull, create, start, stop, restart) honouring dependsOn (START, COMPLETE, SUCCESS,
 * HEALTHY) and the implicit dependencies of links and volumesFrom, essential-container
 * semantics, restart policies, stop timeouts and retry backoffs. The caller performs the
 * actions on a ContainerRuntime and feeds results back through `observe`, `actionDone` and
 * `actionFailed`. Nothing here does I/O or reads a clock.
 *
 * The ECS agent's rules kept here:
 * - a restart is decided when the exit is observed, BEFORE the container would be marked
 *   STOPPED (task_manager.go handleContainerChange): a restarting container stays RUNNING, so
 *   the task never reports STOPPED and then RUNNING (review D1);
 * - a start whose outcome is unknown (timed out, EOF, inspect failed) is followed by a stop
 *   (task_manager.go handleEventError, ECS issues #1043 and #1708), and a container known
 *   STOPPED that is seen running again is stopped once more ("Stopped container came back;
 *   re-stopping it once") (D2);
 * - a view of an earlier run (an exit observed after the restart that replaced it) changes
 *   nothing (D15);
 * - a failed action is retried only after a backoff the caller chooses (`notBefore`) (D7).
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
/** ECS agent/engine/errors.go ContainerVanishedError */
export const CONTAINER_VANISHED = 'ContainerVanishedError: No container matching saved ID found';
export const DEFAULT_RESTART_ATTEMPT_PERIOD_S = 300;

export type StopCode = 'TaskFailedToStart' | 'EssentialContainerExited';

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
  /** ms epoch (runtime clock) the current run started */
  startedAt?: number;
  /** ms epoch the container last exited */
  finishedAt?: number;
  stopTimeoutMs: number;
  /** startTimeout: how long dependents wait for this container's COMPLETE/SUCCESS/HEALTHY after it started */
  startTimeoutMs?: number;
  reason?: string;
  /** the action issued and not yet answered; no second action is issued meanwhile */
  pending?: ActionKind;
  /** an exit the restart policy turns into a restart: known stays RUNNING until it is done */
  restartDue?: boolean;
  /** a start whose outcome is unknown: stop it even though it never reported RUNNING */
  forceStop?: boolean;
  /** known STOPPED but seen running again: stop it once more */
  cameBack?: boolean;
  /** the one re-stop of a container that came back was issued */
  restopped?: boolean;
  /** no action is issued for this container before this time (ms; a retry backoff) */
  notBefore?: number;
}

export interface EngineTask {
  arn: string;
  desired: 'RUNNING' | 'STOPPED';
  containers: EngineContainer[];
  /** the task's known status: the minimum of its containers', never lowered */
  known: ContainerStatus;
  /** when `known` last rose (ms epoch, the caller's clock) */
  knownAt?: number;
  stoppedReason?: string;
  stopCode?: StopCode;
  /** ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT: pull containers whose dependsOn is not met yet */
  pullDependentUpfront?: boolean;
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
  /** the earliest time a backoff ends: plan again then */
  wakeAt?: number;
}

export interface EngineOptions {
  pullDependentUpfront?: boolean;
}

/** ECS agent/engine/errors.go TaskDependencyError */
export const TASK_DEPENDENCY_ERROR = 'TaskDependencyError: Task dependencies cannot be resolved';

/**
 * A cycle in the task's dependency graph (dependsOn, links and volumesFrom together), or
 * undefined. Registration refuses such task definitions; one registered before that check
 * still never deadlocks here (ECS dependencygraph.ValidDependencies at AddTask).
 */
export function dependencyCycle(defs: ContainerDefinition[]): string[] | undefined {
  const needs = (d: ContainerDefinition) => [
    ...(d.dependsOn ?? []).map((x) => x.containerName),
    ...(d.links ?? []).map((l) => l.split(':')[0]),
    ...(d.volumesFrom ?? []).map((v) => v.sourceContainer),
  ];
  const edges = new Map(defs.map((d) => [d.name, needs(d).filter((x) => x !== d.name)]));
  const state = new Map<string, 1 | 2>();
  let found: string[] | undefined;
  const visit = (n: string, trail: string[]): boolean => {
    if (state.get(n) === 2) return false;
    if (state.get(n) === 1) {
      found = [...trail.slice(trail.indexOf(n)), n];
      return true;
    }
    state.set(n, 1);
    for (const m of edges.get(n) ?? []) if (edges.has(m) && visit(m, [...trail, n])) return true;
    state.set(n, 2);
    return false;
  };
  for (const n of edges.keys()) if (visit(n, [])) break;
  return found;
}

/** Build the engine's view of a task from its container definitions. */
export function newEngineTask(arn: string, defs: ContainerDefinition[], defaultStopTimeoutMs: number, opts: EngineOptions = {}): EngineTask {
  const cycle = dependencyCycle(defs);
  const task = buildEngineTask(arn, defs, defaultStopTimeoutMs, opts);
  if (!cycle) return task;
  return requestStop({ ...task, stopCode: 'TaskFailedToStart' }, `${TASK_DEPENDENCY_ERROR} (${cycle.join(' -> ')})`);
}

function buildEngineTask(arn: string, defs: ContainerDefinition[], defaultStopTimeoutMs: number, opts: EngineOptions): EngineTask {
  return {
    arn,
    desired: 'RUNNING',
    known: 'NONE',
    ...(opts.pullDependentUpfront ? { pullDependentUpfront: true } : {}),
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

/** The minimum of the containers' known statuses (STOPPED ranks highest, so an exited non-essential container does not lower it). */
export function containersKnownStatus(task: EngineTask): ContainerStatus {
  if (task.containers.length === 0) return 'NONE';
  return task.containers.map((c) => c.known).reduce(minStatus);
}

/**
 * Task known status: the minimum of its containers' known statuses, never below what it was
 * (ECS task.go: "only ever raised"). When an essential container stops, `plan` moves the
 * task's desired status to STOPPED at once; the task is reported STOPPED once the others
 * have stopped.
 */
export function taskKnownStatus(task: EngineTask): ContainerStatus {
  return maxStatus(task.known ?? 'NONE', containersKnownStatus(task));
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

/**
 * Should an exit with `exitCode` observed at `now` restart the container (ECS
 * RestartTracker.ShouldRestart: policy enabled, an exit code, not an ignored one, and the run
 * lasted at least restartAttemptPeriod)?
 */
export function shouldRestart(c: EngineContainer, exitCode: number | undefined, now: number): boolean {
  const p = c.restartPolicy;
  if (!p?.enabled || c.desired === 'STOPPED') return false;
  if (exitCode === undefined || p.ignoredExitCodes.includes(exitCode)) return false;
  if (c.startedAt === undefined) return false;
  return now - c.startedAt >= p.restartAttemptPeriodS * 1000;
}

const clone = (t: EngineTask): EngineTask => structuredClone(t);

/** The task stops: desired STOPPED with the first reason and stop code (desired only moves forward). */
function stopTask(task: EngineTask, reason: string, code?: StopCode): void {
  if (task.desired !== 'RUNNING') return;
  task.desired = 'STOPPED';
  task.stoppedReason ??= reason;
  if (code) task.stopCode ??= code;
}

/** Decide the next actions. Pure: returns a new task, never mutates its argument. */
export function plan(input: EngineTask, now: number): Plan {
  const task = clone(input);
  const by = new Map(task.containers.map((c) => [c.name, c]));
  const actions: Action[] = [];
  const waiting: Waiting[] = [];
  let wakeAt: number | undefined;
  const ranBefore = rank(task.known ?? 'NONE') >= rank('RUNNING');

  // 1. exits settle the container's desired status; essential exits stop the task
  for (const c of task.containers) {
    if (c.known !== 'STOPPED' || c.desired === 'STOPPED' || c.pending) continue;
    c.desired = 'STOPPED';
    if (c.essential) stopTask(task, ESSENTIAL_EXITED, c.startedAt !== undefined || ranBefore ? 'EssentialContainerExited' : 'TaskFailedToStart');
  }

  // 2. dependencies that can never be met fail their dependents
  if (task.desired === 'RUNNING') {
    for (const c of task.containers) {
      if (c.desired === 'STOPPED' || rank(c.known) >= rank('RUNNING')) continue;
      const never = c.dependsOn.find((d) => dependencyState(by.get(d.containerName), d.condition, now) === 'never');
      if (never) {
        c.desired = 'STOPPED';
        c.reason = `DependencyConditionNotMet: dependency "${never.containerName}" can never satisfy condition ${never.condition}`;
        if (c.essential) stopTask(task, c.reason, ranBefore ? undefined : 'TaskFailedToStart');
      }
    }
  }

  // 3. a stopping task stops every container
  if (task.desired === 'STOPPED') for (const c of task.containers) c.desired = advanceDesired(c.desired, 'STOPPED');

  // 4. the transition table
  for (const c of task.containers) {
    if (c.pending) continue;
    if (c.notBefore !== undefined && c.notBefore > now) {
      wakeAt = Math.min(wakeAt ?? Infinity, c.notBefore);
      continue;
    }
    if (c.cameBack) {
      c.cameBack = false;
      c.restopped = true;
      c.pending = 'stop';
      actions.push({ kind: 'stop', container: c.name, timeoutMs: c.stopTimeoutMs });
      continue;
    }
    if (c.desired === 'STOPPED') {
      if (c.known === 'STOPPED') continue;
      if (rank(c.known) < rank('RUNNING') && !c.forceStop) {
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
    if (c.restartDue) {
      c.restartDue = false;
      c.pending = 'restart';
      c.restartCount++;
      actions.push({ kind: 'restart', container: c.name });
      continue;
    }
    const deps = (): Waiting[] =>
      c.dependsOn.filter((d) => dependencyState(by.get(d.containerName), d.condition) !== 'satisfied').map((d) => ({ container: c.name, on: d.containerName, condition: d.condition }));
    switch (c.known) {
      case 'NONE': {
        // ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT=false (the default): pull once dependsOn is met
        const blockers = task.pullDependentUpfront ? [] : deps();
        if (blockers.length) waiting.push(...blockers);
        else {
          c.pending = 'pull';
          actions.push({ kind: 'pull', container: c.name });
        }
        break;
      }
      case 'PULLED': {
        const blockers: Waiting[] = [];
        for (const v of c.volumesFrom) if (rank(by.get(v)?.known ?? 'NONE') < rank('CREATED')) blockers.push({ container: c.name, on: v, condition: 'VOLUMES_FROM' });
        for (const l of c.links) if (rank(by.get(l)?.known ?? 'NONE') < rank('CREATED')) blockers.push({ container: c.name, on: l, condition: 'LINK' });
        blockers.push(...deps());
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
        blockers.push(...deps());
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

  // 5. the task's known status only rises
  const known = maxStatus(task.known ?? 'NONE', containersKnownStatus(task));
  if (known !== task.known) {
    task.known = known;
    task.knownAt = now;
  }
  return { task, actions, waiting, known, ...(wakeAt !== undefined ? { wakeAt } : {}) };
}

export interface Observation {
  /** CREATED, RUNNING or STOPPED as the runtime reports it (PULLED after a pull) */
  known: ContainerStatus;
  exitCode?: number;
  health?: HealthStatus;
  reason?: string;
  /** when it was observed (ms epoch, the caller's clock): restart decisions use it */
  at: number;
  /** the runtime's start time of the run this view is about (ms epoch) */
  startedAt?: number;
  /** the runtime's exit time (or a die event's time) */
  finishedAt?: number;
  /** the container no longer exists: it stopped, and nothing restarts it */
  vanished?: boolean;
}

/**
 * Record what the runtime reports for a container. Known status only moves forward. An
 * exit that the restart policy restarts leaves the container RUNNING with a restart due; an
 * exit or a start of an earlier run than the current one is ignored; a container known
 * STOPPED that is seen running again is marked to be stopped once more.
 */
export function observe(input: EngineTask, container: string, o: Observation): EngineTask {
  const task = clone(input);
  const c = task.containers.find((x) => x.name === container);
  if (!c) return task;
  const run = c.startedAt;
  // a view of an earlier run than the current one (taken before a restart, landing after it)
  if (run !== undefined && o.startedAt !== undefined && o.startedAt < run) return task;
  if (run !== undefined && o.known === 'STOPPED' && o.startedAt === undefined && o.finishedAt !== undefined && o.finishedAt < run && !o.vanished) return task;

  if (o.known === 'STOPPED') {
    if (c.known === 'STOPPED') {
      if (c.exitCode === undefined && o.exitCode !== undefined) c.exitCode = o.exitCode;
      if (!c.reason && o.reason) c.reason = o.reason;
      return task;
    }
    const restarting = c.restartDue || c.pending === 'restart';
    if (restarting && !o.vanished) {
      // the exit being restarted, seen again; a later run's exit comes with a later start
      if (o.startedAt === undefined || run === undefined || o.startedAt <= run) return task;
      c.startedAt = o.startedAt;
      c.restartDue = false;
    }
    if (o.exitCode !== undefined) c.exitCode = o.exitCode;
    if (o.reason) c.reason = o.reason;
    c.finishedAt = o.finishedAt ?? o.at;
    if (!o.vanished && c.known === 'RUNNING' && c.pending !== 'stop' && task.desired === 'RUNNING' && shouldRestart(c, o.exitCode, o.at)) {
      // ECS restarts before it would record STOPPED: the container is never known STOPPED
      c.restartDue = true;
      return task;
    }
    c.known = 'STOPPED';
    c.restartDue = false;
    return task;
  }

  if (o.known === 'RUNNING') {
    if (c.known === 'STOPPED') {
      // came back: a start that timed out but happened, or a start behind the agent's back
      if (!c.restopped && !c.pending) c.cameBack = true;
      return task;
    }
    if (c.known === 'RUNNING') {
      if (o.startedAt !== undefined && (run === undefined || o.startedAt > run)) {
        // a new run: the restart happened
        c.startedAt = o.startedAt;
        c.restartDue = false;
        c.exitCode = undefined;
      }
      if (o.health) c.health = o.health;
      if (o.reason) c.reason = o.reason;
      return task;
    }
    c.known = 'RUNNING';
    c.startedAt = o.startedAt ?? o.at;
    c.exitCode = undefined;
    if (o.health) c.health = o.health;
    if (o.reason) c.reason = o.reason;
    return task;
  }

  // CREATED / PULLED: forward only; a view of an earlier state (CREATED, health UNKNOWN) must
  // not undo what a newer one (RUNNING, HEALTHY) said
  if (rank(o.known) > rank(c.known)) {
    c.known = o.known;
    if (o.health) c.health = o.health;
  }
  if (o.reason && rank(o.known) >= rank(c.known)) c.reason = o.reason;
  return task;
}

/** The action issued for a container finished; a finished stop leaves it STOPPED. */
export function actionDone(input: EngineTask, container: string, kind: ActionKind, at: number): EngineTask {
  const task = clone(input);
  const c = task.containers.find((x) => x.name === container);
  if (!c || c.pending !== kind) return task;
  c.pending = undefined;
  c.notBefore = undefined;
  if (kind === 'stop') {
    c.forceStop = false;
    c.restartDue = false;
    if (c.known !== 'STOPPED') {
      c.known = 'STOPPED';
      c.finishedAt ??= at;
    }
  }
  return task;
}

export interface FailureOptions {
  /** the outcome is unknown (timeout, EOF, inspect failed): the container may run; stop it */
  uncertain?: boolean;
  /** a failed stop: retry no earlier than this (ms epoch) */
  notBefore?: number;
  /** the failure stops the whole task, even for a non-essential container (a failed pull with ECS_IMAGE_PULL_BEHAVIOR always/once) */
  stopsTask?: boolean;
}

/** An action failed (e.g. CannotPullContainerError): the container stops with that reason. */
export function actionFailed(input: EngineTask, container: string, kind: ActionKind, reason: string, o: FailureOptions = {}): EngineTask {
  const task = clone(input);
  const c = task.containers.find((x) => x.name === container);
  if (!c) return task;
  if (c.pending === kind) c.pending = undefined;
  if (kind === 'stop') {
    // the container's state is unchanged: the next plan retries once the backoff is over
    c.notBefore = o.notBefore;
    return task;
  }
  c.reason = reason;
  c.desired = 'STOPPED';
  const ran = c.startedAt !== undefined;
  if (o.uncertain && (kind === 'start' || kind === 'restart')) c.forceStop = true;
  else if (kind === 'restart') c.known = 'STOPPED';
  else if (rank(c.known) < rank('RUNNING')) c.known = 'STOPPED';
  if (c.essential || o.stopsTask) {
    const ranBefore = rank(task.known ?? 'NONE') >= rank('RUNNING');
    stopTask(task, kind === 'restart' ? ESSENTIAL_EXITED : reason, ran || ranBefore ? 'EssentialContainerExited' : 'TaskFailedToStart');
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
