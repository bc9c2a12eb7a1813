import { createHash } from 'node:crypto';
import type { Arns } from '../api/arn.ts';
import type { Cluster, ContainerInstance, Service, Task, TaskDefinition } from '../api/kinds.ts';
import type { Resource } from '../api/meta.ts';
import type { EcsResource } from '../api/resources.ts';
import { taskDefinitionToEcs } from '../api/ecsjson.ts';

/**
 * berth objects in ECS's response shapes (camelCase; timestamps as epoch seconds). The
 * resource API keeps RFC 3339 strings; only this face converts.
 */

type Json = Record<string, unknown>;

export const epoch = (iso: string | undefined): number | undefined => {
  if (!iso) return undefined;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms / 1000;
};

/** JSON.stringify drops undefined members; this also drops them for deep equality in tests. */
export function compact<T extends Json>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

export function clusterToEcs(c: Cluster, arns: Arns, include: string[] = []): Json {
  const st = c.status;
  return compact({
    clusterArn: st?.clusterArn ?? arns.cluster(c.metadata.name),
    clusterName: c.metadata.name,
    status: st?.status ?? 'ACTIVE',
    registeredContainerInstancesCount: st?.registeredContainerInstancesCount ?? 0,
    runningTasksCount: st?.runningTasksCount ?? 0,
    pendingTasksCount: st?.pendingTasksCount ?? 0,
    activeServicesCount: st?.activeServicesCount ?? 0,
    // like ECS, the optional parts only when asked for (`include`)
    statistics: include.includes('STATISTICS') ? [] : undefined,
    tags: include.includes('TAGS') ? (c.spec?.tags ?? []) : undefined,
    settings: include.includes('SETTINGS') ? (c.spec?.settings ?? [{ name: 'containerInsights', value: 'disabled' }]) : undefined,
    configuration: include.includes('CONFIGURATIONS') ? c.spec?.configuration : undefined,
    capacityProviders: [],
    defaultCapacityProviderStrategy: [],
  });
}

/** ECS's Resource shape, every member present as in the seed's describe-container-instances. */
export function resourcesToEcs(rs: EcsResource[] | undefined): Json[] {
  return (rs ?? []).map((r) =>
    r.type === 'STRINGSET'
      ? { name: r.name, type: r.type, doubleValue: 0, longValue: 0, integerValue: 0, stringSetValue: r.stringSetValue ?? [] }
      : { name: r.name, type: r.type, doubleValue: r.doubleValue ?? 0, longValue: r.longValue ?? 0, integerValue: r.integerValue ?? 0 },
  );
}

/** The ECS status of an instance: what the operator asked (spec) unless registration says otherwise. */
export function instanceStatus(ci: ContainerInstance): string {
  const s = ci.status?.status;
  if (s === 'INACTIVE' || s === 'REGISTERING' || s === 'REGISTRATION_FAILED' || s === 'DEREGISTERING') return s;
  return ci.spec.status;
}

export function instanceToEcs(ci: ContainerInstance, arns: Arns): Json {
  const ns = ci.metadata.namespace!;
  return compact({
    containerInstanceArn: ci.status?.containerInstanceArn ?? arns.containerInstance(ns, ci.metadata.name),
    ec2InstanceId: ci.spec.ec2InstanceId,
    version: Number(ci.metadata.resourceVersion ?? 0) || (ci.metadata.generation ?? 1),
    versionInfo: ci.status?.versionInfo ?? {},
    remainingResources: resourcesToEcs(ci.status?.remainingResources),
    registeredResources: resourcesToEcs(ci.spec.registeredResources),
    status: instanceStatus(ci),
    statusReason: ci.status?.statusReason,
    agentConnected: ci.status?.agentConnected ?? false,
    runningTasksCount: ci.status?.runningTasksCount ?? 0,
    pendingTasksCount: ci.status?.pendingTasksCount ?? 0,
    agentUpdateStatus: ci.status?.agentUpdateStatus,
    attributes: (ci.spec.attributes ?? []).map((a) => compact({ name: a.name, value: a.value })),
    registeredAt: epoch(ci.status?.registeredAt ?? ci.metadata.creationTimestamp),
    attachments: [],
    tags: ci.spec.tags ?? [],
  });
}

/** A task definition as ECS shows it: the seed's empty lists present, timestamps as numbers. */
export function taskDefinitionShape(td: TaskDefinition | Resource, arns: Arns): Json {
  const out = taskDefinitionToEcs(td, arns);
  const status = (td.status ?? {}) as { registeredAt?: string; deregisteredAt?: string };
  const containers = ((out.containerDefinitions as Json[] | undefined) ?? []).map((c) => ({
    environment: [],
    mountPoints: [],
    portMappings: [],
    volumesFrom: [],
    ...c,
  }));
  const { tags: _tags, ...rest } = out as Json & { tags?: unknown };
  void _tags;
  return compact({
    ...rest,
    containerDefinitions: containers,
    volumes: out.volumes ?? [],
    placementConstraints: out.placementConstraints ?? [],
    compatibilities: ['EC2', 'EXTERNAL'],
    requiresAttributes: out.requiresAttributes ?? [],
    registeredAt: epoch(status.registeredAt ?? td.metadata.creationTimestamp),
    deregisteredAt: epoch(status.deregisteredAt),
  });
}

/** A container id that stays the same on every read: derived from the task id and container name. */
export function containerId(taskId: string, name: string): string {
  const h = createHash('sha1').update(`${taskId}/${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function taskToEcs(t: Task, arns: Arns, td?: TaskDefinition, include: string[] = []): Json {
  const ns = t.metadata.namespace!;
  const id = t.metadata.name;
  const taskArn = t.status?.taskArn ?? arns.task(ns, id);
  const st = t.status;
  const defs = new Map((td?.spec.containerDefinitions ?? []).map((c) => [c.name, c]));
  const containers = (st?.containers ?? []).map((c) => {
    const def = defs.get(c.name);
    return compact({
      containerArn: c.containerArn ?? arns.container(ns, id, containerId(id, c.name)),
      taskArn,
      name: c.name,
      image: c.image ?? def?.image,
      imageDigest: c.imageDigest,
      runtimeId: c.dockerId,
      lastStatus: c.lastStatus,
      exitCode: c.exitCode,
      reason: c.reason,
      networkBindings: c.networkBindings ?? [],
      networkInterfaces: c.networkInterfaces ?? [],
      healthStatus: c.healthStatus ?? (def?.healthCheck ? 'UNKNOWN' : undefined),
      cpu: c.cpu ?? (def ? String(def.cpu ?? 0) : undefined),
      memory: c.memory ?? (def?.memory !== undefined ? String(def.memory) : undefined),
      memoryReservation: c.memoryReservation ?? (def?.memoryReservation !== undefined ? String(def.memoryReservation) : undefined),
    });
  });
  const overrides = t.spec.overrides ?? {};
  return compact({
    taskArn,
    clusterArn: arns.cluster(ns),
    taskDefinitionArn: arns.taskDefinition(t.spec.taskDefinition),
    containerInstanceArn: t.spec.containerInstance ? arns.containerInstance(ns, t.spec.containerInstance) : undefined,
    overrides: { containerOverrides: overrides.containerOverrides ?? (td?.spec.containerDefinitions ?? []).map((c) => ({ name: c.name })), inferenceAcceleratorOverrides: [], ...stripUndefined(overrides, ['containerOverrides']) },
    lastStatus: st?.lastStatus ?? 'PROVISIONING',
    desiredStatus: t.spec.desiredStatus,
    cpu: t.spec.overrides?.cpu ?? td?.spec.cpu ?? (td ? String(td.spec.containerDefinitions.reduce((s, c) => s + (c.cpu ?? 0), 0)) : undefined),
    memory: t.spec.overrides?.memory ?? td?.spec.memory,
    containers,
    startedBy: t.spec.startedBy,
    group: t.spec.group,
    version: st?.version ?? 1,
    stoppedReason: st?.stoppedReason ?? (t.spec.desiredStatus === 'STOPPED' ? t.spec.stopReason : undefined),
    stopCode: st?.stopCode ?? (t.spec.desiredStatus === 'STOPPED' ? t.spec.stopCode : undefined),
    connectivity: st?.connectivity,
    connectivityAt: epoch(st?.connectivityAt),
    pullStartedAt: epoch(st?.pullStartedAt),
    pullStoppedAt: epoch(st?.pullStoppedAt),
    executionStoppedAt: epoch(st?.executionStoppedAt),
    createdAt: epoch(t.metadata.creationTimestamp),
    startedAt: epoch(st?.startedAt),
    stoppingAt: epoch(st?.stoppingAt),
    stoppedAt: epoch(st?.stoppedAt),
    launchType: t.spec.launchType ?? 'EC2',
    attachments: st?.attachments ?? [],
    healthStatus: st?.healthStatus ?? 'UNKNOWN',
    tags: include.includes('TAGS') ? (t.spec.tags ?? []) : undefined,
    enableExecuteCommand: false,
  });
}

function stripUndefined(o: object, drop: string[]): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && !drop.includes(k)) out[k] = v;
  return out;
}

/** What ECS shows while a deleted service drains: berth marks deletion with a timestamp. */
export function serviceStatus(s: Service): string {
  const st = s.status?.status ?? 'ACTIVE';
  if (s.metadata.deletionTimestamp && st === 'ACTIVE') return 'DRAINING';
  return st;
}

export function serviceToEcs(s: Service, arns: Arns, include: string[] = []): Json {
  const ns = s.metadata.namespace!;
  const st = s.status;
  const spec = s.spec;
  return compact({
    serviceArn: st?.serviceArn ?? arns.service(ns, s.metadata.name),
    serviceName: s.metadata.name,
    clusterArn: arns.cluster(ns),
    loadBalancers: spec.loadBalancers ?? [],
    serviceRegistries: [],
    status: serviceStatus(s),
    desiredCount: spec.desiredCount ?? st?.desiredCount ?? 0,
    runningCount: st?.runningCount ?? 0,
    pendingCount: st?.pendingCount ?? 0,
    launchType: spec.launchType ?? 'EC2',
    taskDefinition: arns.taskDefinition(spec.taskDefinition),
    deploymentConfiguration: spec.deploymentConfiguration ?? {},
    deployments: (st?.deployments ?? []).map((d) =>
      compact({
        id: d.id,
        status: d.status,
        taskDefinition: arns.taskDefinition(d.taskDefinition),
        desiredCount: d.desiredCount,
        pendingCount: d.pendingCount,
        runningCount: d.runningCount,
        failedTasks: d.failedTasks ?? 0,
        createdAt: epoch(d.createdAt),
        updatedAt: epoch(d.updatedAt),
        launchType: spec.launchType ?? 'EC2',
        rolloutState: d.rolloutState,
        rolloutStateReason: d.rolloutStateReason,
      }),
    ),
    roleArn: spec.role,
    events: (st?.events ?? []).map((e) => ({ id: e.id, createdAt: epoch(e.createdAt), message: e.message })),
    createdAt: epoch(s.metadata.creationTimestamp),
    placementConstraints: spec.placementConstraints ?? [],
    placementStrategy: spec.placementStrategy ?? [],
    networkConfiguration: spec.networkConfiguration,
    healthCheckGracePeriodSeconds: spec.healthCheckGracePeriodSeconds,
    schedulingStrategy: spec.schedulingStrategy,
    deploymentController: { type: 'ECS' },
    tags: include.includes('TAGS') ? (spec.tags ?? []) : undefined,
    createdBy: undefined,
    enableECSManagedTags: spec.enableECSManagedTags ?? false,
    propagateTags: spec.propagateTags ?? 'NONE',
    enableExecuteCommand: spec.enableExecuteCommand ?? false,
  });
}
