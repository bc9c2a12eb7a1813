import type { z } from 'zod';
import { API_VERSION, type KindInfo, type ObjectMeta, type Resource } from './meta.ts';
import {
  ClusterSpec,
  ClusterStatus,
  ContainerInstanceSpec,
  ContainerInstanceStatus,
  DaemonSpec,
  DaemonStatus,
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
    kind: 'Cluster',
    plural: 'clusters',
    singular: 'cluster',
    shortNames: ['cl'],
    namespaced: false,
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
    kind: 'ContainerInstance',
    plural: 'containerinstances',
    singular: 'containerinstance',
    shortNames: ['ci'],
    namespaced: true,
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
    kind: 'TaskDefinition',
    plural: 'taskdefinitions',
    singular: 'taskdefinition',
    shortNames: ['td'],
    namespaced: false,
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
    immutableSpec: true,
    specAsWritten: true,
  },
  DaemonTaskDefinition: {
    kind: 'DaemonTaskDefinition',
    plural: 'daemontaskdefinitions',
    singular: 'daemontaskdefinition',
    shortNames: ['dtd'],
    namespaced: false,
    spec: DaemonTaskDefinitionSpec,
    status: TaskDefinitionStatus,
    printerColumns: [
      { name: 'Family', type: 'string', jsonPath: '.status.family' },
      { name: 'Revision', type: 'integer', jsonPath: '.status.revision' },
      { name: 'Status', type: 'string', jsonPath: '.status.status' },
      age,
    ],
    fieldSelectors: ['status.family', 'status.status'],
    immutableSpec: true,
    specAsWritten: true,
  },
  Task: {
    kind: 'Task',
    plural: 'tasks',
    singular: 'task',
    shortNames: ['tk'],
    namespaced: true,
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
    kind: 'Service',
    plural: 'services',
    singular: 'service',
    shortNames: ['svc'],
    namespaced: true,
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
    scale: { specReplicasPath: '.spec.desiredCount', statusReplicasPath: '.status.runningCount' },
  },
  Daemon: {
    kind: 'Daemon',
    plural: 'daemons',
    singular: 'daemon',
    shortNames: ['dmn'],
    namespaced: true,
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
    kind: 'Lease',
    plural: 'leases',
    singular: 'lease',
    shortNames: [],
    namespaced: true,
    spec: LeaseSpec,
    status: LeaseStatus,
    printerColumns: [
      { name: 'Holder', type: 'string', jsonPath: '.spec.holderIdentity' },
      { name: 'Renewed', type: 'date', jsonPath: '.spec.renewTime' },
      age,
    ],
    fieldSelectors: ['spec.holderIdentity'],
  },
  Secret: {
    kind: 'Secret',
    plural: 'secrets',
    singular: 'secret',
    shortNames: ['sec'],
    namespaced: false,
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
    kind: 'LoadBalancer',
    plural: 'loadbalancers',
    singular: 'loadbalancer',
    shortNames: ['lb', 'elb'],
    namespaced: false,
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
    kind: 'TargetGroup',
    plural: 'targetgroups',
    singular: 'targetgroup',
    shortNames: ['tg'],
    namespaced: false,
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
    kind: 'Endpoints',
    plural: 'endpoints',
    singular: 'endpoints',
    shortNames: ['ep'],
    namespaced: true,
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
const byAnyName = new Map<string, KindInfo>();
for (const k of KINDS) {
  for (const n of [k.plural, k.singular, k.kind.toLowerCase(), ...k.shortNames]) byAnyName.set(n, k);
}

export const kindByPlural = (plural: string): KindInfo | undefined => byPlural.get(plural);
export const kindByKind = (kind: string): KindInfo | undefined => byKind.get(kind);
/** `tasks`, `task`, `Task`, `tk`, `tasks.berth.dev`: what a person types after `get` */
export const kindByName = (name: string): KindInfo | undefined =>
  byAnyName.get(name.toLowerCase().replace(/\.berth\.dev$/, '').replace(/\.v1\.berth\.dev$/, ''));

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
