import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { apiSecretReader } from './secrets.ts';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import os from 'node:os';
import type { Logger } from 'pino';
import { API_VERSION } from '../api/meta.ts';
import type { ContainerInstance, InstanceLease, Task, TaskDefinition } from '../api/kinds.ts';
import { taskRevision, type ContainerStatus as ApiContainerStatus, type TaskStatus } from '../api/resources.ts';
import { effectiveTaskDefinition, type ContainerDefinition, type TaskDefinitionSpec } from '../api/taskdefinition.ts';
import { NODE_TOKEN_ANNOTATION } from '../apiserver/admission.ts';
import type { Client } from '../client/client.ts';
import { Informer } from '../client/informer.ts';
import { BerthError, isBerthError } from '../errors/errors.ts';
import { Backoff, sleep, type BackoffOptions } from './backoff.ts';
import { setTimeout as delay } from 'node:timers/promises';
import { Checkpoint } from './checkpoint.ts';
import type { AgentConfig } from './config.ts';
import { TaskRunner, type TaskReport, type TaskRunnerDeps } from './engine/taskrunner.ts';
import { ImageCleanup } from './imagecleanup.ts';
import { ServiceDiscovery } from './dns/discovery.ts';
import { ImagesInUse } from './imageuse.ts';
import { hostFacts, registeredResources, type HostFacts } from './resources.ts';
import { LABELS, hostPortKey, type ContainerRuntime, type RuntimeTask, type TaskNetworkMode } from './runtime/runtime.ts';

/** task statuses per taskstatuses call (the apiserver takes up to 1000) */
const MAX_STATUSES_PER_CALL = 500;

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
  /** backoff of a task's status report the apiserver refused or did not answer (default 200 ms .. 30 s) */
  reportBackoff?: BackoffOptions;
  /** how long a refused (401) node credential is retried before giving up on resuming (default 2 min) */
  resumeWindowMs?: number;
  /** task runner settings (steady-state check period, backoffs) */
  runner?: Partial<Pick<TaskRunnerDeps, 'steadyStateMs' | 'steadyStateJitterMs' | 'stopBackoff' | 'createBackoff' | 'recheckMs' | 'now'>>;
  /** image cleanup (Docker runtime only): check interval override for tests */
  imageCleanup?: { intervalMs?: number; now?: () => number };
  dockerVersion?: string;
}

/** a slot per task bound here: its runner once its task definition is read */
interface Slot {
  runner?: TaskRunner;
  name: string;
  cleanupTimer?: NodeJS.Timeout;
  /** StopTask seen before the runner existed */
  pendingStop?: string;
  /** the task is gone from the apiserver (deleted, or no longer bound here): stop and clean up */
  deleted?: boolean;
}

const iso = (ms = Date.now()) => new Date(ms).toISOString();

/**
 * The host's identity for the data-dir check: its machine id (renaming the host keeps it;
 * the hostname is the fallback on hosts without one), prefixed `m:` or `h:`.
 */
export function hostFingerprint(): string {
  let machine = '';
  try {
    machine = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    /* not every host has one */
  }
  const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 30);
  return machine ? `m:${hash(machine)}` : `h:${hash(os.hostname())}`;
}

/**
 * The host's ECS Anywhere-shaped managed-instance id (`mi-` and 17 hex digits): derived from
 * its fingerprint, so the same host keeps it across re-registrations. ECS_INSTANCE_ID overrides it.
 */
export function managedInstanceId(fingerprint: string): string {
  return `mi-${createHash('sha256').update(fingerprint).digest('hex').slice(0, 17)}`;
}

/** Same host? Fingerprints of the older kind (machine id + hostname) are compared as they are. */
export function sameHost(saved: string, now: string): boolean {
  if (saved === now) return true;
  if (!/^[mh]:/.test(saved)) {
    // written by an agent before machine-id-only fingerprints: renaming the host changed it
    let machine = '';
    try {
      machine = readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      /* none */
    }
    return createHash('sha256').update(`${machine}|${os.hostname()}`).digest('hex').slice(0, 32) === saved;
  }
  return false;
}

/**
 * Does a heartbeat write the instance's status? When it never has since this agent started
 * (`written` undefined), when what it reports changed, or when the apiserver says the
 * instance is recorded disconnected (`connected` false: the renewal's answer, or an apiserver
 * without leases). A renewal that says nothing (undefined) or true leaves it alone.
 */
export function shouldWriteInstanceStatus(written: string | undefined, want: string, connected: boolean | undefined): boolean {
  return written === undefined || written !== want || connected === false;
}

/** ECS task status from the engine's report. */
export function taskStatusFromReport(r: TaskReport, prev: TaskStatus | undefined, specStopCode?: string): Partial<TaskStatus> {
  const now = iso();
  const rank = ['PENDING', 'RUNNING', 'STOPPED'];
  const reported = r.known === 'RUNNING' ? 'RUNNING' : r.known === 'STOPPED' ? 'STOPPED' : 'PENDING';
  // a task's status only rises (the apiserver refuses anything else)
  const was = prev?.lastStatus === 'RUNNING' || prev?.lastStatus === 'STOPPED' ? prev.lastStatus : 'PENDING';
  const lastStatus = (rank.indexOf(reported) >= rank.indexOf(was) ? reported : was) as 'PENDING' | 'RUNNING' | 'STOPPED';
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
    out.stopCode =
      (specStopCode as TaskStatus['stopCode']) ??
      r.stopCode ??
      (essentialExit ? 'EssentialContainerExited' : !prev?.startedAt && !out.startedAt ? 'TaskFailedToStart' : undefined);
    if (!out.stopCode) delete out.stopCode;
  }
  if (r.ipAddress) out.attachments = [{ id: 'eni', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: r.ipAddress }] }];
  return out;
}

/** The task the engine runs, from the API task and its (immutable) task definition. */
export function runtimeTask(t: Task, stored: { spec: TaskDefinitionSpec; status?: { family?: string; revision?: number } }, cluster: string, instance?: string): RuntimeTask {
  const daemon = t.spec.daemonTaskDefinition !== undefined;
  // ECS's defaults apply here (the stored spec is as the user wrote it)
  const td = { ...stored, spec: effectiveTaskDefinition(stored.spec, daemon) as TaskDefinitionSpec };
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
  const [family, rev] = taskRevision(t).split(':');
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
    ...(instance ? { instance } : {}),
    // a task's overrides of the task-level cpu and memory win over its definition's (the scheduler placed it by them)
    ...((t.spec.overrides?.cpu ?? td.spec.cpu) !== undefined ? { cpu: Number(t.spec.overrides?.cpu ?? td.spec.cpu) } : {}),
    ...((t.spec.overrides?.memory ?? td.spec.memory) !== undefined ? { memory: Number(t.spec.overrides?.memory ?? td.spec.memory) } : {}),
    ...(td.spec.pidMode ? { pidMode: td.spec.pidMode } : {}),
    ...(td.spec.ipcMode ? { ipcMode: td.spec.ipcMode } : {}),
  };
}

/**
 * The node agent: registers its container instance (once: identity and credential live in
 * ECS_DATADIR), heartbeats, watches the tasks bound to it, runs each through one
 * TaskRunner (the only writer of that task's status), reports state changes in batches
 * (with a per-task backoff when the apiserver refuses or is away), cleans stopped tasks up
 * ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION (+ jitter) after they stopped -- by the persisted
 * time, so also after a restart -- removes unused images, and serves the ECS introspection
 * API. Nothing it does on behalf of a task can throw out of an event handler: a failed start
 * of a runner is retried with backoff (review D6).
 */
export class Agent {
  private client: Client;
  /** berth Secrets, read with the node credential the client holds at the time */
  private readonly secrets = apiSecretReader(() => this.client);
  readonly checkpoint: Checkpoint;
  instanceId = '';
  containerInstanceArn = '';
  private informer?: Informer<Task>;
  private readonly runners = new Map<string, Slot>();
  private readonly tds = new Map<string, Promise<TaskDefinition>>();
  private readonly dirty = new Map<string, TaskReport>();
  /** the newest report of a task whose write waits out a backoff */
  private readonly held = new Map<string, { report: TaskReport; timer: NodeJS.Timeout; backoff: Backoff }>();
  /** tasks cleaned up: a stale event about one must not run it again (review D15) */
  private readonly cleaned = new Map<string, number>();
  private readonly retryStart = new Map<string, { timer?: NodeJS.Timeout; backoff: Backoff }>();
  private heartbeatTimer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private introspection?: Server;
  private logServer?: Server;
  private images?: ImageCleanup;
  /** service discovery DNS for this host's containers (Docker runtime, unless disabled) */
  discovery?: ServiceDiscovery;
  /** images the task runners are about to use: image cleanup keeps them (R2-8) */
  private readonly imagesInUse = new ImagesInUse();
  /** the container-log endpoint and the secret the apiserver presents to it */
  private logs?: { endpoint: string; token: string };
  private stopped = false;
  /** aborted by stop(): what waits out a backoff before the agent runs (registration) ends then */
  private readonly stopping = new AbortController();
  private readonly log: Logger;
  private readonly cfg: AgentConfig;
  /** status writes made (for benchmarks) */
  statusWrites = 0;
  /** lease renewals made and instance status writes made by heartbeats (for tests and benchmarks) */
  leaseRenewals = 0;
  instanceStatusWrites = 0;
  /** what the last heartbeat that wrote the instance's status reported (JSON): later ones write only a change */
  private instanceWritten?: string;
  private leasesUnsupported = false;
  private beating = false;
  /** until when status reports go one PATCH per task (the apiserver answered that it has no taskstatuses route) */
  private batchStatusOffUntil = 0;
  /** status writes the apiserver refused or did not answer */
  statusWriteFailures = 0;

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
    for (const w of this.cfg.warnings ?? []) this.log.warn(w);
    await this.checkpoint.load();
    this.checkpoint.lock();
    this.deps.runtime.setImageState?.({
      known: (ref) => this.checkpoint.knowsImage(ref),
      used: (ref, id) => {
        if (id) void this.checkpoint.recordImageUse(id, ref, Date.now()).catch(() => undefined);
      },
    });
    try {
      if (this.cfg.logsListen) await this.serveLogs();
      await this.register();
      this.deps.runtime.setInstance?.(this.instanceId);
      // a registration's status is the apiserver's (a create keeps none of the body's): the logs
      // endpoint and its token arrive with a heartbeat, so the first one goes now, not a period
      // later; it also creates the instance's lease. (A resumed instance had its first in resumeRegistered.)
      if (!this.instanceWritten) await this.heartbeat();
      this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.deps.heartbeatMs ?? 15_000);
      this.heartbeatTimer.unref?.();
      // before any task runs: its containers get the DNS server as their resolver
      if (!this.cfg.dnsDisabled && this.deps.runtime.kind === 'docker') {
        const d = new ServiceDiscovery({ client: this.client, cluster: this.cfg.cluster, runtime: this.deps.runtime, address: this.cfg.dnsAddress, resolvConf: this.cfg.dnsResolvConf, log: this.log });
        if (await d.start()) this.discovery = d;
      }
      this.informer = new Informer<Task>(this.client, 'Task', { namespace: this.cfg.cluster, fieldSelector: `spec.containerInstance=${this.instanceId}`, log: this.log, resyncMs: 60_000 });
      this.informer.on({ add: (t) => this.onTask(t), update: (_p, t) => this.onTask(t), delete: (t) => this.onTaskDeleted(t) });
      this.informer.start();
      await this.informer.waitForSync();
      await this.removeOrphans();
      this.startImageCleanup();
      if (this.cfg.introspectionPort > 0) await this.serveIntrospection();
    } catch (e) {
      this.checkpoint.unlock();
      this.logServer?.close();
      this.informer?.stop();
      await this.discovery?.stop();
      if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
      throw e;
    }
    this.log.info({ instance: this.instanceId, arn: this.containerInstanceArn }, 'agent running');
  }

  /**
   * Resume the instance in the data dir. True when it is confirmed gone (the apiserver says
   * NotFound, to the node credential or the bootstrap one), so a new instance may be
   * registered. A refused credential (401) alone is not proof: an apiserver that has not seen
   * it yet (a lagging replica) says the same; it is retried with backoff for the resume window,
   * then the agent stops with a message rather than register a duplicate (review D14, S4).
   */
  private async resumeRegistered(instanceId: string, token: string): Promise<boolean> {
    this.client = this.deps.client.withToken(token);
    const window = this.deps.resumeWindowMs ?? 120_000;
    const until = Date.now() + window;
    const b = new Backoff({ minMs: 250, maxMs: 10_000, multiplier: 2, jitter: 0.2 });
    for (;;) {
      try {
        const ci = await this.client.get<ContainerInstance>('ContainerInstance', this.cfg.cluster, instanceId);
        this.instanceId = instanceId;
        this.containerInstanceArn = ci.status?.containerInstanceArn ?? this.checkpoint.snapshot().containerInstanceArn ?? '';
        await this.heartbeat();
        this.log.info({ instance: this.instanceId }, 'resumed the registered container instance');
        return false;
      } catch (e) {
        if (isBerthError(e, 'NotFound')) return true;
        if (isBerthError(e, 'Unauthorized') && (await this.confirmedGone(instanceId))) return true;
        if (Date.now() >= until) {
          if (isBerthError(e, 'Unauthorized')) {
            throw new BerthError(
              'Unauthorized',
              `the apiserver refuses the node credential of container instance ${instanceId} (ECS_DATADIR ${this.cfg.dataDir}) and does not say the instance is gone; not registering a second instance for this host. If the instance was deregistered, remove ${this.checkpoint.file} to register this host anew`,
            );
          }
          throw e;
        }
        const wait = b.next();
        this.log.warn({ instance: instanceId, err: (e as Error).message, retryInMs: wait }, 'cannot resume the registered container instance yet; retrying');
        await sleep(Math.min(wait, Math.max(0, until - Date.now())));
      }
    }
  }

  /** Can the bootstrap credential tell that the instance is gone (404)? */
  private async confirmedGone(instanceId: string): Promise<boolean> {
    if (!this.cfg.bootstrapToken && !this.deps.client.config.token) return false;
    try {
      await this.deps.client.get<ContainerInstance>('ContainerInstance', this.cfg.cluster, instanceId);
      return false;
    } catch (e) {
      return isBerthError(e, 'NotFound');
    } finally {
      this.deps.client.releaseIdleConnections(); // the bootstrap token's connection, as after a registration
    }
  }

  /** Register once; afterwards reuse the identity in the data dir. */
  private async register(): Promise<void> {
    const ck = this.checkpoint.snapshot();
    const fp = this.deps.fingerprint ?? hostFingerprint();
    if (ck.instanceId && ck.token) {
      if (ck.cluster && ck.cluster !== this.cfg.cluster) {
        throw new BerthError('BadRequest', `ECS_DATADIR ${this.cfg.dataDir} belongs to container instance ${ck.instanceId} of cluster "${ck.cluster}", not "${this.cfg.cluster}"; use another data dir or the original ECS_CLUSTER`);
      }
      if (ck.hostFingerprint && !sameHost(ck.hostFingerprint, fp)) {
        throw new BerthError('BadRequest', `ECS_DATADIR ${this.cfg.dataDir} was created on another host (container instance ${ck.instanceId}); copying an agent's data dir would run two agents as one instance. Remove ${this.checkpoint.file} to register this host as a new instance`);
      }
      if (!(await this.resumeRegistered(ck.instanceId, ck.token))) return;
      this.log.warn({ instance: ck.instanceId }, 'the registered container instance is gone (deregistered); registering anew');
      this.client = this.deps.client;
    }
    if (!this.cfg.bootstrapToken && !this.deps.client.config.token) {
      throw new BerthError('BadRequest', 'BERTH_BOOTSTRAP_TOKEN is required to register a new container instance');
    }
    const res = registeredResources(this.cfg, this.deps.host ?? hostFacts());
    const attributes = [
      { name: 'ecs.os-type', value: 'linux' },
      { name: 'ecs.cpu-architecture', value: os.arch() === 'x64' ? 'x86_64' : os.arch() },
      { name: 'ecs.instance-type', value: this.cfg.instanceType || 'berth.host' },
      ...(this.cfg.availabilityZone ? [{ name: 'ecs.availability-zone', value: this.cfg.availabilityZone }] : []),
      { name: 'ecs.capability.docker-remote-api.1.44' },
      // where other hosts reach this one: with the host ports of bridge-mode tasks, a task's endpoint
      { name: 'berth.host-ip', value: await this.hostAddress() },
      // what placement needs to know this instance can run (ECS registers the same capabilities)
      ...this.cfg.availableLoggingDrivers.map((d) => ({ name: `com.amazonaws.ecs.capability.logging-driver.${d}` })),
      ...(this.cfg.selinuxCapable ? [{ name: 'com.amazonaws.ecs.capability.selinux' }] : []),
      ...(this.cfg.apparmorCapable ? [{ name: 'com.amazonaws.ecs.capability.apparmor' }] : []),
      ...(!this.cfg.disablePrivileged ? [{ name: 'com.amazonaws.ecs.capability.privileged-container' }] : []),
      ...Object.entries(this.cfg.instanceAttributes).map(([name, value]) => ({ name, value })),
    ];
    const id = this.cfg.instanceId || randomUUID().replace(/-/g, '');
    const ci = await this.refusedRetried('register', () => this.deps.client.create<ContainerInstance>({
      apiVersion: API_VERSION,
      kind: 'ContainerInstance',
      metadata: { name: id, namespace: this.cfg.cluster },
      spec: {
        status: 'ACTIVE',
        hostname: os.hostname(),
        ec2InstanceId: this.cfg.instanceId || managedInstanceId(fp),
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
    } as ContainerInstance));
    // stopped while the create was out: nothing more (the checkpoint is no longer this agent's to write)
    if (this.stopped) throw new BerthError('ServiceUnavailable', `register: the agent stopped while registering container instance ${ci.metadata.name}`);
    const token = ci.metadata.annotations?.[NODE_TOKEN_ANNOTATION];
    if (!token) throw new BerthError('Forbidden', 'the apiserver issued no node credential: register with a bootstrap token (BERTH_BOOTSTRAP_TOKEN of group berth:bootstrappers)');
    this.instanceId = ci.metadata.name;
    this.containerInstanceArn = ci.status?.containerInstanceArn ?? '';
    this.client = this.deps.client.withToken(token);
    // the bootstrap token is done with: its connection goes now, not at the server's idle timeout
    this.deps.client.releaseIdleConnections();
    await this.checkpoint.update((d) => {
      d.cluster = this.cfg.cluster;
      d.instanceId = this.instanceId;
      d.containerInstanceArn = this.containerInstanceArn;
      d.token = token;
      d.hostFingerprint = fp;
    });
    this.log.info({ instance: this.instanceId, cpu: res.cpu, memory: res.memory }, 'registered container instance');
  }

  /**
   * A call the apiserver answered with a refusal that did nothing (429: too many requests or
   * connections, as when a fleet's hosts all register at once on one bootstrap token; 503: not
   * ready) is sent again after its Retry-After or a growing backoff (1 s .. 30 s, jittered, so
   * a fleet does not come back in step), until the agent stops: then it fails (the start does
   * not go on). A client-side failure (a connection that broke after the request went out: a
   * create may have happened) is never resent here; it is the caller's.
   */
  private async refusedRetried<T>(what: string, call: () => Promise<T>): Promise<T> {
    const backoff = new Backoff({ minMs: 1000, maxMs: 30_000, multiplier: 2, jitter: 0.3 });
    const abandoned = () => new BerthError('ServiceUnavailable', `${what}: the agent is stopping`);
    for (;;) {
      if (this.stopped) throw abandoned();
      try {
        return await call();
      } catch (e) {
        // an answer of the server's (a client-side failure says whether it was sent: notSent)
        const answered = e instanceof BerthError && e.details.notSent === undefined;
        if (!answered || !(isBerthError(e, 'TooManyRequests') || isBerthError(e, 'ServiceUnavailable'))) throw e;
        const wait = Math.max((e.details.retryAfterSeconds ?? 0) * 1000, backoff.next());
        this.log.warn({ err: e.message, retryInMs: wait, attempt: backoff.attempts }, `${what}: refused for now; retrying`);
        await delay(wait, undefined, { signal: this.stopping.signal }).catch(() => undefined);
      }
    }
  }

  /**
   * A heartbeat renews the instance's lease (a small write no watcher of instances sees) and
   * writes the instance's status only when what the agent reports of it changes (its logs
   * endpoint and token, its versions, the first heartbeat after a start) or when the
   * renewal's answer says the instance was recorded disconnected (agentConnected: false).
   * Against an apiserver without instance leases, every heartbeat writes the status, as before.
   */
  async heartbeat(): Promise<void> {
    if (this.stopped && this.instanceId) return;
    if (this.beating) return; // the previous one is still out
    this.beating = true;
    try {
      const connected = this.leasesUnsupported ? false : await this.renewLease();
      const want = this.instanceStatus();
      const text = JSON.stringify(want);
      if (shouldWriteInstanceStatus(this.instanceWritten, text, connected)) {
        await this.client.patch('ContainerInstance', this.cfg.cluster, this.instanceId, { status: { ...want, lastHeartbeat: iso() } }, { status: true });
        this.instanceWritten = text;
        this.instanceStatusWrites++;
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'heartbeat failed');
    } finally {
      this.beating = false;
    }
  }

  /** What the agent reports in its instance's status (besides the heartbeat's time). */
  private instanceStatus() {
    return { agentConnected: true, ...(this.logs ? { logs: this.logs } : {}), versionInfo: { agentVersion: AGENT_VERSION, ...(this.deps.dockerVersion ? { dockerVersion: this.deps.dockerVersion } : {}) } };
  }

  /**
   * Renews (or creates) this instance's InstanceLease; returns the instance's agentConnected
   * as the apiserver has it (the renewal's status), undefined when it does not say.
   */
  private async renewLease(): Promise<boolean | undefined> {
    const spec = { holderIdentity: this.instanceId, renewTime: iso(), leaseDurationSeconds: Math.max(1, Math.ceil((4 * (this.deps.heartbeatMs ?? 15_000)) / 1000)) };
    let out: InstanceLease;
    try {
      out = await this.client.patch<InstanceLease>('InstanceLease', this.cfg.cluster, this.instanceId, { spec });
    } catch (e) {
      if (!isBerthError(e, 'NotFound')) throw e;
      try {
        out = await this.client.create<InstanceLease>({ apiVersion: API_VERSION, kind: 'InstanceLease', metadata: { name: this.instanceId, namespace: this.cfg.cluster }, spec } as InstanceLease);
      } catch (e2) {
        if (isBerthError(e2, 'AlreadyExists')) return undefined; // created meanwhile (a second heartbeat): renewed by it
        if (!isBerthError(e2, 'NotFound')) throw e2;
        // an apiserver from before instance leases: heartbeats are status writes, as they were
        this.leasesUnsupported = true;
        this.log.info('the apiserver has no instance leases; heartbeats write the instance status');
        return false;
      }
    }
    this.leaseRenewals++;
    return out.status?.agentConnected;
  }

  private td(t: Task): Promise<TaskDefinition> {
    const daemon = t.spec.daemonTaskDefinition !== undefined;
    // the revision admission resolved at creation (the spec may name a family or an ARN)
    const name = taskRevision(t);
    const key = `${daemon ? 'd' : 't'}/${name}`;
    let p = this.tds.get(key);
    if (!p) {
      p = this.client.get<TaskDefinition>(daemon ? 'DaemonTaskDefinition' : 'TaskDefinition', undefined, name);
      p.catch(() => this.tds.delete(key));
      this.tds.set(key, p);
    }
    return p;
  }

  private arnOf(t: Task): string {
    return t.status?.taskArn ?? t.metadata.name;
  }

  private onTask(t: Task): void {
    if (this.stopped) return;
    const arn = this.arnOf(t);
    if (this.cleaned.has(arn)) return; // cleaned up already: a stale event must not run it again
    const have = this.runners.get(arn);
    if (have) {
      if (t.spec.desiredStatus === 'STOPPED') {
        const why = t.spec.stopReason ?? 'Task stopped by user';
        if (!have.runner) have.pendingStop ??= why;
        else if (have.runner.report().desired !== 'STOPPED') have.runner.stop(why);
      }
      return;
    }
    // reported STOPPED already: only what this agent still holds of it is of interest (its
    // containers, to clean up on schedule after a restart: review D4)
    if (t.status?.lastStatus === 'STOPPED' && !this.checkpoint.task(arn)) return;
    if (this.retryStart.get(arn)?.timer) return; // a retry is scheduled
    this.startRunner(t, arn);
  }

  /** Start the task's runner; on failure (Docker away, the task definition unreadable) retry with backoff (D6). */
  private startRunner(t: Task, arn: string): void {
    // the slot keeps a second event from starting a second runner
    const slot: Slot = { name: t.metadata.name };
    this.runners.set(arn, slot);
    void (async () => {
      let runner: TaskRunner | undefined;
      try {
        const td = await this.td(t);
        if (this.stopped) return this.runners.delete(arn);
        if (slot.deleted && !this.checkpoint.task(arn)) return this.runners.delete(arn); // deleted before anything ran
        const rt = runtimeTask(t, td as unknown as { spec: TaskDefinitionSpec; status?: { family?: string; revision?: number } }, this.cfg.cluster, this.instanceId);
        runner = new TaskRunner(rt, {
          runtime: this.deps.runtime,
          checkpoint: this.checkpoint,
          defaultStopTimeoutMs: this.cfg.containerStopTimeoutMs,
          pullDependentUpfront: this.cfg.pullDependentUpfront,
          images: this.imagesInUse,
          logger: this.log,
          secrets: this.secrets,
          ...this.deps.runner,
        });
        slot.runner = runner;
        runner.onChange((r) => this.onReport(arn, r));
        await runner.start();
      } catch (e) {
        slot.runner = undefined;
        this.runners.delete(arn);
        await runner?.close().catch(() => undefined);
        if (this.stopped) return;
        const retry = this.retryStart.get(arn) ?? { backoff: new Backoff({ minMs: 1000, maxMs: 60_000, multiplier: 2, jitter: 0.2 }) };
        const wait = retry.backoff.next();
        this.log.warn({ task: t.metadata.name, err: (e as Error).message, retryInMs: wait }, 'cannot start the task runner; retrying');
        retry.timer = setTimeout(() => {
          retry.timer = undefined;
          const cur = this.informer?.get(`${this.cfg.cluster}/${t.metadata.name}`);
          if (cur) this.onTask(cur);
          else if (this.checkpoint.task(arn)) void this.cleanupGone(arn);
        }, wait);
        retry.timer.unref?.();
        this.retryStart.set(arn, retry);
        return;
      }
      this.retryStart.delete(arn);
      const cur = this.informer?.get(`${this.cfg.cluster}/${t.metadata.name}`);
      if (slot.deleted || !cur) {
        slot.deleted = true;
        runner.stop('Task deleted');
      } else if (cur.spec.desiredStatus === 'STOPPED' || slot.pendingStop) runner.stop(cur.spec.stopReason ?? slot.pendingStop ?? 'Task stopped by user');
      this.onReport(arn, runner.report());
    })();
  }

  private onReport(arn: string, r: TaskReport): void {
    if (this.cleaned.has(arn)) return; // its last events, while it is being removed
    const slot = this.runners.get(arn);
    // a task gone from the apiserver is cleaned up as soon as it has stopped (review D13)
    if (slot?.deleted) {
      if (r.known === 'STOPPED') void this.cleanup(arn);
      return;
    }
    this.queueReport(arn, r);
  }

  private onTaskDeleted(t: Task): void {
    const arn = this.arnOf(t);
    const have = this.runners.get(arn);
    if (!have) {
      // nothing runs it here, but this agent may still hold its stopped containers
      if (this.checkpoint.task(arn)) void this.cleanupGone(arn);
      return;
    }
    have.deleted = true;
    if (!have.runner) return; // startRunner sees the flag
    have.runner.stop('Task deleted');
    if (have.runner.report().known === 'STOPPED') void this.cleanup(arn);
  }

  private async cleanup(arn: string): Promise<void> {
    const have = this.runners.get(arn);
    if (!have?.runner) return;
    if (have.cleanupTimer) clearTimeout(have.cleanupTimer);
    this.runners.delete(arn);
    this.forget(arn);
    try {
      await have.runner.cleanup();
    } catch (e) {
      this.log.warn({ task: arn, err: (e as Error).message }, 'cleanup failed');
    }
    await have.runner.close();
  }

  /** A task in the checkpoint with no runner (gone from the apiserver): remove what is left of it. */
  private async cleanupGone(arn: string): Promise<void> {
    this.forget(arn);
    try {
      for (const c of await this.deps.runtime.list({ [LABELS.taskArn]: arn })) {
        if (c.labels[LABELS.instance] && c.labels[LABELS.instance] !== this.instanceId) continue;
        if (c.status === 'RUNNING') await this.deps.runtime.stop(c.id, c.stopTimeoutMs ?? this.cfg.containerStopTimeoutMs).catch(() => undefined);
      }
      await this.deps.runtime.cleanupTask({ taskArn: arn, instance: this.instanceId });
      await this.checkpoint.removeTask(arn);
    } catch (e) {
      this.log.warn({ task: arn, err: (e as Error).message }, 'cleanup failed');
    }
  }

  /** Tombstone a cleaned-up task (bounded: the oldest go first). */
  private forget(arn: string): void {
    this.cleaned.set(arn, Date.now());
    if (this.cleaned.size > 10_000) this.cleaned.delete(this.cleaned.keys().next().value!);
    const held = this.held.get(arn);
    if (held) clearTimeout(held.timer);
    this.held.delete(arn);
    this.dirty.delete(arn);
  }

  /** Tasks this agent ran whose task is no longer bound here: stop and remove what is left of them. */
  private async removeOrphans(): Promise<void> {
    const known = new Set(this.informer!.list().map((t) => this.arnOf(t)));
    for (const arn of Object.keys(this.checkpoint.snapshot().tasks)) {
      if (known.has(arn)) continue;
      this.log.info({ task: arn }, 'removing the containers of a task no longer bound here');
      await this.cleanupGone(arn);
    }
  }

  /** Arm the cleanup of a stopped task: ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION (+ jitter) after it stopped. */
  private armCleanup(arn: string, stoppedAt: number | undefined): void {
    const slot = this.runners.get(arn);
    if (!slot?.runner || slot.cleanupTimer) return;
    const jitter = this.cfg.taskCleanupWaitJitterMs ? Math.random() * this.cfg.taskCleanupWaitJitterMs : 0;
    const due = (stoppedAt ?? Date.now()) + this.cfg.taskCleanupWaitMs + jitter;
    slot.cleanupTimer = setTimeout(() => void this.cleanup(arn), Math.max(0, due - Date.now()));
    slot.cleanupTimer.unref?.();
  }

  private queueReport(arn: string, r: TaskReport): void {
    const held = this.held.get(arn);
    if (held) {
      held.report = r; // sent when its backoff is over
      return;
    }
    this.dirty.set(arn, r);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        void this.flush();
      }, this.deps.reportBatchMs ?? 100);
    }
  }

  /** A refused or unanswered write is retried after the task's own backoff, with its newest report (D7). */
  private holdReport(arn: string, r: TaskReport): void {
    const prev = this.held.get(arn);
    const backoff = prev?.backoff ?? new Backoff(this.deps.reportBackoff ?? { minMs: 200, maxMs: 30_000, multiplier: 2, jitter: 0.2 });
    if (prev) clearTimeout(prev.timer);
    const wait = backoff.next();
    const entry = {
      report: r,
      backoff,
      timer: setTimeout(() => {
        const cur = this.held.get(arn);
        if (!cur || cur !== entry) return;
        this.dirty.set(arn, cur.report);
        entry.timer = undefined as unknown as NodeJS.Timeout;
        void this.flush();
      }, wait),
    };
    entry.timer.unref?.();
    this.held.set(arn, entry);
  }

  /**
   * Writes the pending reports: in one request (POST taskstatuses, committed in one store
   * txn as far as its limits allow), each task answered for itself; against an apiserver
   * without that route, one status PATCH per task, many in parallel (asked again after a
   * minute: the apiserver may have been upgraded).
   */
  async flush(): Promise<void> {
    if (this.flushing) await this.flushing;
    const batch = [...this.dirty];
    this.dirty.clear();
    if (!batch.length) return;
    this.flushing = (async () => {
      const items = batch.map(([arn, r]) => {
        const slot = this.runners.get(arn);
        const name = slot?.name ?? arn;
        const cur = this.informer?.get(`${this.cfg.cluster}/${name}`);
        const status = taskStatusFromReport(r, cur?.status, cur?.spec.stopCode);
        return { arn, r, name, status, patch: { ...status, version: (cur?.status?.version ?? 1) + 1 } };
      });
      if (Date.now() >= this.batchStatusOffUntil) {
        for (let k = 0; k < items.length; k += MAX_STATUSES_PER_CALL) {
          const part = items.slice(k, k + MAX_STATUSES_PER_CALL);
          let results: Awaited<ReturnType<Client['patchTaskStatuses']>>;
          try {
            results = await this.client.patchTaskStatuses(
              this.cfg.cluster,
              part.map((it) => ({ task: it.name, status: it.patch })),
            );
          } catch (e) {
            if (isBerthError(e, 'NotFound') && e.details.name === 'taskstatuses') {
              this.log.info('the apiserver has no taskstatuses route; reporting task statuses one by one');
              this.batchStatusOffUntil = Date.now() + 60_000;
              await this.patchEach(items.slice(k));
              return;
            }
            // the call failed as a whole: every task of it waits for its own backoff
            for (const it of part) this.reportFailed(it.arn, it.r, it.name, e);
            continue;
          }
          for (const [j, it] of part.entries()) {
            const res = results[j];
            if (res && res.task === it.name && !res.error) await this.reportWritten(it.arn, it.r, it.status.lastStatus);
            else this.reportFailed(it.arn, it.r, it.name, res?.error ?? new Error('the apiserver did not answer for this task'));
          }
        }
        return;
      }
      await this.patchEach(items);
    })();
    await this.flushing;
    this.flushing = undefined;
  }

  /** One status PATCH per task, 16 at a time (an apiserver without the taskstatuses route). */
  private async patchEach(items: Array<{ arn: string; r: TaskReport; name: string; status: { lastStatus?: string }; patch: Record<string, unknown> }>): Promise<void> {
    let i = 0;
    const worker = async () => {
      while (i < items.length) {
        const it = items[i++];
        try {
          await this.client.patch('Task', this.cfg.cluster, it.name, { status: it.patch }, { status: true });
        } catch (e) {
          this.reportFailed(it.arn, it.r, it.name, e);
          continue;
        }
        await this.reportWritten(it.arn, it.r, it.status.lastStatus);
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, items.length) }, worker));
  }

  /** A task's report was written: its backoff ends, the checkpoint records it, a STOPPED task's cleanup is armed. */
  private async reportWritten(arn: string, r: TaskReport, lastStatus: string | undefined): Promise<void> {
    this.statusWrites++;
    const held = this.held.get(arn);
    if (held?.report === r) this.held.delete(arn);
    const ck = this.checkpoint.task(arn);
    if (lastStatus && ck && ck.sentStatus !== lastStatus) await this.checkpoint.recordSent(arn, lastStatus, Date.now()).catch(() => undefined);
    if (lastStatus === 'STOPPED') this.armCleanup(arn, r.knownAt);
  }

  /** A task's report was refused or not answered: gone or not bound here, stop it; otherwise its backoff (D7). */
  private reportFailed(arn: string, r: TaskReport, name: string, e: unknown): void {
    this.statusWriteFailures++;
    if (isBerthError(e, 'NotFound') || isBerthError(e, 'Forbidden')) {
      // the task is gone, or no longer bound here: stop it and clean up once stopped
      this.held.delete(arn);
      const slot = this.runners.get(arn);
      if (slot?.runner) {
        slot.deleted = true;
        slot.runner.stop('Task deleted');
        if (slot.runner.report().known === 'STOPPED') void this.cleanup(arn);
      }
      return;
    }
    this.log.warn({ task: name, err: (e as Error).message }, 'status report failed; retrying with backoff');
    this.holdReport(arn, this.held.get(arn)?.report ?? r);
  }

  /** Image cleanup on the Docker runtime (ECS_DISABLE_IMAGE_CLEANUP and friends). */
  private startImageCleanup(): void {
    const rt = this.deps.runtime as ContainerRuntime & { api?: ConstructorParameters<typeof ImageCleanup>[0]['api']; namespaceImageName?: string };
    if (rt.kind !== 'docker' || !rt.api) return;
    this.images = new ImageCleanup({
      api: rt.api,
      checkpoint: this.checkpoint,
      config: this.cfg,
      logger: this.log,
      owner: { cluster: this.cfg.cluster, instance: this.instanceId },
      inUse: this.imagesInUse,
      ...this.deps.imageCleanup,
    });
    this.images.start();
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
        if (!slot?.runner) return fail(404, `task ${task} is not running on this instance (or its containers were cleaned up)`);
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
        const tasks = [...this.runners.values()].flatMap((s) => (s.runner ? [s.runner] : [])).map((runner) => {
          const r = runner.report();
          return {
            Arn: r.taskArn,
            DesiredStatus: r.desired,
            KnownStatus: r.known,
            Family: runner.task.family,
            Version: String(runner.task.revision),
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
    this.stopping.abort();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.informer?.stop();
    await this.discovery?.stop();
    this.images?.stop();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    for (const h of this.held.values()) {
      clearTimeout(h.timer);
      this.dirty.set(h.report.taskArn, h.report);
    }
    this.held.clear();
    for (const r of this.retryStart.values()) if (r.timer) clearTimeout(r.timer);
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
    this.checkpoint.unlock();
  }
}
