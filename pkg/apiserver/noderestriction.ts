import { sameJson } from '../api/validate.ts';
import { forbidden } from '../errors/errors.ts';
import type { KindInfo } from '../api/meta.ts';
import type { Obj, WriteValidator } from './registry.ts';

/**
 * Node restriction, after Kubernetes' NodeRestriction admission plugin
 * (plugin/pkg/admission/noderestriction/admission.go): the node authorizer decides which
 * objects a node identity may touch; this decides, field by field, what it may write in
 * them, against the very object the write's transaction compares (so a task that stopped
 * being bound to the node between the authorization and the write is refused too).
 *
 * A node writes only:
 * - the status of its own container instance, and there only what its agent reports;
 * - the status of the tasks bound to it, and there only what the agent of a task owns;
 * - its own instance's InstanceLease (its heartbeat): create and renew its spec, held by itself.
 * It creates and deletes nothing else, and writes no other spec and no metadata.
 */

/** what the agent writes in its instance's status (heartbeat, versions, logs endpoint: pkg/agent/agent.ts) */
export const NODE_INSTANCE_STATUS_FIELDS: ReadonlySet<string> = new Set(['agentConnected', 'lastHeartbeat', 'versionInfo', 'logs', 'agentUpdateStatus']);

/** what the agent of a task writes in its status (taskStatusFromReport in pkg/agent/agent.ts); taskArn is the server's */
export const NODE_TASK_STATUS_FIELDS: ReadonlySet<string> = new Set([
  'lastStatus',
  'containers',
  'healthStatus',
  'connectivity',
  'connectivityAt',
  'pullStartedAt',
  'pullStoppedAt',
  'startedAt',
  'stoppingAt',
  'stoppedAt',
  'executionStoppedAt',
  'stopCode',
  'stoppedReason',
  'attachments',
  'version',
]);

export interface NodeRef {
  cluster: string;
  instance: string;
}

export type NodeWrite = Parameters<WriteValidator>[0];

/**
 * The first field a node may not write in this change, or undefined when every changed
 * field is allowed. The stored status is read through the kind's schema first, so defaults
 * the write fills in are no change.
 */
function forbiddenChange(kind: KindInfo, prev: Obj, next: Obj, allowed: ReadonlySet<string>): string | undefined {
  if (!sameJson(prev.spec, next.spec)) return 'spec';
  const pm = { ...prev.metadata, resourceVersion: undefined };
  const nm = { ...next.metadata, resourceVersion: undefined };
  if (!sameJson(pm, nm)) return 'metadata';
  const parsed = kind.status.safeParse(prev.status ?? {});
  const ps = (parsed.success ? parsed.data : (prev.status ?? {})) as Record<string, unknown>;
  const ns = (next.status ?? {}) as Record<string, unknown>;
  for (const k of new Set([...Object.keys(ps), ...Object.keys(ns)])) {
    if (!sameJson(ps[k], ns[k]) && !allowed.has(k)) return `status.${k}`;
  }
  return undefined;
}

/**
 * Why a node may not make this write (undefined when it may). Pure, so the rules are
 * table-tested; `nodeRestriction` is the registry's validator built on it.
 */
export function nodeWriteProblem(node: NodeRef, op: Omit<NodeWrite, 'ctx'>): string | undefined {
  const who = `node ${node.cluster}/${node.instance}`;
  if (op.kind.kind === 'InstanceLease') return leaseWriteProblem(node, who, op);
  if (op.verb !== 'update') return `${who} may not ${op.verb} ${op.kind.plural}`;
  if (op.sub !== 'status') return `${who} may write only the status of its container instance and of the tasks bound to it, not the spec of ${op.kind.plural}`;
  const prev = op.prev!;
  const next = op.next!;
  const ns = prev.metadata.namespace;
  switch (op.kind.kind) {
    case 'ContainerInstance': {
      if (ns !== node.cluster || prev.metadata.name !== node.instance) return `${who} may not write container instance ${ns}/${prev.metadata.name}`;
      const bad = forbiddenChange(op.kind, prev, next, NODE_INSTANCE_STATUS_FIELDS);
      const may = [...NODE_INSTANCE_STATUS_FIELDS].map((f) => `status.${f}`).join(', ');
      return bad ? `${who} may not change ${bad} of its container instance (it may write ${may})` : undefined;
    }
    case 'Task': {
      const bound = (prev.spec as { containerInstance?: string } | undefined)?.containerInstance;
      if (ns !== node.cluster || bound !== node.instance) return `${who} may not write the status of task ${ns}/${prev.metadata.name}: it is not bound to this node`;
      const bad = forbiddenChange(op.kind, prev, next, NODE_TASK_STATUS_FIELDS);
      return bad ? `${who} may not change ${bad} of task ${prev.metadata.name} (an agent writes only what it observes of its tasks)` : undefined;
    }
    default:
      return `${who} may not write ${op.kind.plural}`;
  }
}

/** The registry validator: every write by a node identity passes `nodeWriteProblem`. */
export const nodeRestriction: WriteValidator = (op) => {
  const node = op.ctx.node;
  if (!node) return;
  const problem = nodeWriteProblem(node, op);
  if (problem) throw forbidden(problem);
};

/** A node creates and renews the lease of its own instance, held by itself; it deletes none, writes no metadata. */
function leaseWriteProblem(node: NodeRef, who: string, op: Omit<NodeWrite, 'ctx'>): string | undefined {
  if (op.verb === 'delete') return `${who} may not delete instance leases (deregistering its instance removes its lease)`;
  if (op.sub === 'status') return `${who} may not write the status of an instance lease (it is computed)`;
  const next = op.next!;
  const ns = next.metadata.namespace;
  if (ns !== node.cluster || next.metadata.name !== node.instance) return `${who} may create and renew only the lease of its own container instance (${node.cluster}/${node.instance}), not ${ns}/${next.metadata.name}`;
  const holder = (next.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
  if (holder !== node.instance) return `${who} may not change spec.holderIdentity of its lease: it must be its instance id "${node.instance}"`;
  const m = next.metadata as Record<string, unknown>;
  if (op.verb === 'create') {
    for (const f of ['labels', 'annotations', 'ownerReferences', 'finalizers']) {
      const v = m[f];
      if (v !== undefined && !(Array.isArray(v) ? v.length === 0 : Object.keys(v as object).length === 0)) return `${who} may not set metadata.${f} of its lease`;
    }
    return undefined;
  }
  const prev = op.prev!;
  if (!sameJson({ ...prev.metadata, resourceVersion: undefined }, { ...next.metadata, resourceVersion: undefined })) return `${who} may not change the metadata of its lease`;
  return undefined;
}
