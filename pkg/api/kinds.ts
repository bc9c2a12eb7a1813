import type { z } from 'zod';
import { API_VERSION, type KindInfo, type ObjectMeta, type Resource } from './meta.ts';
import { KIND_NAMES, namesOf } from './names.ts';
import {
  ClusterSpec,
  ClusterStatus,
  ContainerInstanceSpec,
  ContainerInstanceStatus,
  DaemonSpec,
  DaemonStatus,
  InstanceLeaseSpec,
  InstanceLeaseStatus,
  LeaseSpec,
  LeaseStatus,
  SecretSpec,
  SecretStatus,
  ServiceSpec,
  ServiceStatus,
  TaskSpec,
  TaskStatus,
} from './resources.ts';
import { DaemonTaskDefinitionSpec, TaskDefinitionSpec, TaskDefinitionStatus } from './taskdefinition.ts';
import { LoadBalancerSpec, LoadBalancerStatus, TargetGroupSpec, TargetGroupStatus } from './loadbalancing.ts';
import { EndpointsSpec, EndpointsStatus } from './endpoints.ts';

const age = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' } as const;

export const Kinds = {
  Cluster: {
    ...KIND_NAMES.Cluster,
    spec: ClusterSpec,
    status: ClusterStatus,
    printerColumns: [
      { name: 'Status', type: 'string', jsonPath: '.status.status' },
      { name: 'Instances', type: 'integer', jsonPath: '.status.registeredContainerInstancesCount' },
      { name: 'Running', type: 'integer', jsonPath: '.status.runningTasksCount' },
      { name: 'Pending', type: 'integer', jsonPath: '.status.pendingTasksCount' },
      { name: 'Services', type: 'integer', jsonPath: '.status.activeServicesCount' },
      age,
    ],
    fieldSelectors: ['status.status'],
  },
  ContainerInstance: {
    ...KIND_NAMES.ContainerInstance,
    spec: ContainerInstanceSpec,
    status: ContainerInstanceStatus,
    printerColumns: [
      { name: 'Status', type: 'string', jsonPath: '.spec.status' },
      { name: 'Agent', type: 'boolean', jsonPath: '.status.agentConnected' },
      { name: 'Running', type: 'integer', jsonPath: '.status.runningTasksCount' },
      { name: 'Pending', type: 'integer', jsonPath: '.status.pendingTasksCount' },
      { name: 'Host', type: 'string', jsonPath: '.spec.hostname' },
      { name: 'Agent-Version', type: 'string', jsonPath: '.status.versionInfo.agentVersion', priority: 1 },
      age,
    ],
    fieldSelectors: ['spec.status', 'status.agentConnected'],
  },
  TaskDefinition: {
    ...KIND_NAMES.TaskDefinition,
    spec: TaskDefinitionSpec,
    status: TaskDefinitionStatus,
    printerColumns: [
      { name: 'Family', type: 'string', jsonPath: '.status.family' },
      { name: 'Revision', type: 'integer', jsonPath: '.status.revision' },
      { name: 'Status', type: 'string', jsonPath: '.status.status' },
      { name: 'Network', type: 'string', jsonPath: '.spec.networkMode' },
      { name: 'Containers', type: 'string', jsonPath: '.spec.containerDefinitions[*].name', priority: 1 },
      age,
    ],
    fieldSelectors: ['status.family', 'status.status'],
    specAsWritten: true,
  },
  DaemonTaskDefinition: {
    ...KIND_NAMES.DaemonTaskDefinition,
    spec: DaemonTaskDefinitionSpec,
    status: TaskDefinitionStatus,
    printerColumns: [
      { name: 'Family', type: 'string', jsonPath: '.status.family' },
      { name: 'Revision', type: 'integer', jsonPath: '.status.revision' },
      { name: 'Status', type: 'string', jsonPath: '.status.status' },
      age,
    ],
    fieldSelectors: ['status.family', 'status.status'],
    specAsWritten: true,
  },
  Task: {
    ...KIND_NAMES.Task,
    spec: TaskSpec,
    status: TaskStatus,
    printerColumns: [
      { name: 'Task-Definition', type: 'string', jsonPath: '.status.taskDefinition', description: 'the revision the task runs (spec.taskDefinition resolved at creation)' },
      { name: 'Instance', type: 'string', jsonPath: '.spec.containerInstance' },
      { name: 'Desired', type: 'string', jsonPath: '.spec.desiredStatus' },
      { name: 'Last', type: 'string', jsonPath: '.status.lastStatus' },
      { name: 'Group', type: 'string', jsonPath: '.spec.group', priority: 1 },
      { name: 'Reason', type: 'string', jsonPath: '.status.stoppedReason', priority: 1 },
      age,
    ],
    fieldSelectors: ['spec.containerInstance', 'spec.desiredStatus', 'status.lastStatus', 'spec.group', 'spec.startedBy', 'spec.taskDefinition'],
  },
  Service: {
    ...KIND_NAMES.Service,
    spec: ServiceSpec,
    status: ServiceStatus,
    printerColumns: [
      { name: 'Task-Definition', type: 'string', jsonPath: '.status.taskDefinition', description: 'the revision the service runs (spec.taskDefinition resolved)' },
      { name: 'Desired', type: 'integer', jsonPath: '.spec.desiredCount' },
      { name: 'Running', type: 'integer', jsonPath: '.status.runningCount' },
      { name: 'Pending', type: 'integer', jsonPath: '.status.pendingCount' },
      { name: 'Status', type: 'string', jsonPath: '.status.status' },
      { name: 'Strategy', type: 'string', jsonPath: '.spec.schedulingStrategy', priority: 1 },
      age,
    ],
    fieldSelectors: ['status.status', 'spec.schedulingStrategy'],
  },
  Daemon: {
    ...KIND_NAMES.Daemon,
    spec: DaemonSpec,
    status: DaemonStatus,
    printerColumns: [
      { name: 'Task-Definition', type: 'string', jsonPath: '.status.taskDefinition', description: 'the revision the daemon runs (spec.daemonTaskDefinition resolved)' },
      { name: 'Desired', type: 'integer', jsonPath: '.status.desiredCount' },
      { name: 'Running', type: 'integer', jsonPath: '.status.runningCount' },
      { name: 'Up-To-Date', type: 'integer', jsonPath: '.status.updatedCount' },
      age,
    ],
    fieldSelectors: ['status.status'],
  },
  Lease: {
    ...KIND_NAMES.Lease,
    spec: LeaseSpec,
    status: LeaseStatus,
    printerColumns: [
      { name: 'Holder', type: 'string', jsonPath: '.spec.holderIdentity' },
      { name: 'Renewed', type: 'date', jsonPath: '.spec.renewTime' },
      age,
    ],
    fieldSelectors: ['spec.holderIdentity'],
  },
  InstanceLease: {
    ...KIND_NAMES.InstanceLease,
    spec: InstanceLeaseSpec,
    status: InstanceLeaseStatus,
    printerColumns: [
      { name: 'Holder', type: 'string', jsonPath: '.spec.holderIdentity' },
      { name: 'Renewed', type: 'date', jsonPath: '.spec.renewTime' },
      { name: 'Duration', type: 'integer', jsonPath: '.spec.leaseDurationSeconds' },
      { name: 'Connected', type: 'boolean', jsonPath: '.status.agentConnected', priority: 1 },
      age,
    ],
    fieldSelectors: ['spec.holderIdentity'],
  },
  Secret: {
    ...KIND_NAMES.Secret,
    spec: SecretSpec,
    status: SecretStatus,
    printerColumns: [
      { name: 'Type', type: 'string', jsonPath: '.spec.type' },
      { name: 'Keys', type: 'string', jsonPath: '.status.keys[*]' },
      { name: 'Changed', type: 'date', jsonPath: '.status.lastChangedDate' },
      age,
    ],
    fieldSelectors: ['spec.type'],
  },
  LoadBalancer: {
    ...KIND_NAMES.LoadBalancer,
    spec: LoadBalancerSpec,
    status: LoadBalancerStatus,
    printerColumns: [
      { name: 'Listeners', type: 'string', jsonPath: '.spec.listeners[*].loadBalancerPort' },
      { name: 'Health-Check', type: 'string', jsonPath: '.spec.healthCheck.target' },
      { name: 'DNS-Name', type: 'string', jsonPath: '.status.dnsName', priority: 1 },
      age,
    ],
    fieldSelectors: [],
  },
  TargetGroup: {
    ...KIND_NAMES.TargetGroup,
    spec: TargetGroupSpec,
    status: TargetGroupStatus,
    printerColumns: [
      { name: 'Protocol', type: 'string', jsonPath: '.spec.protocol' },
      { name: 'Port', type: 'integer', jsonPath: '.spec.port' },
      { name: 'Health-Path', type: 'string', jsonPath: '.spec.healthCheckPath' },
      { name: 'Targets', type: 'string', jsonPath: '.status.targets[*].state' },
      { name: 'ARN', type: 'string', jsonPath: '.status.targetGroupArn', priority: 1 },
      age,
    ],
    fieldSelectors: [],
  },
  Endpoints: {
    ...KIND_NAMES.Endpoints,
    spec: EndpointsSpec,
    status: EndpointsStatus,
    printerColumns: [
      { name: 'Endpoints', type: 'string', jsonPath: '.spec.subsets[*].address' },
      { name: 'Tasks', type: 'string', jsonPath: '.spec.subsets[*].task', priority: 1 },
      age,
    ],
    fieldSelectors: [],
  },
} satisfies Record<string, KindInfo>;

export type KindName = keyof typeof Kinds;
export const KINDS: KindInfo[] = Object.values(Kinds);

const byPlural = new Map(KINDS.map((k) => [k.plural, k]));
const byKind = new Map(KINDS.map((k) => [k.kind, k]));

export const kindByPlural = (plural: string): KindInfo | undefined => byPlural.get(plural);
export const kindByKind = (kind: string): KindInfo | undefined => byKind.get(kind);
/** `tasks`, `task`, `Task`, `tk`, `tasks.berth.dev`: what a person types after `get` */
export const kindByName = (name: string): KindInfo | undefined => {
  const n = namesOf(name);
  return n && byKind.get(n.kind);
};

// typed objects of each kind
type Obj<K extends KindName> = Resource<z.infer<(typeof Kinds)[K]['spec']>, z.infer<(typeof Kinds)[K]['status']>>;
export type Cluster = Obj<'Cluster'>;
export type ContainerInstance = Obj<'ContainerInstance'>;
export type TaskDefinition = Obj<'TaskDefinition'>;
export type DaemonTaskDefinition = Obj<'DaemonTaskDefinition'>;
export type Task = Obj<'Task'>;
export type Service = Obj<'Service'>;
export type Daemon = Obj<'Daemon'>;
export type Lease = Obj<'Lease'>;
export type InstanceLease = Obj<'InstanceLease'>;
export type Secret = Obj<'Secret'>;
export type LoadBalancerObj = Obj<'LoadBalancer'>;
export type TargetGroup = Obj<'TargetGroup'>;
export type Endpoints = Obj<'Endpoints'>;

/** A new object of a kind, ready to create. */
export function newObject<K extends KindName>(
  kind: K,
  metadata: ObjectMeta & { name: string },
  spec: z.input<(typeof Kinds)[K]['spec']>,
): Obj<K> {
  return { apiVersion: API_VERSION, kind, metadata, spec } as Obj<K>;
}
