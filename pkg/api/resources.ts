import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { Condition } from './meta.ts';

export { daemonRevision, restartRequest, serviceTaskDefinition, taskRevision } from './resolved.ts';
import { KeyValuePair, PlacementConstraint, PlacementStrategy, Tag } from './taskdefinition.ts';

/**
 * The spec and status schemas of every kind but task definitions. Field names and enums
 * are ECS's. Specs are what users (and controllers) write; statuses are written through
 * the /status subresource by the component that owns them.
 */

const ts = z.string(); // RFC 3339 timestamps in the resource API; epoch seconds on the ECS face

// ---------------------------------------------------------------- Cluster
export const ClusterSpec = z.strictObject({
  settings: z
    .array(
      z.strictObject({
        name: z.literal('containerInsights'),
        value: z.enum(['enabled', 'disabled', 'enhanced']).refine((v) => v === 'disabled', { error: 'containerInsights can only be disabled: berth sends no metrics to CloudWatch Container Insights' }),
      }),
    )
    .optional(),
  configuration: z
    .record(z.string(), z.unknown())
    .refine((c) => Object.keys(c).length === 0, { error: 'cluster configuration (executeCommandConfiguration, managedStorageConfiguration) is not supported by berth: it has no ECS Exec and no managed storage' })
    .optional(),
  tags: z.array(Tag).max(50).optional(),
});
export type ClusterSpec = z.infer<typeof ClusterSpec>;

export const ClusterStatus = z.strictObject({
  status: z.enum(['ACTIVE', 'PROVISIONING', 'DEPROVISIONING', 'FAILED', 'INACTIVE']),
  clusterArn: z.string().optional(),
  registeredContainerInstancesCount: z.number().int().default(0),
  runningTasksCount: z.number().int().default(0),
  pendingTasksCount: z.number().int().default(0),
  activeServicesCount: z.number().int().default(0),
});
export type ClusterStatus = z.infer<typeof ClusterStatus>;

// ---------------------------------------------------------------- ContainerInstance
/** ECS's Resource shape (DescribeContainerInstances registeredResources/remainingResources). */
export const EcsResource = z.strictObject({
  name: z.enum(['CPU', 'MEMORY', 'PORTS', 'PORTS_UDP']),
  type: z.enum(['INTEGER', 'STRINGSET', 'LONG', 'DOUBLE']),
  integerValue: z.number().int().optional(),
  longValue: z.number().int().optional(),
  doubleValue: z.number().optional(),
  stringSetValue: z.array(z.string()).optional(),
});
export type EcsResource = z.infer<typeof EcsResource>;

export const Attribute = z.strictObject({
  name: z.string().min(1).max(128),
  value: z.string().max(128).optional(),
  targetType: z.literal('container-instance').optional(),
  targetId: z.string().optional(),
});
export type Attribute = z.infer<typeof Attribute>;

export const VersionInfo = z.strictObject({
  agentVersion: z.string().optional(),
  agentHash: z.string().optional(),
  dockerVersion: z.string().optional(),
});

/**
 * The most one instance may register (S7): a bootstrap credential must not be able to
 * announce a host so large that it attracts every task (and the secrets they carry). 1,024
 * vCPUs in CPU units, 32 TiB in MiB, every port once.
 */
export const REGISTERED_MAXIMA = { CPU: 1024 * 1024, MEMORY: 32 * 1024 * 1024, ports: 65_536 } as const;

/** registeredResources: each resource once, integers within REGISTERED_MAXIMA, ports as port numbers */
const RegisteredResources = z
  .array(EcsResource)
  .max(8)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((r, i) => {
      const at = (...p: Array<string | number>) => [i, ...p];
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: at('name'), message: `${r.name} is given twice` });
      seen.add(r.name);
      if (r.name === 'CPU' || r.name === 'MEMORY') {
        const max = REGISTERED_MAXIMA[r.name];
        for (const f of ['integerValue', 'longValue', 'doubleValue'] as const) {
          const v = r[f];
          if (v !== undefined && (v < 0 || v > max)) ctx.addIssue({ code: 'custom', path: at(f), message: `${r.name} must be between 0 and ${max}, got ${v}` });
        }
      } else {
        const ports = r.stringSetValue ?? [];
        if (ports.length > REGISTERED_MAXIMA.ports) ctx.addIssue({ code: 'custom', path: at('stringSetValue'), message: `at most ${REGISTERED_MAXIMA.ports} ports` });
        ports.forEach((p, j) => {
          if (/^\d{1,5}$/.test(p) && Number(p) <= 65535) return;
          ctx.addIssue({ code: 'custom', path: at('stringSetValue', j), message: `"${p.slice(0, 20)}" is not a port number (0-65535)` });
        });
      }
    });
  });

export const ContainerInstanceSpec = z.strictObject({
  /** ACTIVE or DRAINING: what the operator wants (UpdateContainerInstancesState) */
  status: z.enum(['ACTIVE', 'DRAINING', 'INACTIVE'], { error: 'status must be ACTIVE, DRAINING or INACTIVE' }).default('ACTIVE'),
  ec2InstanceId: z.string().optional(),
  /** the host's name, for a person */
  hostname: z.string().optional(),
  attributes: z.array(Attribute).optional(),
  tags: z.array(Tag).optional(),
  /** what the agent registered: CPU units, MiB, reserved ports */
  registeredResources: RegisteredResources.optional(),
  /** [low, high] inclusive, the ports dynamic host ports are chosen from */
  dynamicHostPortRange: z.tuple([z.number().int(), z.number().int()]).optional(),
  /** an instance identity fingerprint, so a data dir copied to another host is noticed */
  hostFingerprint: z.string().optional(),
});
export type ContainerInstanceSpec = z.infer<typeof ContainerInstanceSpec>;

export const ContainerInstanceStatus = z.strictObject({
  containerInstanceArn: z.string().optional(),
  agentConnected: z.boolean().default(false),
  lastHeartbeat: ts.optional(),
  registeredAt: ts.optional(),
  status: z.enum(['REGISTERING', 'REGISTRATION_FAILED', 'ACTIVE', 'INACTIVE', 'DEREGISTERING', 'DRAINING']).optional(),
  statusReason: z.string().optional(),
  remainingResources: z.array(EcsResource).optional(),
  runningTasksCount: z.number().int().default(0),
  pendingTasksCount: z.number().int().default(0),
  versionInfo: VersionInfo.optional(),
  agentUpdateStatus: z.string().optional(),
  conditions: z.array(Condition).optional(),
  /** where the agent serves container logs to the apiserver (http://IP:PORT on registeredAddress); the token is never shown to clients */
  logs: z.strictObject({ endpoint: z.string().max(128), token: z.string().max(512).optional() }).optional(),
  /** the address the instance registered from, recorded by the apiserver (no client writes it): the logs proxy reaches only this address */
  registeredAddress: z.string().optional(),
});
export type ContainerInstanceStatus = z.infer<typeof ContainerInstanceStatus>;

// ---------------------------------------------------------------- Task
export const ContainerOverride = z.strictObject({
  name: z.string(),
  command: z.array(z.string()).optional(),
  environment: z.array(KeyValuePair).optional(),
  cpu: z.number().int().min(0).optional(),
  memory: z.number().int().min(4).optional(),
  memoryReservation: z.number().int().min(4).optional(),
});
export type ContainerOverride = z.infer<typeof ContainerOverride>;

export const TaskOverride = z.strictObject({
  containerOverrides: z.array(ContainerOverride).optional(),
  /** the task's CPU units and MiB instead of its definition's: the scheduler places by them and the agent limits by them */
  cpu: z.string().regex(/^[1-9]\d{0,6}$/, { error: 'overrides.cpu must be CPU units, a whole number ("512")' }).optional(),
  memory: z.string().regex(/^[1-9]\d{0,7}$/, { error: 'overrides.memory must be MiB, a whole number ("1024")' }).optional(),
  taskRoleArn: z
    .string()
    .refine(() => false, { error: 'task IAM roles need the ECS credentials endpoint (169.254.170.2), which berth does not provide: a task with one could not get its credentials' })
    .optional(),
  /** the role ECS's agent pulls from ECR and ships awslogs with: nothing berth does needs one */
  executionRoleArn: z.string().optional(),
});
export type TaskOverride = z.infer<typeof TaskOverride>;

export const HostPortAssignment = z.strictObject({
  containerName: z.string(),
  containerPort: z.number().int(),
  protocol: z.enum(['tcp', 'udp']),
  hostPort: z.number().int(),
});
export type HostPortAssignment = z.infer<typeof HostPortAssignment>;

export const DesiredStatus = z.enum(['RUNNING', 'STOPPED'], { error: 'desiredStatus must be RUNNING or STOPPED' });

export const StopCode = z.enum([
  'TaskFailedToStart',
  'EssentialContainerExited',
  'UserInitiated',
  'ServiceSchedulerInitiated',
  'SpotInterruption',
  'TerminationNotice',
]);

export const TaskSpec = z.strictObject({
  /** resolved at creation to `family:revision` */
  taskDefinition: z.string({ error: 'taskDefinition is required' }).min(1),
  /** daemon tasks: the daemon task definition they run */
  daemonTaskDefinition: z.string().optional(),
  overrides: TaskOverride.optional(),
  group: z.string().max(255).optional(),
  startedBy: z.string().max(128).optional(),
  /** the binding: set once, by the placement controller (through binding) or StartTask */
  containerInstance: z.string().optional(),
  desiredStatus: DesiredStatus.default('RUNNING'),
  stopReason: z.string().max(1024).optional(),
  stopCode: StopCode.optional(),
  /** the host ports of the task's port mappings, fixed and dynamic, decided at binding */
  hostPorts: z.array(HostPortAssignment).optional(),
  placementConstraints: z.array(PlacementConstraint).optional(),
  placementStrategy: z.array(PlacementStrategy).optional(),
  launchType: z.enum(['EC2', 'EXTERNAL']).optional(),
  clientToken: z.string().max(64).optional(),
  tags: z.array(Tag).optional(),
  /** service tasks: the deployment that started them */
  deploymentId: z.string().optional(),
});
export type TaskSpec = z.infer<typeof TaskSpec>;

export const LastStatus = z.enum([
  'PROVISIONING',
  'PENDING',
  'ACTIVATING',
  'RUNNING',
  'DEACTIVATING',
  'STOPPING',
  'DEPROVISIONING',
  'STOPPED',
]);
export type LastStatus = z.infer<typeof LastStatus>;

export const NetworkBinding = z.strictObject({
  bindIP: z.string().optional(),
  containerPort: z.number().int(),
  hostPort: z.number().int(),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
});
export type NetworkBinding = z.infer<typeof NetworkBinding>;

export const NetworkInterface = z.strictObject({
  attachmentId: z.string().optional(),
  privateIpv4Address: z.string().optional(),
  ipv6Address: z.string().optional(),
});

export const HealthStatus = z.enum(['HEALTHY', 'UNHEALTHY', 'UNKNOWN']);

export const ContainerStatus = z.strictObject({
  name: z.string(),
  containerArn: z.string().optional(),
  dockerId: z.string().optional(),
  dockerName: z.string().optional(),
  image: z.string().optional(),
  imageDigest: z.string().optional(),
  lastStatus: z.enum(['NONE', 'PULLED', 'CREATED', 'PENDING', 'RUNNING', 'STOPPED']).default('PENDING'),
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  networkBindings: z.array(NetworkBinding).optional(),
  networkInterfaces: z.array(NetworkInterface).optional(),
  healthStatus: HealthStatus.optional(),
  restartCount: z.number().int().optional(),
  cpu: z.string().optional(),
  memory: z.string().optional(),
  memoryReservation: z.string().optional(),
});
export type ContainerStatus = z.infer<typeof ContainerStatus>;

/** Attachment details that name an address: the load balancers and service discovery send traffic there, so they are addresses and nothing else. */
const ADDRESS_DETAILS: Record<string, (v: string) => boolean> = { privateIPv4Address: isIPv4, privateIPv6Address: isIPv6 };

export const Attachment = z.strictObject({
  id: z.string(),
  type: z.string(),
  status: z.string().optional(),
  details: z
    .array(
      KeyValuePair.refine((d) => !ADDRESS_DETAILS[d.name] || ADDRESS_DETAILS[d.name](d.value), { error: (i) => `${(i.input as { name: string }).name} must be an IP address`, path: ['value'] }),
    )
    .optional(),
});

export const TaskStatus = z.strictObject({
  taskArn: z.string().optional(),
  lastStatus: LastStatus.default('PROVISIONING'),
  containers: z.array(ContainerStatus).optional(),
  healthStatus: HealthStatus.optional(),
  connectivity: z.enum(['CONNECTED', 'DISCONNECTED']).optional(),
  connectivityAt: ts.optional(),
  pullStartedAt: ts.optional(),
  pullStoppedAt: ts.optional(),
  startedAt: ts.optional(),
  stoppingAt: ts.optional(),
  stoppedAt: ts.optional(),
  executionStoppedAt: ts.optional(),
  stopCode: StopCode.optional(),
  stoppedReason: z.string().optional(),
  attachments: z.array(Attachment).optional(),
  /** increments each time the agent reports, like ECS's task `version` */
  version: z.number().int().optional(),
  /**
   * the revision the task runs (`family:revision`): spec.taskDefinition (or
   * spec.daemonTaskDefinition) as admission resolved it at creation. The spec keeps what was written.
   */
  taskDefinition: z.string().optional(),
});
export type TaskStatus = z.infer<typeof TaskStatus>;

// ---------------------------------------------------------------- Service
export const DeploymentCircuitBreaker = z.strictObject({
  enable: z.boolean(),
  rollback: z.boolean(),
  /** a task that becomes healthy resets the failure count (ECS; default true) */
  resetOnHealthyTask: z.boolean().optional(),
});

export const DeploymentConfiguration = z.strictObject({
  minimumHealthyPercent: z.number().int().min(0, { error: 'minimumHealthyPercent must be 0-100' }).max(100, { error: 'minimumHealthyPercent must be 0-100' }).optional(),
  maximumPercent: z.number().int().min(100, { error: 'maximumPercent must be 100-200' }).max(200, { error: 'maximumPercent must be 100-200' }).optional(),
  deploymentCircuitBreaker: DeploymentCircuitBreaker.optional(),
});
export type DeploymentConfiguration = z.infer<typeof DeploymentConfiguration>;

export const LoadBalancer = z.strictObject({
  loadBalancerName: z.string().optional(),
  targetGroupArn: z.string().optional(),
  containerName: z.string(),
  containerPort: z.number().int(),
});

const noVpc = (what: string) => `berth has no VPC, so no ${what}: an awsvpc task gets its own network namespace on its instance's bridge, with no subnets, security groups or public IPs (leave networkConfiguration out)`;
/** ECS's awsvpcConfiguration: refused when it asks for anything (berth cannot put a task in a subnet or behind a security group). */
export const NetworkConfiguration = z.strictObject({
  awsvpcConfiguration: z
    .strictObject({
      subnets: z.array(z.string()).max(0, { error: noVpc('subnets') }).optional(),
      securityGroups: z.array(z.string()).max(0, { error: noVpc('securityGroups') }).optional(),
      assignPublicIp: z.enum(['ENABLED', 'DISABLED']).refine((v) => v === 'DISABLED', { error: noVpc('assignPublicIp') }).optional(),
    })
    .optional(),
});

export const ServiceSpec = z.strictObject({
  taskDefinition: z.string({ error: 'taskDefinition is required' }).min(1, { error: 'taskDefinition is required' }),
  desiredCount: z.number().int().min(0, { error: 'desiredCount must be 0 or more' }).optional(),
  launchType: z.enum(['EC2', 'EXTERNAL']).optional(),
  schedulingStrategy: z.enum(['REPLICA', 'DAEMON'], { error: 'schedulingStrategy must be REPLICA or DAEMON' }).default('REPLICA'),
  deploymentConfiguration: DeploymentConfiguration.optional(),
  placementConstraints: z.array(PlacementConstraint).max(10).optional(),
  placementStrategy: z.array(PlacementStrategy).max(5).optional(),
  loadBalancers: z.array(LoadBalancer).optional(),
  role: z.string().optional(),
  healthCheckGracePeriodSeconds: z.number().int().min(0).max(2147483647).optional(),
  clientToken: z.string().max(36).optional(),
  tags: z.array(Tag).max(50).optional(),
  networkConfiguration: NetworkConfiguration.optional(),
  enableECSManagedTags: z.boolean().optional(),
  enableExecuteCommand: z
    .boolean()
    .refine((v) => !v, { error: 'berth has no ECS Exec (ExecuteCommand) yet, so no command could be run in the tasks: leave it out or false' })
    .optional(),
  propagateTags: z.enum(['TASK_DEFINITION', 'SERVICE', 'NONE']).optional(),
  /** kept and shown as given: DISABLED only (berth never moves running tasks to rebalance zones) */
  availabilityZoneRebalancing: z
    .enum(['ENABLED', 'DISABLED'])
    .refine((v) => v === 'DISABLED', { error: 'availabilityZoneRebalancing ENABLED is not supported by berth: it never moves running tasks to rebalance zones (use DISABLED, or leave it out, and a spread placement strategy)' })
    .optional(),
  /**
   * A forced deployment: any new value (UpdateService forceNewDeployment, `berth rollout
   * restart` write the time) starts a new deployment of the same task definition, so every
   * task is replaced within the deployment's bounds and its images pulled again.
   */
  restartedAt: z.string().min(1).max(64).optional(),
}).superRefine((s, ctx) => {
  // the daemon controller rolls DAEMON services by revision only: a restart request it would not act on is refused
  if (s.restartedAt !== undefined && s.schedulingStrategy === 'DAEMON') {
    ctx.addIssue({ code: 'custom', path: ['restartedAt'], message: 'forced deployments are for REPLICA services: a DAEMON service rolls when its task definition changes' });
  }
});
export type ServiceSpec = z.infer<typeof ServiceSpec>;

export const Deployment = z.strictObject({
  id: z.string(),
  status: z.enum(['PRIMARY', 'ACTIVE', 'INACTIVE']),
  taskDefinition: z.string(),
  desiredCount: z.number().int(),
  pendingCount: z.number().int(),
  runningCount: z.number().int(),
  failedTasks: z.number().int().default(0),
  rolloutState: z.enum(['COMPLETED', 'FAILED', 'IN_PROGRESS']).optional(),
  rolloutStateReason: z.string().optional(),
  createdAt: ts,
  updatedAt: ts,
  /** the deployment circuit breaker's state while it watches this deployment (ECS's ServiceDeploymentCircuitBreaker, and berth's own books) */
  circuitBreaker: z
    .strictObject({
      status: z.enum(['MONITORING', 'TRIGGERED', 'MONITORING_COMPLETE']),
      /** 1: waiting for a task to reach RUNNING (tasks that never do are failures); 2: one did (tasks replaced for failing health checks are) */
      stage: z.number().int().min(1).max(2),
      threshold: z.number().int(),
      /** the failed tasks already counted in failedTasks, so a task is counted once however often it is seen */
      countedTasks: z.array(z.string()).optional(),
      /** resetOnHealthyTask: the start of the newest task whose healthy state reset the count */
      resetBy: ts.optional(),
    })
    .optional(),
});
export type Deployment = z.infer<typeof Deployment>;

export const ServiceEvent = z.strictObject({ id: z.string(), createdAt: ts, message: z.string() });
export type ServiceEvent = z.infer<typeof ServiceEvent>;

export const ServiceStatus = z.strictObject({
  serviceArn: z.string().optional(),
  status: z.enum(['ACTIVE', 'DRAINING', 'INACTIVE']).default('ACTIVE'),
  desiredCount: z.number().int().default(0),
  runningCount: z.number().int().default(0),
  pendingCount: z.number().int().default(0),
  deployments: z.array(Deployment).optional(),
  events: z.array(ServiceEvent).optional(),
  observedGeneration: z.number().int().optional(),
  conditions: z.array(Condition).optional(),
  /** the restart requests the controller last acted on: spec.restartedAt, and the kubectl.kubernetes.io/restartedAt annotation */
  restart: z.strictObject({ restartedAt: z.string().optional(), annotation: z.string().optional(), secrets: z.string().optional() }).optional(),
  /**
   * the revision the service runs (`family:revision`): spec.taskDefinition as admission
   * resolved it when the spec named it (a family resolves to its latest ACTIVE revision), or a
   * circuit breaker's rollback target. The spec keeps what the user wrote.
   */
  taskDefinition: z.string().optional(),
  /**
   * a spec naming a bare family follows it: the newest revision of the family the service has
   * taken. A newer ACTIVE revision is rolled out; a rollback does not lower this, so a revision
   * that failed is not deployed again until a newer one is registered.
   */
  followedRevision: z.number().int().optional(),
});
export type ServiceStatus = z.infer<typeof ServiceStatus>;

/** `web` (not `web:3`, not an ARN): a spec that follows its family's newest revision */
export const namesBareFamily = (ref: string): boolean => !ref.includes(':') && !ref.includes('/');

// ---------------------------------------------------------------- Daemon
export const DaemonSpec = z.strictObject({
  /** a daemon task definition: `family`, `family:revision` or its ARN */
  daemonTaskDefinition: z.string({ error: 'daemonTaskDefinition is required' }).min(1),
  placementConstraints: z.array(PlacementConstraint).max(10).optional(),
  deploymentConfiguration: z
    .strictObject({
      /** how many instances may be without the daemon at once during a roll (default 1) */
      maxUnavailable: z.number().int().min(1).optional(),
    })
    .optional(),
  clientToken: z.string().optional(),
  tags: z.array(Tag).max(50).optional(),
});
export type DaemonSpec = z.infer<typeof DaemonSpec>;

export const DaemonStatus = z.strictObject({
  daemonArn: z.string().optional(),
  status: z.enum(['ACTIVE', 'DELETE_IN_PROGRESS', 'INACTIVE']).default('ACTIVE'),
  daemonTaskDefinitionArn: z.string().optional(),
  desiredCount: z.number().int().default(0),
  runningCount: z.number().int().default(0),
  pendingCount: z.number().int().default(0),
  updatedCount: z.number().int().default(0),
  events: z.array(ServiceEvent).optional(),
  observedGeneration: z.number().int().optional(),
  conditions: z.array(Condition).optional(),
  /** the revision the daemon runs (`family:revision`): spec.daemonTaskDefinition resolved; the spec keeps what was written */
  taskDefinition: z.string().optional(),
  /** a spec naming a bare family follows it: the newest revision taken (a newer ACTIVE one is rolled out) */
  followedRevision: z.number().int().optional(),
});
export type DaemonStatus = z.infer<typeof DaemonStatus>;

// ---------------------------------------------------------------- Lease
export const LeaseSpec = z.strictObject({
  holderIdentity: z.string().optional(),
  leaseDurationSeconds: z.number().int().min(1).optional(),
  acquireTime: ts.optional(),
  renewTime: ts.optional(),
  leaseTransitions: z.number().int().min(0).optional(),
});
export type LeaseSpec = z.infer<typeof LeaseSpec>;
export const LeaseStatus = z.strictObject({});

// ---------------------------------------------------------------- InstanceLease
/**
 * An agent's heartbeat (Kubernetes' node Lease, coordination.k8s.io): one per container
 * instance, named after it, in its cluster; the agent renews it every heartbeat, so the
 * ContainerInstance is written only when its content changes.
 */
export const InstanceLeaseSpec = z.strictObject({
  /** the container instance id whose agent renews it (the lease's name) */
  holderIdentity: z.string().min(1),
  /** when the agent last renewed it (by the agent's clock: shown, never judged by) */
  renewTime: ts,
  /** the agent's heartbeat period x 4: how long its silence is expected to last at most */
  leaseDurationSeconds: z.number().int().min(1).max(86_400),
});
export type InstanceLeaseSpec = z.infer<typeof InstanceLeaseSpec>;
/** computed on every read, never stored: the instance's `agentConnected` as the apiserver has it (an agent recorded disconnected writes its instance again) */
export const InstanceLeaseStatus = z.strictObject({ agentConnected: z.boolean().optional() });

// ---------------------------------------------------------------- Secret
/** a key of a secret's data: what an env file or `--from-literal` names (letters, digits, `.`, `_`, `-`) */
const SecretKey = z.string().regex(/^[A-Za-z0-9._-]{1,253}$/, { error: 'secret keys are 1-253 letters, digits, ".", "_" and "-"' });

/** what a secret holds at most, all its values together (Secrets Manager's SecretString limit) */
export const SECRET_MAX_BYTES = 64 * 1024;

export const SecretSpec = z.strictObject({
  /**
   * Opaque (any values), EnvFile (the variables of an environment file), RegistryAuth
   * (`username` and `password` for a registry), Parameter (an SSM parameter)
   */
  type: z.enum(['Opaque', 'EnvFile', 'RegistryAuth', 'Parameter'], { error: 'type must be Opaque, EnvFile, RegistryAuth or Parameter' }).default('Opaque'),
  /**
   * the values: clear on the way in, encrypted in the store (AES-256-GCM), never returned by
   * get, list or watch (only by the `value` subresource, to admins and to the nodes that run
   * a task referencing the secret). A write without `data` keeps the stored values.
   */
  data: z
    .record(SecretKey, z.string())
    .refine((d) => Object.keys(d).length <= 100, { error: 'at most 100 keys' })
    .refine((d) => Object.entries(d).reduce((n, [k, v]) => n + k.length + Buffer.byteLength(v), 0) <= SECRET_MAX_BYTES * 2, { error: `the values must not exceed ${SECRET_MAX_BYTES} bytes` })
    .optional(),
  description: z.string().max(2048).optional(),
  /** SSM parameters: String, StringList or SecureString */
  parameterType: z.enum(['String', 'StringList', 'SecureString']).optional(),
  tags: z.array(Tag).max(50).optional(),
});
export type SecretSpec = z.infer<typeof SecretSpec>;

export const SecretStatus = z.strictObject({
  /** the names of the keys (not secret) */
  keys: z.array(z.string()).optional(),
  /** changes whenever a value does (Secrets Manager's VersionId; SSM's Version counts them) */
  versionId: z.string().optional(),
  version: z.number().int().optional(),
  lastChangedDate: ts.optional(),
});
export type SecretStatus = z.infer<typeof SecretStatus>;
