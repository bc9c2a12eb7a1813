import { createHash } from 'node:crypto';
import type { Arns } from '../api/arn.ts';
import type { Cluster, ContainerInstance, Daemon, DaemonTaskDefinition, Service, Task, TaskDefinition } from '../api/kinds.ts';
import type { Resource } from '../api/meta.ts';
import { daemonRevision, serviceTaskDefinition, taskRevision, type EcsResource } from '../api/resources.ts';
import { effectiveTaskDefinition } from '../api/taskdefinition.ts';
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

export interface Tag {
  key: string;
  value?: string;
}

/**
 * Where the tags of task definitions live once changed by TagResource/UntagResource: their
 * revisions are immutable (spec.tags is part of the registered content), so later tags are
 * kept in this annotation (a JSON list of {key, value}) and take the place of spec.tags.
 */
export const TAGS_ANNOTATION = 'berth.dev/tags';

/** The tags of any tagged object: the annotation when TagResource wrote one, else spec.tags. */
export function tagsOf(o: { metadata: { annotations?: Record<string, string> }; spec?: unknown }): Tag[] {
  const raw = o.metadata.annotations?.[TAGS_ANNOTATION];
  if (raw !== undefined) {
    try {
      const v = JSON.parse(raw) as unknown;
      if (Array.isArray(v)) return v as Tag[];
    } catch {
      /* unreadable: fall back to the registered tags */
    }
  }
  return ((o.spec as { tags?: Tag[] } | undefined)?.tags ?? []).map((t) => ({ ...t }));
}

/** JSON.stringify drops undefined members; this also drops them for deep equality in tests. */
export function compact<T extends Json>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

export function clusterToEcs(c: Cluster, arns: Arns, include: string[] = [], created = false): Json {
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
    tags: include.includes('TAGS') ? tagsOf(c) : undefined,
    settings: include.includes('SETTINGS') ? (c.spec?.settings ?? [{ name: 'containerInsights', value: 'disabled' }]) : undefined,
    configuration: include.includes('CONFIGURATIONS') ? c.spec?.configuration : undefined,
    // berth has none: CreateCluster (given none) shows none, as ECS; the reads show the empty lists
    capacityProviders: created ? undefined : [],
    defaultCapacityProviderStrategy: created ? undefined : [],
  });
}

/** ECS's Resource shape, every member present as in the ECS Developer Guide's describe-container-instances. */
export function resourcesToEcs(rs: EcsResource[] | undefined): Json[] {
  return (rs ?? []).map((r) =>
    r.type === 'STRINGSET'
      ? { name: r.name, type: r.type, doubleValue: 0, longValue: 0, integerValue: 0, stringSetValue: r.stringSetValue ?? [] }
      : { name: r.name, type: r.type, doubleValue: r.doubleValue ?? 0, longValue: r.longValue ?? 0, integerValue: r.integerValue ?? 0 },
  );
}

/** ECS's VersionInfo: the Docker version as the ECS agent words it ("DockerVersion: 27.5.1"). */
function versionInfoToEcs(v: { agentVersion?: string; agentHash?: string; dockerVersion?: string } | undefined): Json {
  const out: Json = { ...(v ?? {}) };
  if (typeof out.dockerVersion === 'string' && !out.dockerVersion.startsWith('DockerVersion: ')) out.dockerVersion = `DockerVersion: ${out.dockerVersion}`;
  return out;
}

/** The ECS status of an instance: what the operator asked (spec) unless registration says otherwise. */
export function instanceStatus(ci: ContainerInstance): string {
  const s = ci.status?.status;
  if (s === 'INACTIVE' || s === 'REGISTERING' || s === 'REGISTRATION_FAILED' || s === 'DEREGISTERING') return s;
  return ci.spec.status;
}

export function instanceToEcs(ci: ContainerInstance, arns: Arns, include: string[] = []): Json {
  const ns = ci.metadata.namespace!;
  return compact({
    containerInstanceArn: ci.status?.containerInstanceArn ?? arns.containerInstance(ns, ci.metadata.name),
    ec2InstanceId: ci.spec.ec2InstanceId,
    version: Number(ci.metadata.resourceVersion ?? 0) || (ci.metadata.generation ?? 1),
    versionInfo: versionInfoToEcs(ci.status?.versionInfo),
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
    // like ECS, only when asked for (`include: ["TAGS"]`)
    tags: include.includes('TAGS') ? tagsOf(ci) : undefined,
  });
}

/**
 * A task definition as ECS shows it: the ECS Developer Guide's empty lists present, timestamps
 * as numbers, `compatibilities` in ECS's order, `requiresAttributes` only when there are some
 * (ECS omits the empty list).
 */
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
    compatibilities: ['EXTERNAL', 'EC2'],
    requiresAttributes: (out.requiresAttributes as unknown[] | undefined)?.length ? out.requiresAttributes : undefined,
    registeredAt: epoch(status.registeredAt ?? td.metadata.creationTimestamp),
    deregisteredAt: epoch(status.deregisteredAt),
  });
}

/** A UUID-shaped id that stays the same on every read: derived from the task id and a name. */
function stableUuid(taskId: string, name: string): string {
  const h = createHash('sha1').update(`${taskId}/${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** A container id that stays the same on every read: derived from the task id and container name. */
export const containerId = (taskId: string, name: string): string => stableUuid(taskId, name);

/**
 * A task as ECS answers RunTask, DescribeTasks and StopTask. As ECS does: a container's
 * `networkBindings` and the task's `healthStatus` appear once the agent has reported them (not
 * while PENDING); `memory` is the containers' sum when the task definition sets none; `tags` is
 * an empty list unless `include: ["TAGS"]`; `attributes` carries the instance's CPU
 * architecture; the ENI attachment is an awsvpc task's only (a bridge or host task has none).
 */
export function taskToEcs(t: Task, arns: Arns, stored?: TaskDefinition, include: string[] = [], instance?: ContainerInstance): Json {
  const td = stored && { ...stored, spec: effectiveTaskDefinition(stored.spec, t.spec.daemonTaskDefinition !== undefined) };
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
      networkBindings: c.lastStatus === 'PENDING' ? undefined : (c.networkBindings ?? []),
      networkInterfaces: c.networkInterfaces ?? [],
      healthStatus: c.healthStatus ?? (def?.healthCheck ? 'UNKNOWN' : undefined),
      cpu: c.cpu ?? (def ? String(def.cpu ?? 0) : undefined),
      memory: c.memory ?? (def?.memory !== undefined ? String(def.memory) : undefined),
      memoryReservation: c.memoryReservation ?? (def?.memoryReservation !== undefined ? String(def.memoryReservation) : undefined),
    });
  });
  const overrides = t.spec.overrides ?? {};
  const reported = st?.lastStatus !== undefined && st.lastStatus !== 'PROVISIONING' && st.lastStatus !== 'PENDING';
  const memoryOver = new Map((overrides.containerOverrides ?? []).map((o) => [o.name, o]));
  const memorySum = (td?.spec.containerDefinitions ?? []).reduce((n, c) => {
    const o = memoryOver.get(c.name);
    return n + (o?.memory ?? c.memory ?? o?.memoryReservation ?? c.memoryReservation ?? 0);
  }, 0);
  const arch = instance?.spec.attributes?.find((a) => a.name === 'ecs.cpu-architecture')?.value;
  const awsvpc = !!td && 'networkMode' in td.spec && td.spec.networkMode === 'awsvpc';
  return compact({
    taskArn,
    clusterArn: arns.cluster(ns),
    // a daemon's task runs a daemon task definition
    taskDefinitionArn: t.spec.daemonTaskDefinition ? arns.daemonTaskDefinition(taskRevision(t)) : arns.taskDefinition(taskRevision(t)),
    containerInstanceArn: t.spec.containerInstance ? arns.containerInstance(ns, t.spec.containerInstance) : undefined,
    overrides: { containerOverrides: overrides.containerOverrides ?? (td?.spec.containerDefinitions ?? []).map((c) => ({ name: c.name })), inferenceAcceleratorOverrides: [], ...stripUndefined(overrides, ['containerOverrides']) },
    lastStatus: st?.lastStatus ?? 'PROVISIONING',
    desiredStatus: t.spec.desiredStatus,
    cpu: t.spec.overrides?.cpu ?? td?.spec.cpu ?? (td ? String(td.spec.containerDefinitions.reduce((s, c) => s + (c.cpu ?? 0), 0)) : undefined),
    memory: t.spec.overrides?.memory ?? td?.spec.memory ?? (memorySum ? String(memorySum) : undefined),
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
    attachments: awsvpc ? (st?.attachments ?? []).map((a) => ({ ...a, id: a.id === 'eni' ? stableUuid(id, 'eni') : a.id })) : [],
    attributes: arch ? [{ name: 'ecs.cpu-architecture', value: arch }] : undefined,
    healthStatus: reported ? (st?.healthStatus ?? 'UNKNOWN') : undefined,
    tags: include.includes('TAGS') ? tagsOf(t) : [],
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
    taskDefinition: arns.taskDefinition(serviceTaskDefinition(s)),
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
    tags: include.includes('TAGS') ? tagsOf(s) : undefined,
    createdBy: undefined,
    enableECSManagedTags: spec.enableECSManagedTags ?? false,
    propagateTags: spec.propagateTags ?? 'NONE',
    enableExecuteCommand: spec.enableExecuteCommand ?? false,
    availabilityZoneRebalancing: spec.availabilityZoneRebalancing ?? 'DISABLED',
  });
}

// ---------------------------------------------------------------- daemons

export type DaemonTaskDefinitionStatus = 'ACTIVE' | 'DELETE_IN_PROGRESS' | 'DELETED';

/**
 * ECS's status of a daemon task definition. berth keeps a deleted revision (INACTIVE): while
 * a daemon or a live task still uses it, that is ECS's DELETE_IN_PROGRESS; after, DELETED.
 */
export const daemonTaskDefinitionStatus = (td: DaemonTaskDefinition, inUse: boolean): DaemonTaskDefinitionStatus =>
  td.status?.status === 'ACTIVE' ? 'ACTIVE' : inUse ? 'DELETE_IN_PROGRESS' : 'DELETED';

/** The stored name `family:revision` (a get by family shows the family as its name). */
const revisionName = (td: DaemonTaskDefinition) => (td.status ? `${td.status.family}:${td.status.revision}` : td.metadata.name);

/** ECS's DaemonTaskDefinition shape (DescribeDaemonTaskDefinition). */
export function daemonTaskDefinitionToEcs(td: DaemonTaskDefinition, arns: Arns, status: DaemonTaskDefinitionStatus): Json {
  const st = td.status;
  const { tags: _tags, ...spec } = effectiveTaskDefinition(td.spec, true);
  void _tags;
  const [family, rev] = revisionName(td).split(':');
  return compact({
    daemonTaskDefinitionArn: st?.taskDefinitionArn ?? arns.daemonTaskDefinition(revisionName(td)),
    family: st?.family ?? family,
    revision: st?.revision ?? Number(rev),
    ...spec,
    volumes: spec.volumes ?? [],
    status,
    registeredAt: epoch(st?.registeredAt ?? td.metadata.creationTimestamp),
    deleteRequestedAt: epoch(st?.deregisteredAt),
  });
}

/** ECS's DaemonTaskDefinitionSummary (ListDaemonTaskDefinitions). */
export function daemonTaskDefinitionSummary(td: DaemonTaskDefinition, arns: Arns, status: DaemonTaskDefinitionStatus): Json {
  return compact({
    arn: td.status?.taskDefinitionArn ?? arns.daemonTaskDefinition(revisionName(td)),
    registeredAt: epoch(td.status?.registeredAt ?? td.metadata.creationTimestamp),
    deleteRequestedAt: epoch(td.status?.deregisteredAt),
    status,
  });
}

/** Set by the ECS face's daemon writes: ECS's `updatedAt` (berth objects carry no such time). */
export const UPDATED_AT_ANNOTATION = 'berth.dev/updated-at';

/** ECS's status of a daemon: one being deleted is DELETE_IN_PROGRESS until its tasks are gone. */
export function daemonStatus(d: Daemon): 'ACTIVE' | 'DELETE_IN_PROGRESS' | 'INACTIVE' {
  if (d.status?.status === 'INACTIVE') return 'INACTIVE';
  return d.metadata.deletionTimestamp || d.status?.status === 'DELETE_IN_PROGRESS' ? 'DELETE_IN_PROGRESS' : 'ACTIVE';
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * A daemon revision (ECS: a snapshot of the daemon's configuration) is, in berth, the daemon
 * running one daemon task definition: the same id on every read.
 */
export function daemonRevisionArn(d: Daemon, arns: Arns, taskDefinition: string): string {
  const id = BigInt(`0x${digest(`${d.metadata.uid}/${taskDefinition}`).toString('hex').slice(0, 15)}`).toString();
  return `${arns.daemon(d.metadata.namespace!, d.metadata.name).replace(':daemon/', ':daemon-revision/')}/${id}`;
}

/** The daemon's deployment: each change of its spec (a new generation) is one. */
export function daemonDeploymentArn(d: Daemon, arns: Arns): string {
  const id = digest(`${d.metadata.uid}/${d.metadata.generation ?? 1}`).toString('base64url').replace(/[-_]/g, '').slice(0, 21);
  return `${arns.daemon(d.metadata.namespace!, d.metadata.name).replace(':daemon/', ':daemon-deployment/')}/${id}`;
}

function daemonTimes(d: Daemon): { createdAt?: number; updatedAt?: number } {
  const created = d.metadata.creationTimestamp;
  const candidates = [created, d.metadata.annotations?.[UPDATED_AT_ANNOTATION], d.metadata.deletionTimestamp].filter((x): x is string => !!x && !Number.isNaN(Date.parse(x)));
  const updated = candidates.sort((a, b) => Date.parse(b) - Date.parse(a))[0];
  return { createdAt: epoch(created), updatedAt: epoch(updated) };
}

/** What Create/Update/DeleteDaemon answer with. */
export function daemonResponse(d: Daemon, arns: Arns, withUpdatedAt = true): Json {
  const t = daemonTimes(d);
  return compact({
    daemonArn: d.status?.daemonArn ?? arns.daemon(d.metadata.namespace!, d.metadata.name),
    status: daemonStatus(d),
    createdAt: t.createdAt,
    updatedAt: withUpdatedAt ? t.updatedAt : undefined,
    deploymentArn: daemonDeploymentArn(d, arns),
  });
}

/** ECS's DaemonSummary (ListDaemons). */
export function daemonSummary(d: Daemon, arns: Arns): Json {
  const t = daemonTimes(d);
  return compact({ daemonArn: d.status?.daemonArn ?? arns.daemon(d.metadata.namespace!, d.metadata.name), status: daemonStatus(d), createdAt: t.createdAt, updatedAt: t.updatedAt });
}

/**
 * ECS's DaemonDetail (DescribeDaemon). `currentRevisions`: the revision the daemon runs now
 * (its daemon task definition) first, then any older one that still has live tasks during a
 * roll; counts come from the daemon's tasks. berth has no capacity providers, so none are
 * listed.
 */
export function daemonDetail(d: Daemon, arns: Arns, tasks: Task[]): Json {
  const ns = d.metadata.namespace!;
  const target = daemonRevision(d);
  const live = tasks.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');
  const revOf = taskRevision;
  const revisions = [target, ...new Set(live.map(revOf).filter((r) => r !== target))];
  const running = (rev?: string) => live.filter((t) => t.status?.lastStatus === 'RUNNING' && (rev === undefined || revOf(t) === rev)).length;
  const desired = d.status?.desiredCount ?? 0;
  const t = daemonTimes(d);
  return compact({
    daemonArn: d.status?.daemonArn ?? arns.daemon(ns, d.metadata.name),
    clusterArn: arns.cluster(ns),
    status: daemonStatus(d),
    currentRevisions: revisions.map((rev) => ({
      arn: daemonRevisionArn(d, arns, rev),
      totalRunningCount: running(rev),
      totalWithoutDaemonCount: rev === target ? Math.max(0, desired - running()) : 0,
    })),
    deploymentArn: daemonDeploymentArn(d, arns),
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
  });
}
