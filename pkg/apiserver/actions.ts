import { isArn, parseArn, type Arns } from '../api/arn.ts';
import { kindByPlural } from '../api/kinds.ts';
import { sameJson } from '../api/validate.ts';
import type { RequestAttributes } from './auth.ts';
import type { AccessRequest } from './policy.ts';
import { candidateNames, referencedNames } from '../secrets/refs.ts';
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
  /**
   * a write's other meanings (writeActions decides which one a write has, from what it
   * changes): before the write runs, a caller allowed any of them may go on to the write,
   * which is then authorized for what it does
   */
  also?: Mapping[];
}

const m = (action: string, resource: ResourceType, cluster = false, also?: Mapping[]): Mapping => ({ action, resource, cluster, ...(also ? { also } : {}) });

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
    write: m('ecs:UpdateCluster', 'cluster', false, [m('ecs:TagResource', 'cluster')]),
    status: m('berth:UpdateClusterStatus', 'cluster'),
    delete: m('ecs:DeleteCluster', 'cluster'),
  },
  containerinstances: {
    create: m('ecs:RegisterContainerInstance', 'cluster'),
    get: m('ecs:DescribeContainerInstances', 'container-instance', true),
    list: m('ecs:ListContainerInstances', 'cluster'),
    write: m('ecs:UpdateContainerInstancesState', 'container-instance', true, [m('ecs:TagResource', 'container-instance', true)]),
    // the agent's heartbeat, resources and versions: ECS's agent channel
    status: m('ecs:Poll', 'container-instance', true),
    delete: m('ecs:DeregisterContainerInstance', 'cluster'),
  },
  taskdefinitions: {
    create: m('ecs:RegisterTaskDefinition', 'none'),
    get: m('ecs:DescribeTaskDefinition', 'none'),
    list: m('ecs:ListTaskDefinitions', 'none'),
    // a revision is immutable: what changes is its tags (annotations) or its status
    // (deregistration); a changed spec addressed by the family registers the next revision
    write: m('ecs:TagResource', 'task-definition', false, [m('ecs:RegisterTaskDefinition', 'none')]),
    status: m('ecs:DeregisterTaskDefinition', 'none'),
    delete: m('ecs:DeregisterTaskDefinition', 'none'),
  },
  daemontaskdefinitions: {
    create: m('ecs:RegisterDaemonTaskDefinition', 'none'),
    get: m('ecs:DescribeDaemonTaskDefinition', 'daemon-task-definition'),
    list: m('ecs:ListDaemonTaskDefinitions', 'none'),
    write: m('ecs:TagResource', 'daemon-task-definition', false, [m('ecs:RegisterDaemonTaskDefinition', 'none')]),
    status: m('ecs:DeleteDaemonTaskDefinition', 'daemon-task-definition'),
    delete: m('ecs:DeleteDaemonTaskDefinition', 'daemon-task-definition'),
  },
  tasks: {
    // the task definition comes from the object being created
    create: m('ecs:RunTask', 'task-definition', true),
    get: m('ecs:DescribeTasks', 'task', true),
    list: m('ecs:ListTasks', 'container-instance', true),
    // a task's spec is fixed once it runs (admission): a write stops it (desiredStatus,
    // stopReason, stopCode) or tags it (spec.tags, labels, annotations)
    write: m('ecs:StopTask', 'task', true, [m('ecs:TagResource', 'task', true)]),
    status: m('ecs:SubmitTaskStateChange', 'cluster'),
    delete: m('ecs:StopTask', 'task', true),
    logs: m('logs:GetLogEvents', 'task', true),
  },
  services: {
    create: m('ecs:CreateService', 'service', true),
    get: m('ecs:DescribeServices', 'service', true),
    list: m('ecs:ListServices', 'none', true),
    write: m('ecs:UpdateService', 'service', true, [m('ecs:TagResource', 'service', true)]),
    status: m('berth:UpdateServiceStatus', 'service', true),
    delete: m('ecs:DeleteService', 'service', true),
  },
  daemons: {
    create: m('ecs:CreateDaemon', 'daemon', true),
    get: m('ecs:DescribeDaemon', 'daemon', true),
    list: m('ecs:ListDaemons', 'none', true),
    write: m('ecs:UpdateDaemon', 'daemon', true, [m('ecs:TagResource', 'daemon', true)]),
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

/** Does this reference name a family (so that what it runs is the family's latest revision, resolved when asked)? */
export function namesFamily(ref: unknown): boolean {
  if (typeof ref !== 'string' || !ref) return false;
  if (!isArn(ref)) return !ref.includes(':');
  try {
    return !parseArn(ref).name.includes(':');
  } catch {
    return false;
  }
}

/**
 * The task definition a request runs, as the ARN both faces authorize: RunTask's and
 * StartTask's resource, CreateService's and UpdateService's `ecs:task-definition`. A family
 * is its latest revision as `lookups` has it, so callers resolve it fresh first (R1-8): the
 * ECS face pins the revision before the operation runs, the resource API authorizes the
 * write again on the object admission resolved.
 */
export function taskDefinitionArn(ref: string, arns: Arns, lookups: ActionLookups, daemon = false): string {
  if (daemon) return arns.daemonTaskDefinition(revisionOf(ref, 'daemontaskdefinitions', lookups));
  return arns.taskDefinition(revisionOf(ref, 'taskdefinitions', lookups));
}

/** Does a create of this body run a task definition named by its family (a task's, a service's)? Its authorization resolves it fresh. */
export function createNamesFamily(resource: string | undefined, body: unknown): boolean {
  if (resource !== 'tasks' && resource !== 'services') return false;
  const spec = (body as { spec?: Record<string, unknown> } | undefined)?.spec;
  return !!spec && (namesFamily(spec.taskDefinition) || namesFamily(spec.daemonTaskDefinition));
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
        if (daemon) return [taskDefinitionArn(daemon, arns, lookups, true)];
        const td = typeof spec.taskDefinition === 'string' ? spec.taskDefinition : undefined;
        return td ? [taskDefinitionArn(td, arns, lookups)] : [arns.taskDefinition('*')];
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

type Key = Verb | 'write' | 'status';

const keyOf = (a: Pick<RequestAttributes, 'verb' | 'subresource'>): Key =>
  a.verb === 'update' || a.verb === 'patch' ? (a.subresource === 'status' ? 'status' : 'write') : a.verb === 'watch' ? 'list' : a.verb;

function mappingOf(a: RequestAttributes): Mapping {
  // a secret's clear values are their own right (as on the Secrets Manager face), not a get of its metadata
  if (a.resource === 'secrets' && a.subresource === 'value') return m('secretsmanager:GetSecretValue', 'none');
  if (a.resource === 'secrets' && a.subresource === 'reencrypt') return m('berth:ReencryptSecrets', 'none');
  const key = keyOf(a);
  const mp = TABLE[a.resource!]?.[key];
  if (mp) return mp;
  const kind = kindByPlural(a.resource!)?.kind ?? upper(a.resource!);
  const action = key === 'write' ? `Update${kind}` : key === 'status' ? `Update${kind}Status` : key === 'list' ? `List${kind}s` : `${upper(key)}${kind}`;
  return m(`berth:${action}`, 'none');
}

function requestOf(mp: Mapping, a: RequestAttributes, user: string, arns: Arns, lookups: ActionLookups): AccessRequest {
  const context: Record<string, string[]> = { 'aws:username': [user] };
  if (mp.cluster && a.namespace) context['ecs:cluster'] = [arns.cluster(a.namespace)];
  // the task definition a service create or update names (a create: its body; an update: what
  // the request sets, as UpdateService's `taskDefinition`), as the ECS face asks
  if (mp.action === 'ecs:CreateService' || mp.action === 'ecs:UpdateService') {
    const td = (a.object as { spec?: { taskDefinition?: unknown } } | undefined)?.spec?.taskDefinition;
    if (typeof td === 'string') context['ecs:task-definition'] = [taskDefinitionArn(td, arns, lookups)];
  }
  return { action: mp.action, resources: resourcesOf(mp, a, arns, lookups), context };
}

/**
 * The IAM request a resource-API request makes (undefined for non-resource paths, which
 * only berth's built-in rules decide: discovery, /metrics).
 */
export function resourceApiAction(a: RequestAttributes, user: string, arns: Arns, lookups: ActionLookups): AccessRequest | undefined {
  if (!a.resource) return undefined;
  return requestOf(mappingOf(a), a, user, arns, lookups);
}

/**
 * Every IAM request a resource-API request may make, the table's first: a write before it
 * runs may still mean any of its kind's write actions (a task's PATCH stops or tags it, a
 * task definition family's registers a revision or tags one). A caller allowed one of them
 * goes on to the write, and the write path authorizes what the write does (writeActions).
 */
export function resourceApiActions(a: RequestAttributes, user: string, arns: Arns, lookups: ActionLookups): AccessRequest[] {
  if (!a.resource) return [];
  const mp = mappingOf(a);
  return [mp, ...(mp.also ?? [])].map((x) => requestOf(x, a, user, arns, lookups));
}

/** What a resource-API write changes: the stored object and the one it writes, as admission left it (a family resolved to its revision). */
export interface WriteChange {
  verb: 'create' | 'update';
  resource: string;
  namespace?: string;
  prev?: { metadata: Record<string, unknown>; spec?: unknown };
  next: { metadata: { name: string } & Record<string, unknown>; spec?: unknown };
  /** the request names the service's task definition (undefined: unknown, then: when the write changes it) */
  namesTaskDefinition?: boolean;
}

/** task spec fields a stop writes (StopTask) */
const STOP_FIELDS = new Set(['desiredStatus', 'stopReason', 'stopCode']);
/** metadata that tags an object */
const TAG_METADATA = ['labels', 'annotations'] as const;
/** the rest of the metadata a client writes (uid, generation, timestamps, the version are the server's) */
const OTHER_METADATA = ['finalizers', 'ownerReferences'] as const;

/**
 * The IAM requests a resource-API write makes, decided on what it changes: the write path
 * sees the stored object and the one to be written, so it authorizes what the write means,
 * not only the request's verb (R1-1, R1-2, R1-3). The request's own authorization came
 * first (resourceApiActions: may the caller make any write of this object).
 *
 * - a create: the create's action on the object as admission resolved it, so RunTask is
 *   asked on the revision the task runs and CreateService's `ecs:task-definition` names
 *   the service's revision (R1-8). A family PATCH or PUT of a task definition with a changed
 *   spec is a create: `ecs:RegisterTaskDefinition` (`ecs:RegisterDaemonTaskDefinition`);
 * - a task definition revision: only its metadata can change: `ecs:TagResource`;
 * - a task: `ecs:StopTask` when desiredStatus, stopReason or stopCode change;
 *   `ecs:TagResource` when spec.tags, labels or annotations change (admission refuses any
 *   other spec change: a task runs what it was created with);
 * - a service, daemon, container instance or cluster: `ecs:TagResource` when spec.tags
 *   change, the kind's update action when anything else does. A service update that names
 *   the task definition (the body sets spec.taskDefinition) carries `ecs:task-definition`,
 *   the revision it resolved to, exactly as UpdateService does when given `taskDefinition`
 *   on the ECS face; one that does not name it carries no such key on either face.
 * The user is left for the authorizer to fill in.
 */
export function writeActions(w: WriteChange, arns: Arns, lookups: ActionLookups): Array<{ attrs: Omit<RequestAttributes, 'path'>; request: AccessRequest }> {
  const name = w.next.metadata.name;
  const base = { resource: w.resource, namespace: w.namespace, name, path: '' };
  if (w.verb === 'create' || !w.prev) {
    const attrs: RequestAttributes = { ...base, verb: 'create', object: w.next };
    const reads = w.resource === 'taskdefinitions' || w.resource === 'daemontaskdefinitions' ? secretReadActions(w.next.spec, arns, lookups) : [];
    return [{ attrs: strip(attrs), request: requestOf(mappingOf(attrs), attrs, '', arns, lookups) }, ...reads];
  }
  const attrs: RequestAttributes = { ...base, verb: 'update' };
  const mp = mappingOf(attrs);
  const as = (x: Mapping) => ({ attrs: strip(attrs), request: requestOf(x, attrs, '', arns, lookups) });
  const tag = mp.also?.find((x) => x.action === 'ecs:TagResource');
  const ps = (w.prev.spec ?? {}) as Record<string, unknown>;
  const ns = (w.next.spec ?? {}) as Record<string, unknown>;
  const changed = [...new Set([...Object.keys(ps), ...Object.keys(ns)])].filter((k) => !sameJson(ps[k], ns[k]));
  const meta = (k: string) => !sameJson(w.prev!.metadata[k], w.next.metadata[k]);
  const tagsMeta = TAG_METADATA.some(meta);
  const otherMeta = OTHER_METADATA.some(meta);
  if (w.resource === 'taskdefinitions' || w.resource === 'daemontaskdefinitions') return [as(mp)];
  const out: Array<{ attrs: Omit<RequestAttributes, 'path'>; request: AccessRequest }> = [];
  if (w.resource === 'tasks') {
    if (changed.some((k) => STOP_FIELDS.has(k)) || otherMeta) out.push(as(mp));
    if (tag && (changed.includes('tags') || tagsMeta)) out.push(as(tag));
    return out.length ? out : [as(mp)];
  }
  if (changed.some((k) => k !== 'tags') || tagsMeta || otherMeta) {
    const r = as(mp);
    if (w.resource === 'services' && (w.namesTaskDefinition ?? changed.includes('taskDefinition')) && typeof ns.taskDefinition === 'string') {
      r.request.context['ecs:task-definition'] = [taskDefinitionArn(ns.taskDefinition, arns, lookups)];
    }
    out.push(r);
  }
  if (tag && changed.includes('tags')) out.push(as(tag));
  return out.length ? out : [as(mp)];
}

/**
 * Registering a task definition that references secrets is reading them: the node of a task
 * of it reads their values into the containers (as ECS asks iam:PassRole on the execution
 * role that reads them). The registering caller must itself be allowed
 * `secretsmanager:GetSecretValue` on each (every berth name the reference may be stored
 * under); the controllers that later create its tasks are not asked again.
 */
export function secretReadActions(spec: unknown, arns: Arns, lookups: ActionLookups): Array<{ attrs: Omit<RequestAttributes, 'path'>; request: AccessRequest }> {
  const out: Array<{ attrs: Omit<RequestAttributes, 'path'>; request: AccessRequest }> = [];
  for (const aws of referencedNames(spec as Parameters<typeof referencedNames>[0])) {
    for (const name of candidateNames(aws)) {
      const attrs: RequestAttributes = { verb: 'get', resource: 'secrets', name, subresource: 'value', path: '' };
      out.push({ attrs: strip(attrs), request: requestOf(mappingOf(attrs), attrs, '', arns, lookups) });
    }
  }
  return out;
}

/** attributes without the path (the server adds its own) and without the object (authorized by its action) */
function strip(a: RequestAttributes): Omit<RequestAttributes, 'path'> {
  const { path: _p, object: _o, ...rest } = a;
  void _p;
  void _o;
  return rest;
}
