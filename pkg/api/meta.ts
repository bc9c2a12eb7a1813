import { z } from 'zod';
import { isUnsafeKey } from './safepath.ts';

import type { API_VERSION, KindNames } from './names.ts';

export { API_VERSION, GROUP, NOMINATED_ANNOTATION, VERSION } from './names.ts';
/** The namespace that needs no cluster: the controllers' leader-election leases live here. */
export const SYSTEM_NAMESPACE = 'berth-system';

/** ECS names: 1-255 letters, digits, hyphens and underscores. */
export const NAME_RE = /^[A-Za-z0-9_-]{1,255}$/;
export const ecsName = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .regex(NAME_RE, { error: `${what} must be 1-255 letters, digits, hyphens (-) and underscores (_)` });

/** a label or annotation key: never one that reaches a prototype (S1) */
const MetaKey = z.string().refine((k) => !isUnsafeKey(k), { error: 'the keys __proto__, constructor and prototype are not allowed' });

export const OwnerReference = z.strictObject({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: z.boolean().optional(),
  blockOwnerDeletion: z.boolean().optional(),
});
export type OwnerReference = z.infer<typeof OwnerReference>;

/**
 * Kubernetes ObjectMeta, the subset berth keeps. Server-set fields (uid, resourceVersion,
 * generation, creationTimestamp, deletionTimestamp) are accepted on input and overwritten.
 */
export const ObjectMeta = z.strictObject({
  name: z.string().optional(),
  generateName: z.string().optional(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().int().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  deletionGracePeriodSeconds: z.number().int().optional(),
  labels: z.record(MetaKey, z.string()).optional(),
  annotations: z.record(MetaKey, z.string()).optional(),
  ownerReferences: z.array(OwnerReference).optional(),
  finalizers: z.array(z.string()).optional(),
  managedFields: z.array(z.unknown()).optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMeta>;

/** A condition, as Kubernetes API conventions define it. */
export const Condition = z.strictObject({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
  observedGeneration: z.number().int().optional(),
});
export type Condition = z.infer<typeof Condition>;

/** The envelope every stored object has. */
export interface Resource<Spec = unknown, Status = unknown> {
  apiVersion: typeof API_VERSION;
  kind: string;
  metadata: ObjectMeta & { name: string };
  spec: Spec;
  status?: Status;
}

/** A printer column for `kubectl get` tables and CRDs. */
export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  /** 0 = shown by default; 1 = only with -o wide */
  priority?: number;
}

/**
 * What the apiserver, the CRD generator, the clients and the CLI need to know of a kind.
 * pkg/api/kinds.ts holds one of these for every kind.
 */
export interface KindInfo extends KindNames {
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: PrinterColumn[];
  /** field paths usable in field selectors, besides metadata.name and metadata.namespace */
  fieldSelectors: string[];
  /** the spec is stored as the user wrote it (validated, but without the schema's defaults): task definitions */
  specAsWritten?: boolean;
}

/** Store key of an object: /berth/<plural>/<namespace-or-_>/<name> */
export const storeKey = (plural: string, namespace: string | undefined, name: string) =>
  `/berth/${plural}/${namespace ?? '_'}/${name}`;
export const storePrefix = (plural: string, namespace?: string) =>
  namespace === undefined ? `/berth/${plural}/` : `/berth/${plural}/${namespace}/`;

/** The query parameters of a list (and of a watch), as the resource API takes them. */
export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  /** "" (default): the latest state (a consistent read); "0": any state the server has; N: at least as new as N */
  resourceVersion?: string;
  /** how resourceVersion=N is read: NotOlderThan (a state at N or newer) or Exact (the state at N) */
  resourceVersionMatch?: 'NotOlderThan' | 'Exact';
}
