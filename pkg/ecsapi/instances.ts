import { Kinds, type ContainerInstance, type Task } from '../api/kinds.ts';
import { newId } from '../api/arn.ts';
import type { Attribute } from '../api/resources.ts';
import { isBerthError } from '../errors/errors.ts';
import { evaluate, parseQuery, QueryError, type Expr } from '../scheduler/query.ts';
import { clusterOf, describeMany, getOrUndefined, guaranteedPatch, idOf, instanceView, newObj, type OpContext, type Operation } from './context.ts';
import { bool, list, oneOf, paginate, str, strList, unsupported, type Input } from './params.ts';
import { compact, instanceStatus, instanceToEcs } from './shapes.ts';
import { EcsError, invalidParameter } from './wire.ts';

/**
 * Container instances: registration (what the agent calls), deregistration, describe/list,
 * draining, and custom attributes. All through the registry, so admission keeps the
 * allocation record and remainingResources exact.
 */

const CI = Kinds.ContainerInstance;
const ciShape = (c: OpContext, o: unknown, include: string[] = []) => instanceToEcs(o as ContainerInstance, c.parts.arns, include);

function ec2InstanceIdOf(doc: string | undefined): string | undefined {
  if (!doc) return undefined;
  try {
    const d = JSON.parse(doc) as { instanceId?: unknown };
    return typeof d.instanceId === 'string' ? d.instanceId : undefined;
  } catch {
    return undefined;
  }
}

export const RegisterContainerInstance: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  unsupported(i, ['platformDevices']);
  const totalResources = list(i, 'totalResources');
  const attributes = list(i, 'attributes');
  const tags = list(i, 'tags');
  const versionInfo = i.versionInfo as Record<string, unknown> | undefined;
  const ec2InstanceId = ec2InstanceIdOf(str(i, 'instanceIdentityDocument'));
  const reRegister = str(i, 'containerInstanceArn');
  if (reRegister) {
    // the agent registering again (same identity): refresh what it offers
    const { name } = idOf(reRegister, 'container-instance', cluster);
    const cur = await getOrUndefined(c, CI, cluster, name);
    if (cur) {
      c.authorize({ verb: 'patch', resource: 'containerinstances', namespace: cluster, name });
      const out = await c.registry.patch(CI, cluster, name, 'merge', { spec: compact({ registeredResources: totalResources, attributes, tags, ec2InstanceId }) }, undefined, c.req);
      return { containerInstance: ciShape(c, out, ['TAGS']) };
    }
  }
  c.authorize({ verb: 'create', resource: 'containerinstances', namespace: cluster });
  const name = newId();
  const spec = compact({ registeredResources: totalResources, attributes, tags, ec2InstanceId });
  let { obj } = await c.registry.create(CI, cluster, newObj('ContainerInstance', name, spec, cluster), c.req);
  if (versionInfo && typeof versionInfo === 'object') {
    c.authorize({ verb: 'patch', resource: 'containerinstances', subresource: 'status', namespace: cluster, name });
    obj = await c.registry.patch(CI, cluster, name, 'merge', { status: { versionInfo } }, 'status', c.req);
  }
  return { containerInstance: ciShape(c, obj, ['TAGS']) };
};

export const DeregisterContainerInstance: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const { name } = idOf(str(i, 'containerInstance', { required: true })!, 'container-instance', cluster);
  const force = bool(i, 'force') ?? false;
  c.authorize({ verb: 'delete', resource: 'containerinstances', namespace: cluster, name });
  const cur = await c.registry.get(CI, cluster, name);
  if (force) {
    // ECS: with force, the instance's tasks are orphaned. berth records them STOPPED (which
    // releases their resources in the same txn), so nothing is left bound to a gone instance.
    await c.registry.fresh();
    const tasks = c.registry.cache
      .list('tasks', cluster, { field: 'spec.containerInstance', value: name })
      .map(([, t]) => t as unknown as Task)
      .filter((t) => t.status?.lastStatus !== 'STOPPED');
    for (const t of tasks) {
      c.authorize({ verb: 'patch', resource: 'tasks', namespace: cluster, name: t.metadata.name });
      c.authorize({ verb: 'patch', resource: 'tasks', subresource: 'status', namespace: cluster, name: t.metadata.name });
      const reason = 'Container instance deregistration forced by a user';
      if (t.spec.desiredStatus !== 'STOPPED') {
        await c.registry.patch(Kinds.Task, cluster, t.metadata.name, 'merge', { spec: { desiredStatus: 'STOPPED', stopReason: reason, stopCode: 'UserInitiated' } }, undefined, c.req);
      }
      const now = new Date().toISOString();
      await c.registry.patch(Kinds.Task, cluster, t.metadata.name, 'merge', { status: { lastStatus: 'STOPPED', stoppedAt: now, stoppedReason: reason, stopCode: 'UserInitiated' } }, 'status', c.req);
    }
  }
  await c.registry.delete(CI, cluster, name, c.req);
  const shape = ciShape(c, cur);
  return { containerInstance: { ...shape, status: 'INACTIVE', agentConnected: false } };
};

export const DescribeContainerInstances: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const ids = strList(i, 'containerInstances', { required: true, min: 1, max: 100 })!;
  const include = strList(i, 'include') ?? [];
  const r = await describeMany(c, cluster, ids, { resource: 'container-instance', kind: CI, arn: (cl, n) => c.parts.arns.containerInstance(cl, n) }, (o) => ciShape(c, o, include));
  return { containerInstances: r.found, failures: r.failures };
};

const CI_STATUSES = ['ACTIVE', 'DRAINING', 'REGISTERING', 'DEREGISTERING', 'REGISTRATION_FAILED'] as const;

export const ListContainerInstances: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const status = oneOf(i, 'status', CI_STATUSES);
  const filter = str(i, 'filter');
  c.authorize({ verb: 'list', resource: 'containerinstances', namespace: cluster });
  let expr: Expr | undefined;
  if (filter) {
    try {
      expr = parseQuery(filter);
    } catch (e) {
      throw invalidParameter(`filter: ${e instanceof QueryError ? e.message : String(e)}`);
    }
  }
  const items = (await c.registry.list(CI, cluster)).items
    .map((o) => o as unknown as ContainerInstance)
    .filter((ci) => !status || instanceStatus(ci) === status)
    .filter((ci) => !expr || evaluate(expr, instanceView(c, ci)));
  const { page, nextToken } = paginate(items, (o) => o.metadata.name, i, { defaultMax: 100, max: 100 });
  return compact({ containerInstanceArns: page.map((o) => c.parts.arns.containerInstance(cluster, o.metadata.name)), nextToken });
};

export const UpdateContainerInstancesState: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const ids = strList(i, 'containerInstances', { required: true, min: 1, max: 10 })!;
  const status = str(i, 'status', { required: true })!;
  if (status !== 'ACTIVE' && status !== 'DRAINING') throw invalidParameter(`Container instances can be set only to ACTIVE or DRAINING (got "${status}").`);
  const containerInstances: unknown[] = [];
  const failures: unknown[] = [];
  for (const given of ids) {
    const { name, clusterMismatch } = idOf(given, 'container-instance', cluster);
    c.authorize({ verb: 'patch', resource: 'containerinstances', namespace: cluster, name });
    try {
      if (clusterMismatch) throw new EcsError('MISSING', '');
      const out = await c.registry.patch(CI, cluster, name, 'merge', { spec: { status } }, undefined, c.req);
      containerInstances.push(ciShape(c, out));
    } catch (e) {
      if (!(e instanceof EcsError) && !isBerthError(e, 'NotFound')) throw e;
      failures.push({ arn: c.parts.arns.containerInstance(cluster, name), reason: 'MISSING' });
    }
  }
  return { containerInstances, failures };
};

// ---------------------------------------------------------------- attributes

interface AttrIn {
  name: string;
  value?: string;
  targetType: 'container-instance';
  targetId: string;
}

function attributesIn(i: Input, withValues: boolean): AttrIn[] {
  const raw = list<Record<string, unknown>>(i, 'attributes', { required: true, min: 1, max: 10 })!;
  return raw.map((a, k) => {
    if (!a || typeof a !== 'object') throw invalidParameter(`attributes[${k}] must be an object`);
    const name = str(a, 'name', { required: true })!;
    const value = withValues ? str(a, 'value') : undefined;
    const targetType = str(a, 'targetType') ?? 'container-instance';
    if (targetType !== 'container-instance') throw invalidParameter(`attributes[${k}].targetType must be container-instance (got "${targetType}").`);
    const targetId = str(a, 'targetId');
    if (!targetId) throw invalidParameter(`attributes[${k}].targetId is required: the container instance (id or ARN) the attribute belongs to.`);
    return { name, ...(value !== undefined ? { value } : {}), targetType: 'container-instance', targetId };
  });
}

const CUSTOM_ATTRIBUTE_LIMIT = 10;

async function editAttributes(c: OpContext, i: Input, put: boolean) {
  const cluster = await clusterOf(c, i);
  const attrs = attributesIn(i, put);
  const byTarget = new Map<string, AttrIn[]>();
  for (const a of attrs) {
    const { name, clusterMismatch } = idOf(a.targetId, 'container-instance', cluster);
    if (clusterMismatch) throw new EcsError('TargetNotFoundException', `Could not find ${a.targetId} in cluster ${cluster}.`);
    byTarget.set(name, [...(byTarget.get(name) ?? []), a]);
  }
  for (const [name, list] of byTarget) {
    c.authorize({ verb: 'patch', resource: 'containerinstances', namespace: cluster, name });
    if (!(await getOrUndefined(c, CI, cluster, name))) throw new EcsError('TargetNotFoundException', `Could not find ${list[0].targetId}.`);
    await guaranteedPatch(c, CI, cluster, name, (cur) => {
      const existing = ((cur.spec as ContainerInstance['spec']).attributes ?? []) as Attribute[];
      let next: Attribute[];
      if (put) {
        next = [...existing];
        for (const a of list) {
          const k = next.findIndex((x) => x.name === a.name);
          const v: Attribute = { name: a.name, ...(a.value !== undefined ? { value: a.value } : {}) };
          if (k >= 0) next[k] = v;
          else next.push(v);
        }
        const custom = next.filter((a) => !a.name.startsWith('ecs.')).length;
        if (custom > CUSTOM_ATTRIBUTE_LIMIT) {
          throw new EcsError('AttributeLimitExceededException', `A container instance may have at most ${CUSTOM_ATTRIBUTE_LIMIT} custom attributes (this would make ${custom}).`);
        }
      } else {
        const drop = new Set(list.map((a) => a.name));
        next = existing.filter((a) => !drop.has(a.name));
      }
      if (JSON.stringify(next) === JSON.stringify(existing)) return undefined;
      return { spec: { attributes: next } };
    });
  }
  return { attributes: attrs };
}

export const PutAttributes: Operation = (c, i) => editAttributes(c, i, true);
export const DeleteAttributes: Operation = (c, i) => editAttributes(c, i, false);

export const ListAttributes: Operation = async (c, i) => {
  const cluster = await clusterOf(c, i);
  const targetType = str(i, 'targetType', { required: true })!;
  if (targetType !== 'container-instance') throw invalidParameter(`targetType must be container-instance (got "${targetType}").`);
  const attributeName = str(i, 'attributeName');
  const attributeValue = str(i, 'attributeValue');
  if (attributeValue !== undefined && attributeName === undefined) throw invalidParameter('attributeValue can be given only with attributeName.');
  c.authorize({ verb: 'list', resource: 'containerinstances', namespace: cluster });
  const all: Array<{ name: string; value?: string; targetType: string; targetId: string }> = [];
  for (const o of (await c.registry.list(CI, cluster)).items) {
    const ci = o as unknown as ContainerInstance;
    const arn = c.parts.arns.containerInstance(cluster, ci.metadata.name);
    for (const a of ci.spec.attributes ?? []) {
      if (attributeName !== undefined && a.name !== attributeName) continue;
      if (attributeValue !== undefined && a.value !== attributeValue) continue;
      all.push({ name: a.name, ...(a.value !== undefined ? { value: a.value } : {}), targetType: 'container-instance', targetId: arn });
    }
  }
  const { page, nextToken } = paginate(all, (a) => `${a.targetId}\u0000${a.name}`, i, { defaultMax: 100, max: 100 });
  return compact({ attributes: page, nextToken });
};
