import type { ServerResponse } from 'node:http';
import { isBerthError, type BerthError, type Denial } from '../errors/errors.ts';

/**
 * The AWS JSON 1.1 wire: responses, and THE mapping from berth's error catalog to ECS's
 * `{"__type", "message"}` errors (the AWS SDK turns `__type` into its exception classes).
 */

export const CONTENT_TYPE = 'application/x-amz-json-1.1';
export const TARGET_PREFIX = 'AmazonEC2ContainerServiceV20141113.';

/** An error that exists only on the ECS face (authentication, protocol). */
export class EcsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = type;
  }
}

export const invalidParameter = (message: string) => new EcsError('InvalidParameterException', message);
export const clientException = (message: string) => new EcsError('ClientException', message);

/**
 * A Resource's `doubleValue` is a double on ECS's wire (`0.0`, the ECS Developer Guide's
 * describe-container-instances), which the AWS CLI prints as written: JSON.stringify writes
 * whole numbers without the fraction. Keys are never escaped in JSON.stringify's output, so a
 * string value cannot match.
 */
const wholeDoubles = (text: string) => text.replace(/"doubleValue":(-?\d+)(?=[,}])/g, '"doubleValue":$1.0');

export function sendEcs(res: ServerResponse, requestId: string, status: number, body: unknown) {
  const text = wholeDoubles(JSON.stringify(body ?? {}));
  res.writeHead(status, {
    'Content-Type': CONTENT_TYPE,
    'Content-Length': Buffer.byteLength(text),
    'x-amzn-RequestId': requestId,
  });
  res.end(text);
}

const NOT_FOUND_TYPES: Record<string, string> = {
  clusters: 'ClusterNotFoundException',
  services: 'ServiceNotFoundException',
  daemons: 'DaemonNotFoundException',
  taskdefinitions: 'ClientException',
  daemontaskdefinitions: 'ClientException',
};

const NOT_FOUND_MESSAGES: Record<string, string> = {
  clusters: 'Cluster not found.',
  services: 'Service not found.',
  daemons: 'Daemon not found.',
  taskdefinitions: 'Unable to describe task definition.',
  tasks: 'The referenced task was not found.',
  containerinstances: 'The referenced container instance was not found.',
};

/** A berth Invalid error's message, with field paths as an ECS caller wrote them (no `spec.`). */
function ecsMessage(e: BerthError): string {
  const causes = e.details.causes;
  if (e.reason === 'Invalid' && causes?.length) {
    // admission may give a sentence of its own (e.g. "Unable to find task definition 'x'")
    if (!/ is invalid: /.test(e.message)) return e.message;
    return causes.map((c) => `${c.field.replace(/^spec\./, '').replace(/^metadata\.name$/, 'name')}: ${c.message}`).join('; ');
  }
  return e.message;
}

/**
 * AWS's wording of an authorization failure (IAM's AccessDenied message for identity-based
 * policies): who, which action on which resource, and whether a Deny said so or nothing allowed it.
 */
export function accessDenied(d: Denial): string {
  const what = d.action ? `${d.action} on resource: ${d.resource ?? '*'}` : `this request on resource: ${d.resource ?? '*'}`;
  const why = d.explicit
    ? 'with an explicit deny in an identity-based policy'
    : `because no identity-based policy allows the ${d.action ?? 'requested'} action`;
  return `User: ${d.principal} is not authorized to perform: ${what} ${why}`;
}

export interface WireError {
  status: number;
  type: string;
  message: string;
}

/** THE mapping: any error -> the ECS wire error. Unknown errors are ServerException (500). */
export function toEcsError(err: unknown): WireError {
  if (err instanceof EcsError) return { status: err.status, type: err.type, message: err.message };
  if (!isBerthError(err)) return { status: 500, type: 'ServerException', message: 'An internal error occurred; it has been logged.' };
  const e = err;
  const message = ecsMessage(e);
  const given = e.details.ecsType;
  switch (e.reason) {
    case 'Forbidden':
      return { status: 403, type: given ?? 'AccessDeniedException', message: e.details.denial ? accessDenied(e.details.denial) : message };
    case 'Unauthorized':
      return { status: 400, type: given ?? 'UnrecognizedClientException', message };
    case 'InternalError':
    case 'ServiceUnavailable':
    case 'BadGateway':
    case 'Timeout':
      return { status: 500, type: given ?? 'ServerException', message };
    case 'TooManyRequests':
      return { status: 400, type: given ?? 'ThrottlingException', message };
    case 'Conflict':
      // an optimistic-concurrency conflict that outlived the retries: retryable, like a 5xx
      return given ? { status: 400, type: given, message } : { status: 500, type: 'ServerException', message };
    case 'NotFound': {
      const kind = e.details.kind ?? '';
      const type = given ?? NOT_FOUND_TYPES[kind] ?? 'InvalidParameterException';
      return { status: 400, type, message: NOT_FOUND_MESSAGES[kind] ?? message };
    }
    case 'Invalid': {
      const kind = e.details.kind ?? '';
      const td = kind === 'TaskDefinition' || kind === 'DaemonTaskDefinition';
      return { status: 400, type: given ?? (td ? 'ClientException' : 'InvalidParameterException'), message };
    }
    case 'RequestEntityTooLarge':
      return { status: 400, type: given ?? 'ClientException', message };
    case 'AlreadyExists':
    case 'BadRequest':
    case 'Expired':
    case 'MethodNotAllowed':
    case 'UnsupportedMediaType':
    case 'NotAcceptable':
      return { status: 400, type: given ?? 'InvalidParameterException', message };
  }
  return { status: 400, type: given ?? 'ClientException', message };
}
