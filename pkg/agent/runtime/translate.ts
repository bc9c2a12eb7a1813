/**
 * The pure half of the Docker runtime (as the ECS agent's agent/api/task builds Docker
 * configs apart from agent/dockerclient/dockerapi): a task and its container definitions
 * become Docker create bodies; Docker's inspect output and event lines become the runtime's
 * terms; the names and labels of everything berth makes on a dockerd. No I/O here: every
 * piece of host state it needs (prepared resources, peer names, namespace ids) comes in as
 * an argument, so it is table-tested against every parameter of ECS's documents without Docker.
 *
 * Isolation on a shared dockerd (review D9): every object is labelled with the cluster AND the
 * container instance that made it, and named with a hash of both where a name must be unique
 * on the daemon (daemon network, daemon namespace, task namespaces, task volumes).
 *
 * daemon_bridge (as ECS's managed daemons documentation describes it): per instance, a Docker
 * bridge network `berth-daemon-<hash>` whose subnet Docker picks from its address pool (so two
 * instances on one dockerd, or two dockerds on one host, never ask for the same subnet), with
 * its own bridge interface `bd<hash>`, and one namespace container on it that every daemon
 * container joins. Only that namespace holds 169.254.172.2 (a /32 on its interface), so the
 * fixed address exists once per instance and never in the host's routing table. The instance's
 * application containers (bridge mode) and awsvpc task namespaces get a second interface on
 * that network and a host route 169.254.172.2/32 via the namespace's address: they reach their
 * own instance's daemons at 169.254.172.2 without any configuration, and another instance's
 * daemons not at all.
 */
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import type { ContainerDefinition } from '../../api/taskdefinition.ts';
import { internal, invalid } from '../../errors/errors.ts';
import {
  LABELS,
  containerLabels,
  hostPortKey,
  type ContainerStatus,
  type CreateOptions,
  type ResolvedSecrets,
  type HealthStatus,
  type NetworkBinding,
  type RegistryAuth,
  type RuntimeContainer,
  type RuntimeEvent,
  type RuntimeTask,
} from './runtime.ts';

/** ECS's managed daemons documentation: daemons are reachable from application tasks at this address */
export const DAEMON_ADDRESS = '169.254.172.2';

/** the image the namespace and helper containers run (`sleep`, `ip`, `sysctl`): built from the host's static busybox */
export const NAMESPACE_IMAGE = 'berth/busybox:latest';

export type DockerInspect = Docker.ContainerInspectInfo;

export interface Owner {
  cluster: string;
  /** the container instance id; empty when the runtime runs without an instance (tests) */
  instance: string;
}

/** 12 hex characters naming an owner's objects uniquely on a dockerd */
export function ownerHash(o: Owner): string {
  return createHash('sha256').update(`${o.cluster}/${o.instance}`).digest('hex').slice(0, 12);
}

/** Labels of the objects berth makes for an owner (besides its task containers). */
export function ownerLabels(o: Owner, role: string, extra: Record<string, string> = {}): Record<string, string> {
  return { [LABELS.managed]: role, [LABELS.cluster]: o.cluster, ...(o.instance ? { [LABELS.instance]: o.instance } : {}), ...extra };
}

/** An owner's daemon_bridge objects: network, bridge interface (<= 15 characters), namespace container. */
export function daemonNames(o: Owner): { network: string; bridge: string; container: string } {
  const h = ownerHash(o);
  return { network: `berth-daemon-${h}`, bridge: `bd${h}`, container: `berth-daemon-ns-${h}` };
}

const clean = (s: string) => s.replace(/[^a-zA-Z0-9_.-]/g, '');
const taskSuffix = (t: Pick<RuntimeTask, 'taskArn'>) => clean(t.taskArn.split('/').pop() ?? t.taskArn).slice(0, 32);
const ownerOf = (t: Pick<RuntimeTask, 'cluster' | 'instance'>): Owner => ({ cluster: t.cluster, instance: t.instance ?? '' });

/** The task's namespace container (awsvpc network; pidMode/ipcMode "task"): ECS's "internalecspause". */
export function taskNamespaceName(t: Pick<RuntimeTask, 'family' | 'revision' | 'taskArn' | 'cluster' | 'instance'>): string {
  return `ecs-${clean(t.family)}-${t.revision}-internalecspause-${taskSuffix(t)}-${ownerHash(ownerOf(t)).slice(0, 8)}`;
}

/** A task-scoped Docker volume. */
export function taskVolumeName(t: Pick<RuntimeTask, 'family' | 'revision' | 'taskArn' | 'cluster' | 'instance'>, volume: string): string {
  return `ecs-${clean(t.family)}-${t.revision}-${clean(volume)}-${taskSuffix(t)}-${ownerHash(ownerOf(t)).slice(0, 8)}`;
}

/** Where a task volume's data lives, and the Docker volume to create for it (none for a bind mount). */
export function taskVolume(
  t: RuntimeTask,
  v: NonNullable<RuntimeTask['volumes']>[number],
): { type: 'bind' | 'volume'; source: string; create?: { Name: string; Driver: string; DriverOpts: Record<string, string>; Labels: Record<string, string> }; mustExist?: boolean } {
  // a bind mount: Docker creates a missing source path itself, on the host it runs on
  if (v.host?.sourcePath) return { type: 'bind', source: v.host.sourcePath };
  const dvc = v.dockerVolumeConfiguration;
  const shared = dvc?.scope === 'shared';
  const name = shared ? v.name : taskVolumeName(t, v.name);
  const owner = ownerOf(t);
  return {
    type: 'volume',
    source: name,
    ...(shared && dvc?.autoprovision === false ? { mustExist: true } : {}),
    create: {
      Name: name,
      Driver: dvc?.driver ?? 'local',
      DriverOpts: dvc?.driverOpts ?? {},
      Labels: {
        ...(dvc?.labels ?? {}),
        ...(shared ? {} : { [LABELS.taskArn]: t.taskArn, [LABELS.cluster]: t.cluster, ...(owner.instance ? { [LABELS.instance]: owner.instance } : {}) }),
        [LABELS.managed]: 'volume',
      },
    },
  };
}

/** Does the task need a namespace container of its own? */
export function needsTaskNamespace(t: Pick<RuntimeTask, 'networkMode' | 'pidMode' | 'ipcMode'>): boolean {
  return t.networkMode === 'awsvpc' || t.pidMode === 'task' || t.ipcMode === 'task';
}

/** Sysctls Docker namespaces per IPC namespace (the rest it accepts are net.*, per network namespace). */
export const isIpcSysctl = (k: string) => /^kernel\.(shm|msg|sem)/.test(k) || k.startsWith('fs.mqueue.');
export const isNetSysctl = (k: string) => k.startsWith('net.');

const statusOf = (state: string): ContainerStatus =>
  state === 'running' || state === 'paused' || state === 'restarting' ? 'RUNNING' : state === 'created' ? 'CREATED' : 'STOPPED';

const healthOf = (h?: string): HealthStatus => (h === 'healthy' ? 'HEALTHY' : h === 'unhealthy' ? 'UNHEALTHY' : 'UNKNOWN');

const time = (s?: string) => (s && !s.startsWith('0001') ? new Date(s) : undefined);

/**
 * A container in the runtime's terms. With `excludeIpv6` (ECS_EXCLUDE_IPV6_PORTBINDING, the
 * default) a port bound on both `0.0.0.0` and `::` is reported once, as ECS does.
 */
export function fromInspect(i: DockerInspect, o: { excludeIpv6?: boolean; daemonNetworks?: (name: string) => boolean } = {}): RuntimeContainer {
  const bindings: NetworkBinding[] = [];
  for (const [key, list] of Object.entries(i.NetworkSettings?.Ports ?? {})) {
    const [port, proto] = key.split('/');
    for (const b of list ?? []) {
      const ip = b.HostIp || '0.0.0.0';
      if (o.excludeIpv6 !== false && ip.includes(':')) continue;
      bindings.push({ containerPort: Number(port), hostPort: Number(b.HostPort), protocol: proto === 'udp' ? 'udp' : 'tcp', bindIP: ip });
    }
  }
  // the task's address is not its daemon-bridge interface
  const isDaemonNet = o.daemonNetworks ?? ((n: string) => n.startsWith('berth-daemon-'));
  const nets = Object.entries(i.NetworkSettings?.Networks ?? {}).sort(([a], [b]) => Number(isDaemonNet(a)) - Number(isDaemonNet(b)));
  const ip = nets.map(([, n]) => n.IPAddress).find((a) => a) || (i.NetworkSettings as { IPAddress?: string } | undefined)?.IPAddress || undefined;
  const st = i.State;
  const stopped = statusOf(st.Status) === 'STOPPED';
  const stopTimeout = (i.Config as { StopTimeout?: number }).StopTimeout;
  return {
    id: i.Id,
    name: i.Name.replace(/^\//, ''),
    image: i.Config.Image,
    labels: i.Config.Labels ?? {},
    status: statusOf(st.Status),
    state: st.Status,
    exitCode: stopped ? st.ExitCode : undefined,
    reason: st.OOMKilled ? 'OutOfMemoryError: Container killed due to memory usage' : st.Error || undefined,
    startedAt: time(st.StartedAt),
    finishedAt: time(st.FinishedAt),
    health: healthOf((st as { Health?: { Status?: string } }).Health?.Status),
    networkBindings: bindings,
    ipAddress: ip,
    ...(typeof stopTimeout === 'number' ? { stopTimeoutMs: stopTimeout * 1000 } : {}),
  };
}

/** The ECS agent's event allowlist (docker_events_buffer.go), plus destroy: a removed container is gone. */
export const EVENT_ALLOWLIST = ['create', 'start', 'stop', 'die', 'restart', 'oom', 'health_status', 'destroy'] as const;

/** One line of Docker's event stream, or undefined when it is not a container event berth follows. */
export function parseEventLine(line: string): (RuntimeEvent & { timeNano?: number }) | undefined {
  let ev: { Type?: string; Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; timeNano?: number; time?: number };
  try {
    ev = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (ev.Type && ev.Type !== 'container') return undefined;
  const action = (ev.Action ?? ev.status ?? '').split(':')[0].trim();
  if (!(EVENT_ALLOWLIST as readonly string[]).includes(action)) return undefined;
  const attrs = ev.Actor?.Attributes ?? {};
  const id = ev.Actor?.ID ?? ev.id ?? '';
  if (!id) return undefined;
  const exitCode = action === 'die' && attrs.exitCode !== undefined ? Number(attrs.exitCode) : undefined;
  const labels = Object.fromEntries(Object.entries(attrs).filter(([k]) => k.startsWith('com.amazonaws.ecs.') || k.startsWith('io.berth.')));
  const ms = ev.timeNano ? Math.floor(ev.timeNano / 1e6) : (ev.time ?? Date.now() / 1000) * 1000;
  return { action, id, labels, exitCode, time: new Date(ms), ...(ev.timeNano ? { timeNano: ev.timeNano } : {}) };
}

/** The registry host of an image reference ("docker.io" for Docker Hub). */
export function registryOf(image: string): string {
  const first = image.split('/')[0];
  if (image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return first;
  return 'docker.io';
}

/** `busybox` -> `busybox:latest`; references with a tag or digest stay as they are. */
export function imageRef(image: string): string {
  const last = image.split('/').pop() ?? image;
  return last.includes(':') || image.includes('@') ? image : `${image}:latest`;
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

const MiB = 1024 * 1024;
const seconds = (s: number) => s * 1_000_000_000;
/** Docker's smallest memory limit */
const MIN_MEMORY_MIB = 6;

/**
 * Task-level cpu/memory as per-container limits that sum to the task's, for when the task
 * cannot have a cgroup of its own (a systemd cgroup driver, a remote dockerd): each container
 * keeps its own hard memory; the rest of the task's memory is shared out among the containers
 * without one in proportion to their memoryReservation (evenly when none has one); CPU is shared
 * out as NanoCpus in proportion to the containers' cpu units (evenly when all are 0).
 */
export function splitTaskLimits(task: Pick<RuntimeTask, 'containers' | 'cpu' | 'memory'>): Record<string, { memoryMiB?: number; nanoCpus?: number }> {
  const out: Record<string, { memoryMiB?: number; nanoCpus?: number }> = {};
  const cs = task.containers;
  for (const c of cs) out[c.name] = {};
  if (task.memory) {
    const free = cs.filter((c) => !c.memory);
    const rest = Math.max(0, task.memory - cs.reduce((n, c) => n + (c.memory ?? 0), 0));
    const weights = free.map((c) => c.memoryReservation ?? 0);
    const total = weights.reduce((a, b) => a + b, 0);
    free.forEach((c, i) => {
      const share = total > 0 ? (rest * weights[i]) / total : rest / free.length;
      out[c.name].memoryMiB = Math.max(MIN_MEMORY_MIB, Math.floor(share));
    });
  }
  if (task.cpu) {
    const units = cs.map((c) => c.cpu ?? 0);
    const total = units.reduce((a, b) => a + b, 0);
    cs.forEach((c, i) => {
      const share = total > 0 ? units[i] / total : 1 / cs.length;
      out[c.name].nanoCpus = Math.max(1_000_000, Math.floor((task.cpu! / 1024) * share * 1e9));
    });
  }
  return out;
}

export interface TranslateConfig {
  disablePrivileged: boolean;
  availableLoggingDrivers: string[];
  /** ECS_ENABLE_TASK_CPU_MEM_LIMIT */
  taskCpuMemLimit?: boolean;
  /** the agent's service discovery DNS: the resolvers of bridge and host containers whose definition names none */
  dnsServers?: string[];
}

export interface TranslateOptions extends CreateOptions {
  config: TranslateConfig;
  /** daemon_bridge: the instance's daemon namespace container */
  daemonNamespaceId?: string;
  /** the task's cgroup (task-level cpu/memory limits), when it has one */
  cgroupParent?: string;
}

/**
 * A container's environment as ECS builds it: environment files first (a name a file
 * already set is not overridden by a later file), `environment` over the files, `secrets`
 * last. Docker takes the last of duplicate names, so each name is given once.
 */
export function containerEnv(environment: Array<{ name: string; value: string }>, resolved?: Pick<ResolvedSecrets, 'envFiles' | 'secrets'>): string[] {
  const vars = new Map<string, string>();
  for (const [k, v] of resolved?.envFiles ?? []) if (!vars.has(k)) vars.set(k, v);
  for (const e of environment) vars.set(e.name, e.value);
  for (const [k, v] of resolved?.secrets ?? []) vars.set(k, v);
  return [...vars].map(([k, v]) => `${k}=${v}`);
}

/**
 * Translate one ECS container definition of a task into a Docker create body. Pure. Throws
 * Invalid naming the field for what this instance cannot run (privileged when disabled, a log
 * driver it lacks); everything the API accepts is either here or refused at registration.
 */
export function toCreateBody(task: RuntimeTask, def: ContainerDefinition, opts: TranslateOptions): Docker.ContainerCreateOptions {
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
  const ns = opts.resources.namespaceContainerId;
  switch (mode) {
    case 'bridge':
    case 'host':
    case 'none':
      host.NetworkMode = mode;
      break;
    case 'awsvpc':
      if (!ns) throw internal(`task ${task.taskArn}: awsvpc namespace container missing`);
      host.NetworkMode = `container:${ns}`;
      break;
    case 'daemon_bridge':
      if (!opts.daemonNamespaceId) throw internal('daemon_bridge namespace container missing');
      host.NetworkMode = `container:${opts.daemonNamespaceId}`;
      break;
  }
  // pidMode / ipcMode: "task" shares the task namespace container's
  if (task.pidMode === 'host') host.PidMode = 'host';
  else if (task.pidMode === 'task') {
    if (!ns) throw internal(`task ${task.taskArn}: pid namespace container missing`);
    host.PidMode = `container:${ns}`;
  }
  if (task.ipcMode === 'host' || task.ipcMode === 'none') host.IpcMode = task.ipcMode;
  else if (task.ipcMode === 'task') {
    if (!ns) throw internal(`task ${task.taskArn}: ipc namespace container missing`);
    host.IpcMode = `container:${ns}`;
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
  // resources: container limits, and the task's (a cgroup of its own, else shared out)
  host.CpuShares = Math.max(def.cpu ?? 0, 2);
  if (def.memory) host.Memory = def.memory * MiB;
  if (def.memoryReservation) host.MemoryReservation = def.memoryReservation * MiB;
  const taskLimits = opts.config.taskCpuMemLimit !== false && (task.cpu || task.memory);
  if (taskLimits && opts.cgroupParent) host.CgroupParent = opts.cgroupParent;
  else if (taskLimits) {
    const share = splitTaskLimits(task)[def.name];
    if (share.memoryMiB && !def.memory) host.Memory = share.memoryMiB * MiB;
    if (share.nanoCpus) host.NanoCpus = share.nanoCpus;
  }
  if (def.privileged) host.Privileged = true;
  if (def.readonlyRootFilesystem) host.ReadonlyRootfs = true;
  const lp = def.linuxParameters;
  if (lp?.capabilities?.add?.length) host.CapAdd = lp.capabilities.add;
  if (lp?.capabilities?.drop?.length) host.CapDrop = lp.capabilities.drop;
  if (lp?.initProcessEnabled) host.Init = true;
  if (lp?.sharedMemorySize) host.ShmSize = lp.sharedMemorySize * MiB;
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
  if (lp?.maxSwap !== undefined) {
    const mem = def.memory ?? (host.Memory ? host.Memory / MiB : undefined);
    if (!mem) throw bad('linuxParameters.maxSwap', 'maxSwap needs the container memory (a hard limit)');
    host.MemorySwap = mem * MiB + lp.maxSwap * MiB;
  }
  if (lp?.swappiness !== undefined) host.MemorySwappiness = lp.swappiness;
  if (def.ulimits?.length) host.Ulimits = def.ulimits.map((u) => ({ Name: u.name, Soft: u.softLimit, Hard: u.hardLimit }));
  if (def.systemControls?.length) {
    // net.* belong to the network namespace's owner: the task or daemon namespace (set there);
    // IPC-namespaced ones are the container's own unless it shares the task's IPC namespace
    const own = def.systemControls.filter((s) => {
      if (isNetSysctl(s.namespace)) return mode === 'bridge' || mode === 'none';
      return !(isIpcSysctl(s.namespace) && task.ipcMode !== undefined);
    });
    if (own.length) host.Sysctls = Object.fromEntries(own.map((s) => [s.namespace, s.value]));
  }
  if (def.dnsServers?.length) host.Dns = def.dnsServers;
  else if (opts.config.dnsServers?.length && (mode === 'bridge' || mode === 'host')) host.Dns = opts.config.dnsServers;
  if (def.dnsSearchDomains?.length) host.DnsSearch = def.dnsSearchDomains;
  if (def.extraHosts?.length) host.ExtraHosts = def.extraHosts.map((h) => `${h.hostname}:${h.ipAddress}`);
  if (def.dockerSecurityOptions?.length) host.SecurityOpt = def.dockerSecurityOptions;
  // logging
  const log = def.logConfiguration ?? { logDriver: 'json-file' as const };
  if (!opts.config.availableLoggingDrivers.includes(log.logDriver)) {
    throw bad('logConfiguration.logDriver', `log driver "${log.logDriver}" is not available on this instance (ECS_AVAILABLE_LOGGING_DRIVERS: ${opts.config.availableLoggingDrivers.join(', ')})`);
  }
  host.LogConfig = { Type: log.logDriver, Config: { ...(log.options ?? {}), ...(opts.resolved?.logOptions ?? {}) } };

  const body: Docker.ContainerCreateOptions = {
    name: opts.name,
    Image: def.image,
    Labels: { ...(def.dockerLabels ?? {}), ...containerLabels(task, def.name) },
    HostConfig: host,
  };
  if (def.stopTimeout !== undefined) body.StopTimeout = def.stopTimeout;
  if (Object.keys(exposed).length && (mode === 'bridge' || mode === 'host' || mode === 'none')) body.ExposedPorts = exposed;
  const env = containerEnv(def.environment ?? [], opts.resolved);
  if (env.length) body.Env = env;
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

/**
 * The task's namespace container (ECS's pause container): the network namespace of an
 * awsvpc task (on the default bridge, with the task's net.* sysctls) and the PID/IPC
 * namespaces of a pidMode/ipcMode "task" task. It runs `sleep` from the namespace image.
 */
export function taskNamespaceBody(task: RuntimeTask, image: string, dnsServers?: string[]): Docker.ContainerCreateOptions {
  const net = Object.fromEntries(task.containers.flatMap((c) => c.systemControls ?? []).filter((s) => isNetSysctl(s.namespace)).map((s) => [s.namespace, s.value]));
  const ipc = Object.fromEntries(task.containers.flatMap((c) => c.systemControls ?? []).filter((s) => isIpcSysctl(s.namespace)).map((s) => [s.namespace, s.value]));
  const awsvpc = task.networkMode === 'awsvpc';
  const sysctls = { ...(awsvpc ? net : {}), ...(task.ipcMode === 'task' ? ipc : {}) };
  // the task's containers share this namespace's resolv.conf: the agent's DNS unless a container names its own servers
  const dns = awsvpc && dnsServers?.length && !task.containers.some((c) => c.dnsServers?.length) ? dnsServers : undefined;
  return {
    name: taskNamespaceName(task),
    Image: image,
    Entrypoint: ['sleep'],
    Cmd: ['2147483647'],
    Labels: {
      ...ownerLabels(ownerOf(task), 'task-namespace'),
      [LABELS.taskArn]: task.taskArn,
      [LABELS.family]: task.family,
      [LABELS.version]: String(task.revision),
    },
    HostConfig: {
      NetworkMode: awsvpc ? 'bridge' : 'none',
      RestartPolicy: { Name: 'no' },
      ...(task.ipcMode === 'task' ? { IpcMode: 'shareable' } : {}),
      ...(Object.keys(sysctls).length ? { Sysctls: sysctls } : {}),
      ...(dns ? { Dns: dns } : {}),
    },
  };
}

/** The instance's daemon namespace container, on its daemon network. */
export function daemonNamespaceBody(o: Owner, image: string): Docker.ContainerCreateOptions {
  const n = daemonNames(o);
  return {
    name: n.container,
    Image: image,
    Entrypoint: ['sleep'],
    Cmd: ['2147483647'],
    Labels: ownerLabels(o, 'daemon-namespace'),
    HostConfig: { NetworkMode: n.network, RestartPolicy: { Name: 'no' } },
  };
}

/** The instance's daemon network: a bridge of its own, its subnet from Docker's address pool. */
export function daemonNetworkBody(o: Owner): Docker.NetworkCreateOptions {
  const n = daemonNames(o);
  return {
    Name: n.network,
    Driver: 'bridge',
    CheckDuplicate: true,
    Options: { 'com.docker.network.bridge.name': n.bridge },
    Labels: ownerLabels(o, 'daemon-network'),
  };
}

/** Daemon sysctls (net.*) are the daemon namespace's: `sysctl -w` commands for the helper. */
export function daemonSysctlScript(task: Pick<RuntimeTask, 'containers'>): string | undefined {
  const net = task.containers.flatMap((c) => c.systemControls ?? []).filter((s) => isNetSysctl(s.namespace));
  if (!net.length) return undefined;
  return net.map((s) => `sysctl -w ${shellQuote(`${s.namespace}=${s.value}`)}`).join(' && ');
}

export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Give the daemon namespace its fixed address (idempotent). */
export const ADD_DAEMON_ADDRESS = `ip addr add ${DAEMON_ADDRESS}/32 dev eth0 2>/dev/null; ip addr show dev eth0 | grep -q ' ${DAEMON_ADDRESS}/32'`;

/** Route 169.254.172.2 through the daemon namespace's address on the daemon network (idempotent). */
export const routeToDaemons = (via: string) => `ip route replace ${DAEMON_ADDRESS}/32 via ${via}`;

/** A short-lived helper run in another container's network namespace (routes, addresses, sysctls). */
export function helperBody(o: Owner, image: string, targetId: string, script: string, sysctls = false): Docker.ContainerCreateOptions {
  return {
    Image: image,
    Entrypoint: ['sh', '-c'],
    Cmd: [script],
    Labels: ownerLabels(o, 'helper'),
    // writing sysctls: /proc/sys writable (not masked, not read-only) and CAP_NET_ADMIN, which
    // is all net.* sysctls of a network namespace of its own need -- not a privileged container
    HostConfig: { NetworkMode: `container:${targetId}`, CapAdd: ['NET_ADMIN'], ...(sysctls ? { MaskedPaths: [], ReadonlyPaths: [] } : {}), RestartPolicy: { Name: 'no' } },
  };
}
