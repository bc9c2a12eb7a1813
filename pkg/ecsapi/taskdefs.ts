import { Kinds, type TaskDefinition } from '../api/kinds.ts';
import { isArn, parseArn } from '../api/arn.ts';
import { ecsToManifest } from '../api/ecsjson.ts';
import { isBerthError } from '../errors/errors.ts';
import { authorizeSecretReads, type OpContext, type Operation } from './context.ts';
import { list, oneOf, paginate, str, strList, type Input } from './params.ts';
import { compact, tagsOf, taskDefinitionShape } from './shapes.ts';
import { clientException } from './wire.ts';

/**
 * Task definitions. RegisterTaskDefinition is the register-task-definition JSON as a
 * TaskDefinition manifest (metadata.name = family, spec = the rest): the registry's
 * admission assigns the revision, as `berth apply` of the same JSON does -- except that
 * RegisterTaskDefinition always registers a new one, as ECS does.
 */

const TD = Kinds.TaskDefinition;
const shape = (c: OpContext, o: unknown) => taskDefinitionShape(o as TaskDefinition, c.parts.arns);

/** The ECS members that are not part of a task definition's spec. */
const NOT_SPEC = new Set(['family']);

export const RegisterTaskDefinition: Operation = async (c, i) => {
  const family = str(i, 'family', { required: true })!;
  list(i, 'containerDefinitions', { required: true });
  if (i.networkMode === 'daemon_bridge') throw clientException('networkMode daemon_bridge is only for daemon task definitions (RegisterDaemonTaskDefinition).');
  const doc: Input = { family };
  for (const [k, v] of Object.entries(i)) if (!NOT_SPEC.has(k) && v !== null && v !== undefined) doc[k] = v;
  const manifest = ecsToManifest(doc, { shape: 'task-definition' });
  c.authorize({ verb: 'create', resource: 'taskdefinitions' });
  authorizeSecretReads(c, manifest.spec);
  // ECS registers a new revision on every call, even of identical content (`berth apply`
  // of an unchanged manifest is a no-op instead)
  const { obj } = await c.registry.create(TD, undefined, manifest, { ...c.req, newRevision: true });
  const td = obj as unknown as TaskDefinition;
  return compact({ taskDefinition: shape(c, td), tags: tagsOf(td) });
};

async function getTd(c: OpContext, ref: string): Promise<TaskDefinition> {
  try {
    return (await c.registry.get(TD, undefined, ref)) as unknown as TaskDefinition;
  } catch (e) {
    if (isBerthError(e, 'NotFound')) throw clientException('Unable to describe task definition.');
    throw e;
  }
}

/** `family`, `family:revision` or an ARN: the name or revision, checked to be a task definition's. */
function tdRef(given: string): string {
  if (!isArn(given)) return given;
  const p = parseArn(given);
  if (p.resource !== 'task-definition') throw clientException(`"${given}" is not a task definition ARN.`);
  return p.name;
}

export const DescribeTaskDefinition: Operation = async (c, i) => {
  const ref = tdRef(str(i, 'taskDefinition', { required: true })!);
  const include = strList(i, 'include') ?? [];
  c.authorize({ verb: 'get', resource: 'taskdefinitions', name: ref });
  const td = await getTd(c, ref);
  // ECS answers an empty tags list unless asked for them
  return { taskDefinition: shape(c, td), tags: include.includes('TAGS') ? tagsOf(td) : [] };
};

export const DeregisterTaskDefinition: Operation = async (c, i) => {
  const ref = tdRef(str(i, 'taskDefinition', { required: true })!);
  if (!/:[0-9]+$/.test(ref)) throw clientException(`The task definition to deregister must name a revision (family:revision or its full ARN); got "${ref}".`);
  c.authorize({ verb: 'delete', resource: 'taskdefinitions', name: ref });
  await getTd(c, ref);
  const out = await c.registry.delete(TD, undefined, ref, c.req);
  return { taskDefinition: shape(c, out) };
};

const TD_STATUSES = ['ACTIVE', 'INACTIVE', 'DELETE_IN_PROGRESS'] as const;

async function allTds(c: OpContext): Promise<TaskDefinition[]> {
  c.authorize({ verb: 'list', resource: 'taskdefinitions' });
  return (await c.registry.list(TD, undefined)).items as unknown as TaskDefinition[];
}

const pad = (n: number) => String(n).padStart(10, '0');

export const ListTaskDefinitions: Operation = async (c, i) => {
  const familyPrefix = str(i, 'familyPrefix');
  const status = oneOf(i, 'status', TD_STATUSES) ?? 'ACTIVE';
  const sort = oneOf(i, 'sort', ['ASC', 'DESC'] as const) ?? 'ASC';
  const items = (await allTds(c)).filter((t) => t.status?.status === status && (!familyPrefix || t.status.family === familyPrefix));
  const key = (t: TaskDefinition) => `${t.status!.family}\u0000${pad(t.status!.revision)}`;
  const { page, nextToken } = paginate(items, key, i, { defaultMax: 100, max: 100, desc: sort === 'DESC' });
  return compact({ taskDefinitionArns: page.map((t) => t.status?.taskDefinitionArn ?? c.parts.arns.taskDefinition(t.metadata.name)), nextToken });
};

export const ListTaskDefinitionFamilies: Operation = async (c, i) => {
  const familyPrefix = str(i, 'familyPrefix');
  const status = oneOf(i, 'status', ['ACTIVE', 'INACTIVE', 'ALL'] as const) ?? 'ALL';
  const active = new Map<string, boolean>();
  for (const t of await allTds(c)) {
    const f = t.status?.family ?? t.metadata.name.split(':')[0];
    active.set(f, (active.get(f) ?? false) || t.status?.status === 'ACTIVE');
  }
  const families = [...active]
    .filter(([f, a]) => (!familyPrefix || f.startsWith(familyPrefix)) && (status === 'ALL' || (status === 'ACTIVE') === a))
    .map(([f]) => f);
  const { page, nextToken } = paginate(families, (f) => f, i, { defaultMax: 100, max: 100 });
  return compact({ families: page, nextToken });
};

export { getTd, tdRef };
