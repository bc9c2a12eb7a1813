import type { KindInfo } from '../api/meta.ts';
import { badRequest, invalid } from '../errors/errors.ts';
import { jsonPatch, mergePatch } from './patch.ts';
import type { Obj } from './watchcache.ts';

/**
 * The `scale` subresource (autoscaling/v1 Scale) of a kind with a replica count, as
 * kube-apiserver serves it for a CRD that declares `subresources.scale`: `kubectl scale`
 * reads and writes it, and the replica count lands at the kind's specReplicasPath.
 */
export interface Scale {
  apiVersion: 'autoscaling/v1';
  kind: 'Scale';
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; creationTimestamp?: string };
  spec: { replicas: number };
  status: { replicas: number };
}

const segments = (path: string) => path.replace(/^\./, '').split('.');

function at(o: unknown, path: string): unknown {
  let v = o as Record<string, unknown> | undefined;
  for (const k of segments(path)) v = v && typeof v === 'object' ? (v[k] as Record<string, unknown> | undefined) : undefined;
  return v;
}

/** The Scale of an object. */
export function scaleOf(kind: KindInfo, o: Obj): Scale {
  const paths = kind.scale!;
  const m = o.metadata as Record<string, unknown>;
  const count = (v: unknown) => (typeof v === 'number' ? v : 0);
  return {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: {
      name: o.metadata.name,
      ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}),
      ...(m.uid ? { uid: m.uid as string } : {}),
      ...(o.metadata.resourceVersion ? { resourceVersion: o.metadata.resourceVersion } : {}),
      ...(m.creationTimestamp ? { creationTimestamp: m.creationTimestamp as string } : {}),
    },
    spec: { replicas: count(at(o, paths.specReplicasPath)) },
    status: { replicas: count(at(o, paths.statusReplicasPath)) },
  };
}

/**
 * What a Scale asks for: its replica count (a whole number, 0 or more) and the
 * resourceVersion it was read at, if it names one (a precondition, as a PUT of the Scale).
 */
export function scaleRequest(kind: KindInfo, name: string, body: unknown): { replicas: number; resourceVersion?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body of a scale request must be an autoscaling/v1 Scale object');
  const b = body as { kind?: unknown; metadata?: { resourceVersion?: unknown }; spec?: { replicas?: unknown } };
  if (b.kind !== undefined && b.kind !== 'Scale') throw badRequest(`kind: a scale request sends a Scale, not ${JSON.stringify(b.kind)}`);
  const replicas = b.spec?.replicas;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
    throw invalid('Scale', name, [{ field: 'spec.replicas', message: `must be a whole number, 0 or more (${kind.plural} take it as ${kind.scale!.specReplicasPath.slice(1)})` }]);
  }
  const rv = b.metadata?.resourceVersion;
  return { replicas, ...(typeof rv === 'string' && rv !== '' ? { resourceVersion: rv } : {}) };
}

/** A PATCH of the Scale, applied to the current one. */
export function patchScale(cur: Scale, type: 'merge' | 'json', patch: unknown): unknown {
  const base = structuredClone(cur) as unknown as Obj;
  delete (base.metadata as { resourceVersion?: string }).resourceVersion;
  return type === 'merge' ? mergePatch(base, patch) : jsonPatch(base, patch);
}

/** The merge patch of the object that sets its replica count (with the precondition, if any). */
export function replicasPatch(kind: KindInfo, replicas: number, resourceVersion?: string): Record<string, unknown> {
  const patch: Record<string, unknown> = resourceVersion ? { metadata: { resourceVersion } } : {};
  const keys = segments(kind.scale!.specReplicasPath);
  let cur = patch;
  for (const k of keys.slice(0, -1)) cur = (cur[k] = {}) as Record<string, unknown>;
  cur[keys[keys.length - 1]] = replicas;
  return patch;
}
