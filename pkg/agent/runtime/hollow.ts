/**
 * A simulated ContainerRuntime (like Kubernetes' hollow kubelet): containers live in memory,
 * start after a configurable latency, exit by rule, fail by rule, and emit the same events as
 * Docker. No timers are held for containers that simply run, so thousands of agents' worth
 * fit in one process.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { BerthError, RuntimeError, badRequest, invalid } from '../../errors/errors.ts';
import {
  LABELS,
  containerLabels,
  hostPortKey,
  type ContainerRuntime,
  type CreateOptions,
  type ResolvedSecrets,
  type EventListener,
  type LogOptions,
  type NetworkBinding,
  type PullOptions,
  type PullResult,
  type RuntimeContainer,
  type RuntimeEvent,
  type RuntimeTask,
  type TaskResources,
} from './runtime.ts';

export interface HollowRule {
  /** matches when the image equals this string or matches the RegExp */
  image?: string | RegExp;
  /** matches the task-definition container name */
  container?: string;
  /** matches when the container is created with these values of its `secrets` (what the agent resolved from berth Secrets): a bad secret value's effect */
  secretEnv?: Record<string, string>;
  /** inject a failure at this step */
  fail?: 'pull' | 'create' | 'start';
  /** the container exits by itself this long after it started */
  exitAfterMs?: number;
  /** exit code when it exits by itself (default 0) */
  exitCode?: number;
  /** SIGTERM is ignored: stop kills after the timeout (exit 137) */
  ignoreSigterm?: boolean;
  /** health reported once running (when the container has a healthCheck) */
  health?: 'HEALTHY' | 'UNHEALTHY';
  /** log lines the container "prints" */
  logs?: string[];
}

export type HollowOp = 'ping' | 'pull' | 'create' | 'start' | 'stop' | 'remove' | 'inspect' | 'list';

/** A fault injected into the runtime's calls (failure injection for tests and benchmarks). */
export interface HollowFault {
  op: HollowOp;
  /** how many calls fail (default: every call until clearFaults) */
  times?: number;
  /** the error thrown (default: a DockerTimeoutError, an uncertain failure) */
  error?: () => Error;
  /** start only: the call fails, yet the container starts this many ms later (a start that timed out but happened) */
  startsAnywayAfterMs?: number;
}

export interface HollowOptions {
  /** delay between start() and RUNNING; start() resolves after it (default 0) */
  startLatencyMs?: number;
  pullLatencyMs?: number;
  rules?: HollowRule[];
  /** first two octets of simulated IPs (default 10.200) */
  ipPrefix?: string;
  /** dynamic host ports are assigned from this range */
  dynamicPortRange?: { from: number; to: number };
}

interface HollowContainer {
  c: RuntimeContainer;
  rule?: HollowRule;
  timer?: NodeJS.Timeout;
  logs: string[];
  hasHealth: boolean;
  /** followed log streams (`logs(id, { follow: true })`), ended when the container goes */
  followers?: Set<Readable>;
}

const sleep = (ms: number) => (ms > 0 ? new Promise<void>((r) => setTimeout(r, ms)) : Promise.resolve());

export class HollowRuntime implements ContainerRuntime {
  readonly kind = 'hollow' as const;
  private readonly containers = new Map<string, HollowContainer>();
  private readonly byName = new Map<string, string>();
  private readonly emitter = new EventEmitter();
  private ipCounter = 2;
  private nextPort: number;
  private closed = false;
  private faults: HollowFault[] = [];
  private eventsLost = false;
  /** calls made per operation (failure-injection tests count retries) */
  readonly calls: Record<HollowOp, number> = { ping: 0, pull: 0, create: 0, start: 0, stop: 0, remove: 0, inspect: 0, list: 0 };

  constructor(private readonly opts: HollowOptions = {}) {
    this.emitter.setMaxListeners(0);
    this.nextPort = opts.dynamicPortRange?.from ?? 49153;
  }

  /** change the rules at run time (failure injection) */
  setRules(rules: HollowRule[]): void {
    this.opts.rules = rules;
  }

  /** make calls of one operation fail (see HollowFault) */
  inject(f: HollowFault): void {
    this.faults.push({ ...f });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** count the call; throw when a fault applies (and return it, for start's "happened anyway") */
  private call(op: HollowOp): void {
    this.calls[op]++;
    const f = this.faults.find((x) => x.op === op && (x.times === undefined || x.times > 0));
    if (!f) return;
    if (f.times !== undefined) f.times--;
    throw f.error?.() ?? new RuntimeError('DockerTimeoutError', `simulated: no answer to ${op} in time`, { uncertain: true });
  }

  private ruleFor(image: string, container?: string, resolved?: ResolvedSecrets): HollowRule | undefined {
    return this.opts.rules?.find(
      (r) =>
        (r.image === undefined || (typeof r.image === 'string' ? r.image === image : r.image.test(image))) &&
        (r.container === undefined || r.container === container) &&
        (r.secretEnv === undefined || Object.entries(r.secretEnv).every(([k, v]) => resolved?.secrets.some(([n, val]) => n === k && val === v))),
    );
  }

  /** events lost on the way (Docker drops events for slow subscribers): on/off */
  setEventsLost(lost: boolean): void {
    this.eventsLost = lost;
  }

  private emit(action: string, h: HollowContainer, exitCode?: number): void {
    if (this.closed || this.eventsLost) return;
    const e: RuntimeEvent = { action, id: h.c.id, labels: { ...h.c.labels }, exitCode, time: new Date() };
    this.emitter.emit('event', e);
  }

  private get(idOrName: string): HollowContainer | undefined {
    return this.containers.get(idOrName) ?? this.containers.get(this.byName.get(idOrName) ?? '');
  }

  async ping(): Promise<boolean> {
    try {
      this.call('ping');
      return !this.closed;
    } catch {
      return false;
    }
  }

  async pull(image: string, _opts?: PullOptions): Promise<PullResult> {
    this.call('pull');
    await sleep(this.opts.pullLatencyMs ?? 0);
    if (this.ruleFor(image)?.fail === 'pull') {
      throw new RuntimeError('CannotPullContainerError', `simulated pull failure for ${image}`, { uncertain: false, kind: 'Image', name: image });
    }
    return { image, fromCache: false };
  }

  async prepareTask(task: RuntimeTask): Promise<TaskResources> {
    const res: TaskResources = { volumeSources: {} };
    for (const v of task.volumes ?? []) {
      res.volumeSources[v.name] = v.host?.sourcePath ? { type: 'bind', source: v.host.sourcePath } : { type: 'volume', source: `hollow-${v.name}` };
    }
    if (task.networkMode === 'awsvpc') res.ipAddress = this.newIp();
    return res;
  }

  private newIp(): string {
    const n = this.ipCounter++;
    return `${this.opts.ipPrefix ?? '10.200'}.${(n >> 8) & 255}.${n & 255}`;
  }

  async create(task: RuntimeTask, container: string, opts: CreateOptions): Promise<RuntimeContainer> {
    const def = task.containers.find((c) => c.name === container);
    if (!def) throw badRequest(`task ${task.taskArn} has no container "${container}"`);
    this.call('create');
    const existingId = this.byName.get(opts.name);
    if (existingId) return structuredClone(this.containers.get(existingId)!.c);
    const rule = this.ruleFor(def.image, container, opts.resolved);
    if (rule?.fail === 'create') throw new RuntimeError('CannotCreateContainerError', `simulated create failure for ${def.image}`, { uncertain: false, kind: 'Container', name: opts.name });
    for (const l of def.links ?? []) {
      const target = l.split(':')[0];
      if (!opts.peers[target]) throw invalid('Task', task.taskArn, [{ field: `containerDefinitions[${container}].links`, message: `linked container "${target}" is not a created container of this task` }]);
    }
    const bindings: NetworkBinding[] = [];
    for (const pm of def.portMappings ?? []) {
      const proto = pm.protocol ?? 'tcp';
      let hostPort = task.assignedHostPorts?.[hostPortKey(container, pm.containerPort, proto)] ?? pm.hostPort ?? 0;
      if (task.networkMode !== 'bridge') hostPort = pm.containerPort;
      else if (!hostPort) hostPort = this.nextPort++;
      bindings.push({ containerPort: pm.containerPort, hostPort, protocol: proto, bindIP: '0.0.0.0' });
    }
    const id = randomBytes(32).toString('hex');
    const h: HollowContainer = {
      c: {
        id,
        name: opts.name,
        image: def.image,
        labels: { ...(def.dockerLabels ?? {}), ...containerLabels(task, container) },
        status: 'CREATED',
        state: 'created',
        health: 'UNKNOWN',
        networkBindings: task.networkMode === 'bridge' ? bindings : [],
        ipAddress: opts.resources.ipAddress ?? (task.networkMode === 'bridge' ? this.newIp() : undefined),
      },
      rule,
      logs: [...(rule?.logs ?? [])],
      hasHealth: !!def.healthCheck,
    };
    this.containers.set(id, h);
    this.byName.set(opts.name, id);
    this.emit('create', h);
    return structuredClone(h.c);
  }

  async start(id: string): Promise<RuntimeContainer> {
    const anyway = this.faults.find((x) => x.op === 'start' && x.startsAnywayAfterMs !== undefined && (x.times === undefined || x.times > 0));
    try {
      this.call('start');
    } catch (e) {
      if (anyway) {
        const t = setTimeout(() => void this.start(id).catch(() => undefined), anyway.startsAnywayAfterMs);
        t.unref?.();
      }
      throw e;
    }
    const h = this.get(id);
    if (!h) throw new RuntimeError('CannotStartContainerError', `no such container ${id}`, { statusCode: 404, kind: 'Container', name: id });
    if (h.c.status === 'RUNNING') return structuredClone(h.c);
    if (h.rule?.fail === 'start') {
      h.c.status = 'STOPPED';
      h.c.state = 'exited';
      h.c.exitCode = 128;
      h.c.reason = 'simulated start failure';
      h.c.finishedAt = new Date();
      this.emit('die', h, 128);
      throw new RuntimeError('CannotStartContainerError', `simulated start failure for ${h.c.image}`, { uncertain: false, kind: 'Container', name: h.c.name });
    }
    await sleep(this.opts.startLatencyMs ?? 0);
    h.c.status = 'RUNNING';
    h.c.state = 'running';
    h.c.exitCode = undefined;
    h.c.finishedAt = undefined;
    h.c.startedAt = new Date();
    this.emit('start', h);
    if (h.hasHealth) {
      h.c.health = h.rule?.health ?? 'HEALTHY';
      this.emit('health_status', h);
    }
    if (h.rule?.exitAfterMs !== undefined) {
      h.timer = setTimeout(() => this.exit(h, h.rule?.exitCode ?? 0), h.rule.exitAfterMs);
      h.timer.unref?.();
    }
    return structuredClone(h.c);
  }

  private exit(h: HollowContainer, code: number): void {
    if (h.timer) clearTimeout(h.timer);
    h.timer = undefined;
    if (h.c.status !== 'RUNNING') return;
    h.c.status = 'STOPPED';
    h.c.state = 'exited';
    h.c.exitCode = code;
    h.c.finishedAt = new Date();
    this.emit('die', h, code);
  }

  async stop(id: string, timeoutMs: number): Promise<void> {
    this.call('stop');
    const h = this.get(id);
    if (!h || h.c.status !== 'RUNNING') return;
    if (h.rule?.ignoreSigterm) {
      await sleep(timeoutMs);
      this.exit(h, 137);
    } else this.exit(h, 143);
  }

  async remove(id: string): Promise<void> {
    this.call('remove');
    const h = this.get(id);
    if (!h) return;
    this.exit(h, 137);
    for (const r of h.followers ?? []) r.push(null);
    this.containers.delete(h.c.id);
    this.byName.delete(h.c.name);
    this.emit('destroy', h);
  }

  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    this.call('inspect');
    const h = this.get(idOrName);
    return h ? structuredClone(h.c) : undefined;
  }

  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    this.call('list');
    const out: RuntimeContainer[] = [];
    for (const h of this.containers.values()) {
      if (Object.entries(labels).every(([k, v]) => h.c.labels[k] === v)) out.push(structuredClone(h.c));
    }
    return out;
  }

  async taskStopped(_task: RuntimeTask): Promise<void> {}

  async cleanupTask(task: Pick<RuntimeTask, 'taskArn' | 'instance'>): Promise<void> {
    for (const h of [...this.containers.values()]) {
      if (h.c.labels[LABELS.taskArn] !== task.taskArn) continue;
      if (task.instance && h.c.labels[LABELS.instance] && h.c.labels[LABELS.instance] !== task.instance) continue;
      await this.remove(h.c.id);
    }
  }

  async logs(id: string, opts?: LogOptions): Promise<Readable> {
    const h = this.get(id);
    if (!h) throw new BerthError('NotFound', `no such container ${id}`, { kind: 'Container', name: id });
    const lines = opts?.tail !== undefined ? h.logs.slice(-opts.tail || h.logs.length) : h.logs;
    if (!opts?.follow) return Readable.from(lines.map((l) => `${l}\n`));
    // followed: what was printed, then each line the container "prints" (appendLog) until it is removed
    const r = new Readable({ read() {} });
    for (const l of lines) r.push(`${l}\n`);
    (h.followers ??= new Set()).add(r);
    r.once('close', () => h.followers?.delete(r));
    return r;
  }

  /** the container "prints" a line: kept for later reads and sent to every follower */
  appendLog(id: string, line: string): void {
    const h = this.get(id);
    if (!h) throw new BerthError('NotFound', `no such container ${id}`, { kind: 'Container', name: id });
    h.logs.push(line);
    for (const r of h.followers ?? []) r.push(`${line}\n`);
  }

  onEvent(fn: EventListener): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  /** number of simulated containers (for fleet metrics) */
  get size(): number {
    return this.containers.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const h of this.containers.values()) if (h.timer) clearTimeout(h.timer);
    this.emitter.removeAllListeners();
  }
}
