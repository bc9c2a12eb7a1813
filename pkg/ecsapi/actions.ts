import { isArn, parseArn, resolveIdentifier, type ArnResource, type Arns } from '../api/arn.ts';
import { namesFamily, taskDefinitionArn, type ActionLookups } from '../apiserver/actions.ts';
import type { AccessRequest } from '../apiserver/policy.ts';
import { clusterNameOf } from './context.ts';
import { dtdRef } from './daemons.ts';
import { list, str, strList, type Input } from './params.ts';
import { tdRef } from './taskdefs.ts';

/**
 * What each ECS operation asks for in IAM's terms: the action `ecs:<Operation>`, the
 * resources it acts on and its condition keys, as AWS's service authorization reference for ECS
 * defines them (the ECS Developer Guide's policies are written against these):
 *
 * - cluster resource: DeleteCluster, DescribeClusters, RegisterContainerInstance,
 *   DeregisterContainerInstance, ListContainerInstances, ListAttributes;
 * - container-instance (+ ecs:cluster): DescribeContainerInstances,
 *   UpdateContainerInstancesState, PutAttributes, DeleteAttributes, and ListTasks when it
 *   names an instance;
 * - task (+ ecs:cluster): StopTask, DescribeTasks;
 * - task-definition (+ ecs:cluster): RunTask, StartTask (also ecs:container-instances);
 * - service (+ ecs:cluster): CreateService, UpdateService (also ecs:task-definition),
 *   DeleteService, DescribeServices;
 * - daemon (+ ecs:cluster): CreateDaemon, UpdateDaemon, DeleteDaemon, DescribeDaemon;
 *   daemon-task-definition: DescribeDaemonTaskDefinition, DeleteDaemonTaskDefinition;
 * - the resource tagged: TagResource, UntagResource, ListTagsForResource;
 * - `*` (no resource type): CreateCluster, ListClusters, Register/Deregister/Describe/List
 *   task definitions, ListTaskDefinitionFamilies, RegisterDaemonTaskDefinition,
 *   ListDaemonTaskDefinitions, and (+ ecs:cluster) ListServices, ListDaemons, ListTasks.
 *
 * The identifiers are read with the same helpers the operations use, so the resources
 * authorized are the ones acted on; a member an operation would refuse is refused here with
 * the same error.
 */

interface Asked {
  resources: string[];
  /** the cluster the request acts in (ecs:cluster), when the action has that key */
  cluster?: string;
  extra?: Record<string, string[]>;
}

interface Env {
  arns: Arns;
  lookups: ActionLookups;
}

type Resolver = (i: Input, e: Env) => Asked;

const ALL: Resolver = () => ({ resources: ['*'] });

/** An identifier (id, name or ARN) as the ARN of its resource, in the request's cluster unless the ARN names another. */
function scopedArn(e: Env, given: string, type: 'task' | 'container-instance' | 'service' | 'daemon', cluster: string): string {
  const r = resolveIdentifier(given, type);
  const cl = r.cluster ?? cluster;
  switch (type) {
    case 'task':
      return e.arns.task(cl, r.name);
    case 'container-instance':
      return e.arns.containerInstance(cl, r.name);
    case 'service':
      return e.arns.service(cl, r.name);
    case 'daemon':
      return e.arns.daemon(cl, r.name);
  }
}

const onCluster =
  (member = 'cluster'): Resolver =>
  (i, e) => ({ resources: [e.arns.cluster(clusterNameOf(i, member))] });

const many =
  (member: string, type: 'task' | 'container-instance' | 'service'): Resolver =>
  (i, e) => {
    const cluster = clusterNameOf(i);
    return { resources: (strList(i, member) ?? []).map((id) => scopedArn(e, id, type, cluster)), cluster };
  };

const one =
  (member: string, type: 'task' | 'service'): Resolver =>
  (i, e) => {
    const cluster = clusterNameOf(i);
    const given = str(i, member);
    return { resources: given ? [scopedArn(e, given, type, cluster)] : ['*'], cluster };
  };

const inCluster =
  (member = 'cluster'): Resolver =>
  (i) => ({ resources: ['*'], cluster: clusterNameOf(i, member) });

const tdArn = (i: Input, e: Env) => {
  const given = str(i, 'taskDefinition');
  return given ? taskDefinitionArn(tdRef(given), e.arns, e.lookups) : undefined;
};

/** the operations whose `taskDefinition` names what they run (RunTask's resource, UpdateService's ecs:task-definition) */
const RUNS_TASK_DEFINITION = new Set(['RunTask', 'StartTask', 'CreateService', 'UpdateService']);

/**
 * R1-8: a family such an operation names, resolved once, fresh (after this apiserver's cache
 * has caught up with the store, as admission resolves one), and pinned in the input as the
 * revision: what is authorized (ecsAction) is what the operation runs, even on an apiserver
 * whose cache trails a registration made through another, and whatever is registered
 * between the two. A reference that does not resolve is left for the operation to refuse.
 */
export async function pinTaskDefinition(op: string, i: Input, fresh: () => Promise<void>, lookups: ActionLookups): Promise<Input> {
  const given = i.taskDefinition;
  if (!RUNS_TASK_DEFINITION.has(op) || !namesFamily(given)) return i;
  let family: string;
  try {
    family = tdRef(given as string);
  } catch {
    return i; // not a task definition ARN: the operation says so
  }
  await fresh();
  const revision = lookups.latestRevision('taskdefinitions', family);
  return revision ? { ...i, taskDefinition: revision } : i;
}

/** A daemon by ARN (which names its cluster) or by name in the default cluster, as the daemon operations read it. */
const daemon: Resolver = (i, e) => {
  const given = str(i, 'daemonArn');
  if (!given) return { resources: ['*'], cluster: 'default' };
  const r = isArn(given) ? resolveIdentifier(given, 'daemon') : { name: given, cluster: undefined };
  const cluster = clusterNameOf({ cluster: r.cluster ?? 'default' });
  return { resources: [e.arns.daemon(cluster, r.name)], cluster };
};

const dtd: Resolver = (i, e) => {
  const given = str(i, 'daemonTaskDefinition');
  return { resources: given ? [e.arns.daemonTaskDefinition(dtdRef(given))] : ['*'] };
};

const SCOPED: Partial<Record<ArnResource, 'task' | 'container-instance' | 'service' | 'daemon'>> = {
  task: 'task',
  'container-instance': 'container-instance',
  service: 'service',
  daemon: 'daemon',
};

/** The resource a tagging call names, as berth's ARN of it (the old short format: the default cluster). */
const tagged: Resolver = (i, e) => {
  const arn = str(i, 'resourceArn');
  if (!arn || !isArn(arn)) return { resources: ['*'] };
  const p = parseArn(arn);
  if (p.resource === 'cluster') return { resources: [e.arns.cluster(p.name)] };
  if (p.resource === 'task-definition') return { resources: [e.arns.taskDefinition(p.name)] };
  if (p.resource === 'daemon-task-definition') return { resources: [e.arns.daemonTaskDefinition(p.name)] };
  const type = SCOPED[p.resource];
  if (!type) return { resources: [arn] };
  const cluster = p.cluster ?? 'default';
  return { resources: [scopedArn(e, p.name, type, cluster)], cluster };
};

const attributes: Resolver = (i, e) => {
  const cluster = clusterNameOf(i);
  const targets = (list<Record<string, unknown>>(i, 'attributes') ?? [])
    .map((a) => (a && typeof a === 'object' && typeof a.targetId === 'string' && a.targetId ? a.targetId : undefined))
    .filter((t): t is string => t !== undefined);
  return { resources: targets.length ? [...new Set(targets.map((t) => scopedArn(e, t, 'container-instance', cluster)))] : ['*'], cluster };
};

const RESOLVERS: Record<string, Resolver> = {
  CreateCluster: ALL,
  DeleteCluster: (i, e) => ({ resources: [e.arns.cluster(clusterNameOf({ cluster: str(i, 'cluster', { required: true }) }))] }),
  DescribeClusters: (i, e) => ({ resources: (strList(i, 'clusters') ?? ['default']).map((c) => e.arns.cluster(clusterNameOf({ cluster: c }))) }),
  ListClusters: ALL,
  RegisterContainerInstance: onCluster(),
  DeregisterContainerInstance: onCluster(),
  DescribeContainerInstances: many('containerInstances', 'container-instance'),
  ListContainerInstances: onCluster(),
  UpdateContainerInstancesState: many('containerInstances', 'container-instance'),
  PutAttributes: attributes,
  DeleteAttributes: attributes,
  ListAttributes: onCluster(),
  RegisterTaskDefinition: ALL,
  DescribeTaskDefinition: ALL,
  ListTaskDefinitions: ALL,
  ListTaskDefinitionFamilies: ALL,
  DeregisterTaskDefinition: ALL,
  RunTask: (i, e) => ({ resources: [tdArn(i, e) ?? '*'], cluster: clusterNameOf(i) }),
  StartTask: (i, e) => {
    const cluster = clusterNameOf(i);
    const instances = (strList(i, 'containerInstances') ?? []).map((id) => scopedArn(e, id, 'container-instance', cluster));
    return { resources: [tdArn(i, e) ?? '*'], cluster, extra: instances.length ? { 'ecs:container-instances': instances } : undefined };
  },
  StopTask: one('task', 'task'),
  DescribeTasks: many('tasks', 'task'),
  ListTasks: (i, e) => {
    const cluster = clusterNameOf(i);
    const ci = str(i, 'containerInstance');
    return { resources: [ci ? scopedArn(e, ci, 'container-instance', cluster) : '*'], cluster };
  },
  CreateService: (i, e) => {
    const cluster = clusterNameOf(i);
    const name = str(i, 'serviceName');
    const td = tdArn(i, e);
    return { resources: [name ? e.arns.service(cluster, name) : '*'], cluster, extra: td ? { 'ecs:task-definition': [td] } : undefined };
  },
  UpdateService: (i, e) => {
    const r = one('service', 'service')(i, e);
    const td = tdArn(i, e);
    return { ...r, extra: td ? { 'ecs:task-definition': [td] } : undefined };
  },
  DeleteService: one('service', 'service'),
  DescribeServices: many('services', 'service'),
  ListServices: inCluster(),
  RegisterDaemonTaskDefinition: ALL,
  DescribeDaemonTaskDefinition: dtd,
  ListDaemonTaskDefinitions: ALL,
  DeleteDaemonTaskDefinition: dtd,
  CreateDaemon: (i, e) => {
    const cluster = clusterNameOf(i, 'clusterArn');
    const name = str(i, 'daemonName');
    return { resources: [name ? e.arns.daemon(cluster, name) : '*'], cluster };
  },
  UpdateDaemon: daemon,
  DeleteDaemon: daemon,
  DescribeDaemon: daemon,
  ListDaemons: inCluster('clusterArn'),
  TagResource: tagged,
  UntagResource: tagged,
  ListTagsForResource: tagged,
  PutClusterCapacityProviders: onCluster(),
};

/** The operations berth knows how to authorize (each of OPERATIONS must be here; a test checks). */
export const AUTHORIZED_OPERATIONS = Object.keys(RESOLVERS);

/** The IAM request of an ECS operation; throws what the operation would for a malformed identifier. */
export function ecsAction(op: string, i: Input, arns: Arns, lookups: ActionLookups): AccessRequest {
  const resolve = Object.hasOwn(RESOLVERS, op) ? RESOLVERS[op] : undefined;
  if (!resolve) return { action: `ecs:${op}`, resources: ['*'], context: {} };
  const asked = resolve(i, { arns, lookups });
  const context: Record<string, string[]> = { ...(asked.extra ?? {}) };
  if (asked.cluster !== undefined) context['ecs:cluster'] = [arns.cluster(asked.cluster)];
  return { action: `ecs:${op}`, resources: asked.resources.length ? asked.resources : ['*'], context };
}
