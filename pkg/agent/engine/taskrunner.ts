/**
 * One writer per task: drives the pure state machine (engine.ts) against a ContainerRuntime,
 * as the ECS agent's managedTask does.
 *
 * - Records each container's runtime name in the checkpoint BEFORE creating it (the write
 *   begins with the container's pull and the create waits for it), and its id right after (the
 *   start does not wait for that write; every later write carries the id); persists the task's
 *   state (known/desired status, when reached, exits) on every change, and restores it on
 *   start, so a restarted agent continues where it was.
 * - On start adopts the task's containers by label (never creating a duplicate); a container
 *   whose recorded id Docker no longer has vanished (ECS ContainerVanishedError) and is not
 *   created again (review D3).
 * - Runtime events drive it: the container is re-inspected (not for the echo of the runner's
 *   own pending create or start, which inspects once Docker answers), and when that fails the
 *   event is authoritative (a die event's exit code, ECS setExitCodeFromEvent). Every stream
 *   (re)connect re-lists, and a steady-state check re-inspects every container on its own
 *   schedule (ECS: every 5 min +/- 30 s) so a missed event is caught (D8).
 * - Failed actions: a create that timed out is retried by name (409 is the idempotency check);
 *   a start whose outcome is unknown is followed by a stop (D2); a failed stop is assumed done
 *   when Docker answers a ping, and retried with backoff when it does not (ECS
 *   handleContainerStoppedTransitionError) (D7).
 */
import { registryAuth, resolveContainerSecrets, type SecretReader } from '../secrets.ts';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { isRuntimeError } from '../../errors/errors.ts';
import { silentLogger } from '../../log/log.ts';
import { Backoff, retry, STOP_BACKOFF, type BackoffOptions } from '../backoff.ts';
import type { Checkpoint, CheckpointTask } from '../checkpoint.ts';
import type { ImagesInUse } from '../imageuse.ts';
import {
  LABELS,
  containerRuntimeName,
  statusRank,
  type ContainerRuntime,
  type HealthStatus,
  type NetworkBinding,
  type RegistryAuth,
  type RuntimeContainer,
  type RuntimeEvent,
  type RuntimeTask,
  type TaskResources,
} from '../runtime/runtime.ts';
import {
  CONTAINER_VANISHED,
  actionDone,
  actionFailed,
  newEngineTask,
  observe,
  plan,
  requestStop,
  taskKnownStatus,
  type Action,
  type ContainerStatus,
  type EngineContainer,
  type EngineTask,
  type StopCode,
  type Waiting,
} from './engine.ts';

export interface ContainerReport {
  name: string;
  runtimeName?: string;
  runtimeId?: string;
  known: ContainerStatus;
  desired: ContainerStatus;
  exitCode?: number;
  reason?: string;
  health: HealthStatus;
  restartCount: number;
  networkBindings: NetworkBinding[];
  image: string;
}

export interface TaskReport {
  taskArn: string;
  known: ContainerStatus;
  /** when `known` was reached (ms epoch) */
  knownAt?: number;
  desired: 'RUNNING' | 'STOPPED';
  stoppedReason?: string;
  stopCode?: StopCode;
  ipAddress?: string;
  containers: ContainerReport[];
  waiting: Waiting[];
}

export interface TaskRunnerDeps {
  runtime: ContainerRuntime;
  checkpoint: Checkpoint;
  /** instance default stop timeout (ECS_CONTAINER_STOP_TIMEOUT) */
  defaultStopTimeoutMs: number;
  logger?: Logger;
  now?: () => number;
  random?: () => string;
  /** how often to re-plan while containers wait on dependencies (default 1000 ms) */
  recheckMs?: number;
  /** steady-state check: every container is re-inspected this often (default 5 min, ECS) ... */
  steadyStateMs?: number;
  /** ... plus or minus up to this (default 30 s) */
  steadyStateJitterMs?: number;
  /** backoff between stops while Docker does not answer (default ECS's stop backoff) */
  stopBackoff?: BackoffOptions;
  /** a create that timed out is retried by name this many times in all (default 3) */
  createAttempts?: number;
  createBackoff?: BackoffOptions;
  /** ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT */
  pullDependentUpfront?: boolean;
  /** images about to be used: held from before a container's pull until it exists, so image cleanup keeps them (R2-8) */
  images?: ImagesInUse;
  /** resolves repositoryCredentials.credentialsParameter (default: through `secrets`) */
  resolveRepositoryCredentials?: (parameter: string) => Promise<RegistryAuth>;
  /** reads berth Secrets with the node's identity: secrets, environmentFiles, secretOptions, repositoryCredentials */
  secrets?: SecretReader;
}

const CREATE_BACKOFF: BackoffOptions = { minMs: 1000, maxMs: 5000, multiplier: 2, jitter: 0.2 };

/**
 * Is a runtime event only the echo of this runner's own create or start, so that inspecting the
 * container for it would tell nothing new? A create event while the create is pending (or of the
 * container the create made), a start event while the start (or restart) is pending: the
 * action inspects the container itself once Docker has answered, after the event, so it sees
 * at least what the event saw. Every other event (die, stop, oom, health_status, destroy, one
 * of a container this runner does not know) is inspected as before. Each echo's inspect was
 * one more call into a daemon busy starting containers (two per container; a start event's
 * inspect waits for the start to finish).
 */
export function echoesAction(c: Pick<EngineContainer, 'pending' | 'known'> | undefined, e: Pick<RuntimeEvent, 'action' | 'id'>, knownId: string | undefined): boolean {
  if (!c) return false;
  if (e.action === 'create') return c.pending === 'create' || (knownId === e.id && statusRank(c.known) >= statusRank('CREATED'));
  if (e.action === 'start') return knownId === e.id && (c.pending === 'start' || c.pending === 'restart');
  return false;
}

export class TaskRunner {
  private state: EngineTask;
  private waiting: Waiting[] = [];
  private readonly names: Record<string, string> = {};
  /** a container's name being recorded (begun with its pull, awaited by its create) */
  private readonly naming = new Map<string, Promise<string>>();
  private readonly ids: Record<string, string> = {};
  private readonly seen: Record<string, RuntimeContainer> = {};
  private readonly stopBackoffs: Record<string, Backoff> = {};
  private resources?: Promise<TaskResources>;
  /** the task's own address (awsvpc: its namespace container's), which its containers do not show */
  private taskIp?: string;
  private chain: Promise<void> = Promise.resolve();
  private listeners = new Set<(r: TaskReport) => void>();
  private offEvents?: () => void;
  private closed = false;
  private tick?: NodeJS.Timeout;
  private steady?: NodeJS.Timeout;
  private readonly inflight = new Set<Promise<void>>();
  /** per container, its hold on its image while its container does not exist yet (R2-8) */
  private readonly imageHolds = new Map<string, Promise<() => void>>();
  private readonly log: Logger;
  private readonly now: () => number;
  private persisted = '';
  private persisting: Promise<void> = Promise.resolve();
  private tornDown = false;
  /** cleaned up: nothing is written for it any more */
  private gone = false;

  constructor(
    readonly task: RuntimeTask,
    private readonly deps: TaskRunnerDeps,
  ) {
    this.state = newEngineTask(task.taskArn, task.containers, deps.defaultStopTimeoutMs, { pullDependentUpfront: deps.pullDependentUpfront });
    this.log = (deps.logger ?? silentLogger()).child({ component: 'task-runner', task: task.taskArn });
    this.now = deps.now ?? Date.now;
    this.traced = this.log.isLevelEnabled('debug');
  }

  /** debug logging on: the start path's stages are logged with their times (bench:docker --profile) */
  private readonly traced: boolean;
  private lastKnown?: ContainerStatus;

  private trace(stage: string, fields: Record<string, unknown> = {}): void {
    if (this.traced) this.log.debug({ stage, ...fields }, 'task stage');
  }

  /** Restore the checkpointed state, adopt what exists, subscribe to events, and start driving. */
  async start(): Promise<void> {
    this.trace('runner');
    const ck = this.deps.checkpoint.task(this.task.taskArn);
    if (ck) this.restore(ck);
    this.persisted = this.persistKey();
    this.offEvents = this.deps.runtime.onEvent((e) => this.onEvent(e));
    try {
      await this.adopt();
    } catch (e) {
      this.offEvents();
      this.offEvents = undefined;
      throw e;
    }
    this.trace('adopted');
    this.kick();
    this.armSteadyState();
  }

  private restore(ck: CheckpointTask): void {
    Object.assign(this.names, ck.containerNames);
    Object.assign(this.ids, ck.dockerIds);
    const s = this.state;
    if (ck.known) s.known = ck.known;
    if (ck.knownAt !== undefined) s.knownAt = ck.knownAt;
    if (ck.stoppedReason) s.stoppedReason = ck.stoppedReason;
    if (ck.stopCode) s.stopCode = ck.stopCode as StopCode;
    for (const c of s.containers) {
      const saved = ck.containers?.[c.name];
      if (!saved) continue;
      if (saved.known) c.known = saved.known;
      c.exitCode = saved.exitCode;
      c.reason = saved.reason;
      c.restartCount = saved.restartCount ?? 0;
      c.startedAt = saved.startedAt;
      c.finishedAt = saved.finishedAt;
    }
    if (ck.desiredStatus === 'STOPPED') this.state = requestStop(s, ck.stoppedReason ?? 'Task stopped');
  }

  /** Is this container ours: labelled with our instance, or (created before that label existed) recorded in our checkpoint? */
  private owns(c: Pick<RuntimeContainer, 'id' | 'name' | 'labels'>): boolean {
    const inst = c.labels[LABELS.instance];
    if (!this.task.instance || inst === this.task.instance) return true;
    if (inst) return false;
    return Object.values(this.ids).includes(c.id) || Object.values(this.names).includes(c.name);
  }

  /**
   * Re-list the task's containers by label and feed their state to the engine. A container
   * whose recorded id is neither listed nor inspectable vanished: it is STOPPED, never re-created.
   */
  async adopt(): Promise<void> {
    const existing = await this.deps.runtime.list({ [LABELS.taskArn]: this.task.taskArn });
    const found = new Set<string>();
    for (const c of existing) {
      const name = c.labels[LABELS.containerName];
      if (!name || !this.state.containers.some((x) => x.name === name) || !this.owns(c)) continue;
      found.add(name);
      this.record(name, c);
    }
    for (const c of this.state.containers) {
      const id = this.ids[c.name];
      if (found.has(c.name) || !id || c.known === 'STOPPED') continue;
      const again = await this.deps.runtime.inspect(id);
      if (again) {
        this.record(c.name, again);
        continue;
      }
      this.log.warn({ container: c.name, dockerId: id }, 'could not find the previously known container; assuming it is dead');
      this.state = observe(this.state, c.name, { known: 'STOPPED', vanished: true, reason: CONTAINER_VANISHED, at: this.now() });
    }
  }

  private record(name: string, c: RuntimeContainer): void {
    if (!this.owns(c)) return;
    // an inspect that raced a start can land after it: a view of an earlier state (CREATED,
    // no ports yet) must not replace the newer one; a restart shows a newer start time
    const prev = this.seen[name];
    const stale = prev && statusRank(c.status) < statusRank(prev.status) && (c.startedAt?.getTime() ?? 0) <= (prev.startedAt?.getTime() ?? 0);
    if (!stale) this.seen[name] = c;
    this.ids[name] = c.id;
    this.names[name] = c.name;
    this.state = observe(this.state, name, {
      known: c.status,
      exitCode: c.exitCode,
      health: c.health,
      reason: c.reason,
      at: this.now(),
      startedAt: c.startedAt?.getTime(),
      finishedAt: c.status === 'STOPPED' ? c.finishedAt?.getTime() : undefined,
    });
  }

  private onEvent(e: RuntimeEvent): void {
    if (this.closed) return;
    if (e.action === 'resync') {
      this.enqueue(() => this.adopt());
      return;
    }
    if (e.labels[LABELS.taskArn] !== this.task.taskArn) return;
    const name = e.labels[LABELS.containerName];
    if (!name || !this.state.containers.some((c) => c.name === name)) return;
    if (this.task.instance && e.labels[LABELS.instance] && e.labels[LABELS.instance] !== this.task.instance) return;
    this.enqueue(async () => {
      if (echoesAction(this.state.containers.find((x) => x.name === name), e, this.ids[name])) return;
      let c: RuntimeContainer | undefined;
      let unreadable = false;
      try {
        c = await this.deps.runtime.inspect(e.id);
      } catch (err) {
        unreadable = true;
        this.log.info({ container: name, action: e.action, err: (err as Error).message }, 'cannot inspect the container of an event');
      }
      if (c) return this.record(name, c);
      if (this.ids[name] && this.ids[name] !== e.id) return; // not the container of this name we know
      const exit = e.action === 'die' || e.action === 'stop';
      // the event is authoritative when the container cannot be read: a die is an exit with
      // the event's exit code (ECS setExitCodeFromEvent); a container Docker no longer has is gone
      if (unreadable && !exit) return;
      this.state = observe(this.state, name, {
        known: 'STOPPED',
        exitCode: e.exitCode,
        at: this.now(),
        finishedAt: e.time.getTime(),
        vanished: !unreadable,
        ...(!unreadable && e.exitCode === undefined ? { reason: CONTAINER_VANISHED } : {}),
      });
    });
  }

  private enqueue(fn: () => Promise<void> | void): void {
    this.chain = this.chain
      .then(fn)
      .catch((err: Error) => this.log.warn({ err: err.message }, 'task runner step failed'))
      .then(() => this.step());
  }

  private kick(): void {
    this.enqueue(() => undefined);
  }

  private step(): void {
    if (this.closed) return;
    const now = this.now();
    const p = plan(this.state, now);
    this.state = p.task;
    this.waiting = p.waiting;
    // time-based transitions (dependency start timeouts, backoffs) need a later look
    const wake = p.wakeAt !== undefined ? Math.max(1, p.wakeAt - now) : undefined;
    if ((p.waiting.length || wake !== undefined) && !this.tick) {
      this.tick = setTimeout(
        () => {
          this.tick = undefined;
          this.kick();
        },
        Math.min(this.deps.recheckMs ?? 1000, wake ?? Infinity),
      );
      this.tick.unref?.();
    }
    for (const a of p.actions) {
      const run = this.execute(a).finally(() => this.inflight.delete(run));
      this.inflight.add(run);
    }
    // a container that will not be created (the task stops, it is stopped) needs its image no more
    for (const c of this.state.containers) {
      if (this.imageHolds.has(c.name) && !c.pending && (this.state.desired === 'STOPPED' || c.desired === 'STOPPED' || statusRank(c.known) >= statusRank('CREATED'))) this.releaseImage(c.name);
    }
    if (taskKnownStatus(this.state) === 'STOPPED' && !this.tornDown) {
      this.tornDown = true;
      this.deps.runtime.taskStopped(this.task).catch((e: Error) => this.log.warn({ err: e.message }, 'cannot stop the task namespace'));
    }
    if (this.traced && p.known !== this.lastKnown) this.trace(`known ${p.known}`);
    this.lastKnown = p.known;
    this.persist();
    this.notify();
  }

  /** What is worth keeping across a restart; a write happens when it changes. */
  private persistKey(): string {
    const s = this.state;
    return JSON.stringify({
      d: s.desired,
      k: s.known,
      at: s.knownAt,
      r: s.stoppedReason,
      sc: s.stopCode,
      c: s.containers.map((c) => [c.known, c.exitCode, c.reason, c.restartCount, c.startedAt, c.finishedAt]),
    });
  }

  private persist(): void {
    if (this.gone) return;
    const key = this.persistKey();
    if (key === this.persisted) return;
    this.persisted = key;
    const s = this.state;
    this.persisting = this.deps.checkpoint
      .recordTaskState(this.task.taskArn, {
        desiredStatus: s.desired,
        known: s.known,
        knownAt: s.knownAt,
        stoppedReason: s.stoppedReason,
        stopCode: s.stopCode,
        containers: Object.fromEntries(
          s.containers.map((c) => [c.name, { known: c.known, exitCode: c.exitCode, reason: c.reason, restartCount: c.restartCount, startedAt: c.startedAt, finishedAt: c.finishedAt }]),
        ),
      })
      .then(
        () => undefined,
        (e: Error) => this.log.warn({ err: e.message }, 'cannot checkpoint the task state'),
      );
  }

  private async execute(a: Action): Promise<void> {
    const def = this.task.containers.find((c) => c.name === a.container)!;
    const t0 = this.traced ? performance.now() : 0;
    try {
      switch (a.kind) {
        case 'pull': {
          const creds = def.repositoryCredentials?.credentialsParameter;
          const secrets = this.deps.secrets;
          const resolve = this.deps.resolveRepositoryCredentials ?? (secrets ? (p: string) => registryAuth(secrets, p, def.image) : undefined);
          // the name's checkpoint write (an fsync) goes on while the image is checked or pulled
          void this.nameFor(a.container).catch(() => undefined); // a failure is the create's
          const auth = creds && resolve ? await resolve(creds) : undefined;
          await this.holdImage(a.container, def.image);
          await this.deps.runtime.pull(def.image, { auth });
          this.state = observe(this.state, a.container, { known: 'PULLED', at: this.now() });
          break;
        }
        case 'create': {
          this.resources ??= this.deps.runtime.prepareTask(this.task);
          let resources: TaskResources;
          try {
            resources = await this.resources;
          } catch (e) {
            this.resources = undefined; // the next attempt prepares again
            throw e;
          }
          this.taskIp = resources.ipAddress;
          // on disk BEFORE create: a crash in between leaves a name we will find again
          const name = await this.nameFor(a.container);
          await this.holdImage(a.container, def.image); // kept on a failed create: it is tried again
          // secret values are read now, for this create only (a missing one stops the task)
          const resolved = this.deps.secrets ? await resolveContainerSecrets(def, this.deps.secrets) : undefined;
          // a create that timed out may have happened: the same name again is the idempotency check
          const c = await retry(() => this.deps.runtime.create(this.task, a.container, { name, resources, peers: { ...this.names }, resolved }), {
            attempts: this.deps.createAttempts ?? 3,
            backoff: this.deps.createBackoff ?? CREATE_BACKOFF,
            retryable: (e) => isRuntimeError(e) && e.uncertain,
            onRetry: (e, n, ms) => this.log.warn({ container: a.container, attempt: n, retryInMs: ms, err: (e as Error).message }, 'create failed; retrying by name'),
          });
          this.ids[a.container] = c.id;
          this.releaseImage(a.container); // the container exists: Docker keeps its image now
          if (this.traced) this.trace('created', { container: a.container });
          // the id is kept in memory now (every later checkpoint write carries it, so no state on
          // disk is past CREATED without it) and on disk soon; the start does not wait for the
          // fsync: a crash before it lands leaves a container the next start adopts by its labels
          this.deps.checkpoint.recordDockerId(this.task.taskArn, a.container, c.id).catch((e: Error) => this.log.warn({ container: a.container, err: e.message }, 'cannot checkpoint the container id'));
          this.record(a.container, c);
          break;
        }
        case 'start':
        case 'restart': {
          const c = await this.deps.runtime.start(this.ids[a.container]);
          this.record(a.container, c);
          break;
        }
        case 'stop':
          await this.stopContainer(a.container, a.timeoutMs);
          break;
      }
      this.state = actionDone(this.state, a.container, a.kind, this.now());
      if (this.traced) this.trace(a.kind, { container: a.container, ms: Math.round((performance.now() - t0) * 10) / 10 });
    } catch (err) {
      const msg = (err as Error).message;
      if (a.kind === 'stop') {
        const b = (this.stopBackoffs[a.container] ??= new Backoff(this.deps.stopBackoff ?? STOP_BACKOFF));
        const wait = b.next();
        this.log.warn({ container: a.container, err: msg, retryInMs: wait, attempt: b.attempts }, 'Docker does not answer; retrying the stop later');
        this.state = actionFailed(this.state, a.container, 'stop', msg, { notBefore: this.now() + wait });
      } else {
        const uncertain = isRuntimeError(err) ? err.uncertain : false;
        this.log.info({ container: a.container, action: a.kind, err: msg, uncertain }, 'container action failed');
        this.state = actionFailed(this.state, a.container, a.kind, msg, { uncertain, stopsTask: isRuntimeError(err) && err.stopsTask });
      }
    }
    this.kick();
  }

  /**
   * Stop a container (the runtime retries timeouts with backoff). When that fails and the
   * runtime still answers a ping, the container is taken as stopped (ECS: "marking it as
   * stopped anyway"); when it does not answer, the error is thrown and the stop retried later.
   */
  private async stopContainer(name: string, timeoutMs: number): Promise<void> {
    const id = this.ids[name];
    if (!id) return; // never created
    try {
      await this.deps.runtime.stop(id, timeoutMs);
    } catch (e) {
      if (!(await this.deps.runtime.ping())) throw e;
      this.log.warn({ container: name, err: (e as Error).message }, 'error stopping the container; Docker answers, so marking it stopped anyway');
    }
    this.stopBackoffs[name]?.reset();
    try {
      const c = await this.deps.runtime.inspect(id);
      if (c) this.record(name, c);
      else this.state = observe(this.state, name, { known: 'STOPPED', vanished: true, reason: CONTAINER_VANISHED, at: this.now() });
    } catch {
      /* the stop happened; its details come with the next event or check */
    }
  }

  /** Steady-state check on its own schedule, whatever the events say (ECS task_manager.go waitSteady). */
  private armSteadyState(): void {
    if (this.closed) return;
    const base = this.deps.steadyStateMs ?? 5 * 60_000;
    const jitter = this.deps.steadyStateJitterMs ?? Math.min(30_000, base / 10);
    this.steady = setTimeout(
      () => {
        this.steady = undefined;
        this.reconcile();
        this.armSteadyState();
      },
      Math.max(1, base + (Math.random() * 2 - 1) * jitter),
    );
    this.steady.unref?.();
  }

  /** Re-inspect every container this runner knows; one Docker no longer has vanished. */
  reconcile(): void {
    this.enqueue(async () => {
      for (const c of this.state.containers) {
        const id = this.ids[c.name];
        if (!id) continue;
        let got: RuntimeContainer | undefined;
        try {
          got = await this.deps.runtime.inspect(id);
        } catch {
          continue; // no answer is not an answer
        }
        if (got) this.record(c.name, got);
        else if (c.known !== 'STOPPED') this.state = observe(this.state, c.name, { known: 'STOPPED', vanished: true, reason: CONTAINER_VANISHED, at: this.now() });
      }
    });
  }

  /** StopTask: desired status moves to STOPPED. */
  stop(reason: string): void {
    this.state = requestStop(this.state, reason);
    this.kick();
  }

  report(): TaskReport {
    const known = taskKnownStatus(this.state);
    return {
      taskArn: this.task.taskArn,
      known,
      ...(this.state.knownAt !== undefined && known === this.state.known ? { knownAt: this.state.knownAt } : {}),
      desired: this.state.desired,
      stoppedReason: this.state.stoppedReason,
      ...(this.state.stopCode ? { stopCode: this.state.stopCode } : {}),
      ipAddress: this.taskIp ?? Object.values(this.seen).find((c) => c.ipAddress)?.ipAddress,
      waiting: this.waiting,
      containers: this.state.containers.map((c) => ({
        name: c.name,
        runtimeName: this.names[c.name],
        runtimeId: this.ids[c.name],
        known: c.known,
        desired: c.desired,
        exitCode: c.exitCode,
        reason: c.reason,
        health: c.health,
        restartCount: c.restartCount,
        networkBindings: this.seen[c.name]?.networkBindings ?? [],
        image: this.task.containers.find((d) => d.name === c.name)!.image,
      })),
    };
  }

  /** Called after every step with the current report. */
  onChange(fn: (r: TaskReport) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private lastReport = '';
  private notify(): void {
    const r = this.report();
    const key = JSON.stringify(r);
    if (key === this.lastReport) return;
    this.lastReport = key;
    for (const l of this.listeners) l(r);
  }

  /** Resolve when the report satisfies pred (tests, CLI waits). */
  waitFor(pred: (r: TaskReport) => boolean, timeoutMs = 30_000): Promise<TaskReport> {
    return new Promise((resolve, reject) => {
      const now = this.report();
      if (pred(now)) return resolve(now);
      const timer = setTimeout(() => {
        off();
        reject(new Error(`task ${this.task.taskArn}: timed out after ${timeoutMs}ms; last report ${JSON.stringify(this.report())}`));
      }, timeoutMs);
      const off = this.onChange((r) => {
        if (pred(r)) {
          clearTimeout(timer);
          off();
          resolve(r);
        }
      });
    });
  }

  /** Remove the stopped task's containers and resources, and forget it in the checkpoint. */
  async cleanup(): Promise<void> {
    this.gone = true;
    await this.deps.runtime.cleanupTask(this.task);
    await this.persisting;
    await this.deps.checkpoint.removeTask(this.task.taskArn);
  }

  /**
   * The container's Docker name, on disk in the checkpoint before it is returned (a create
   * uses it only then). Made and recorded once per container: the pull begins it, so its fsync
   * overlaps the pull, and the create waits for it; a failed write is tried anew by the next.
   */
  private nameFor(container: string): Promise<string> {
    const have = this.names[container];
    if (have) return Promise.resolve(have);
    let p = this.naming.get(container);
    if (!p) {
      const name = containerRuntimeName(this.task, container, this.deps.random?.() ?? randomBytes(10).toString('hex'));
      const t0 = this.traced ? performance.now() : 0;
      p = this.deps.checkpoint.recordContainerName(this.task.taskArn, container, name).then(() => {
        this.names[container] = name;
        if (this.traced) this.trace('name recorded', { container, ms: Math.round((performance.now() - t0) * 10) / 10 });
        return name;
      });
      const mine = p;
      const done = () => {
        if (this.naming.get(container) === mine) this.naming.delete(container);
      };
      p.then(done, done);
      this.naming.set(container, p);
    }
    return p;
  }

  /** Hold the container's image until its container exists (R2-8); once per container. */
  private async holdImage(container: string, image: string): Promise<void> {
    if (!this.deps.images) return;
    let h = this.imageHolds.get(container);
    if (!h) this.imageHolds.set(container, (h = this.deps.images.hold(image)));
    await h;
  }

  private releaseImage(container: string): void {
    const h = this.imageHolds.get(container);
    if (!h) return;
    this.imageHolds.delete(container);
    void h.then((release) => release());
  }

  /** Stop listening; containers are left as they are (an agent restart adopts them). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.tick) clearTimeout(this.tick);
    if (this.steady) clearTimeout(this.steady);
    this.offEvents?.();
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    await this.chain.catch(() => undefined);
    await this.persisting;
    for (const c of [...this.imageHolds.keys()]) this.releaseImage(c);
  }
}
