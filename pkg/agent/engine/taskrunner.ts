/**
 * One writer per task: drives the pure state machine (engine.ts) against a ContainerRuntime.
 * Records each container's runtime name in the checkpoint BEFORE creating it, adopts the
 * task's existing containers by label on start (never creating a duplicate), treats runtime
 * events as hints (re-inspecting the container), and re-lists on every event-stream resync.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { silentLogger } from '../../log/log.ts';
import type { Checkpoint } from '../checkpoint.ts';
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
import { actionFailed, newEngineTask, observe, plan, requestStop, taskKnownStatus, type Action, type ContainerStatus, type EngineTask, type Waiting } from './engine.ts';

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
  desired: 'RUNNING' | 'STOPPED';
  stoppedReason?: string;
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
  /** resolves repositoryCredentials.credentialsParameter */
  resolveRepositoryCredentials?: (parameter: string) => Promise<RegistryAuth>;
}

export class TaskRunner {
  private state: EngineTask;
  private waiting: Waiting[] = [];
  private readonly names: Record<string, string> = {};
  private readonly ids: Record<string, string> = {};
  private readonly seen: Record<string, RuntimeContainer> = {};
  private resources?: Promise<TaskResources>;
  /** the task's own address (awsvpc: its namespace container's), which its containers do not show */
  private taskIp?: string;
  private chain: Promise<void> = Promise.resolve();
  private listeners = new Set<(r: TaskReport) => void>();
  private offEvents?: () => void;
  private closed = false;
  private tick?: NodeJS.Timeout;
  private readonly inflight = new Set<Promise<void>>();
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(
    readonly task: RuntimeTask,
    private readonly deps: TaskRunnerDeps,
  ) {
    this.state = newEngineTask(task.taskArn, task.containers, deps.defaultStopTimeoutMs);
    this.log = (deps.logger ?? silentLogger()).child({ component: 'task-runner', task: task.taskArn });
    this.now = deps.now ?? Date.now;
  }

  /** Adopt what exists (checkpoint + labels), subscribe to events, and start driving. */
  async start(): Promise<void> {
    const ck = this.deps.checkpoint.snapshot().tasks[this.task.taskArn];
    if (ck) Object.assign(this.names, ck.containerNames);
    this.offEvents = this.deps.runtime.onEvent((e) => this.onEvent(e));
    await this.adopt();
    this.kick();
  }

  /** Re-list the task's containers by label and feed their state to the engine. */
  async adopt(): Promise<void> {
    const existing = await this.deps.runtime.list({ [LABELS.taskArn]: this.task.taskArn });
    for (const c of existing) {
      const name = c.labels[LABELS.containerName];
      if (!name || !this.state.containers.some((x) => x.name === name)) continue;
      this.names[name] = c.name;
      this.ids[name] = c.id;
      this.record(name, c);
    }
  }

  private record(name: string, c: RuntimeContainer): void {
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
      at: c.status === 'RUNNING' ? (c.startedAt?.getTime() ?? this.now()) : this.now(),
    });
  }

  private onEvent(e: RuntimeEvent): void {
    if (this.closed) return;
    if (e.action === 'resync') {
      this.enqueue(async () => {
        await this.adopt();
      });
      return;
    }
    if (e.labels[LABELS.taskArn] !== this.task.taskArn) return;
    const name = e.labels[LABELS.containerName];
    if (!name) return;
    // the event is a hint: re-read the container
    this.enqueue(async () => {
      const c = await this.deps.runtime.inspect(e.id);
      if (c) this.record(name, c);
    });
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain
      .then(fn)
      .catch((err: Error) => this.log.warn({ err: err.message }, 'task runner step failed'))
      .then(() => this.step());
  }

  private kick(): void {
    this.enqueue(async () => undefined);
  }

  private step(): void {
    if (this.closed) return;
    const p = plan(this.state, this.now());
    this.state = p.task;
    this.waiting = p.waiting;
    // time-based transitions (dependency start timeouts, restart periods) need a later look
    if (p.waiting.length && !this.tick) {
      this.tick = setTimeout(() => {
        this.tick = undefined;
        this.kick();
      }, this.deps.recheckMs ?? 1000);
      this.tick.unref?.();
    }
    for (const a of p.actions) {
      const run = this.execute(a).finally(() => this.inflight.delete(run));
      this.inflight.add(run);
    }
    this.notify();
  }

  private async execute(a: Action): Promise<void> {
    const def = this.task.containers.find((c) => c.name === a.container)!;
    try {
      switch (a.kind) {
        case 'pull': {
          const auth = def.repositoryCredentials && this.deps.resolveRepositoryCredentials ? await this.deps.resolveRepositoryCredentials(def.repositoryCredentials.credentialsParameter) : undefined;
          await this.deps.runtime.pull(def.image, { auth });
          this.state = observe(this.state, a.container, { known: 'PULLED', at: this.now() });
          break;
        }
        case 'create': {
          this.resources ??= this.deps.runtime.prepareTask(this.task);
          const resources = await this.resources;
          this.taskIp = resources.ipAddress;
          let name = this.names[a.container];
          if (!name) {
            name = containerRuntimeName(this.task, a.container, this.deps.random?.() ?? randomBytes(10).toString('hex'));
            // recorded BEFORE create: a crash in between leaves a name we will find again
            await this.deps.checkpoint.recordContainerName(this.task.taskArn, a.container, name);
            this.names[a.container] = name;
          }
          const c = await this.deps.runtime.create(this.task, a.container, { name, resources, peers: { ...this.names } });
          this.ids[a.container] = c.id;
          await this.deps.checkpoint.recordDockerId(this.task.taskArn, a.container, c.id);
          this.record(a.container, c);
          break;
        }
        case 'start':
        case 'restart': {
          const c = await this.deps.runtime.start(this.ids[a.container]);
          this.record(a.container, c);
          break;
        }
        case 'stop': {
          await this.deps.runtime.stop(this.ids[a.container], a.timeoutMs);
          const c = await this.deps.runtime.inspect(this.ids[a.container]);
          if (c) this.record(a.container, c);
          else this.state = observe(this.state, a.container, { known: 'STOPPED', at: this.now() });
          break;
        }
      }
    } catch (err) {
      const msg = (err as Error).message;
      this.log.info({ container: a.container, action: a.kind, err: msg }, 'container action failed');
      this.state = actionFailed(this.state, a.container, msg);
    }
    this.kick();
  }

  /** StopTask: desired status moves to STOPPED. */
  stop(reason: string): void {
    this.state = requestStop(this.state, reason);
    this.kick();
  }

  /** Re-inspect every container (periodic reconciliation). */
  reconcile(): void {
    this.enqueue(() => this.adopt());
  }

  report(): TaskReport {
    return {
      taskArn: this.task.taskArn,
      known: taskKnownStatus(this.state),
      desired: this.state.desired,
      stoppedReason: this.state.stoppedReason,
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
    for (const c of await this.deps.runtime.list({ [LABELS.taskArn]: this.task.taskArn })) await this.deps.runtime.remove(c.id);
    await this.deps.runtime.cleanupTask(this.task);
    await this.deps.checkpoint.removeTask(this.task.taskArn);
  }

  /** Stop listening; containers are left as they are (an agent restart adopts them). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.tick) clearTimeout(this.tick);
    this.offEvents?.();
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    await this.chain.catch(() => undefined);
  }
}
