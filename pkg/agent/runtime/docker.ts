/**
 * ContainerRuntime on Docker: what to ask Docker comes from translate.ts (pure), how to ask
 * it (deadlines, retries, the one event stream) from dockerapi.ts; this file holds the
 * runtime's own state and decisions: pull behaviour (ECS_IMAGE_PULL_BEHAVIOR), task
 * resources (volumes, namespace containers, the task's cgroup), the instance's daemon_bridge
 * namespace, and cleanup.
 *
 * Ownership (review D9): every container, volume and network this runtime makes carries the
 * cluster and container-instance labels, and it only ever connects, stops, removes or reuses
 * objects carrying its own; names unique on the daemon include a hash of both. Two agents on
 * one dockerd (tests, `berth up` beside a production agent) run side by side, each with its
 * own daemon network and namespace. See translate.ts for the daemon_bridge design.
 *
 * awsvpc: a per-task namespace container on the default bridge; the task's containers join it
 * (`container:<id>`), so they share localhost, and the task's IP is that container's IP. It is
 * stopped when the task stops (ECS tears the pause container down) and removed at cleanup.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { badRequest, RuntimeError, isRuntimeError, internal, invalid } from '../../errors/errors.ts';
import { silentLogger } from '../../log/log.ts';
import { buildBusyboxRootfs } from '../../dockerd/image.ts';
import type { AgentConfig, ImagePullBehavior } from '../config.ts';
import { TaskCgroups, taskCgroupLimits } from './cgroup.ts';
import { DockerApi, type DockerTimeouts } from './dockerapi.ts';
import {
  LABELS,
  type ContainerRuntime,
  type CreateOptions,
  type EventListener,
  type ImageState,
  type LogOptions,
  type PullOptions,
  type PullResult,
  type RegistryAuth,
  type RuntimeContainer,
  type RuntimeTask,
  type TaskResources,
} from './runtime.ts';
import {
  ADD_DAEMON_ADDRESS,
  NAMESPACE_IMAGE,
  daemonNames,
  daemonNamespaceBody,
  daemonNetworkBody,
  daemonSysctlScript,
  engineAuthFor,
  fromInspect,
  helperBody,
  imageRef,
  needsTaskNamespace,
  ownerHash,
  routeToDaemons,
  taskNamespaceBody,
  taskNamespaceName,
  taskVolume,
  toCreateBody,
  type DockerInspect,
  type Owner,
} from './translate.ts';

export { DAEMON_ADDRESS, daemonNames, engineAuthFor, registryOf, toCreateBody } from './translate.ts';

export type DockerRuntimeConfig = Pick<
  AgentConfig,
  'dockerHost' | 'imagePullBehavior' | 'engineAuthType' | 'engineAuthData' | 'disablePrivileged' | 'availableLoggingDrivers' | 'containerCreateTimeoutMs' | 'cluster'
> &
  Partial<
    Pick<
      AgentConfig,
      'containerStartTimeoutMs' | 'imagePullTimeoutMs' | 'imagePullInactivityTimeoutMs' | 'excludeIpv6PortBinding' | 'taskCpuMemLimit' | 'cgroupPath' | 'cgroupCpuPeriodMs' | 'taskPidsLimit'
    >
  >;

export interface DockerRuntimeOptions {
  config: DockerRuntimeConfig;
  logger?: Logger;
  /** the container instance (labels, daemon namespace); set later with setInstance */
  instance?: string;
  /** image of the namespace and helper containers (runs `sleep`, `ip`, `sysctl`) */
  namespaceImage?: string;
  /** where the host's static busybox is, to build the namespace image (default /bin/busybox, /usr/bin/busybox) */
  busyboxPaths?: string[];
  /** per-call deadlines (default ECS's; create/start/pull from the config) */
  timeouts?: Partial<DockerTimeouts>;
  /** pull retries (default ECS's 5) */
  pullAttempts?: number;
  pullBackoff?: { minMs: number; maxMs: number; multiplier: number; jitter: number };
  stopBackoff?: { minMs: number; maxMs: number; multiplier: number; jitter: number };
  /** resolves a container's repositoryCredentials.credentialsParameter to registry auth */
  resolveRepositoryCredentials?: (parameter: string) => Promise<RegistryAuth>;
  /** event-stream reconnect delay (ms, the first of a backoff) */
  reconnectDelayMs?: number;
  imageState?: ImageState;
}

type Inspect = DockerInspect;

export class DockerRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  readonly api: DockerApi;
  private readonly log: Logger;
  private owner: Owner;
  private readonly pulls = new Map<string, Promise<PullResult>>();
  private nsImage?: Promise<string>;
  private daemonNs?: { id: string; ip: string; network: string };
  private daemonNsPending?: Promise<{ id: string; ip: string; network: string }>;
  /**
   * Docker was asked and this instance has no running daemon namespace. Only this runtime makes
   * one (createDaemonNamespace, which joins every application container that predates it), so
   * the answer holds until it does: bridge containers' creates and starts do not ask again
   * (two inspects per container, on a daemon busy starting them).
   */
  private daemonNsAbsent = false;
  private readonly cgroups: TaskCgroups;
  private cgroupDriver?: Promise<string | undefined>;

  constructor(private readonly opts: DockerRuntimeOptions) {
    const c = opts.config;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'docker-runtime' });
    this.owner = { cluster: c.cluster, instance: opts.instance ?? '' };
    this.api = new DockerApi({
      host: c.dockerHost,
      logger: opts.logger,
      timeouts: {
        ...(c.containerCreateTimeoutMs ? { create: c.containerCreateTimeoutMs } : {}),
        ...(c.containerStartTimeoutMs ? { start: c.containerStartTimeoutMs } : {}),
        ...(c.imagePullTimeoutMs ? { pull: c.imagePullTimeoutMs } : {}),
        ...(c.imagePullInactivityTimeoutMs ? { pullInactivity: c.imagePullInactivityTimeoutMs } : {}),
        ...opts.timeouts,
      },
      pullAttempts: opts.pullAttempts,
      pullBackoff: opts.pullBackoff,
      stopBackoff: opts.stopBackoff,
      reconnect: opts.reconnectDelayMs !== undefined ? { minMs: opts.reconnectDelayMs, maxMs: Math.max(opts.reconnectDelayMs, 30_000), multiplier: 2, jitter: 0.2 } : undefined,
      eventLabels: [`${LABELS.cluster}=${c.cluster}`],
    });
    this.cgroups = new TaskCgroups({ root: c.cgroupPath ?? '/sys/fs/cgroup', logger: this.log });
  }

  /** the dockerode client (tests, benchmarks) */
  get docker(): Docker {
    return this.api.docker;
  }

  setImageState(state: ImageState): void {
    this.opts.imageState = state;
  }

  private dnsServers?: string[];

  setDnsServers(servers: string[] | undefined): void {
    this.dnsServers = servers?.length ? servers : undefined;
  }

  async bridgeGateway(): Promise<string | undefined> {
    const n = await this.api.inspectNetwork('bridge');
    return n?.IPAM?.Config?.find((c) => c.Gateway && !c.Gateway.includes(':'))?.Gateway;
  }

  /** The container instance this runtime works for (known after registration). */
  setInstance(instance: string): void {
    this.owner = { ...this.owner, instance };
    this.daemonNs = undefined;
    this.daemonNsAbsent = false;
  }

  private ownerOf(task: Pick<RuntimeTask, 'cluster' | 'instance'>): Owner {
    return { cluster: task.cluster, instance: task.instance ?? this.owner.instance };
  }

  /** Is this object ours: our cluster, and our instance (or, unlabelled, made before instance labels)? */
  private mine(labels: Record<string, string> | undefined, instance = this.owner.instance): boolean {
    const l = labels ?? {};
    if (l[LABELS.cluster] !== undefined && l[LABELS.cluster] !== this.owner.cluster) return false;
    return !instance || !l[LABELS.instance] || l[LABELS.instance] === instance;
  }

  ping(): Promise<boolean> {
    return this.api.ping();
  }

  private toRuntime(i: Inspect): RuntimeContainer {
    return fromInspect(i, { excludeIpv6: this.opts.config.excludeIpv6PortBinding !== false });
  }

  // ---- images ----

  /**
   * ECS_IMAGE_PULL_BEHAVIOR: default pulls (with the full pull timeout and retries) and falls
   * back to a cached image only when the pull fails; always pulls and a failure stops the
   * task; once pulls unless this agent pulled or used it before and it is still cached (a
   * failure stops the task); prefer-cached pulls only when nothing is cached. Concurrent pulls
   * of one reference are one pull.
   */
  pull(image: string, opts: PullOptions = {}): Promise<PullResult> {
    const ref = imageRef(image);
    const key = `${ref}\u0000${opts.auth ? JSON.stringify(opts.auth) : ''}`;
    let p = this.pulls.get(key);
    if (!p) {
      p = this.pullNow(image, opts).finally(() => this.pulls.delete(key));
      this.pulls.set(key, p);
    }
    return p;
  }

  private async pullNow(image: string, opts: PullOptions): Promise<PullResult> {
    const cfg = this.opts.config;
    const behavior: ImagePullBehavior = cfg.imagePullBehavior;
    const ref = imageRef(image);
    const cached = !!(await this.api.inspectImage(ref));
    if (cached && (behavior === 'prefer-cached' || (behavior === 'once' && this.opts.imageState?.known(ref)))) return { image, fromCache: true };
    const auth = opts.auth ?? engineAuthFor(image, cfg.engineAuthType, cfg.engineAuthData);
    try {
      await this.api.pull(ref, auth);
      return { image, fromCache: false };
    } catch (e) {
      const msg = e instanceof RuntimeError ? e.message.replace(/^[A-Za-z]+Error: /, '') : (e as Error).message;
      if (behavior === 'default' && cached) {
        this.log.info({ image, err: msg }, 'pull failed, using the cached image');
        return { image, fromCache: true, pullError: msg };
      }
      throw new RuntimeError('CannotPullContainerError', msg, { uncertain: false, stopsTask: behavior === 'always' || behavior === 'once', kind: 'Image', name: image });
    }
  }

  /**
   * The namespace image (review D11): present, or built here from the host's static busybox
   * (`docker import` of a tiny rootfs), as `berth up` does. A clear error when neither works.
   */
  namespaceImage(): Promise<string> {
    this.nsImage ??= this.ensureNamespaceImage().catch((e) => {
      this.nsImage = undefined;
      throw e;
    });
    return this.nsImage;
  }

  private async ensureNamespaceImage(): Promise<string> {
    const image = this.opts.namespaceImage ?? NAMESPACE_IMAGE;
    if (await this.api.inspectImage(image)) return image;
    const [repo, tag = 'latest'] = image.split(':');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-nsimage-'));
    try {
      const tar = await buildBusyboxRootfs(dir, { busyboxPaths: this.opts.busyboxPaths, install: false });
      await this.api.importImage(tar, repo, tag, ['CMD ["sh"]', 'ENV PATH=/bin:/usr/bin']);
      this.log.info({ image }, 'built the namespace image from the host\'s static busybox');
      return image;
    } catch (e) {
      throw new RuntimeError(
        'CannotCreateContainerError',
        `awsvpc and daemon_bridge tasks need the namespace image ${image}, which Docker does not have, and the agent could not build it ` +
          `from a static busybox (${(e as Error).message}): install busybox-static (apt-get install busybox-static), or load the image (docker load)`,
        { uncertain: false, kind: 'Image', name: image },
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  // ---- tasks ----

  async prepareTask(task: RuntimeTask): Promise<TaskResources> {
    const res: TaskResources = { volumeSources: {} };
    const owner = this.ownerOf(task);
    for (const v of task.volumes ?? []) {
      const vol = taskVolume({ ...task, instance: owner.instance || undefined }, v);
      if (vol.create && !(await this.api.inspectVolume(vol.source))) {
        if (vol.mustExist) throw invalid('Task', task.taskArn, [{ field: `volumes[${v.name}]`, message: `shared volume "${vol.source}" does not exist and autoprovision is false` }]);
        await this.api.createVolume(vol.create);
      }
      res.volumeSources[v.name] = { type: vol.type, source: vol.source };
    }
    if (needsTaskNamespace(task)) {
      const c = await this.ensureTaskNamespace(task);
      res.namespaceContainerId = c.id;
      if (task.networkMode === 'awsvpc') res.ipAddress = c.ipAddress;
    }
    if (task.networkMode === 'daemon_bridge') {
      const ns = await this.ensureDaemonNamespace();
      const script = daemonSysctlScript(task);
      if (script) await this.runHelper(ns.id, script, true);
    }
    if (this.opts.config.taskCpuMemLimit !== false && (task.cpu || task.memory)) {
      res.cgroupParent = await this.taskCgroup(task);
    }
    return res;
  }

  /** The task's cgroup with its cpu/memory (and pids) limits, when Docker and the host allow one. */
  private async taskCgroup(task: RuntimeTask): Promise<string | undefined> {
    this.cgroupDriver ??= this.api
      .info()
      .then((i) => i.CgroupDriver)
      .catch(() => undefined);
    const driver = await this.cgroupDriver;
    const local = this.opts.config.dockerHost.startsWith('unix://') || this.opts.config.dockerHost.startsWith('/');
    if (driver !== 'cgroupfs' || !local) {
      this.log.debug({ driver, local }, 'task-level limits as per-container limits (no task cgroup with this Docker)');
      return undefined;
    }
    const limits = taskCgroupLimits(task, { cpuPeriodMs: this.opts.config.cgroupCpuPeriodMs ?? 100, pidsLimit: this.opts.config.taskPidsLimit });
    return this.cgroups.ensure(this.cgroupName(task), limits);
  }

  private cgroupName(task: Pick<RuntimeTask, 'taskArn' | 'cluster' | 'instance'>): string {
    const id = (task.taskArn.split('/').pop() ?? task.taskArn).replace(/[^a-zA-Z0-9_.-]/g, '').slice(0, 32);
    return `${id}-${ownerHash(this.ownerOf(task)).slice(0, 8)}`;
  }

  private async ensureTaskNamespace(task: RuntimeTask): Promise<RuntimeContainer> {
    const image = await this.namespaceImage();
    const body = taskNamespaceBody({ ...task, instance: this.ownerOf(task).instance || undefined }, image, this.dnsServers);
    const c = await this.ensureContainer(body, (l) => l[LABELS.taskArn] === task.taskArn);
    if (task.networkMode === 'awsvpc') {
      // the task reaches its instance's daemons at 169.254.172.2, if it has any
      const ns = await this.existingDaemonNamespace();
      if (ns) await this.joinDaemonNetwork(c.id, ns);
    }
    return (await this.inspect(c.id)) ?? c;
  }

  /** Create (or find, when ours) and start a container of ours by name. */
  private async ensureContainer(body: Docker.ContainerCreateOptions, belongs: (labels: Record<string, string>) => boolean): Promise<RuntimeContainer> {
    const name = body.name!;
    let existing = await this.inspect(name);
    if (!existing) {
      await this.api.createContainer(body);
      existing = await this.inspect(name);
    }
    if (!existing) throw internal(`container ${name} vanished after create`);
    if (!belongs(existing.labels) || !this.mine(existing.labels)) {
      throw new RuntimeError('CannotCreateContainerError', `the name ${name} is taken by a container berth does not own here`, { uncertain: false, kind: 'Container', name });
    }
    if (existing.status !== 'RUNNING') {
      await this.api.startContainer(existing.id);
      existing = (await this.inspect(existing.id)) ?? existing;
    }
    return existing;
  }

  private async existingDaemonNamespace(): Promise<{ id: string; ip: string; network: string } | undefined> {
    if (this.daemonNs) return this.daemonNs;
    if (this.daemonNsPending) return this.daemonNsPending;
    if (this.daemonNsAbsent) return undefined;
    const owner = this.owner;
    const n = daemonNames(owner);
    const i = await this.api.inspectContainer(n.container);
    const ip = i && i.State.Status === 'running' && this.mine(i.Config.Labels) ? i.NetworkSettings?.Networks?.[n.network]?.IPAddress : undefined;
    // (an answer about another instance than the current one is no answer)
    if (!i || !ip) {
      if (this.owner === owner && !this.daemonNs && !this.daemonNsPending) this.daemonNsAbsent = true;
      return undefined;
    }
    this.daemonNs = { id: i.Id, ip, network: n.network };
    return this.daemonNs;
  }

  /**
   * The instance's daemon namespace: its network, its namespace container holding
   * 169.254.172.2, and the instance's application containers (bridge mode) and awsvpc
   * namespaces joined to it. Idempotent; only this instance's objects are touched.
   */
  async ensureDaemonNamespace(): Promise<{ id: string; ip: string; network: string }> {
    if (this.daemonNs) {
      // still there and running? (removed or stopped behind our back: made again)
      const i = await this.api.inspectContainer(this.daemonNs.id);
      if (i?.State.Status === 'running') return this.daemonNs;
      this.daemonNs = undefined;
    }
    this.daemonNsPending ??= this.createDaemonNamespace().finally(() => {
      this.daemonNsPending = undefined;
    });
    return this.daemonNsPending;
  }

  private async createDaemonNamespace(): Promise<{ id: string; ip: string; network: string }> {
    const image = await this.namespaceImage();
    const n = daemonNames(this.owner);
    const net = await this.api.inspectNetwork(n.network);
    if (net && !this.mine(net.Labels)) throw new RuntimeError('CannotCreateNetworkError', `network ${n.network} belongs to another owner`, { uncertain: false });
    if (!net) await this.api.createNetwork(daemonNetworkBody(this.owner));
    const c = await this.ensureContainer(daemonNamespaceBody(this.owner, image), (l) => l[LABELS.managed] === 'daemon-namespace');
    await this.runHelper(c.id, ADD_DAEMON_ADDRESS);
    const i = await this.api.inspectContainer(c.id);
    const ip = i?.NetworkSettings?.Networks?.[n.network]?.IPAddress;
    if (!ip) throw internal(`daemon namespace ${n.container} has no address on ${n.network}`);
    const ns = { id: c.id, ip, network: n.network };
    this.daemonNs = ns;
    this.daemonNsAbsent = false;
    // the instance's application containers that predate it join it
    const ours = await this.api.listContainers({ label: [`${LABELS.cluster}=${this.owner.cluster}`, ...(this.owner.instance ? [`${LABELS.instance}=${this.owner.instance}`] : [])] });
    for (const s of ours) {
      const role = s.Labels?.[LABELS.managed];
      const app = !role && s.Labels?.[LABELS.taskArn] && (s.HostConfig?.NetworkMode === 'bridge' || s.HostConfig?.NetworkMode === 'default');
      const awsvpc = role === 'task-namespace' && s.HostConfig?.NetworkMode === 'bridge';
      if (!app && !awsvpc) continue;
      if (s.State !== 'running') continue;
      await this.joinDaemonNetwork(s.Id, ns).catch((e: Error) => this.log.warn({ container: s.Id, err: e.message }, 'cannot join a container to the daemon network'));
    }
    return ns;
  }

  /** A second interface on the instance's daemon network and the route to 169.254.172.2 through the namespace. */
  private async joinDaemonNetwork(id: string, ns: { id: string; ip: string; network: string }): Promise<void> {
    await this.api.connectNetwork(ns.network, id);
    await this.runHelper(id, routeToDaemons(ns.ip));
  }

  /** Run a script in another container's network namespace in a short-lived helper container. */
  private async runHelper(targetId: string, script: string, sysctls = false): Promise<void> {
    const image = await this.namespaceImage();
    const body = helperBody(this.owner, image, targetId, script, sysctls);
    const { id } = await this.api.createContainer(body);
    if (!id) throw internal('helper container was not created');
    try {
      await this.api.startContainer(id);
      const code = await this.api.waitContainer(id);
      if (code !== 0) {
        const out = await this.api.logs(id, { follow: false, tail: 20, timestamps: false }).catch(() => Buffer.alloc(0));
        throw new RuntimeError('CannotSetUpNetworkError', `"${script}" in ${targetId} exited ${code}: ${demux(out as Buffer).toString('utf8').trim()}`, { uncertain: false });
      }
    } finally {
      await this.api.removeContainer(id).catch(() => undefined);
    }
  }

  async create(task: RuntimeTask, container: string, opts: CreateOptions): Promise<RuntimeContainer> {
    const def = task.containers.find((c) => c.name === container);
    if (!def) throw badRequest(`task ${task.taskArn} has no container "${container}"`);
    const owned: RuntimeTask = { ...task, instance: this.ownerOf(task).instance || undefined };
    const daemonNamespaceId = task.networkMode === 'daemon_bridge' ? (await this.ensureDaemonNamespace()).id : undefined;
    const body = toCreateBody(owned, def, {
      ...opts,
      config: { disablePrivileged: this.opts.config.disablePrivileged, availableLoggingDrivers: this.opts.config.availableLoggingDrivers, taskCpuMemLimit: this.opts.config.taskCpuMemLimit, dnsServers: this.dnsServers },
      daemonNamespaceId,
      cgroupParent: opts.resources.cgroupParent,
    });
    const r = await this.api.createContainer(body);
    const raw = await this.api.inspectContainer(r.id ?? opts.name);
    if (!raw) throw internal(`container ${opts.name} not found after create`);
    const c = this.toRuntime(raw);
    if (c.labels[LABELS.taskArn] !== task.taskArn || !this.mine(c.labels, owned.instance)) {
      throw new RuntimeError('CannotCreateContainerError', `container name ${opts.name} is taken by another task`, { uncertain: false, kind: 'Container', name: opts.name });
    }
    this.opts.imageState?.used(imageRef(def.image), raw.Image);
    // application bridge containers reach their instance's daemons at 169.254.172.2
    if (task.networkMode === 'bridge') {
      const ns = await this.existingDaemonNamespace();
      if (ns) await this.api.connectNetwork(ns.network, c.id);
    }
    return c;
  }

  async start(id: string): Promise<RuntimeContainer> {
    await this.api.startContainer(id);
    const i = await this.api.inspectContainer(id);
    if (!i) throw new RuntimeError('CannotStartContainerError', `container ${id} vanished after start`, { statusCode: 404, uncertain: false });
    // a bridge container on the daemon network gets its route once its namespace exists
    const ns = this.daemonNs ?? (await this.existingDaemonNamespace());
    if (ns && i.State.Status === 'running' && i.NetworkSettings?.Networks?.[ns.network] && !i.Config.Labels?.[LABELS.managed]) {
      await this.runHelper(i.Id, routeToDaemons(ns.ip)).catch((e: Error) => this.log.warn({ container: id, err: e.message }, 'cannot route the container to the daemon namespace'));
    }
    return this.toRuntime(i);
  }

  async stop(id: string, timeoutMs: number): Promise<void> {
    await this.api.stopContainer(id, timeoutMs);
  }

  async remove(id: string): Promise<void> {
    await this.api.removeContainer(id);
  }

  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    const i = await this.api.inspectContainer(idOrName);
    return i ? this.toRuntime(i) : undefined;
  }

  /** raw Docker inspect, for tests and introspection */
  async inspectRaw(idOrName: string): Promise<Inspect> {
    const i = await this.api.inspectContainer(idOrName);
    if (!i) throw new RuntimeError('CannotInspectContainerError', `no such container ${idOrName}`, { statusCode: 404 });
    return i;
  }

  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
    const out: RuntimeContainer[] = [];
    for (const s of await this.api.listContainers({ label })) {
      const c = await this.inspect(s.Id);
      if (c) out.push(c);
    }
    return out;
  }

  /** The task stopped: its namespace container goes too (ECS checkTearDownPauseContainer). */
  async taskStopped(task: RuntimeTask): Promise<void> {
    if (!needsTaskNamespace(task)) return;
    const i = await this.api.inspectContainer(taskNamespaceName({ ...task, instance: this.ownerOf(task).instance || undefined }));
    if (i && this.mine(i.Config.Labels) && i.Config.Labels?.[LABELS.taskArn] === task.taskArn && i.State.Status === 'running') await this.api.stopContainer(i.Id, 0);
  }

  /** Remove every container and task volume of the task that is ours, and its cgroup. */
  async cleanupTask(task: Pick<RuntimeTask, 'taskArn' | 'instance'>): Promise<void> {
    const instance = task.instance ?? this.owner.instance;
    for (const s of await this.api.listContainers({ label: [`${LABELS.taskArn}=${task.taskArn}`] })) {
      if (!this.mine(s.Labels, instance)) continue;
      await this.api.removeContainer(s.Id);
    }
    for (const v of await this.api.listVolumes([`${LABELS.taskArn}=${task.taskArn}`])) {
      if (!this.mine(v.Labels, instance)) continue;
      await this.api.removeVolume(v.Name).catch((e: Error) => this.log.warn({ volume: v.Name, err: e.message }, 'cannot remove task volume'));
    }
    await this.cgroups.remove(this.cgroupName({ taskArn: task.taskArn, cluster: this.owner.cluster, instance })).catch(() => undefined);
  }

  async logs(id: string, opts: LogOptions = {}): Promise<Readable> {
    const info = await this.inspectRaw(id);
    const out = new PassThrough();
    const tail = opts.tail ?? 'all';
    if (opts.follow) {
      const raw = (await this.api.logs(id, { follow: true, tail, timestamps: opts.timestamps ?? false })) as NodeJS.ReadableStream;
      if (info.Config.Tty) raw.pipe(out);
      else {
        this.api.docker.modem.demuxStream(raw, out, out);
        raw.on('end', () => out.end());
      }
      out.on('close', () => (raw as Readable).destroy?.());
    } else {
      const buf = (await this.api.logs(id, { follow: false, tail, timestamps: opts.timestamps ?? false })) as Buffer;
      out.end(info.Config.Tty ? buf : demux(buf));
    }
    return out;
  }

  onEvent(fn: EventListener): () => void {
    return this.api.subscribe(fn);
  }

  /** Drop the event stream (tests use this to prove reconnects). */
  dropEventStream(): void {
    this.api.dropEventStream();
  }

  /** Remove this instance's daemon namespace and network (tests, deregistration). */
  async removeDaemonNamespace(): Promise<void> {
    const n = daemonNames(this.owner);
    const i = await this.api.inspectContainer(n.container);
    if (i && this.mine(i.Config.Labels)) await this.api.removeContainer(i.Id);
    const net = await this.api.inspectNetwork(n.network);
    if (net && this.mine(net.Labels)) await this.api.removeNetwork(n.network);
    this.daemonNs = undefined;
    this.daemonNsAbsent = false;
  }

  async close(): Promise<void> {
    await this.api.close();
  }
}

/** Is it an error that says "no such container"? */
export const isGone = (e: unknown) => isRuntimeError(e) && e.statusCode === 404;

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
