import { isArn, parseArn, type Arns } from '../api/arn.ts';
import { kindByPlural } from '../api/kinds.ts';
import type { RequestAttributes } from './auth.ts';
import type { AccessRequest } from './policy.ts';
import { parseFieldSelector } from './selectors.ts';
import type { WatchCache } from './watchcache.ts';

/**
 * What a request asks for, as an IAM action on ECS resources: the one vocabulary policies
 * are written in, whichever face a request comes through. The ECS face names its action
 * (`ecs:RunTask`, pkg/ecsapi/actions.ts); a resource-API request is mapped here from its
 * verb, resource and subresource (the table below, documented in the README).
 *
 * Resources and condition keys follow AWS's service authorization reference for ECS:
 * actions on a cluster's members (tasks, services, container instances, daemons) carry
 * the `ecs:cluster` key (the cluster's ARN); actions that take no resource type (creating a
 * cluster, everything about task definitions but running them, the List calls that are not
 * scoped to a cluster) are asked on `*`. Every request carries `aws:username`.
 */

/** How a request names its resource(s), given the names it carries. */
export type ResourceType = 'none' | 'cluster' | 'container-instance' | 'task' | 'service' | 'daemon' | 'task-definition' | 'daemon-task-definition';

type Verb = RequestAttributes['verb'];

interface Mapping {
  action: string;
  resource: ResourceType;
  /** the request carries `ecs:cluster` */
  cluster: boolean;
}

const m = (action: string, resource: ResourceType, cluster = false): Mapping => ({ action, resource, cluster });

/**
 * The resource API's verbs per kind. `write` is update and patch of the object, `status` of
 * its status subresource; get/list/watch/create/delete as named. Leases (leader election)
 * and any kind not listed map to `berth:<Verb><Kind>` on `*`.
 */
const TABLE: Record<string, Partial<Record<Verb | 'write' | 'status', Mapping>>> = {
  clusters: {
    create: m('ecs:CreateCluster', 'none'),
    get: m('ecs:DescribeClusters', 'cluster'),
    list: m('ecs:ListClusters', 'none'),
    write: m('ecs:UpdateCluster', 'cluster'),
    status: m('berth:UpdateClusterStatus', 'cluster'),
    delete: m('ecs:DeleteCluster', 'cluster'),
  },
  containerinstances: {
    create: m('ecs:RegisterContainerInstance', 'cluster'),
    get: m('ecs:DescribeContainerInstances', 'container-instance', true),
    list: m('ecs:ListContainerInstances', 'cluster'),
    write: m('ecs:UpdateContainerInstancesState', 'container-instance', true),
    // the agent's heartbeat, resources and versions: ECS's agent channel
    status: m('ecs:Poll', 'container-instance', true),
    delete: m('ecs:DeregisterContainerInstance', 'cluster'),
  },
  taskdefinitions: {
    create: m('ecs:RegisterTaskDefinition', 'none'),
    get: m('ecs:DescribeTaskDefinition', 'none'),
    list: m('ecs:ListTaskDefinitions', 'none'),
    // a revision is immutable: what changes is its tags (annotation) or its status (deregistration)
    write: m('ecs:TagResource', 'task-definition'),
    status: m('ecs:DeregisterTaskDefinition', 'none'),
    delete: m('ecs:DeregisterTaskDefinition', 'none'),
  },
  daemontaskdefinitions: {
    create: m('ecs:RegisterDaemonTaskDefinition', 'none'),
    get: m('ecs:DescribeDaemonTaskDefinition', 'daemon-task-definition'),
    list: m('ecs:ListDaemonTaskDefinitions', 'none'),
    write: m('ecs:TagResource', 'daemon-task-definition'),
    status: m('ecs:DeleteDaemonTaskDefinition', 'daemon-task-definition'),
    delete: m('ecs:DeleteDaemonTaskDefinition', 'daemon-task-definition'),
  },
  tasks: {
    // the task definition comes from the object being created
    create: m('ecs:RunTask', 'task-definition', true),
    get: m('ecs:DescribeTasks', 'task', true),
    list: m('ecs:ListTasks', 'container-instance', true),
    // a user's spec write is stopping it (desiredStatus is the only spec field that moves)
    write: m('ecs:StopTask', 'task', true),
    status: m('ecs:SubmitTaskStateChange', 'cluster'),
    delete: m('ecs:StopTask', 'task', true),
    logs: m('logs:GetLogEvents', 'task', true),
  },
  services: {
    create: m('ecs:CreateService', 'service', true),
    get: m('ecs:DescribeServices', 'service', true),
    list: m('ecs:ListServices', 'none', true),
    write: m('ecs:UpdateService', 'service', true),
    status: m('berth:UpdateServiceStatus', 'service', true),
    delete: m('ecs:DeleteService', 'service', true),
  },
  daemons: {
    create: m('ecs:CreateDaemon', 'daemon', true),
    get: m('ecs:DescribeDaemon', 'daemon', true),
    list: m('ecs:ListDaemons', 'none', true),
    write: m('ecs:UpdateDaemon', 'daemon', true),
    status: m('berth:UpdateDaemonStatus', 'daemon', true),
    delete: m('ecs:DeleteDaemon', 'daemon', true),
  },
  // the placement call (pkg/apiserver/binding.ts): binds tasks of a cluster to its instances
  bindings: {
    create: m('berth:BindTasks', 'cluster'),
  },
};

/** The resource-API verb -> action table, for the README and tests. */
export function actionTable(): Array<{ resource: string; verb: string; action: string; on: ResourceType; ecsCluster: boolean }> {
  const out: Array<{ resource: string; verb: string; action: string; on: ResourceType; ecsCluster: boolean }> = [];
  for (const [resource, verbs] of Object.entries(TABLE)) {
    for (const [verb, mp] of Object.entries(verbs)) out.push({ resource, verb, action: mp!.action, on: mp!.resource, ecsCluster: mp!.cluster });
  }
  return out;
}

/** What the mapping needs to know beyond the request: a family's latest ACTIVE revision. */
export interface ActionLookups {
  latestRevision(plural: 'taskdefinitions' | 'daemontaskdefinitions', family: string): string | undefined;
}

/** Lookups from the apiserver's watch cache (the same answer admission gives a family name). */
export function cacheLookups(cache: WatchCache): ActionLookups {
  return {
    latestRevision(plural, family) {
      let best: { name: string; revision: number } | undefined;
      for (const [, o] of cache.list(plural, undefined, { field: 'status.family', value: family })) {
        const st = (o as { status?: { status?: string; revision?: number } }).status;
        if (st?.status !== 'ACTIVE' || typeof st.revision !== 'number') continue;
        if (!best || st.revision > best.revision) best = { name: o.metadata.name, revision: st.revision };
      }
      return best?.name;
    },
  };
}

/** `family`, `family:revision` or an ARN, as a revision name when it can be resolved (else as given). */
export function revisionOf(ref: string, plural: 'taskdefinitions' | 'daemontaskdefinitions', lookups: ActionLookups): string {
  let name = ref;
  if (isArn(name)) {
    try {
      name = parseArn(name).name;
    } catch {
      return ref;
    }
  }
  if (name.includes(':')) return name;
  return lookups.latestRevision(plural, name) ?? name;
}

const upper = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** The names a resource-API request carries, as ARNs of the mapping's resource type. */
function resourcesOf(mp: Mapping, a: RequestAttributes, arns: Arns, lookups: ActionLookups): string[] {
  const ns = a.namespace;
  const obj = a.object as { metadata?: { name?: unknown }; spec?: Record<string, unknown> } | undefined;
  // a create names its object in the body; everything else in the URL
  const name = a.name ?? (typeof obj?.metadata?.name === 'string' ? obj.metadata.name : undefined);
  const within = (f: (cluster: string, n: string) => string) => (ns && name ? [f(ns, name)] : ns ? [f(ns, '*')] : ['*']);
  switch (mp.resource) {
    case 'none':
      return ['*'];
    case 'cluster': {
      const cluster = a.resource === 'clusters' ? name : ns;
      return cluster ? [arns.cluster(cluster)] : ['*'];
    }
    case 'container-instance': {
      if (a.resource === 'tasks') {
        // ListTasks: on the container instance the list is scoped to (the parsed selector, as the list runs it)
        const inst = instanceOfSelector(a.fieldSelector);
        return ns && inst ? [arns.containerInstance(ns, inst)] : ['*'];
      }
      return within((c, n) => arns.containerInstance(c, n));
    }
    case 'task':
      return within((c, n) => arns.task(c, n));
    case 'service':
      return within((c, n) => arns.service(c, n));
    case 'daemon':
      return within((c, n) => arns.daemon(c, n));
    case 'task-definition': {
      if (a.resource === 'tasks') {
        const spec = obj?.spec ?? {};
        const daemon = typeof spec.daemonTaskDefinition === 'string' ? spec.daemonTaskDefinition : undefined;
        if (daemon) return [arns.daemonTaskDefinition(revisionOf(daemon, 'daemontaskdefinitions', lookups))];
        const td = typeof spec.taskDefinition === 'string' ? spec.taskDefinition : undefined;
        return td ? [arns.taskDefinition(revisionOf(td, 'taskdefinitions', lookups))] : [arns.taskDefinition('*')];
      }
      return name ? [arns.taskDefinition(name)] : ['*'];
    }
    case 'daemon-task-definition':
      return name ? [arns.daemonTaskDefinition(name)] : ['*'];
  }
}

/** `spec.containerInstance=X` among the requirements of a field selector (undefined when absent or unparseable). */
function instanceOfSelector(sel: string | undefined): string | undefined {
  if (!sel) return undefined;
  try {
    const reqs = parseFieldSelector(sel, kindByPlural('tasks')?.fieldSelectors ?? []);
    return reqs.find((r) => r.field === 'spec.containerInstance' && r.op === 'eq')?.value;
  } catch {
    return undefined;
  }
}

/**
 * The IAM request a resource-API request makes (undefined for non-resource paths, which
 * only berth's built-in rules decide: discovery, /metrics).
 */
export function resourceApiAction(a: RequestAttributes, user: string, arns: Arns, lookups: ActionLookups): AccessRequest | undefined {
  if (!a.resource) return undefined;
  const verbs = TABLE[a.resource];
  const key: Verb | 'write' | 'status' =
    a.verb === 'update' || a.verb === 'patch' ? (a.subresource === 'status' ? 'status' : 'write') : a.verb === 'watch' ? 'list' : a.verb;
  let mp = verbs?.[key];
  if (!mp) {
    const kind = kindByPlural(a.resource)?.kind ?? upper(a.resource);
    const action = key === 'write' ? `Update${kind}` : key === 'status' ? `Update${kind}Status` : key === 'list' ? `List${kind}s` : `${upper(key)}${kind}`;
    mp = m(`berth:${action}`, 'none');
  }
  const context: Record<string, string[]> = { 'aws:username': [user] };
  if (mp.cluster && a.namespace) context['ecs:cluster'] = [arns.cluster(a.namespace)];
  if (a.resource === 'services' && key === 'create') {
    const td = (a.object as { spec?: { taskDefinition?: unknown } } | undefined)?.spec?.taskDefinition;
    if (typeof td === 'string') context['ecs:task-definition'] = [arns.taskDefinition(revisionOf(td, 'taskdefinitions', lookups))];
  }
  return { action: mp.action, resources: resourcesOf(mp, a, arns, lookups), context };
}
