import { z } from 'zod';
import { ecsName } from './meta.ts';

/**
 * Task definitions: every parameter ECS's documents name (the ECS Developer Guide's task
 * definition parameters, the examples of ECS's X-Ray daemon guide, the daemon subset of ECS's
 * managed daemons documentation), with ECS's defaults. Field names are ECS's (camelCase). A
 * task definition manifest's metadata.name is the family; the stored object is named
 * `family:revision`.
 */

const int = (what: string) => z.number({ error: `${what} must be a number` }).int({ error: `${what} must be a whole number` });
const nonNeg = (what: string) => int(what).min(0, { error: `${what} must be 0 or more` });
const port = (what: string) =>
  int(what).min(0, { error: `${what} must be between 0 and 65535` }).max(65535, { error: `${what} must be between 0 and 65535` });

/**
 * A member the current ECS API defines that berth cannot honour: refused by name when given
 * (`undefined` and, for booleans and lists, the "off" value are accepted and not stored).
 */
const notHonoured = (what: string) =>
  z
    .unknown()
    .refine((v) => v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0), { error: `is not supported by berth (${what})` })
    .transform(() => undefined)
    .optional();

export const KeyValuePair = z.strictObject({ name: z.string(), value: z.string() });
export type KeyValuePair = z.infer<typeof KeyValuePair>;

export const Protocol = z.enum(['tcp', 'udp'], { error: 'protocol must be "tcp" or "udp"' });

export const PortMapping = z.strictObject({
  containerPort: port('containerPort'),
  /** 0 or absent in bridge mode: a dynamic host port chosen when the task is placed */
  hostPort: port('hostPort').optional(),
  protocol: Protocol.default('tcp'),
  name: z.string().optional(),
  appProtocol: z.enum(['http', 'http2', 'grpc']).optional(),
  containerPortRange: notHonoured('port ranges: map each port'),
});
export type PortMapping = z.infer<typeof PortMapping>;

export const MountPoint = z.strictObject({
  sourceVolume: z.string({ error: 'sourceVolume is required' }),
  containerPath: z.string({ error: 'containerPath is required' }).startsWith('/', { error: 'containerPath must be an absolute path' }),
  /** absent is read-write; like ECS, kept absent (no default added) */
  readOnly: z.boolean().optional(),
});
export type MountPoint = z.infer<typeof MountPoint>;

export const VolumeFrom = z.strictObject({
  sourceContainer: z.string({ error: 'sourceContainer is required' }),
  readOnly: z.boolean().optional(),
});
export type VolumeFrom = z.infer<typeof VolumeFrom>;

export const LogConfiguration = z.strictObject({
  logDriver: z.enum(['json-file', 'syslog', 'journald', 'gelf', 'fluentd', 'awslogs', 'splunk', 'awsfirelens', 'local', 'none'], {
    error: 'logDriver must be one of json-file, syslog, journald, gelf, fluentd, awslogs, splunk, awsfirelens, local, none',
  }),
  options: z.record(z.string(), z.string()).optional(),
  secretOptions: z.array(z.strictObject({ name: z.string(), valueFrom: z.string() })).optional(),
});
export type LogConfiguration = z.infer<typeof LogConfiguration>;

export const HealthCheck = z.strictObject({
  /** ["CMD", "exe", "arg"] or ["CMD-SHELL", "command"] */
  command: z
    .array(z.string())
    .min(1, { error: 'healthCheck.command must not be empty' })
    .refine((c) => ['CMD', 'CMD-SHELL', 'NONE'].includes(c[0]), {
      error: 'healthCheck.command must start with "CMD" or "CMD-SHELL"',
    }),
  interval: int('interval').min(5, { error: 'interval must be 5-300 seconds' }).max(300, { error: 'interval must be 5-300 seconds' }).default(30),
  timeout: int('timeout').min(2, { error: 'timeout must be 2-120 seconds' }).max(120, { error: 'timeout must be 2-120 seconds' }).default(5),
  retries: int('retries').min(1, { error: 'retries must be 1-10' }).max(10, { error: 'retries must be 1-10' }).default(3),
  startPeriod: int('startPeriod').min(0).max(300, { error: 'startPeriod must be 0-300 seconds' }).optional(),
});
export type HealthCheck = z.infer<typeof HealthCheck>;

export const ContainerDependency = z.strictObject({
  containerName: z.string(),
  condition: z.enum(['START', 'COMPLETE', 'SUCCESS', 'HEALTHY'], {
    error: 'condition must be START, COMPLETE, SUCCESS or HEALTHY',
  }),
});
export type ContainerDependency = z.infer<typeof ContainerDependency>;

export const ULIMIT_NAMES = [
  'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack',
] as const;
export const Ulimit = z.strictObject({
  name: z.enum(ULIMIT_NAMES, { error: `ulimit name must be one of ${ULIMIT_NAMES.join(', ')}` }),
  softLimit: int('softLimit'),
  hardLimit: int('hardLimit'),
});
export type Ulimit = z.infer<typeof Ulimit>;

export const SystemControl = z.strictObject({ namespace: z.string(), value: z.string() });
export type SystemControl = z.infer<typeof SystemControl>;

export const Capabilities = z.strictObject({
  add: z.array(z.string()).optional(),
  drop: z.array(z.string()).optional(),
});

export const LinuxParameters = z.strictObject({
  capabilities: Capabilities.optional(),
  initProcessEnabled: z.boolean().optional(),
  sharedMemorySize: nonNeg('sharedMemorySize').optional(),
  devices: z
    .array(z.strictObject({ hostPath: z.string(), containerPath: z.string().optional(), permissions: z.array(z.enum(['read', 'write', 'mknod'])).optional() }))
    .optional(),
  tmpfs: z.array(z.strictObject({ containerPath: z.string(), size: int('size'), mountOptions: z.array(z.string()).optional() })).optional(),
  maxSwap: nonNeg('maxSwap').optional(),
  swappiness: int('swappiness').min(0).max(100).optional(),
});
export type LinuxParameters = z.infer<typeof LinuxParameters>;

export const RestartPolicy = z.strictObject({
  enabled: z.boolean(),
  ignoredExitCodes: z.array(int('exit code')).max(50).optional(),
  /** seconds a container must run before a restart is attempted (ECS: 60-1800, default 300) */
  restartAttemptPeriod: int('restartAttemptPeriod').min(60, { error: 'restartAttemptPeriod must be 60-1800 seconds' }).max(1800, { error: 'restartAttemptPeriod must be 60-1800 seconds' }).optional(),
});
export type RestartPolicy = z.infer<typeof RestartPolicy>;

export const Secret = z.strictObject({ name: z.string(), valueFrom: z.string() });
export const EnvironmentFile = z.strictObject({ value: z.string(), type: z.literal('s3') });
export const RepositoryCredentials = z.strictObject({ credentialsParameter: z.string() });
export const HostEntry = z.strictObject({ hostname: z.string(), ipAddress: z.string() });

/** Every container parameter, shared by the ordinary and the daemon container definition. */
const containerShape = {
  name: ecsName('container name'),
  image: z.string({ error: 'image is required' }).min(1, { error: 'image is required' }).max(255, { error: 'image must be at most 255 characters' }),
  cpu: nonNeg('cpu').default(0),
  memory: int('memory').min(4, { error: 'memory must be at least 4 MiB' }).optional(),
  memoryReservation: int('memoryReservation').min(4, { error: 'memoryReservation must be at least 4 MiB' }).optional(),
  links: z.array(z.string()).optional(),
  portMappings: z.array(PortMapping).optional(),
  essential: z.boolean().default(true),
  entryPoint: z.array(z.string()).optional(),
  command: z.array(z.string()).optional(),
  environment: z.array(KeyValuePair).optional(),
  environmentFiles: z.array(EnvironmentFile).optional(),
  secrets: z.array(Secret).optional(),
  mountPoints: z.array(MountPoint).optional(),
  volumesFrom: z.array(VolumeFrom).optional(),
  privileged: z.boolean().optional(),
  user: z.string().optional(),
  workingDirectory: z.string().optional(),
  readonlyRootFilesystem: z.boolean().optional(),
  logConfiguration: LogConfiguration.optional(),
  healthCheck: HealthCheck.optional(),
  dependsOn: z.array(ContainerDependency).optional(),
  ulimits: z.array(Ulimit).optional(),
  systemControls: z.array(SystemControl).optional(),
  linuxParameters: LinuxParameters.optional(),
  hostname: z.string().optional(),
  dnsServers: z.array(z.string()).optional(),
  dnsSearchDomains: z.array(z.string()).optional(),
  extraHosts: z.array(HostEntry).optional(),
  dockerLabels: z.record(z.string(), z.string()).optional(),
  dockerSecurityOptions: z.array(z.string()).optional(),
  repositoryCredentials: RepositoryCredentials.optional(),
  restartPolicy: RestartPolicy.optional(),
  stopTimeout: int('stopTimeout').min(2, { error: 'stopTimeout must be 2-120 seconds' }).max(120, { error: 'stopTimeout must be 2-120 seconds' }).optional(),
  startTimeout: int('startTimeout').min(2).max(600).optional(),
  disableNetworking: z.boolean().optional(),
  interactive: z.boolean().optional(),
  pseudoTerminal: z.boolean().optional(),
  /** berth runs the image reference as given (no digest pinning): only "disabled" is what it does */
  versionConsistency: z.enum(['disabled'], { error: 'versionConsistency "enabled" is not supported by berth (it does not pin image digests); use "disabled"' }).optional(),
  resourceRequirements: notHonoured('GPU and inference accelerator requirements'),
  firelensConfiguration: notHonoured('FireLens log routing'),
  credentialSpecs: notHonoured('gMSA credential specs are for Windows containers'),
};

export const ContainerDefinition = z.strictObject(containerShape);
export type ContainerDefinition = z.infer<typeof ContainerDefinition>;

export const NetworkMode = z.enum(['bridge', 'host', 'none', 'awsvpc'], {
  error: 'networkMode must be bridge, host, none or awsvpc',
});
export type NetworkMode = z.infer<typeof NetworkMode> | 'daemon_bridge';

export const HostVolume = z.strictObject({
  sourcePath: z.string().startsWith('/', { error: 'sourcePath must be an absolute path' }).optional(),
});
export const DockerVolumeConfiguration = z.strictObject({
  scope: z.enum(['task', 'shared']).default('task'),
  autoprovision: z.boolean().optional(),
  driver: z.string().optional(),
  driverOpts: z.record(z.string(), z.string()).optional(),
  labels: z.record(z.string(), z.string()).optional(),
});
export const Volume = z.strictObject({
  name: ecsName('volume name'),
  /** with sourcePath: a bind mount of the host path; empty: a Docker volume owned by the task */
  host: HostVolume.optional(),
  dockerVolumeConfiguration: DockerVolumeConfiguration.optional(),
  efsVolumeConfiguration: notHonoured('EFS volumes'),
  fsxWindowsFileServerVolumeConfiguration: notHonoured('FSx for Windows volumes'),
  s3filesVolumeConfiguration: notHonoured('S3 Files volumes'),
  /** a volume configured when a service or task starts (volumeConfigurations): berth has none, so only false */
  configuredAtLaunch: z.literal(false, { error: 'configuredAtLaunch true is not supported by berth (it needs volumeConfigurations, which berth does not implement)' }).optional(),
});
export type Volume = z.infer<typeof Volume>;

export const PlacementConstraint = z.strictObject({
  type: z.enum(['distinctInstance', 'memberOf'], { error: 'placement constraint type must be distinctInstance or memberOf' }),
  expression: z.string().max(2000).optional(),
});
export type PlacementConstraint = z.infer<typeof PlacementConstraint>;

export const PlacementStrategy = z.strictObject({
  type: z.enum(['random', 'spread', 'binpack'], { error: 'placement strategy type must be random, spread or binpack' }),
  field: z.string().optional(),
});
export type PlacementStrategy = z.infer<typeof PlacementStrategy>;

export const Tag = z.strictObject({
  key: z.string().min(1).max(128),
  value: z.string().max(256).optional(),
});
export type Tag = z.infer<typeof Tag>;

/**
 * The tags of a task: its own, then (ECS's propagateTags) the task definition's or the
 * service's, then ECS's managed tags (enableECSManagedTags); a key given earlier wins.
 */
export function withTags(own: Tag[], propagated?: Tag[], managed?: Tag[]): Tag[] {
  const out = [...own];
  for (const t of [...(propagated ?? []), ...(managed ?? [])]) if (!out.some((x) => x.key === t.key)) out.push(t);
  return out;
}

/** "256", 256, "1 vCPU", "0.25 vcpu" -> "256" / "1024"; memory "512", "1 GB", "1GB" -> MiB. */
export const TaskCpu = z
  .union([z.number(), z.string()])
  .transform((v, ctx) => {
    const n = parseUnits(v, /^\s*([\d.]+)\s*(vcpu)?\s*$/i, (x, unit) => (unit ? x * 1024 : x));
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: 'cpu must be CPU units ("256") or vCPUs ("0.25 vCPU")' });
      return z.NEVER;
    }
    return String(n);
  });
export const TaskMemory = z
  .union([z.number(), z.string()])
  .transform((v, ctx) => {
    const n = parseUnits(v, /^\s*([\d.]+)\s*(gb|mb|mib|gib)?\s*$/i, (x, unit) => (unit && /^g/i.test(unit) ? x * 1024 : x));
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: 'memory must be MiB ("512") or GB ("1 GB")' });
      return z.NEVER;
    }
    return String(n);
  });

function parseUnits(v: number | string, re: RegExp, scale: (x: number, unit?: string) => number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v > 0 ? v : undefined;
  const m = re.exec(v);
  if (!m) return undefined;
  const n = Math.round(scale(Number(m[1]), m[2]));
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

const taskShape = {
  containerDefinitions: z
    .array(ContainerDefinition, { error: 'containerDefinitions is required' })
    .min(1, { error: 'a task definition needs at least one container' })
    .max(10, { error: 'a task definition may have at most 10 containers' }),
  volumes: z.array(Volume).optional(),
  networkMode: NetworkMode.default('bridge'),
  cpu: TaskCpu.optional(),
  memory: TaskMemory.optional(),
  taskRoleArn: z.string().optional(),
  executionRoleArn: z.string().optional(),
  placementConstraints: z.array(PlacementConstraint).max(10).optional(),
  requiresCompatibilities: z.array(z.enum(['EC2', 'EXTERNAL', 'FARGATE', 'MANAGED_INSTANCES'])).optional(),
  pidMode: z.enum(['host', 'task']).optional(),
  ipcMode: z.enum(['host', 'task', 'none']).optional(),
  tags: z.array(Tag).max(50).optional(),
  /** berth has no fault-injection endpoints: only false */
  enableFaultInjection: z.literal(false, { error: 'enableFaultInjection true is not supported by berth' }).optional(),
  proxyConfiguration: notHonoured('App Mesh proxy configuration'),
  inferenceAccelerators: notHonoured('Elastic Inference accelerators'),
  ephemeralStorage: notHonoured('ephemeral storage size is a Fargate setting'),
  runtimePlatform: z
    .strictObject({
      operatingSystemFamily: z.enum(['LINUX'], { error: 'runtimePlatform.operatingSystemFamily: berth runs Linux containers only (LINUX)' }).optional(),
      cpuArchitecture: notHonoured('placement by CPU architecture: tasks run on any host'),
    })
    .optional(),
};

/** A TaskDefinition's spec: the register-task-definition fields except `family`. */
export const TaskDefinitionSpec = z.strictObject(taskShape);
export type TaskDefinitionSpec = z.infer<typeof TaskDefinitionSpec>;
export type TaskDefinitionSpecInput = z.input<typeof TaskDefinitionSpec>;

export const TaskDefinitionStatus = z.strictObject({
  family: z.string(),
  revision: z.number().int(),
  taskDefinitionArn: z.string(),
  status: z.enum(['ACTIVE', 'INACTIVE', 'DELETE_IN_PROGRESS']),
  registeredAt: z.string().optional(),
  deregisteredAt: z.string().optional(),
  requiresAttributes: z.array(z.strictObject({ name: z.string(), value: z.string().optional() })).optional(),
  /** a hash of the normalized spec: identical content re-applied is a no-op */
  contentHash: z.string().optional(),
});
export type TaskDefinitionStatus = z.infer<typeof TaskDefinitionStatus>;

// ---- daemon task definitions (ECS's managed daemons documentation) ----

/** The container parameters ECS's managed daemons documentation lists for daemon task definitions. */
export const DAEMON_CONTAINER_FIELDS = [
  'image', 'name', 'cpu', 'memory', 'memoryReservation', 'essential', 'command', 'entryPoint', 'environment',
  'environmentFiles', 'secrets', 'privileged', 'user', 'workingDirectory', 'readonlyRootFilesystem', 'mountPoints',
  'logConfiguration', 'healthCheck', 'dependsOn', 'ulimits', 'systemControls', 'linuxParameters',
  'repositoryCredentials', 'restartPolicy',
] as const;

const pick = <T extends Record<string, z.ZodType>, K extends keyof T>(shape: T, keys: readonly K[]) =>
  Object.fromEntries(keys.map((k) => [k, shape[k]])) as Pick<T, K>;

const daemonUnsupported = (what: string) => (iss: { code?: string; keys?: string[] }) =>
  iss.code === 'unrecognized_keys'
    ? `daemon task definitions do not support ${iss.keys!.map((k) => `"${k}"`).join(', ')} in ${what}`
      + " (ECS's managed daemons documentation lists the supported parameters)"
    : undefined;

export const DaemonLinuxParameters = z.strictObject(
  { capabilities: Capabilities.optional(), initProcessEnabled: z.boolean().optional() },
  { error: daemonUnsupported('linuxParameters: only capabilities and initProcessEnabled') },
);

export const DaemonContainerDefinition = z.strictObject(
  { ...pick(containerShape, DAEMON_CONTAINER_FIELDS), linuxParameters: DaemonLinuxParameters.optional() },
  { error: daemonUnsupported('a container definition') },
);
export type DaemonContainerDefinition = z.infer<typeof DaemonContainerDefinition>;

export const DaemonVolume = z.strictObject(
  {
    name: ecsName('volume name'),
    host: z.strictObject(
      { sourcePath: z.string({ error: 'daemon volumes are host bind mounts: host.sourcePath is required' }).startsWith('/', { error: 'sourcePath must be an absolute path' }) },
      { error: 'daemon volumes are host bind mounts: host.sourcePath is required' },
    ),
  },
  { error: daemonUnsupported('a volume: only bind mounts with host.sourcePath (no Docker, EBS, EFS or FSx volumes)') },
);

export const DaemonTaskDefinitionSpec = z.strictObject(
  {
    containerDefinitions: z
      .array(DaemonContainerDefinition, { error: 'containerDefinitions is required' })
      .min(1, { error: 'a daemon task definition needs at least one container' })
      .max(10, { error: 'a task definition may have at most 10 containers' }),
    cpu: TaskCpu.optional(),
    memory: TaskMemory.optional(),
    taskRoleArn: z.string().optional(),
    executionRoleArn: z.string().optional(),
    volumes: z.array(DaemonVolume).optional(),
    tags: z.array(Tag).max(50).optional(),
  },
  {
    error: (iss) =>
      iss.code === 'unrecognized_keys'
        ? iss.keys.includes('networkMode')
          ? 'daemon task definitions cannot set networkMode: daemons always use daemon_bridge'
          : `daemon task definitions do not support ${iss.keys.map((k) => `"${k}"`).join(', ')}`
        : undefined,
  },
);
export type DaemonTaskDefinitionSpec = z.infer<typeof DaemonTaskDefinitionSpec>;

// ---- the stored spec is the user's; its defaults apply where it is read ----

// one per schema: the same object read as a daemon's and as a task's spec gives each its own answer
const effectiveCache = { task: new WeakMap<object, unknown>(), daemon: new WeakMap<object, unknown>() };

/**
 * A task definition's spec with ECS's defaults applied (`essential` true, `cpu` 0, `protocol`
 * tcp, `networkMode` bridge, health check timings, "0.25 vCPU" as "256", ...): what the
 * scheduler, the agent, the controllers, admission and the ECS face's answers read. The stored
 * spec keeps what the user wrote, so `kubectl apply` of an unchanged file is `unchanged`.
 * Pure; a spec stored before (already defaulted) comes back equal. Remembered per spec object
 * (cached objects are never modified).
 */
export function effectiveTaskDefinition(spec: TaskDefinitionSpecInput | TaskDefinitionSpec, daemon?: false): TaskDefinitionSpec;
export function effectiveTaskDefinition(spec: unknown, daemon: true): DaemonTaskDefinitionSpec;
export function effectiveTaskDefinition(spec: unknown, daemon?: boolean): TaskDefinitionSpec | DaemonTaskDefinitionSpec;
export function effectiveTaskDefinition(spec: unknown, daemon = false): TaskDefinitionSpec | DaemonTaskDefinitionSpec {
  if (typeof spec !== 'object' || spec === null) return spec as TaskDefinitionSpec;
  const cache = daemon ? effectiveCache.daemon : effectiveCache.task;
  const hit = cache.get(spec);
  if (hit) return hit as TaskDefinitionSpec;
  const r = (daemon ? DaemonTaskDefinitionSpec : TaskDefinitionSpec).safeParse(spec);
  // what was admitted parses; anything else is shown as stored rather than dropped
  const out = (r.success ? r.data : spec) as TaskDefinitionSpec;
  cache.set(spec, out);
  return out;
}
