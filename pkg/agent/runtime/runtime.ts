/**
 * The container runtime the task engine drives: Docker (runtime/docker.ts) or a simulation
 * (runtime/hollow.ts). The engine speaks ECS terms (task, container definition); the runtime
 * translates them and reports containers back in engine terms.
 */
import type { Readable } from 'node:stream';
import type { ContainerDefinition, Volume } from '../../api/taskdefinition.ts';

/** ECS container/task statuses, ordered. */
export const STATUSES = ['NONE', 'PULLED', 'CREATED', 'RUNNING', 'STOPPED'] as const;
export type ContainerStatus = (typeof STATUSES)[number];

export type TaskNetworkMode = 'bridge' | 'host' | 'none' | 'awsvpc' | 'daemon_bridge';

/** The real ECS agent's label names (agent/dockerclient/dockerapi: labelPrefix "com.amazonaws.ecs."). */
export const LABELS = {
  cluster: 'com.amazonaws.ecs.cluster',
  taskArn: 'com.amazonaws.ecs.task-arn',
  containerName: 'com.amazonaws.ecs.container-name',
  family: 'com.amazonaws.ecs.task-definition-family',
  version: 'com.amazonaws.ecs.task-definition-version',
  /** berth: the container instance (agent) that owns the object: agents sharing a dockerd touch only their own */
  instance: 'io.berth.container-instance',
  /** berth: marks containers, volumes and networks berth manages; value = role */
  managed: 'io.berth.managed',
} as const;

/** What the runtime needs to know of a task to run its containers. */
export interface RuntimeTask {
  taskArn: string;
  cluster: string;
  family: string;
  revision: number;
  networkMode: TaskNetworkMode;
  containers: ContainerDefinition[];
  volumes?: Volume[];
  /** the container instance running it (labels every object made for it) */
  instance?: string;
  /** task-level CPU units and memory MiB (ECS_ENABLE_TASK_CPU_MEM_LIMIT) */
  cpu?: number;
  memory?: number;
  pidMode?: 'host' | 'task';
  ipcMode?: 'host' | 'task' | 'none';
  /** host ports chosen by the scheduler, keyed `container/containerPort/protocol`; absent or 0 = dynamic */
  assignedHostPorts?: Record<string, number>;
}

export const hostPortKey = (container: string, containerPort: number, protocol: 'tcp' | 'udp' = 'tcp') =>
  `${container}/${containerPort}/${protocol}`;

/** Per-task resources prepared before containers are created. */
export interface TaskResources {
  /** awsvpc: the namespace container that others join */
  namespaceContainerId?: string;
  /** awsvpc: the task's IP address */
  ipAddress?: string;
  /** volume name -> docker bind source or docker volume name */
  volumeSources: Record<string, { type: 'bind' | 'volume'; source: string }>;
  /** the task's cgroup (task-level cpu/memory limits), when it has one */
  cgroupParent?: string;
}

export interface NetworkBinding {
  containerPort: number;
  hostPort: number;
  protocol: 'tcp' | 'udp';
  bindIP: string;
}

export type HealthStatus = 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY';

/** A container as the runtime sees it. */
export interface RuntimeContainer {
  id: string;
  /** docker name without the leading slash */
  name: string;
  image: string;
  labels: Record<string, string>;
  /** engine status derived from the runtime state: CREATED, RUNNING or STOPPED */
  status: ContainerStatus;
  /** raw runtime state, e.g. created, running, exited */
  state: string;
  exitCode?: number;
  /** e.g. OOMKilled, or the runtime's error */
  reason?: string;
  startedAt?: Date;
  finishedAt?: Date;
  health: HealthStatus;
  networkBindings: NetworkBinding[];
  /** first IP address of the container's networks */
  ipAddress?: string;
  /** the stop timeout it was created with (Docker's StopTimeout) */
  stopTimeoutMs?: number;
}

export interface RuntimeEvent {
  /** create, start, stop, die, restart, oom, health_status (the ECS agent's allowlist), or 'resync' after a stream (re)connect */
  action: string;
  id: string;
  labels: Record<string, string>;
  exitCode?: number;
  time: Date;
}

export interface RegistryAuth {
  username?: string;
  password?: string;
  email?: string;
  serveraddress?: string;
  auth?: string;
}

/** What the agent remembers of the images its containers used (its checkpoint). */
export interface ImageState {
  /** was this reference used by this agent before */
  known(ref: string): boolean;
  /** a container was created from `ref`, image id `id` */
  used(ref: string, id: string): void;
}

export interface PullOptions {
  /** credentials from the task's repositoryCredentials, already resolved */
  auth?: RegistryAuth;
}

export interface PullResult {
  image: string;
  /** true when the cached image was used (no pull, or a failed pull fell back to it) */
  fromCache: boolean;
  /** the pull error when the cache was used after a failed pull */
  pullError?: string;
}

export interface CreateOptions {
  /** the container's runtime name, recorded in the checkpoint beforehand */
  name: string;
  resources: TaskResources;
  /** container name (task definition) -> runtime name of the same task's containers already created */
  peers: Record<string, string>;
  /**
   * what the agent resolved from berth Secrets at creation: environment files' variables and
   * `secrets` (merged with `environment` as ECS merges them) and `secretOptions`. Held in
   * memory for the create only: never checkpointed, logged or put in labels.
   */
  resolved?: ResolvedSecrets;
}

export interface ResolvedSecrets {
  /** variables from environmentFiles, in file order (the first file that sets a name wins) */
  envFiles: Array<[string, string]>;
  /** `secrets[]`: name -> value */
  secrets: Array<[string, string]>;
  /** logConfiguration.secretOptions: option -> value */
  logOptions: Record<string, string>;
}

export interface LogOptions {
  follow?: boolean;
  tail?: number;
  timestamps?: boolean;
}

export type EventListener = (e: RuntimeEvent) => void;

/**
 * Failures are RuntimeErrors (pkg/errors) named as the ECS agent names them; `uncertain` ones
 * (timeouts) may have happened anyway. Every call is bounded by a timeout.
 */
export interface ContainerRuntime {
  readonly kind: 'docker' | 'hollow';
  /** does the runtime answer at all (ECS: SystemPing before assuming a failed stop stopped) */
  ping(): Promise<boolean>;
  /** the container instance it works for, once registered (labels, daemon namespace) */
  setInstance?(instance: string): void;
  /** where it keeps what it knows of images (ECS_IMAGE_PULL_BEHAVIOR=once, image cleanup) */
  setImageState?(state: ImageState): void;
  /** the address the host has on the runtime's default bridge (containers reach the host there) */
  bridgeGateway?(): Promise<string | undefined>;
  /** the resolvers containers get unless their definition names its own dnsServers (undefined: the runtime's default) */
  setDnsServers?(servers: string[] | undefined): void;
  pull(image: string, opts?: PullOptions): Promise<PullResult>;
  /** Create the task's volumes and, for awsvpc, its namespace container. Idempotent. */
  prepareTask(task: RuntimeTask): Promise<TaskResources>;
  /** Create one container of the task. If the name exists already, returns that container. */
  create(task: RuntimeTask, container: string, opts: CreateOptions): Promise<RuntimeContainer>;
  start(id: string): Promise<RuntimeContainer>;
  /** SIGTERM (or the image's stop signal), then SIGKILL after timeoutMs. */
  stop(id: string, timeoutMs: number): Promise<void>;
  remove(id: string): Promise<void>;
  /** undefined when it does not exist */
  inspect(idOrName: string): Promise<RuntimeContainer | undefined>;
  /** containers (running or not) carrying all of these labels */
  list(labels: Record<string, string>): Promise<RuntimeContainer[]>;
  /** Every container of the task has stopped: stop its namespace containers (ECS tears the pause container down then). */
  taskStopped(task: RuntimeTask): Promise<void>;
  /** Remove every container (namespaces included) and task-scoped volume labelled with the task and this instance. */
  cleanupTask(task: Pick<RuntimeTask, 'taskArn' | 'instance'>): Promise<void>;
  logs(id: string, opts?: LogOptions): Promise<Readable>;
  /** subscribe to container events; returns unsubscribe */
  onEvent(fn: EventListener): () => void;
  close(): Promise<void>;
}

/** Standard labels for a task's container. */
export function containerLabels(task: RuntimeTask, container: string): Record<string, string> {
  return {
    ...(task.instance ? { [LABELS.instance]: task.instance } : {}),
    [LABELS.cluster]: task.cluster,
    [LABELS.taskArn]: task.taskArn,
    [LABELS.containerName]: container,
    [LABELS.family]: task.family,
    [LABELS.version]: String(task.revision),
  };
}

/** `ecs-FAMILY-REV-CONTAINER-RANDOMHEX`, restricted to Docker's name alphabet. */
export function containerRuntimeName(task: Pick<RuntimeTask, 'family' | 'revision'>, container: string, random: string): string {
  const clean = (s: string) => s.replace(/[^a-zA-Z0-9_.-]/g, '');
  return `ecs-${clean(task.family)}-${task.revision}-${clean(container)}-${random}`;
}

export function statusRank(s: ContainerStatus): number {
  return STATUSES.indexOf(s);
}
