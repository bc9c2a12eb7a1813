import { badRequest } from '../errors/errors.ts';
import { API_VERSION, type Resource } from './meta.ts';
import type { TaskDefinition } from './kinds.ts';
import { effectiveTaskDefinition } from './taskdefinition.ts';
import type { Arns } from './arn.ts';

/**
 * Converters between the raw ECS JSON shapes ECS's documents use and berth manifests:
 * - register-task-definition input: `{"family": ..., "containerDefinitions": [...], ...}`
 * - register-daemon-task-definition input: the same with `"daemon": true` hint or
 *   via `toManifest(doc, {daemon: true})` (ECS's managed daemons documentation shows the bare shape)
 * - create-service input (the ECS Developer Guide's service definition): `{"serviceName", "taskDefinition", ...}`
 * - the describe-task-definition output: `{"taskDefinition": {...}}`
 * and back.
 */

type Json = Record<string, unknown>;

const TD_SERVER_FIELDS = ['taskDefinitionArn', 'revision', 'status', 'requiresAttributes', 'registeredAt', 'deregisteredAt', 'registeredBy', 'compatibilities'];

export type EcsShape = 'task-definition' | 'daemon-task-definition' | 'service' | 'describe-task-definition';

/** Which raw ECS shape a parsed document is, if any (berth manifests have apiVersion/kind). */
export function ecsShapeOf(doc: unknown): EcsShape | undefined {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return undefined;
  const d = doc as Json;
  if ('apiVersion' in d || 'kind' in d) return undefined;
  if (d.taskDefinition && typeof d.taskDefinition === 'object') return 'describe-task-definition';
  if ('serviceName' in d) return 'service';
  if ('containerDefinitions' in d && 'family' in d) {
    return d.daemon === true || d.networkMode === 'daemon_bridge' ? 'daemon-task-definition' : 'task-definition';
  }
  return undefined;
}

export const isEcsJson = (doc: unknown): boolean => ecsShapeOf(doc) !== undefined;

/** A raw ECS document as a berth manifest (not yet validated: admission does that). */
export function ecsToManifest(doc: unknown, opts: { daemon?: boolean; shape?: EcsShape } = {}): Resource {
  // a caller that knows the shape says so (the ECS face: a RegisterTaskDefinition input is one
  // whatever members it carries; guessing would read a `kind` or `serviceName` member as another shape)
  let shape = opts.shape ?? ecsShapeOf(doc);
  if (!shape) throw badRequest('not an ECS task definition or service definition document');
  let d = doc as Json;
  if (shape === 'describe-task-definition') {
    d = d.taskDefinition as Json;
    shape = 'task-definition';
  }
  if (shape === 'service') {
    const { serviceName, cluster, ...spec } = d;
    return {
      apiVersion: API_VERSION,
      kind: 'Service',
      metadata: { name: String(serviceName), namespace: typeof cluster === 'string' && cluster ? clusterName(cluster) : 'default' },
      spec: dropEmpty(spec),
    };
  }
  const daemon = opts.daemon || shape === 'daemon-task-definition';
  const spec: Json = {};
  for (const [k, v] of Object.entries(d)) {
    if (k === 'family' || k === 'daemon' || TD_SERVER_FIELDS.includes(k)) continue;
    if (daemon && k === 'networkMode' && v === 'daemon_bridge') continue;
    spec[k] = v;
  }
  return {
    apiVersion: API_VERSION,
    kind: daemon ? 'DaemonTaskDefinition' : 'TaskDefinition',
    metadata: { name: String(d.family) },
    spec,
  };
}

/** A stored task definition in ECS's TaskDefinition shape (describe/register output). */
export function taskDefinitionToEcs(td: TaskDefinition | Resource, arns?: Arns): Json {
  const status = (td.status ?? {}) as Json;
  const [family, rev] = td.metadata.name.split(':');
  // ECS answers with its defaults filled in (the stored spec is as the user wrote it)
  const spec = effectiveTaskDefinition(td.spec, td.kind === 'DaemonTaskDefinition') as unknown as Json;
  const out: Json = {
    taskDefinitionArn: status.taskDefinitionArn ?? (arns ? arns.taskDefinition(td.metadata.name) : undefined),
    family: status.family ?? family,
    revision: status.revision ?? Number(rev),
    status: status.status ?? 'ACTIVE',
    ...spec,
  };
  if (td.kind === 'DaemonTaskDefinition') out.networkMode = 'daemon_bridge';
  if (status.requiresAttributes) out.requiresAttributes = status.requiresAttributes;
  if (status.registeredAt) out.registeredAt = status.registeredAt;
  if (status.deregisteredAt) out.deregisteredAt = status.deregisteredAt;
  return out;
}

/** A berth TaskDefinition manifest back to register-task-definition input. */
export function manifestToEcs(m: Resource): Json {
  if (m.kind === 'Service') {
    return { cluster: m.metadata.namespace ?? 'default', serviceName: m.metadata.name, ...(m.spec as Json) };
  }
  return { family: m.metadata.name.split(':')[0], ...(m.spec as Json) };
}

function clusterName(c: string): string {
  const i = c.lastIndexOf('cluster/');
  return i >= 0 ? c.slice(i + 'cluster/'.length) : c;
}

/** ECS's documented skeletons carry "" and 0 placeholders; an empty string is "not given". */
function dropEmpty(o: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === '' || v === null) continue;
    if (Array.isArray(v)) {
      const items = v.filter((x) => !(x && typeof x === 'object' && Object.values(x).every((y) => y === '' || y === 0)));
      if (items.length) out[k] = items;
      continue;
    }
    out[k] = v;
  }
  return out;
}
