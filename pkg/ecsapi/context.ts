import type { ApiParts } from '../apiserver/apiserver.ts';
import type { Identity, RequestAttributes } from '../apiserver/auth.ts';
import type { Obj, Registry, RequestContext } from '../apiserver/registry.ts';
import { allocationKey } from '../apiserver/admission.ts';
import { cacheLookups, secretReadActions } from '../apiserver/actions.ts';
import { Kinds, type Cluster, type ContainerInstance, type Task } from '../api/kinds.ts';
import { API_VERSION, type KindInfo } from '../api/meta.ts';
import { isArn, resolveIdentifier, type ArnResource } from '../api/arn.ts';
import { Allocation, emptyAllocation } from '../api/allocation.ts';
import { isBerthError } from '../errors/errors.ts';
import { instanceView as schedulerView, type InstanceView } from '../scheduler/scheduler.ts';
import { str, type Input } from './params.ts';
import { EcsError, invalidParameter } from './wire.ts';

/** What every operation gets: the server's parts, the caller, and the one authorizer. */
export interface OpContext {
  parts: ApiParts;
  registry: Registry;
  /** the caller, authenticated by SigV4 */
  identity: Identity;
  /** for the registry: who writes (admission, audit) */
  req: RequestContext;
  authorize(attrs: Omit<RequestAttributes, 'path'>): void;
  region: string;
  /** how long CreateService/UpdateService wait for the service controller's deployment (0: answer at once) */
  deploymentWaitMs: number;
}

/** a task definition referencing secrets is registered only by a caller who may read them (actions.ts secretReadActions) */
export function authorizeSecretReads(c: OpContext, spec: unknown): void {
  for (const { attrs, request } of secretReadActions(spec, c.parts.arns, cacheLookups(c.parts.cache))) c.authorize({ ...attrs, action: request });
}

export type Operation = (c: OpContext, input: Input) => Promise<unknown>;

export const clusterNotFound = () => new EcsError('ClusterNotFoundException', 'Cluster not found.');

/** The cluster a request names (by name or ARN; `default` when it names none). */
export function clusterNameOf(i: Input, member = 'cluster'): string {
  const given = str(i, member) ?? 'default';
  return isArn(given) ? resolveIdentifier(given, 'cluster').name : given;
}

/** A cluster named by name or ARN (default `default`); throws ClusterNotFoundException when absent. */
export async function clusterOf(c: OpContext, i: Input, member = 'cluster'): Promise<string> {
  const name = clusterNameOf(i, member);
  c.authorize({ verb: 'get', resource: 'clusters', name });
  const cl = (await c.registry.peek(Kinds.Cluster, undefined, name)) as Cluster | undefined;
  if (!cl || cl.status?.status === 'INACTIVE') throw clusterNotFound();
  return name;
}

/**
 * An identifier of a cluster-scoped resource as ECS takes it: an id or name, or an ARN
 * (long format, which names the cluster, or the old short one). `clusterMismatch` is set
 * when the ARN names another cluster than the request's.
 */
export function idOf(value: string, resource: ArnResource, cluster: string): { name: string; clusterMismatch: boolean } {
  const r = resolveIdentifier(value, resource);
  if (!r.name) throw invalidParameter(`"${value}" does not name a ${resource}.`);
  return { name: r.name, clusterMismatch: r.cluster !== undefined && r.cluster !== cluster };
}

/** The object, or undefined when it does not exist (other errors propagate). */
/**
 * Describe* of many objects of one cluster, as ECS answers it: each identifier (name, id or
 * ARN) authorized and read; what is missing (or names another cluster) becomes a MISSING
 * failure instead of an error.
 */
export async function describeMany(
  c: OpContext,
  cluster: string,
  ids: string[],
  what: { resource: ArnResource; kind: KindInfo; arn: (cluster: string, name: string) => string },
  shape: (o: Obj) => unknown,
): Promise<{ found: unknown[]; failures: Array<{ arn: string; reason: 'MISSING' }> }> {
  const found: unknown[] = [];
  const failures: Array<{ arn: string; reason: 'MISSING' }> = [];
  for (const given of ids) {
    const { name, clusterMismatch } = idOf(given, what.resource, cluster);
    c.authorize({ verb: 'get', resource: what.kind.plural, namespace: cluster, name });
    const o = clusterMismatch ? undefined : await getOrInactive(c, what.kind, cluster, name);
    if (!o) failures.push({ arn: what.arn(cluster, name), reason: 'MISSING' });
    else found.push(shape(o));
  }
  return { found, failures };
}

/** The object, or while it is kept, the INACTIVE record of a deleted service or deregistered instance (ECS describes those for an hour). */
export async function getOrInactive(c: OpContext, kind: KindInfo, ns: string | undefined, name: string): Promise<Obj | undefined> {
  return (await getOrUndefined(c, kind, ns, name)) ?? (await c.registry.inactive(kind, ns, name));
}

export async function getOrUndefined(c: OpContext, kind: KindInfo, ns: string | undefined, name: string): Promise<Obj | undefined> {
  try {
    return await c.registry.get(kind, ns, name);
  } catch (e) {
    if (isBerthError(e, 'NotFound')) return undefined;
    throw e;
  }
}

/** Conflicts a pinned read-modify-write outlives before it gives up (a ServerException, retryable). */
const PATCH_ATTEMPTS = 16;

/**
 * Read-modify-write through the registry's merge patch, pinned to the version read (a
 * precondition), retried from fresh state on conflict: for list members such as attributes
 * and tags that a plain merge patch would replace wholesale. Between attempts it waits a
 * little (jittered, growing): the winner's write may not be in the watch cache yet, and
 * many writers of one object (concurrent TagResource calls) each need a turn.
 */
export async function guaranteedPatch(
  c: OpContext,
  kind: KindInfo,
  ns: string | undefined,
  name: string,
  mutate: (cur: Obj) => Record<string, unknown> | undefined,
): Promise<Obj> {
  for (let attempt = 0; ; attempt++) {
    const cur = await c.registry.get(kind, ns, name);
    const patch = mutate(structuredClone(cur));
    if (!patch) return cur;
    try {
      return await c.registry.patch(kind, ns, name, 'merge', { ...patch, metadata: { ...((patch.metadata as object) ?? {}), resourceVersion: cur.metadata.resourceVersion } }, undefined, c.req);
    } catch (e) {
      if (!isBerthError(e, 'Conflict') || attempt >= PATCH_ATTEMPTS - 1) throw e;
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(200, 5 * 2 ** attempt)));
    }
  }
}

export const newObj = (kind: string, name: string, spec: unknown, namespace?: string) => ({
  apiVersion: API_VERSION,
  kind,
  metadata: { name, ...(namespace ? { namespace } : {}) },
  spec,
});

/** Allocation record of an instance from the apiserver cache (empty when absent or unreadable). */
export function allocationOf(c: OpContext, cluster: string, instance: string): Allocation {
  const raw = c.registry.cache.get(allocationKey(cluster, instance)) as unknown as Partial<Allocation> | undefined;
  const r = Allocation.safeParse(raw ? { cpu: raw.cpu, memory: raw.memory, tasks: raw.tasks } : undefined);
  return r.success ? r.data : emptyAllocation();
}

/** An instance as the scheduler sees it, from the apiserver's cache (call registry.fresh() first). */
export function instanceView(c: OpContext, ci: ContainerInstance): InstanceView {
  const ns = ci.metadata.namespace!;
  const tasks = c.registry.cache.list('tasks', ns, { field: 'spec.containerInstance', value: ci.metadata.name }).map(([, o]) => o as unknown as Task);
  return schedulerView(ci, tasks, allocationOf(c, ns, ci.metadata.name));
}

export async function instanceViews(c: OpContext, cluster: string): Promise<InstanceView[]> {
  await c.registry.fresh();
  return c.registry.cache.list('containerinstances', cluster).map(([, o]) => instanceView(c, o as unknown as ContainerInstance));
}

