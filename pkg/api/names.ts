/**
 * The names of berth's kinds and of its API group, without their schemas: what a client needs
 * to build paths and what a person types after `berth get` (plural, singular, short names).
 * Kept apart from the zod schemas (kinds.ts) so a client or a CLI command that only talks to
 * the server starts without building them (about 100 ms of a command's start).
 */

/** API group and version of every berth kind. */
export const GROUP = 'berth.dev';
export const VERSION = 'v1';
export const API_VERSION = `${GROUP}/${VERSION}` as const;
/**
 * On a task: the instance its creator binds it to (a daemon, a DAEMON-strategy service,
 * `berth start-task`); the placement controller leaves it alone and the binder binds it
 * nowhere else.
 */
export const NOMINATED_ANNOTATION = 'berth.dev/nominated-instance';

export interface KindNames {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  /** namespaced kinds live in a cluster: the namespace is the ECS cluster name */
  namespaced: boolean;
  /** the spec may not change once created (task definitions) */
  immutableSpec?: boolean;
  /** a replica count served as the `scale` subresource (autoscaling/v1 Scale): its JSON paths, as a CRD declares them */
  scale?: { specReplicasPath: string; statusReplicasPath: string };
}

export const KIND_NAMES = {
  Cluster: {
    kind: 'Cluster',
    plural: 'clusters',
    singular: 'cluster',
    shortNames: ['cl'],
    namespaced: false,
  },
  ContainerInstance: {
    kind: 'ContainerInstance',
    plural: 'containerinstances',
    singular: 'containerinstance',
    shortNames: ['ci'],
    namespaced: true,
  },
  TaskDefinition: {
    kind: 'TaskDefinition',
    plural: 'taskdefinitions',
    singular: 'taskdefinition',
    shortNames: ['td'],
    namespaced: false,
    immutableSpec: true,
  },
  DaemonTaskDefinition: {
    kind: 'DaemonTaskDefinition',
    plural: 'daemontaskdefinitions',
    singular: 'daemontaskdefinition',
    shortNames: ['dtd'],
    namespaced: false,
    immutableSpec: true,
  },
  Task: {
    kind: 'Task',
    plural: 'tasks',
    singular: 'task',
    shortNames: ['tk'],
    namespaced: true,
  },
  Service: {
    kind: 'Service',
    plural: 'services',
    singular: 'service',
    shortNames: ['svc'],
    namespaced: true,
    scale: { specReplicasPath: '.spec.desiredCount', statusReplicasPath: '.status.runningCount' },
  },
  Daemon: {
    kind: 'Daemon',
    plural: 'daemons',
    singular: 'daemon',
    shortNames: ['dmn'],
    namespaced: true,
  },
  Lease: {
    kind: 'Lease',
    plural: 'leases',
    singular: 'lease',
    shortNames: [],
    namespaced: true,
  },
  InstanceLease: {
    kind: 'InstanceLease',
    plural: 'instanceleases',
    singular: 'instancelease',
    shortNames: ['il'],
    namespaced: true,
  },
  Secret: {
    kind: 'Secret',
    plural: 'secrets',
    singular: 'secret',
    shortNames: ['sec'],
    namespaced: false,
  },
  LoadBalancer: {
    kind: 'LoadBalancer',
    plural: 'loadbalancers',
    singular: 'loadbalancer',
    shortNames: ['lb', 'elb'],
    namespaced: false,
  },
  TargetGroup: {
    kind: 'TargetGroup',
    plural: 'targetgroups',
    singular: 'targetgroup',
    shortNames: ['tg'],
    namespaced: false,
  },
  Endpoints: {
    kind: 'Endpoints',
    plural: 'endpoints',
    singular: 'endpoints',
    shortNames: ['ep'],
    namespaced: true,
  },} satisfies Record<string, KindNames>;

const ALL: KindNames[] = Object.values(KIND_NAMES);
const byKind = new Map(ALL.map((k) => [k.kind, k]));
const byAnyName = new Map<string, KindNames>();
for (const k of ALL) for (const n of [k.plural, k.singular, k.kind.toLowerCase(), ...k.shortNames]) byAnyName.set(n, k);

/** `tasks`, `task`, `Task`, `tk`, `tasks.berth.dev`: the kind a person (or a client) names */
export const namesOf = (name: string): KindNames | undefined =>
  byKind.get(name) ?? byAnyName.get(name.toLowerCase().replace(/\.v1\.berth\.dev$/, '').replace(/\.berth\.dev$/, ''));
export const KIND_NAME_LIST = ALL;
