import { BerthError, isBerthError } from '../errors/errors.ts';
import { GROUP } from '../api/meta.ts';

/** A Kubernetes `Status` object (metav1.Status). */
export interface K8sStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message: string;
  reason: string;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    causes?: Array<{ reason?: string; message: string; field?: string }>;
    retryAfterSeconds?: number;
  };
  code: number;
}

/**
 * THE mapping from the error catalog to the resource API's wire form. Anything that is not
 * a BerthError is an internal error: logged by the caller, reported as 500 without detail.
 */
export function toStatus(err: unknown): K8sStatus {
  const e: BerthError = isBerthError(err) ? err : new BerthError('InternalError', 'an internal error occurred');
  const d = e.details;
  const details: K8sStatus['details'] = {};
  if (d.name !== undefined) details.name = d.name;
  if (d.kind !== undefined) {
    details.kind = d.kind;
    details.group = GROUP;
  }
  if (d.causes?.length) details.causes = d.causes.map((c) => ({ reason: c.reason ?? 'FieldValueInvalid', message: c.message, field: c.field }));
  if (d.retryAfterSeconds !== undefined) details.retryAfterSeconds = d.retryAfterSeconds;
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: e.message,
    reason: e.reason === 'Expired' ? 'Expired' : e.reason,
    ...(Object.keys(details).length ? { details } : {}),
    code: e.status,
  };
}

export const successStatus = (message = ''): K8sStatus => ({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Success',
  message,
  reason: '',
  code: 200,
});
