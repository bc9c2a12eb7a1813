/**
 * ContainerRuntime on Docker through dockerode: translates ECS container definitions into
 * Docker create bodies, pulls per ECS_IMAGE_PULL_BEHAVIOR, follows the event stream on a
 * separate client without timeout (reopened on EOF, re-listing on every reconnect), and
 * implements the awsvpc and daemon_bridge network modes with namespace containers.
 *
 * awsvpc: a per-task namespace container (`...-internalecspause-TASK`, the local busybox image
 * running `sleep`) on the default bridge; the task's containers join it with NetworkMode
 * `container:<id>`, so they share localhost, and the task's IP is that container's IP.
 *
 * daemon_bridge: a Docker bridge network `berth-daemon-bridge` (169.254.172.0/22, gateway
 * .1) holding one namespace container per instance fixed at 169.254.172.2; every daemon
 * task container joins that namespace (so daemons share ports, as in ECS). Application
 * containers in bridge mode and awsvpc namespace containers are connected to the network as
 * a second interface, so they reach 169.254.172.2 without any configuration; the host
 * reaches it through the bridge's gateway address. Containers that existed before the daemon
 * bridge are connected when it is created.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { badRequest, internal, invalid, BerthError } from '../../errors/errors.ts';
import { silentLogger } from '../../log/log.ts';
import type { ContainerDefinition } from '../../api/taskdefinition.ts';
import type { AgentConfig, ImagePullBehavior } from '../config.ts';
import {
  LABELS,
  containerLabels,
  hostPortKey,
  type ContainerRuntime,
  type ContainerStatus,
  type CreateOptions,
  type EventListener,
  type HealthStatus,
  type LogOptions,
  type NetworkBinding,
  type PullOptions,
  type PullResult,
  type RegistryAuth,
  type RuntimeContainer,
  type RuntimeEvent,
  type RuntimeTask,
  type TaskResources,
} from './runtime.ts';

/** daemon_bridge: one namespace per instance, reachable at this address from application tasks. */
export const DAEMON_BRIDGE = {
  network: 'berth-daemon-bridge',
  subnet: '169.254.172.0/22',
  gateway: '169.254.172.1',
  address: '169.254.172.2',
  container: 'berth-daemon-namespace',
} as const;

export type DockerRuntimeConfig = Pick<
  AgentConfig,
  'dockerHost' | 'imagePullBehavior' | 'engineAuthType' | 'engineAuthData' | 'disablePrivileged' | 'availableLoggingDrivers' | 'containerCreateTimeoutMs' | 'cluster'
> &
  Partial<Pick<AgentConfig, 'containerStartTimeoutMs'>> &
  Partial<Pick<AgentConfig, 'imagePullTimeoutMs'>>;

export interface DockerRuntimeOptions {
  config: DockerRuntimeConfig;
  logger?: Logger;
  /** image of the awsvpc / daemon_bridge namespace containers (runs `sleep`) */
  namespaceImage?: string;
  /** how long a "default"-behaviour pull may take before falling back to the cache */
  defaultPullFallbackMs?: number;
  /** resolves a container's repositoryCredentials.credentialsParameter to registry auth */
  resolveRepositoryCredentials?: (parameter: string) => Promise<RegistryAuth>;
  /** event-stream reconnect delay (ms) */
  reconnectDelayMs?: number;
}

type DockerInspect = Docker.ContainerInspectInfo;

function dockerOpts(host: string): Docker.DockerOptions {
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  if (host.startsWith('/')) return { socketPath: host };
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port || 2375), protocol: 'http' };
}

const statusOf = (state: string): ContainerStatus =>
  state === 'running' || state === 'paused' || state === 'restarting' ? 'RUNNING' : state === 'created' ? 'CREATED' : 'STOPPED';

const healthOf = (h?: string): HealthStatus => (h === 'healthy' ? 'HEALTHY' : h === 'unhealthy' ? 'UNHEALTHY' : 'UNKNOWN');

function fromInspect(i: DockerInspect): RuntimeContainer {
  const bindings: NetworkBinding[] = [];
  for (const [key, list] of Object.entries(i.NetworkSettings?.Ports ?? {})) {
    const [port, proto] = key.split('/');
    for (const b of list ?? []) {
      bindings.push({ containerPort: Number(port), hostPort: Number(b.HostPort), protocol: proto === 'udp' ? 'udp' : 'tcp', bindIP: b.HostIp || '0.0.0.0' });
    }
  }
  // the task's address is not its daemon-bridge interface
  const nets = Object.entries(i.NetworkSettings?.Networks ?? {}).sort(([a], [b]) => Number(a === 'berth-daemon-bridge') - Number(b === 'berth-daemon-bridge'));
  const ip = nets.map(([, n]) => n.IPAddress).find((a) => a) || (i.NetworkSettings as { IPAddress?: string } | undefined)?.IPAddress || undefined;
  const st = i.State;
  const stopped = statusOf(st.Status) === 'STOPPED';
  return {
    id: i.Id,
    name: i.Name.replace(/^\//, ''),
    image: i.Config.Image,
    labels: i.Config.Labels ?? {},
    status: statusOf(st.Status),
    state: st.Status,
    exitCode: stopped ? st.ExitCode : undefined,
    reason: st.OOMKilled ? 'OutOfMemoryError: Container killed due to memory usage' : st.Error || undefined,
    startedAt: st.StartedAt && !st.StartedAt.startsWith('0001') ? new Date(st.StartedAt) : undefined,
    finishedAt: st.FinishedAt && !st.FinishedAt.startsWith('0001') ? new Date(st.FinishedAt) : undefined,
    health: healthOf((st as { Health?: { Status?: string } }).Health?.Status),
    networkBindings: bindings,
    ipAddress: ip,
  };
}

/** The registry host of an image reference ("docker.io" for Docker Hub). */
export function registryOf(image: string): string {
  const first = image.split('/')[0];
  if (image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return first;
  return 'docker.io';
}

/** Registry auth for an image from ECS_ENGINE_AUTH_TYPE/_DATA (docker or dockercfg formats). */
export function engineAuthFor(image: string, type: string, data: string): RegistryAuth | undefined {
  if (!type || !data) return undefined;
  let parsed: Record<string, Record<string, string>>;
  try {
    parsed = JSON.parse(data);
  } catch {
    throw invalid('AgentConfig', 'ECS_ENGINE_AUTH_DATA', [{ field: 'ECS_ENGINE_AUTH_DATA', message: 'is not valid JSON' }]);
  }
  const reg = registryOf(image);
  const hostOf = (k: string) => {
    try {
      return new URL(k.includes('://') ? k : `https://${k}`).host;
    } catch {
      return k;
    }
  };
  const matches = (k: string) => {
    const h = hostOf(k);
    return h === reg || (reg === 'docker.io' && (h === 'index.docker.io' || h === 'registry-1.docker.io'));
  };
  const key = Object.keys(parsed).find(matches);
  if (!key) return undefined;
  const e = parsed[key];
  if (type === 'docker') return { username: e.username, password: e.password, email: e.email, serveraddress: key };
  // dockercfg: {"auth": base64(user:pass), "email": ...}
  const decoded = Buffer.from(e.auth ?? '', 'base64').toString('utf8');
  const idx = decoded.indexOf(':');
  if (idx < 0) throw invalid('AgentConfig', 'ECS_ENGINE_AUTH_DATA', [{ field: 'ECS_ENGINE_AUTH_DATA', message: `auth for ${key} is not base64("user:password")` }]);
  return { username: decoded.slice(0, idx), password: decoded.slice(idx + 1), email: e.email, serveraddress: key };
}

const seconds = (s: number) => s * 1_000_000_000;

/**
 * Translate one ECS container definition of a task into a Docker create body. Pure: all the
 * host state it needs (resources, peer names, namespace ids) comes in as arguments.
 */
export function toCreateBody(
  task: RuntimeTask,
  def: ContainerDefinition,
  opts: CreateOptions & { config: Pick<DockerRuntimeConfig, 'disablePrivileged' | 'availableLoggingDrivers'>; daemonNamespaceId?: string },
): Docker.ContainerCreateOptions {
  const field = (f: string) => `containerDefinitions[${def.name}].${f}`;
  const bad = (f: string, message: string) => invalid('Task', task.taskArn, [{ field: field(f), message }]);
  if (def.privileged && opts.config.disablePrivileged) {
    throw bad('privileged', 'privileged containers are disabled on this instance (ECS_DISABLE_PRIVILEGED)');
  }
  const mode = task.networkMode;
  const host: Docker.HostConfig = {};
  const exposed: Record<string, object> = {};
  // ports
  if (def.portMappings?.length) {
    const bindings: Record<string, Array<{ HostPort: string; HostIp?: string }>> = {};
    for (const pm of def.portMappings) {
      const proto = pm.protocol ?? 'tcp';
      const key = `${pm.containerPort}/${proto}`;
      exposed[key] = {};
      if (mode === 'bridge') {
        const assigned = task.assignedHostPorts?.[hostPortKey(def.name, pm.containerPort, proto)] ?? pm.hostPort ?? 0;
        (bindings[key] ??= []).push({ HostPort: assigned ? String(assigned) : '' });
      } else if ((mode === 'host' || mode === 'awsvpc') && pm.hostPort && pm.hostPort !== pm.containerPort) {
        throw bad('portMappings', `in ${mode} network mode hostPort must equal containerPort (${pm.hostPort} != ${pm.containerPort})`);
      }
    }
    if (mode === 'bridge') host.PortBindings = bindings;
  }
  // network mode
  switch (mode) {
    case 'bridge':
      host.NetworkMode = 'bridge';
      break;
    case 'host':
      host.NetworkMode = 'host';
      break;
    case 'none':
      host.NetworkMode = 'none';
      break;
    case 'awsvpc':
      if (!opts.resources.namespaceContainerId) throw internal(`task ${task.taskArn}: awsvpc namespace container missing`);
      host.NetworkMode = `container:${opts.resources.namespaceContainerId}`;
      break;
    case 'daemon_bridge':
      if (!opts.daemonNamespaceId) throw internal('daemon_bridge namespace container missing');
      host.NetworkMode = `container:${opts.daemonNamespaceId}`;
      break;
  }
  // links (bridge only): "name[:alias]" resolved to the docker names of the same task
  if (def.links?.length) {
    if (mode !== 'bridge') throw bad('links', `links are only supported in bridge network mode, not ${mode}`);
    host.Links = def.links.map((l) => {
      const [target, alias] = l.split(':');
      const peer = opts.peers[target];
      if (!peer) throw bad('links', `linked container "${target}" is not a created container of this task`);
      return `${peer}:${alias ?? target}`;
    });
  }
  // volumes
  const binds: string[] = [];
  for (const mp of def.mountPoints ?? []) {
    const src = opts.resources.volumeSources[mp.sourceVolume];
    if (!src) throw bad('mountPoints', `sourceVolume "${mp.sourceVolume}" is not a volume of the task`);
    binds.push(`${src.source}:${mp.containerPath}${mp.readOnly ? ':ro' : ''}`);
  }
  if (binds.length) host.Binds = binds;
  if (def.volumesFrom?.length) {
    host.VolumesFrom = def.volumesFrom.map((vf) => {
      const peer = opts.peers[vf.sourceContainer];
      if (!peer) throw bad('volumesFrom', `sourceContainer "${vf.sourceContainer}" is not a created container of this task`);
      return `${peer}${vf.readOnly ? ':ro' : ''}`;
    });
  }
  // resources
  host.CpuShares = Math.max(def.cpu ?? 0, 2);
  if (def.memory) host.Memory = def.memory * 1024 * 1024;
  if (def.memoryReservation) host.MemoryReservation = def.memoryReservation * 1024 * 1024;
  if (def.privileged) host.Privileged = true;
  if (def.readonlyRootFilesystem) host.ReadonlyRootfs = true;
  const lp = def.linuxParameters;
  if (lp?.capabilities?.add?.length) host.CapAdd = lp.capabilities.add;
  if (lp?.capabilities?.drop?.length) host.CapDrop = lp.capabilities.drop;
  if (lp?.initProcessEnabled) host.Init = true;
  if (lp?.sharedMemorySize) host.ShmSize = lp.sharedMemorySize * 1024 * 1024;
  if (lp?.tmpfs?.length) {
    host.Tmpfs = Object.fromEntries(lp.tmpfs.map((t) => [t.containerPath, [`size=${t.size}m`, ...(t.mountOptions ?? [])].join(',')]));
  }
  if (lp?.devices?.length) {
    host.Devices = lp.devices.map((d) => ({
      PathOnHost: d.hostPath,
      PathInContainer: d.containerPath ?? d.hostPath,
      CgroupPermissions: (d.permissions ?? ['read', 'write', 'mknod']).map((p) => p[0]).join(''),
    }));
  }
  if (lp?.maxSwap !== undefined && def.memory) host.MemorySwap = def.memory * 1024 * 1024 + lp.maxSwap * 1024 * 1024;
  if (lp?.swappiness !== undefined) host.MemorySwappiness = lp.swappiness;
  if (def.ulimits?.length) host.Ulimits = def.ulimits.map((u) => ({ Name: u.name, Soft: u.softLimit, Hard: u.hardLimit }));
  if (def.systemControls?.length) {
    if (mode === 'awsvpc' || mode === 'daemon_bridge') {
      // namespaced sysctls belong to the namespace owner; applied there
    } else host.Sysctls = Object.fromEntries(def.systemControls.map((s) => [s.namespace, s.value]));
  }
  if (def.dnsServers?.length) host.Dns = def.dnsServers;
  if (def.dnsSearchDomains?.length) host.DnsSearch = def.dnsSearchDomains;
  if (def.extraHosts?.length) host.ExtraHosts = def.extraHosts.map((h) => `${h.hostname}:${h.ipAddress}`);
  if (def.dockerSecurityOptions?.length) host.SecurityOpt = def.dockerSecurityOptions;
  // logging
  const log = def.logConfiguration ?? { logDriver: 'json-file' as const };
  if (!opts.config.availableLoggingDrivers.includes(log.logDriver)) {
    throw bad('logConfiguration.logDriver', `log driver "${log.logDriver}" is not available on this instance (ECS_AVAILABLE_LOGGING_DRIVERS: ${opts.config.availableLoggingDrivers.join(', ')})`);
  }
  host.LogConfig = { Type: log.logDriver, Config: log.options ?? {} };

  const body: Docker.ContainerCreateOptions = {
    name: opts.name,
    Image: def.image,
    Labels: { ...(def.dockerLabels ?? {}), ...containerLabels(task, def.name) },
    HostConfig: host,
  };
  if (Object.keys(exposed).length && (mode === 'bridge' || mode === 'host' || mode === 'none')) body.ExposedPorts = exposed;
  if (def.environment?.length) body.Env = def.environment.map((e) => `${e.name}=${e.value}`);
  if (def.entryPoint) body.Entrypoint = def.entryPoint;
  if (def.command) body.Cmd = def.command;
  if (def.user) body.User = def.user;
  if (def.workingDirectory) body.WorkingDir = def.workingDirectory;
  if (def.hostname) {
    if (mode === 'host' || mode === 'awsvpc' || mode === 'daemon_bridge') throw bad('hostname', `hostname is not supported in ${mode} network mode`);
    body.Hostname = def.hostname;
  }
  if (def.disableNetworking) body.NetworkDisabled = true;
  if (def.interactive) body.OpenStdin = true;
  if (def.pseudoTerminal) body.Tty = true;
  if (def.healthCheck && def.healthCheck.command[0] !== 'NONE') {
    const h = def.healthCheck;
    body.Healthcheck = {
      Test: h.command,
      Interval: seconds(h.interval ?? 30),
      Timeout: seconds(h.timeout ?? 5),
      Retries: h.retries ?? 3,
      StartPeriod: seconds(h.startPeriod ?? 0),
    };
  }
  return body;
}

export class DockerRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  readonly docker: Docker;
  /** a separate client without timeout, for the event stream (STYLE 13) */
  private readonly streamDocker: Docker;
  private readonly log: Logger;
  private readonly emitter = new EventEmitter();
  private stream?: NodeJS.ReadableStream;
  private closed = false;
  private lastEventTime = 0;
  private daemonNamespaceId?: string;

  constructor(private readonly opts: DockerRuntimeOptions) {
    this.docker = new Docker(dockerOpts(opts.config.dockerHost));
    this.streamDocker = new Docker(dockerOpts(opts.config.dockerHost));
    this.log = (opts.logger ?? silentLogger()).child({ component: 'docker-runtime' });
    this.emitter.setMaxListeners(0);
  }

  // ---- images ----

  private async hasImage(image: string): Promise<boolean> {
    try {
      await this.docker.getImage(image).inspect();
      return true;
    } catch {
      return false;
    }
  }

  private async pullNow(image: string, auth: RegistryAuth | undefined, timeoutMs?: number): Promise<void> {
    const ref = image.includes(':') || image.includes('@') ? image : `${image}:latest`;
    const work = (async () => {
      const stream = (await this.docker.pull(ref, auth ? { authconfig: auth } : {})) as NodeJS.ReadableStream;
      await new Promise<void>((resolve, reject) => {
        this.docker.modem.followProgress(
          stream,
          (err: Error | null) => (err ? reject(err) : resolve()),
          // every progress object is scanned for `error`
          (ev: { error?: string; errorDetail?: { message?: string } }) => {
            if (ev.error || ev.errorDetail) {
              reject(new Error(ev.error ?? ev.errorDetail?.message));
              (stream as Readable).destroy?.();
            }
          },
        );
      });
    })();
    if (!timeoutMs) return work;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`pull of ${ref} timed out after ${timeoutMs}ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      work.catch(() => undefined);
    }
  }

  async pull(image: string, opts: PullOptions = {}): Promise<PullResult> {
    const cfg = this.opts.config;
    const auth = opts.auth ?? engineAuthFor(image, cfg.engineAuthType, cfg.engineAuthData);
    const behavior: ImagePullBehavior = cfg.imagePullBehavior;
    const cached = await this.hasImage(image);
    // once: an image present locally was pulled before (image cleanup removes it otherwise)
    if (cached && (behavior === 'prefer-cached' || behavior === 'once')) {
      return { image, fromCache: true };
    }
    try {
      // with a cached image to fall back on, a pull may only take a short time
      const timeout = cached && behavior !== 'always' ? (this.opts.defaultPullFallbackMs ?? 5000) : cfg.imagePullTimeoutMs;
      await this.pullNow(image, auth, timeout);
      return { image, fromCache: false };
    } catch (e) {
      const msg = (e as Error).message;
      if (behavior !== 'always' && cached) {
        this.log.info({ image, err: msg }, 'pull failed, using the cached image');
        return { image, fromCache: true, pullError: msg };
      }
      throw new BerthError('ServiceUnavailable', `CannotPullContainerError: ${msg}`, { kind: 'Image', name: image });
    }
  }

  // ---- tasks ----

  private taskSuffix(task: RuntimeTask): string {
    return (task.taskArn.split('/').pop() ?? task.taskArn).replace(/[^a-zA-Z0-9_.-]/g, '').slice(0, 32);
  }

  private namespaceName(task: RuntimeTask): string {
    return `ecs-${task.family.replace(/[^a-zA-Z0-9_.-]/g, '')}-${task.revision}-internalecspause-${this.taskSuffix(task)}`;
  }

  async prepareTask(task: RuntimeTask): Promise<TaskResources> {
    const res: TaskResources = { volumeSources: {} };
    for (const v of task.volumes ?? []) {
      if (v.host?.sourcePath) {
        await fs.mkdir(v.host.sourcePath, { recursive: true });
        res.volumeSources[v.name] = { type: 'bind', source: v.host.sourcePath };
        continue;
      }
      const dvc = v.dockerVolumeConfiguration;
      const shared = dvc?.scope === 'shared';
      const name = shared ? v.name : `ecs-${task.family.replace(/[^a-zA-Z0-9_.-]/g, '')}-${task.revision}-${v.name}-${this.taskSuffix(task)}`;
      const exists = await this.docker
        .getVolume(name)
        .inspect()
        .then(() => true)
        .catch(() => false);
      if (!exists) {
        if (shared && dvc?.autoprovision === false) throw invalid('Task', task.taskArn, [{ field: `volumes[${v.name}]`, message: `shared volume "${name}" does not exist and autoprovision is false` }]);
        await this.docker.createVolume({
          Name: name,
          Driver: dvc?.driver ?? 'local',
          DriverOpts: dvc?.driverOpts ?? {},
          Labels: { ...(dvc?.labels ?? {}), ...(shared ? {} : { [LABELS.taskArn]: task.taskArn }), [LABELS.managed]: 'volume' },
        });
      }
      res.volumeSources[v.name] = { type: 'volume', source: name };
    }
    if (task.networkMode === 'awsvpc') {
      const sysctls = Object.fromEntries(task.containers.flatMap((c) => c.systemControls ?? []).map((s) => [s.namespace, s.value]));
      const c = await this.ensureNamespaceContainer(this.namespaceName(task), {
        [LABELS.taskArn]: task.taskArn,
        [LABELS.cluster]: task.cluster,
        [LABELS.managed]: 'awsvpc-namespace',
      }, { NetworkMode: 'bridge', Sysctls: Object.keys(sysctls).length ? sysctls : undefined });
      res.namespaceContainerId = c.id;
      res.ipAddress = c.ipAddress;
      if (await this.daemonBridgeExists()) {
        await this.connectToDaemonBridge(c.id);
        // the task IP stays the one on the default bridge
      }
    }
    if (task.networkMode === 'daemon_bridge') await this.ensureDaemonBridge();
    return res;
  }

  private async ensureNamespaceContainer(name: string, labels: Record<string, string>, hostConfig: Docker.HostConfig, networking?: Docker.ContainerCreateOptions['NetworkingConfig']): Promise<RuntimeContainer> {
    let existing = await this.inspect(name);
    if (!existing) {
      const image = this.opts.namespaceImage ?? 'berth/busybox:latest';
      try {
        await this.docker.createContainer({
          name,
          Image: image,
          Entrypoint: ['sleep'],
          Cmd: ['2147483647'],
          Labels: labels,
          HostConfig: { ...hostConfig, RestartPolicy: { Name: 'no' } },
          NetworkingConfig: networking,
        });
      } catch (e) {
        if ((e as { statusCode?: number }).statusCode !== 409) throw e;
      }
      existing = await this.inspect(name);
    }
    if (!existing) throw internal(`namespace container ${name} vanished`);
    if (existing.status !== 'RUNNING') {
      await this.docker.getContainer(existing.id).start().catch((e: { statusCode?: number }) => {
        if (e.statusCode !== 304) throw e;
      });
      existing = (await this.inspect(existing.id))!;
    }
    return existing;
  }

  private bridging?: Promise<RuntimeContainer>;

  /**
   * The instance's daemon namespace: network berth-daemon-bridge and a container at
   * 169.254.172.2. Idempotent, and single-flight: the first daemons of an instance start
   * together, and two concurrent creates of the network made the second fail ("Pool overlaps
   * with other one on this address space"), failing that daemon's task (issue 15's report).
   */
  ensureDaemonBridge(): Promise<RuntimeContainer> {
    this.bridging ??= this.makeDaemonBridge().finally(() => (this.bridging = undefined));
    return this.bridging;
  }

  private async makeDaemonBridge(): Promise<RuntimeContainer> {
    const nets = await this.docker.listNetworks({ filters: { name: [DAEMON_BRIDGE.network] } });
    if (!nets.some((n) => n.Name === DAEMON_BRIDGE.network)) {
      try {
        await this.docker.createNetwork({
          Name: DAEMON_BRIDGE.network,
          Driver: 'bridge',
          CheckDuplicate: true,
          IPAM: { Config: [{ Subnet: DAEMON_BRIDGE.subnet, Gateway: DAEMON_BRIDGE.gateway }] },
          Labels: { [LABELS.managed]: 'daemon-bridge' },
        });
      } catch (e) {
        if ((e as { statusCode?: number }).statusCode !== 409) throw e;
      }
    }
    const c = await this.ensureNamespaceContainer(
      DAEMON_BRIDGE.container,
      { [LABELS.managed]: 'daemon-namespace', [LABELS.cluster]: this.opts.config.cluster },
      { NetworkMode: DAEMON_BRIDGE.network },
      { EndpointsConfig: { [DAEMON_BRIDGE.network]: { IPAMConfig: { IPv4Address: DAEMON_BRIDGE.address } } } },
    );
    this.daemonNamespaceId = c.id;
    await this.connectExistingToDaemonBridge();
    return c;
  }

  private async connectToDaemonBridge(id: string): Promise<void> {
    await this.docker
      .getNetwork(DAEMON_BRIDGE.network)
      .connect({ Container: id })
      .catch((e: { message: string }) => {
        if (!/already exists|endpoint with name|is already attached/i.test(e.message)) this.log.warn({ err: e.message, container: id }, 'cannot connect to daemon bridge');
      });
  }

  /** Connect application bridge containers and awsvpc namespaces that predate the daemon bridge. */
  private async connectExistingToDaemonBridge(): Promise<void> {
    const all = await this.docker.listContainers({ all: true, filters: { label: [LABELS.taskArn] } });
    for (const s of all) {
      const mode = s.HostConfig?.NetworkMode;
      if (mode !== 'bridge' && mode !== 'default') continue;
      if (s.NetworkSettings?.Networks?.[DAEMON_BRIDGE.network]) continue;
      await this.connectToDaemonBridge(s.Id);
    }
  }

  private async daemonBridgeExists(): Promise<boolean> {
    if (this.daemonNamespaceId) return true;
    const c = await this.inspect(DAEMON_BRIDGE.container);
    if (c && c.status === 'RUNNING') this.daemonNamespaceId = c.id;
    return !!this.daemonNamespaceId;
  }

  async create(task: RuntimeTask, container: string, opts: CreateOptions): Promise<RuntimeContainer> {
    const def = task.containers.find((c) => c.name === container);
    if (!def) throw badRequest(`task ${task.taskArn} has no container "${container}"`);
    if (task.networkMode === 'daemon_bridge' && !this.daemonNamespaceId) await this.ensureDaemonBridge();
    const body = toCreateBody(task, def, { ...opts, config: this.opts.config, daemonNamespaceId: this.daemonNamespaceId });
    const timeoutMs = this.opts.config.containerCreateTimeoutMs || 240_000;
    let timer: NodeJS.Timeout | undefined;
    const created = this.docker.createContainer(body);
    try {
      await Promise.race([
        created,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error('create timed out'), { timedOut: true })), timeoutMs);
        }),
      ]);
    } catch (e) {
      const err = e as { statusCode?: number; timedOut?: boolean; message: string };
      // a timeout is not a failure and 409 is the idempotency check: reconcile by name
      if (!(err.statusCode === 409 || err.timedOut)) {
        throw new BerthError(err.statusCode === 404 ? 'NotFound' : 'InternalError', `CannotCreateContainerError: ${err.message}`, { kind: 'Container', name: opts.name });
      }
      if (err.timedOut) await created.catch(() => undefined);
    } finally {
      clearTimeout(timer);
    }
    const c = await this.inspect(opts.name);
    if (!c) throw internal(`container ${opts.name} not found after create`);
    if (c.labels[LABELS.taskArn] !== task.taskArn) throw new BerthError('Conflict', `container name ${opts.name} is taken by another task`, { kind: 'Container', name: opts.name });
    // application bridge containers reach the daemon namespace at 169.254.172.2
    if (task.networkMode === 'bridge' && (await this.daemonBridgeExists())) await this.connectToDaemonBridge(c.id);
    return c;
  }

  async start(id: string): Promise<RuntimeContainer> {
    // ECS_CONTAINER_START_TIMEOUT: a start Docker does not answer in time fails the container
    const timeoutMs = this.opts.config.containerStartTimeoutMs || 180_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.docker.getContainer(id).start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error(`no answer from Docker within ${timeoutMs} ms (ECS_CONTAINER_START_TIMEOUT)`), { statusCode: 0 })), timeoutMs);
        }),
      ]);
    } catch (e) {
      const err = e as { statusCode?: number; message: string };
      if (err.statusCode !== 304) throw new BerthError(err.statusCode === 404 ? 'NotFound' : 'InternalError', `CannotStartContainerError: ${err.message}`, { kind: 'Container', name: id });
    } finally {
      clearTimeout(timer);
    }
    const c = await this.inspect(id);
    if (!c) throw internal(`container ${id} vanished after start`);
    return c;
  }

  async stop(id: string, timeoutMs: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: Math.max(0, Math.ceil(timeoutMs / 1000)) });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code === 304 || code === 404) return;
      throw e;
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: false });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code === 404 || code === 409) return;
      throw e;
    }
  }

  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    try {
      return fromInspect(await this.docker.getContainer(idOrName).inspect());
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  /** raw Docker inspect, for tests and introspection */
  inspectRaw(idOrName: string): Promise<DockerInspect> {
    return this.docker.getContainer(idOrName).inspect();
  }

  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
    const summaries = await this.docker.listContainers({ all: true, filters: { label } });
    const out: RuntimeContainer[] = [];
    for (const s of summaries) {
      const c = await this.inspect(s.Id);
      if (c) out.push(c);
    }
    return out;
  }

  async cleanupTask(task: RuntimeTask): Promise<void> {
    if (task.networkMode === 'awsvpc') await this.remove(this.namespaceName(task));
    const vols = await this.docker.listVolumes({ filters: { label: [`${LABELS.taskArn}=${task.taskArn}`] } });
    for (const v of vols.Volumes ?? []) {
      await this.docker
        .getVolume(v.Name)
        .remove()
        .catch((e: { message: string }) => this.log.warn({ volume: v.Name, err: e.message }, 'cannot remove task volume'));
    }
  }

  async logs(id: string, opts: LogOptions = {}): Promise<Readable> {
    const c = this.docker.getContainer(id);
    const info = await c.inspect();
    const base = { stdout: true, stderr: true, timestamps: opts.timestamps ?? false, tail: opts.tail ?? 'all' } as const;
    const out = new PassThrough();
    if (opts.follow) {
      const raw = (await c.logs({ ...base, tail: base.tail as number, follow: true } as never)) as unknown as NodeJS.ReadableStream;
      if (info.Config.Tty) raw.pipe(out);
      else {
        this.docker.modem.demuxStream(raw, out, out);
        raw.on('end', () => out.end());
      }
      out.on('close', () => (raw as Readable).destroy?.());
    } else {
      const buf = (await c.logs({ ...base, tail: base.tail as number, follow: false } as never)) as unknown as Buffer;
      out.end(info.Config.Tty ? buf : demux(buf));
    }
    return out;
  }

  // ---- events ----

  onEvent(fn: EventListener): () => void {
    this.emitter.on('event', fn);
    if (!this.stream && !this.closed) void this.openStream();
    return () => this.emitter.off('event', fn);
  }

  private async openStream(): Promise<void> {
    if (this.closed) return;
    const since = this.lastEventTime ? Math.floor(this.lastEventTime / 1e9) : undefined;
    try {
      const stream = (await this.streamDocker.getEvents({ since, filters: { type: ['container'] } } as never)) as unknown as NodeJS.ReadableStream;
      if (this.closed) {
        (stream as Readable).destroy?.();
        return;
      }
      this.stream = stream;
      let buf = '';
      stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) this.handleEventLine(line);
        }
      });
      const reopen = (why: string) => {
        if (this.stream !== stream) return;
        this.stream = undefined;
        if (this.closed) return;
        this.log.info({ why }, 'docker event stream ended, reconnecting');
        setTimeout(() => void this.openStream(), this.opts.reconnectDelayMs ?? 500).unref();
      };
      stream.on('end', () => reopen('eof'));
      stream.on('close', () => reopen('close'));
      stream.on('error', (e: Error) => reopen(e.message));
      // events are a hint: on every (re)connect re-list and let the engine reconcile
      this.emitter.emit('event', { action: 'resync', id: '', labels: {}, time: new Date() } satisfies RuntimeEvent);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'cannot open docker event stream, retrying');
      setTimeout(() => void this.openStream(), Math.max(1000, this.opts.reconnectDelayMs ?? 500)).unref();
    }
  }

  private handleEventLine(line: string): void {
    let ev: { Type?: string; Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; timeNano?: number; time?: number };
    try {
      ev = JSON.parse(line);
    } catch {
      return;
    }
    if (ev.Type && ev.Type !== 'container') return;
    if (ev.timeNano) this.lastEventTime = ev.timeNano;
    const attrs = ev.Actor?.Attributes ?? {};
    const action = (ev.Action ?? ev.status ?? '').split(':')[0];
    const exitCode = attrs.exitCode !== undefined ? Number(attrs.exitCode) : undefined;
    const labels = Object.fromEntries(Object.entries(attrs).filter(([k]) => k.startsWith('com.amazonaws.ecs.') || k.startsWith('io.berth.')));
    this.emitter.emit('event', { action, id: ev.Actor?.ID ?? ev.id ?? '', labels, exitCode, time: new Date((ev.time ?? Date.now() / 1000) * 1000) } satisfies RuntimeEvent);
  }

  /** Drop the event stream (tests use this to prove reconnects). */
  dropEventStream(): void {
    (this.stream as Readable | undefined)?.destroy?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    (this.stream as Readable | undefined)?.destroy?.();
    this.stream = undefined;
    this.emitter.removeAllListeners();
  }
}

/** Demultiplex Docker's 8-byte framed log output. */
export function demux(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  return Buffer.concat(parts);
}
