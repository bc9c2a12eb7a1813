import { Kinds } from '../api/kinds.ts';
import { isArn, parseArn } from '../api/arn.ts';
import type { KindInfo } from '../api/meta.ts';
import { clusterOf, getOrUndefined, guaranteedPatch, type OpContext, type Operation } from './context.ts';
import { list, str, strList, type Input } from './params.ts';
import { TAGS_ANNOTATION, tagsOf, type Tag } from './shapes.ts';
import { EcsError, invalidParameter } from './wire.ts';

/**
 * TagResource, UntagResource, ListTagsForResource: the tags of clusters, services, tasks,
 * container instances and daemons are their spec.tags, written by a merge patch pinned to
 * the version read (so admission and validation apply, and concurrent taggers do not lose
 * each other's tags). Task definition and daemon task definition revisions are immutable:
 * their tags after registration live in the `berth.dev/tags` annotation (see tagsOf).
 */

/** ECS's limit: tags per resource (aws:-prefixed tags, which users cannot set, aside). */
const MAX_TAGS = 50;

/** Tags as a request gives them, checked as ECS checks them. */
export function tagsIn(i: Input, member: string, opts: { required?: boolean } = {}): Tag[] | undefined {
  const raw = list<Record<string, unknown>>(i, member, { required: opts.required, max: MAX_TAGS });
  if (!raw) return undefined;
  const seen = new Set<string>();
  return raw.map((t, k) => {
    if (!t || typeof t !== 'object' || Array.isArray(t)) throw invalidParameter(`${member}[${k}] must be an object with a key and a value`);
    const key = str(t, 'key');
    const value = str(t, 'value');
    if (!key) throw invalidParameter(`${member}[${k}].key is required: a tag key is 1-128 characters.`);
    if (key.length > 128) throw invalidParameter(`${member}[${k}].key must be at most 128 characters long.`);
    if (value !== undefined && value.length > 256) throw invalidParameter(`${member}[${k}].value must be at most 256 characters long.`);
    if (/^aws:/i.test(key)) throw invalidParameter(`${member}[${k}].key: the aws: prefix is reserved for AWS use.`);
    if (seen.has(key)) throw invalidParameter(`${member}: the tag key "${key}" is given twice; each key can have only one value.`);
    seen.add(key);
    return value === undefined ? { key } : { key, value };
  });
}

interface Target {
  kind: KindInfo;
  /** the cluster of a cluster-scoped resource */
  ns?: string;
  name: string;
  /** task definition revisions: tags in the annotation, not the (immutable) spec */
  immutable: boolean;
}

const SCOPED: Record<string, KindInfo> = {
  service: Kinds.Service,
  task: Kinds.Task,
  'container-instance': Kinds.ContainerInstance,
  daemon: Kinds.Daemon,
};

const notFound = () => new EcsError('ResourceNotFoundException', 'The specified resource could not be found.');

/** The resource a `resourceArn` names; ClusterNotFoundException when its cluster is gone. */
async function targetOf(c: OpContext, i: Input): Promise<Target> {
  const arn = str(i, 'resourceArn', { required: true })!;
  if (!isArn(arn)) throw invalidParameter(`resourceArn must be the full ARN of an ECS resource (got "${arn}").`);
  const p = parseArn(arn);
  switch (p.resource) {
    case 'cluster':
      return { kind: Kinds.Cluster, name: await clusterOf(c, { cluster: p.name }), immutable: false };
    case 'task-definition':
    case 'daemon-task-definition':
      if (!/:[0-9]+$/.test(p.name)) throw invalidParameter(`resourceArn must name a revision (${p.resource}/FAMILY:REVISION); got "${arn}".`);
      return { kind: p.resource === 'task-definition' ? Kinds.TaskDefinition : Kinds.DaemonTaskDefinition, name: p.name, immutable: true };
    default: {
      const kind = SCOPED[p.resource];
      if (!kind) throw invalidParameter(`berth cannot tag ${p.resource} resources; it tags clusters, services, tasks, task definitions, container instances, daemons and daemon task definitions.`);
      // the old short ARN format names no cluster: the default one
      return { kind, ns: await clusterOf(c, { cluster: p.cluster ?? 'default' }), name: p.name, immutable: false };
    }
  }
}

async function currentTags(c: OpContext, t: Target): Promise<Tag[]> {
  const o = await getOrUndefined(c, t.kind, t.ns, t.name);
  if (!o) throw notFound();
  return tagsOf(o);
}

/** Read-modify-write of a resource's tags; `edit` returns the new list. */
async function editTags(c: OpContext, t: Target, edit: (cur: Tag[]) => Tag[]) {
  c.authorize({ verb: 'patch', resource: t.kind.plural, namespace: t.ns, name: t.name });
  await currentTags(c, t); // ResourceNotFoundException before anything else
  await guaranteedPatch(c, t.kind, t.ns, t.name, (cur) => {
    const before = tagsOf(cur);
    const next = edit(before);
    if (next.length > MAX_TAGS) throw invalidParameter(`A resource can have at most ${MAX_TAGS} tags (this would make ${next.length}).`);
    if (JSON.stringify(next) === JSON.stringify(before)) return undefined;
    if (t.immutable) return { metadata: { annotations: { [TAGS_ANNOTATION]: JSON.stringify(next) } } };
    return { spec: { tags: next.length ? next : null } };
  });
}

export const TagResource: Operation = async (c, i) => {
  const t = await targetOf(c, i);
  const tags = tagsIn(i, 'tags', { required: true })!;
  await editTags(c, t, (cur) => {
    const next = [...cur];
    for (const tag of tags) {
      const k = next.findIndex((x) => x.key === tag.key);
      if (k >= 0) next[k] = tag;
      else next.push(tag);
    }
    return next;
  });
  return {};
};

export const UntagResource: Operation = async (c, i) => {
  const t = await targetOf(c, i);
  const keys = new Set(strList(i, 'tagKeys', { required: true })!);
  await editTags(c, t, (cur) => cur.filter((x) => !keys.has(x.key)));
  return {};
};

export const ListTagsForResource: Operation = async (c, i) => {
  const t = await targetOf(c, i);
  c.authorize({ verb: 'get', resource: t.kind.plural, namespace: t.ns, name: t.name });
  return { tags: await currentTags(c, t) };
};
