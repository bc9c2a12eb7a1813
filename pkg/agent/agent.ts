import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import os from 'node:os';
import type { Logger } from 'pino';
import { API_VERSION } from '../api/meta.ts';
import type { ContainerInstance, Task, TaskDefinition } from '../api/kinds.ts';
import type { ContainerStatus as ApiContainerStatus, TaskStatus } from '../api/resources.ts';
import type { ContainerDefinition, TaskDefinitionSpec } from '../api/taskdefinition.ts';
import { NODE_TOKEN_ANNOTATION } from '../apiserver/admission.ts';
import type { Client } from '../client/client.ts';
import { Informer } from '../client/informer.ts';
import { BerthError, isBerthError } from '../errors/errors.ts';
import { Checkpoint } from './checkpoint.ts';
import type { AgentConfig } from './config.ts';
import { TaskRunner, type TaskReport } from './engine/taskrunner.ts';
import { hostFacts, registeredResources, type HostFacts } from './resources.ts';
import { LABELS, hostPortKey, type ContainerRuntime, type RuntimeTask, type TaskNetworkMode } from './runtime/runtime.ts';

export const AGENT_VERSION = '0.1.0';

export interface AgentDeps {
  config: AgentConfig;
  /** a client with the bootstrap credential (registration); the agent swaps in its node credential */
  client: Client;
  runtime: ContainerRuntime;
  log: Logger;
  host?: HostFacts;
  /** host identity for the data-dir check (default: /etc/machine-id + hostname) */
  fingerprint?: string;
  heartbeatMs?: number;
  /** report flush period: status writes of many tasks go out together (default 100 ms) */
  reportBatchMs?: number;
  dockerVersion?: string;
}

const iso = (ms = Date.now()) => new Date(ms).toISOString();

export function hostFingerprint(): string {
  let machine = '';
  try {
    machine = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    /* not every host has one */
  }
  return createHash('sha256').update(`${machine}|${os.hostname()}`).digest('hex').slice(0, 32);
}

/** ECS task status from the engine's report. */
export function taskStatusFromReport(r: TaskReport, prev: TaskStatus | undefined, specStopCode?: string): Partial<TaskStatus> {
  const now = iso();
  const lastStatus = r.known === 'RUNNING' ? 'RUNNING' : r.known === 'STOPPED' ? 'STOPPED' : 'PENDING';
  const containers: ApiContainerStatus[] = r.containers.map((c) => ({
    name: c.name,
    image: c.image,
    ...(c.runtimeId ? { dockerId: c.runtimeId } : {}),
    ...(c.runtimeName ? { dockerName: c.runtimeName } : {}),
    lastStatus: c.known === 'NONE' ? 'PENDING' : c.known,
    ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}),
    ...(c.reason ? { reason: c.reason } : {}),
    networkBindings: c.networkBindings.map((b) => ({ bindIP: b.bindIP, containerPort: b.containerPort, hostPort: b.hostPort, protocol: b.protocol })),
    healthStatus: c.health,
    ...(c.restartCount ? { restartCount: c.restartCount } : {}),
  }));
  const healths = r.containers.filter((c) => c.health !== 'UNKNOWN').map((c) => c.health);
  const health = healths.includes('UNHEALTHY') ? 'UNHEALTHY' : healths.length && healths.every((h) => h === 'HEALTHY') ? 'HEALTHY' : 'UNKNOWN';
  const out: Partial<TaskStatus> = { lastStatus, containers, healthStatus: health };
  if (lastStatus === 'RUNNING' && !prev?.startedAt) out.startedAt = now;
  if (r.desired === 'STOPPED' && !prev?.stoppingAt) out.stoppingAt = now;
  if (lastStatus === 'STOPPED') {
    if (!prev?.stoppedAt) {
      out.stoppedAt = now;
      out.executionStoppedAt = now;
    }
    out.stoppedReason = r.stoppedReason ?? prev?.stoppedReason ?? 'Task stopped';
    const essentialExit = /Essential container/i.test(out.stoppedReason);
    out.stopCode = (specStopCode as TaskStatus['stopCode']) ?? (essentialExit ? 'EssentialContainerExited' : !prev?.startedAt && !out.startedAt ? 'TaskFailedToStart' : undefined);
    if (!out.stopCode) delete out.stopCode;
  }
  if (r.ipAddress) out.attachments = [{ id: 'eni', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: r.ipAddress }] }];
  return out;
}

/** The task the engine runs, from the API task and its (immutable) task definition. */
export function runtimeTask(t: Task, td: { spec: TaskDefinitionSpec; status?: { family?: string; revision?: number } }, cluster: string): RuntimeTask {
  const daemon = t.spec.daemonTaskDefinition !== undefined;
  const ov = new Map((t.spec.overrides?.containerOverrides ?? []).map((o) => [o.name, o]));
  const containers = (td.spec.containerDefinitions as ContainerDefinition[]).map((c) => {
    const o = ov.get(c.name);
    if (!o) return c;
    const env = new Map((c.environment ?? []).map((e) => [e.name, e.value]));
    for (const e of o.environment ?? []) env.set(e.name, e.value);
    return {
      ...c,
      ...(o.command ? { command: o.command } : {}),
      ...(o.cpu !== undefined ? { cpu: o.cpu } : {}),
      ...(o.memory !== undefined ? { memory: o.memory } : {}),
      ...(o.memoryReservation !== undefined ? { memoryReservation: o.memoryReservation } : {}),
      environment: [...env].map(([name, value]) => ({ name, value })),
    } as ContainerDefinition;
  });
  const [family, rev] = t.spec.taskDefinition.split(':');
  const assigned: Record<string, number> = {};
  for (const h of t.spec.hostPorts ?? []) assigned[hostPortKey(h.containerName, h.containerPort, h.protocol)] = h.hostPort;
  return {
    taskArn: t.status?.taskArn ?? t.metadata.name,
    cluster,
    family: td.status?.family ?? family,
    revision: td.status?.revision ?? Number(rev),
    networkMode: (daemon ? 'daemon_bridge' : (td.spec.networkMode ?? 'bridge')) as TaskNetworkMode,
    containers,
    volumes: td.spec.volumes,
    assignedHostPorts: assigned,
  };
}

/**
 * The node agent: registers its container instance (once: identity and credential live in
 * ECS_DATADIR), heartbeats, watches the tasks bound to it, runs each through one
 * TaskRunner (the only writer of that task's status), reports state changes in batches,
 * cleans stopped tasks up after ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION, and serves the ECS
 * introspection API.
 */
export class Agent {
  private client: Client;
  readonly checkpoint: Checkpoint;
  instanceId = '';
  containerInstanceArn = '';
  private informer?: Informer<Task>;
  private readonly runners = new Map<string, { runner: TaskRunner; name: string; cleanupTimer?: NodeJS.Timeout }>();
  private readonly tds = new Map<string, Promise<TaskDefinition>>();
  private readonly dirty = new Map<string, TaskReport>();
  private heartbeatTimer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private introspection?: Server;
  private logServer?: Server;
  /** the container-log endpoint and the secret the apiserver presents to it */
  private logs?: { endpoint: string; token: string };
  private stopped = false;
  private readonly log: Logger;
  private readonly cfg: AgentConfig;
  /** status writes made (for benchmarks) */
  statusWrites = 0;

  constructor(private readonly deps: AgentDeps) {
    this.cfg = deps.config;
    this.client = deps.client;
    this.checkpoint = new Checkpoint(deps.config.dataDir, deps.config.checkpoint);
    this.log = deps.log.child({ component: 'agent', cluster: deps.config.cluster });
  }

  get introspectionPort(): number | undefined {
    const a = this.introspection?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  async start(): Promise<void> {
    await this.checkpoint.load();
    if (this.cfg.logsListen) await this.serveLogs();
    await this.register();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.deps.heartbeatMs ?? 15_000);
    this.heartbeatTimer.unref?.();
    this.informer = new Informer<Task>(this.client, 'Task', { namespace: this.cfg.cluster, fieldSelector: `spec.containerInstance=${this.instanceId}`, log: this.log, resyncMs: 60_000 });
    this.informer.on({ add: (t) => this.onTask(t), update: (_p, t) => this.onTask(t), delete: (t) => this.onTaskDeleted(t) });
    this.informer.start();
    await this.informer.waitForSync();
    await this.removeOrphans();
    if (this.cfg.introspectionPort > 0) await this.serveIntrospection();
    this.log.info({ instance: this.instanceId, arn: this.containerInstanceArn }, 'agent running');
  }

  /** Register once; afterwards reuse the identity in the data dir. */
  private async register(): Promise<void> {
    const ck = this.checkpoint.snapshot();
    const fp = this.deps.fingerprint ?? hostFingerprint();
    if (ck.instanceId && ck.token) {
      if (ck.cluster && ck.cluster !== this.cfg.cluster) {
        throw new BerthError('BadRequest', `ECS_DATADIR ${this.cfg.dataDir} belongs to container instance ${ck.instanceId} of cluster "${ck.cluster}", not "${this.cfg.cluster}"; use another data dir or the original ECS_CLUSTER`);
      }
      if (ck.hostFingerprint && ck.hostFingerprint !== fp) {
        throw new BerthError('BadRequest', `ECS_DATADIR ${this.cfg.dataDir} was created on another host (container instance ${ck.instanceId}); copying an agent's data dir would run two agents as one instance. Remove ${this.checkpoint.file} to register this host as a new instance`);
      }
      this.client = this.deps.client.withToken(ck.token);
      try {
        const ci = await this.client.get<ContainerInstance>('ContainerInstance', this.cfg.cluster, ck.instanceId);
        this.instanceId = ck.instanceId;
        this.containerInstanceArn = ci.status?.containerInstanceArn ?? ck.containerInstanceArn ?? '';
        await this.heartbeat();
        this.log.info({ instance: this.instanceId }, 'resumed the registered container instance');
        return;
      } catch (e) {
        if (!isBerthError(e, 'NotFound') && !isBerthError(e, 'Unauthorized')) throw e;
        this.log.warn({ instance: ck.instanceId }, 'the registered container instance is gone (deregistered); registering anew');
        this.client = this.deps.client;
      }
    }
    if (!this.cfg.bootstrapToken && !this.deps.client.config.token) {
      throw new BerthError('BadRequest', 'BERTH_BOOTSTRAP_TOKEN is required to register a new container instance');
    }
    const res = registeredResources(this.cfg, this.deps.host ?? hostFacts());
    const attributes = [
      { name: 'ecs.os-type', value: 'linux' },
      { name: 'ecs.cpu-architecture', value: os.arch() === 'x64' ? 'x86_64' : os.arch() },
      { name: 'ecs.instance-type', value: process.env.ECS_INSTANCE_TYPE ?? 'berth.host' },
      ...(process.env.ECS_AVAILABILITY_ZONE ? [{ name: 'ecs.availability-zone', value: process.env.ECS_AVAILABILITY_ZONE }] : []),
      { name: 'ecs.capability.docker-remote-api.1.44' },
      // where other hosts reach this one: with the host ports of bridge-mode tasks, a task's endpoint
      { name: 'berth.host-ip', value: await this.hostAddress() },
      ...Object.entries(this.cfg.instanceAttributes).map(([name, value]) => ({ name, value })),
    ];
    const id = this.cfg.instanceId || randomUUID().replace(/-/g, '');
    const ci = await this.deps.client.create<ContainerInstance>({
      apiVersion: API_VERSION,
      kind: 'ContainerInstance',
      metadata: { name: id, namespace: this.cfg.cluster },
      spec: {
        status: 'ACTIVE',
        hostname: os.hostname(),
        ec2InstanceId: this.cfg.instanceId || undefined,
        attributes,
        tags: Object.entries(this.cfg.containerInstanceTags).map(([key, value]) => ({ key, value })),
        registeredResources: [
          { name: 'CPU', type: 'INTEGER', integerValue: res.cpu },
          { name: 'MEMORY', type: 'INTEGER', integerValue: res.memory },
          { name: 'PORTS', type: 'STRINGSET', stringSetValue: res.ports.map(String) },
          { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: res.portsUdp.map(String) },
        ],
        dynamicHostPortRange: [this.cfg.dynamicHostPortRange.from, this.cfg.dynamicHostPortRange.to],
        hostFingerprint: fp,
      },
      status: { agentConnected: true, runningTasksCount: 0, pendingTasksCount: 0, ...(this.logs ? { logs: this.logs } : {}), versionInfo: { agentVersion: AGENT_VERSION, dockerVersion: this.deps.dockerVersion } },
    } as ContainerInstance);
    const token = ci.metadata.annotations?.[NODE_TOKEN_ANNOTATION];
    if (!token) throw new BerthError('Forbidden', 'the apiserver issued no node credential: register with a bootstrap token (BERTH_BOOTSTRAP_TOKEN of group berth:bootstrappers)');
    this.instanceId = ci.metadata.name;
    this.containerInstanceArn = ci.status?.containerInstanceArn ?? '';
    this.client = this.deps.client.withToken(token);
    await this.checkpoint.update((d) => {
      d.cluster = this.cfg.cluster;
      d.instanceId = this.instanceId;
      d.containerInstanceArn = this.containerInstanceArn;
      d.token = token;
      d.hostFingerprint = fp;
    });
    this.log.info({ instance: this.instanceId, cpu: res.cpu, memory: res.memory }, 'registered container instance');
  }

  async heartbeat(): Promise<void> {
    if (this.stopped && this.instanceId) return;
    try {
      await this.client.patch('ContainerInstance', this.cfg.cluster, this.instanceId, { status: { agentConnected: true, lastHeartbeat: iso(), ...(this.logs ? { logs: this.logs } : {}), versionInfo: { agentVersion: AGENT_VERSION, ...(this.deps.dockerVersion ? { dockerVersion: this.deps.dockerVersion } : {}) } } }, { status: true });
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'heartbeat failed');
    }
  }

  private td(t: Task): Promise<TaskDefinition> {
    const daemon = t.spec.daemonTaskDefinition !== undefined;
    const name = daemon ? t.spec.daemonTaskDefinition! : t.spec.taskDefinition;
    const key = `${daemon ? 'd' : 't'}/${name}`;
    let p = this.tds.get(key);
    if (!p) {
      p = this.client.get<TaskDefinition>(daemon ? 'DaemonTaskDefinition' : 'TaskDefinition', undefined, name);
      p.catch(() => this.tds.delete(key));
      this.tds.set(key, p);
    }
    return p;
  }

  private onTask(t: Task): void {
    if (this.stopped) return;
    const arn = t.status?.taskArn ?? t.metadata.name;
    const have = this.runners.get(arn);
    if (have) {
      if (t.spec.desiredStatus === 'STOPPED' && have.runner.report().desired !== 'STOPPED') have.runner.stop(t.spec.stopReason ?? 'Task stopped by user');
      return;
    }
    if (t.status?.lastStatus === 'STOPPED') return; // finished before we saw it (or reported already)
    void this.startRunner(t, arn);
  }

  private async startRunner(t: Task, arn: string): Promise<void> {
    // placeholder so a second event does not start a second runner
    const slot = { runner: undefined as unknown as TaskRunner, name: t.metadata.name };
    this.runners.set(arn, slot);
    let td: TaskDefinition;
    try {
      td = await this.td(t);
    } catch (e) {
      this.runners.delete(arn);
      this.log.warn({ task: t.metadata.name, err: (e as Error).message }, 'cannot read the task definition; will retry on the next event');
      return;
    }
    const rt = runtimeTask(t, td as unknown as { spec: TaskDefinitionSpec; status?: { family?: string; revision?: number } }, this.cfg.cluster);
    const runner = new TaskRunner(rt, { runtime: this.deps.runtime, checkpoint: this.checkpoint, defaultStopTimeoutMs: this.cfg.containerStopTimeoutMs, logger: this.log });
    slot.runner = runner;
    runner.onChange((r) => this.queueReport(arn, r));
    await runner.start();
    const cur = this.informer?.get(`${this.cfg.cluster}/${t.metadata.name}`) ?? t;
    if (cur.spec.desiredStatus === 'STOPPED') runner.stop(cur.spec.stopReason ?? 'Task stopped by user');
  }

  private onTaskDeleted(t: Task): void {
    const arn = t.status?.taskArn ?? t.metadata.name;
    const have = this.runners.get(arn);
    if (!have?.runner) return;
    have.runner.stop('Task deleted');
    void have.runner.waitFor((r) => r.known === 'STOPPED', this.cfg.containerStopTimeoutMs + 30_000).then(
      () => this.cleanup(arn),
      () => undefined,
    );
  }

  private async cleanup(arn: string): Promise<void> {
    const have = this.runners.get(arn);
    if (!have?.runner) return;
    if (have.cleanupTimer) clearTimeout(have.cleanupTimer);
    this.runners.delete(arn);
    try {
      await have.runner.cleanup();
    } catch (e) {
      this.log.warn({ task: arn, err: (e as Error).message }, 'cleanup failed');
    }
    await have.runner.close();
  }

  /** Containers of this cluster whose task is no longer bound here: stop and remove them. */
  private async removeOrphans(): Promise<void> {
    const known = new Set(this.informer!.list().map((t) => t.status?.taskArn ?? t.metadata.name));
    const mine = await this.deps.runtime.list({ [LABELS.cluster]: this.cfg.cluster });
    const ck = this.checkpoint.snapshot().tasks;
    for (const c of mine) {
      const arn = c.labels[LABELS.taskArn];
      if (!arn || known.has(arn) || !ck[arn]) continue; // only containers this agent created
      this.log.info({ task: arn, container: c.name }, 'removing a container of a task no longer bound here');
      await this.deps.runtime.stop(c.id, this.cfg.containerStopTimeoutMs).catch(() => undefined);
      await this.deps.runtime.remove(c.id).catch(() => undefined);
      await this.checkpoint.removeTask(arn);
    }
  }

  private queueReport(arn: string, r: TaskReport): void {
    this.dirty.set(arn, r);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        void this.flush();
      }, this.deps.reportBatchMs ?? 100);
    }
  }

  /** Writes the pending reports, many in parallel; a failed write is retried on the next flush. */
  async flush(): Promise<void> {
    if (this.flushing) await this.flushing;
    const batch = [...this.dirty];
    this.dirty.clear();
    if (!batch.length) return;
    this.flushing = (async () => {
      let i = 0;
      const worker = async () => {
        while (i < batch.length) {
          const [arn, r] = batch[i++];
          const slot = this.runners.get(arn);
          const name = slot?.name ?? arn;
          const cur = this.informer?.get(`${this.cfg.cluster}/${name}`);
          const status = taskStatusFromReport(r, cur?.status, cur?.spec.stopCode);
          try {
            await this.client.patch('Task', this.cfg.cluster, name, { status: { ...status, version: (cur?.status?.version ?? 1) + 1 } }, { status: true });
            this.statusWrites++;
            if (status.lastStatus === 'STOPPED' && slot && !slot.cleanupTimer) {
              slot.cleanupTimer = setTimeout(() => void this.cleanup(arn), this.cfg.taskCleanupWaitMs);
              slot.cleanupTimer.unref?.();
            }
          } catch (e) {
            if (isBerthError(e, 'NotFound') || isBerthError(e, 'Forbidden')) continue; // the task is gone
            this.log.warn({ task: name, err: (e as Error).message }, 'status report failed; retrying');
            if (!this.dirty.has(arn)) this.queueReport(arn, r);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(16, batch.length) }, worker));
    })();
    await this.flushing;
    this.flushing = undefined;
  }

  /**
   * Container logs for the apiserver (`GET /v1/logs?task=NAME&container=C&follow=1&tail=N`),
   * which proxies `berth logs` here. Only the apiserver knows the secret: the agent reports
   * it in its instance status and the apiserver never shows it to clients.
   */
  private async serveLogs(): Promise<void> {
    const token = randomUUID() + randomUUID();
    const srv = createServer((req, res) => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const fail = (code: number, message: string) => res.writeHead(code, { 'Content-Type': 'text/plain' }).end(message + '\n');
        const given = Buffer.from(req.headers.authorization ?? '');
        const want = Buffer.from(`Bearer ${token}`);
        if (given.length !== want.length || !timingSafeEqual(given, want)) return fail(401, 'unauthorized');
        if (url.pathname !== '/v1/logs') return fail(404, 'not found');
        const task = url.searchParams.get('task') ?? '';
        const slot = [...this.runners.values()].find((x) => x.name === task && x.runner);
        if (!slot) return fail(404, `task ${task} is not running on this instance (or its containers were cleaned up)`);
        const report = slot.runner.report();
        const want1 = url.searchParams.get('container');
        const c = want1 ? report.containers.find((x) => x.name === want1) : report.containers[0];
        if (!c) return fail(404, `task ${task} has no container named ${want1}; it has ${report.containers.map((x) => x.name).join(', ')}`);
        if (!c.runtimeId) return fail(404, `container ${c.name} of task ${task} has not been created yet`);
        const tail = url.searchParams.get('tail');
        const stream = await this.deps.runtime.logs(c.runtimeId, { follow: url.searchParams.get('follow') === 'true', ...(tail ? { tail: Number(tail) } : {}) });
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
        stream.pipe(res);
        res.on('close', () => stream.destroy());
      })().catch((e: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${e.message}\n`);
        else res.end();
      });
    });
    const i = this.cfg.logsListen.lastIndexOf(':');
    const host = this.cfg.logsListen.slice(0, i);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (e) => reject(new BerthError('BadRequest', `BERTH_LOGS_LISTEN ${this.cfg.logsListen}: ${e.message}`)));
      srv.listen(Number(this.cfg.logsListen.slice(i + 1)), host, () => resolve());
    });
    this.logServer = srv;
    const port = (srv.address() as { port: number }).port;
    const reachable = host === '0.0.0.0' || host === '::' ? await this.hostAddress() : host;
    this.logs = { endpoint: `http://${reachable}:${port}`, token };
  }

  private hostAddressP?: Promise<string>;

  /**
   * The address other hosts (and the apiserver, for logs) reach this one at: BERTH_HOST_IP,
   * else the local end of a TCP connection to ECS_BACKEND_HOST (the interface that routes to
   * the control plane), else the first non-loopback IPv4 address.
   */
  private hostAddress(): Promise<string> {
    this.hostAddressP ??= (async () => {
      if (this.cfg.hostIp) return this.cfg.hostIp;
      const fallback = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1';
      let u: URL;
      try {
        u = new URL(this.cfg.backendHost);
      } catch {
        return fallback;
      }
      const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
      return new Promise<string>((resolve) => {
        const sock = tcpConnect({ host: u.hostname.replace(/^\[|\]$/g, ''), port, timeout: 5000 });
        const done = (addr: string | undefined) => {
          sock.destroy();
          resolve(addr && addr !== '127.0.0.1' && addr !== '::1' ? addr.replace(/^::ffff:/, '') : fallback);
        };
        sock.once('connect', () => done(sock.localAddress));
        sock.once('timeout', () => done(undefined));
        sock.once('error', () => done(undefined));
      });
    })();
    return this.hostAddressP;
  }

  private async serveIntrospection(): Promise<void> {
    const srv = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (code: number, body: unknown) => res.writeHead(code, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
      if (url.pathname === '/v1/metadata') return send(200, { Cluster: this.cfg.cluster, ContainerInstanceArn: this.containerInstanceArn, Version: `berth-agent v${AGENT_VERSION}` });
      if (url.pathname === '/v1/tasks') {
        const tasks = [...this.runners.values()].filter((s) => s.runner).map((s) => {
          const r = s.runner.report();
          return {
            Arn: r.taskArn,
            DesiredStatus: r.desired,
            KnownStatus: r.known,
            Family: s.runner.task.family,
            Version: String(s.runner.task.revision),
            Containers: r.containers.map((c) => ({ DockerId: c.runtimeId ?? '', DockerName: c.runtimeName ?? '', Name: c.name, ...(c.networkBindings.length ? { Ports: c.networkBindings.map((b) => ({ ContainerPort: b.containerPort, Protocol: b.protocol, HostPort: b.hostPort })) } : {}) })),
          };
        });
        const arn = url.searchParams.get('taskarn');
        const docker = url.searchParams.get('dockerid');
        if (arn || docker) {
          const t = tasks.find((x) => x.Arn === arn || x.Containers.some((c) => docker && c.DockerId.startsWith(docker)));
          return t ? send(200, t) : send(404, { error: 'task not found' });
        }
        return send(200, { Tasks: tasks });
      }
      send(404, { error: 'not found' });
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(this.cfg.introspectionPort, '127.0.0.1', () => resolve());
    });
    this.introspection = srv;
  }

  /** Stop watching and reporting; containers keep running (a restarted agent adopts them). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.informer?.stop();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.flush().catch(() => undefined);
    for (const s of this.runners.values()) {
      if (s.cleanupTimer) clearTimeout(s.cleanupTimer);
      await s.runner?.close();
    }
    this.runners.clear();
    this.introspection?.close();
    this.logServer?.close();
    this.logServer?.closeAllConnections();
    this.client.close();
  }
}
