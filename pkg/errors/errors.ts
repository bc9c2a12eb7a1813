/**
 * The one error catalog. Every layer throws these; each face (the resource API's
 * Kubernetes `Status`, the ECS API's `__type`, the CLI's message) maps them in exactly one
 * place. `reason` follows Kubernetes' StatusReason; `ecsType` is the AWS SDK exception name.
 */

export interface FieldCause {
  /** dotted field path, e.g. `spec.containerDefinitions[0].memory` */
  field: string;
  message: string;
  /** Kubernetes CauseType, e.g. FieldValueInvalid, FieldValueRequired, FieldValueNotSupported */
  reason?: string;
}

export type Reason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'BadRequest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'RequestEntityTooLarge'
  | 'TooManyRequests'
  | 'Expired'
  | 'MethodNotAllowed'
  | 'UnsupportedMediaType'
  | 'NotAcceptable'
  | 'ServiceUnavailable'
  | 'Timeout'
  | 'InternalError'
  /** a write carried a lease fence (Berth-Lease-Fence) that no longer holds: its sender lost the lease */
  | 'LeaseLost';

const httpStatus: Record<Reason, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Invalid: 422,
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  RequestEntityTooLarge: 413,
  TooManyRequests: 429,
  Expired: 410,
  MethodNotAllowed: 405,
  UnsupportedMediaType: 415,
  NotAcceptable: 406,
  ServiceUnavailable: 503,
  Timeout: 504,
  InternalError: 500,
  LeaseLost: 412,
};

export interface ErrorDetails {
  /** resource kind (plural or Kind) the error is about */
  kind?: string;
  name?: string;
  causes?: FieldCause[];
  /** the AWS SDK exception name to use on the ECS face, when it differs from the default */
  ecsType?: string;
  retryAfterSeconds?: number;
}

export class BerthError extends Error {
  readonly reason: Reason;
  readonly details: ErrorDetails;
  constructor(reason: Reason, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = `BerthError(${reason})`;
    this.reason = reason;
    this.details = details;
  }
  get status(): number {
    return httpStatus[this.reason];
  }
}

export const isBerthError = (e: unknown, reason?: Reason): e is BerthError =>
  e instanceof BerthError && (reason === undefined || e.reason === reason);

// Constructors: one per reason, so call sites read as sentences.
export const notFound = (kind: string, name: string, message?: string, ecsType?: string) =>
  new BerthError('NotFound', message ?? `${kind} "${name}" not found`, { kind, name, ecsType });
export const alreadyExists = (kind: string, name: string, message?: string) =>
  new BerthError('AlreadyExists', message ?? `${kind} "${name}" already exists`, { kind, name });
export const conflict = (kind: string, name: string, message?: string) =>
  new BerthError(
    'Conflict',
    message ??
      `Operation cannot be fulfilled on ${kind} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { kind, name },
  );
export const invalid = (kind: string, name: string, causes: FieldCause[], message?: string) =>
  new BerthError(
    'Invalid',
    message ?? `${kind} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join('; ')}`,
    { kind, name, causes },
  );
export const badRequest = (message: string, ecsType?: string) => new BerthError('BadRequest', message, { ecsType });
export const unauthorized = (message = 'Unauthorized') => new BerthError('Unauthorized', message);
export const forbidden = (message: string) => new BerthError('Forbidden', message);
export const tooLarge = (message: string) => new BerthError('RequestEntityTooLarge', message);
export const tooManyRequests = (message: string, retryAfterSeconds = 1) =>
  new BerthError('TooManyRequests', message, { retryAfterSeconds });
export const expired = (message: string) => new BerthError('Expired', message);
export const internal = (message: string) => new BerthError('InternalError', message);
export const unavailable = (message: string) => new BerthError('ServiceUnavailable', message);
export const leaseLost = (message: string) => new BerthError('LeaseLost', message);

/** Store-level: a watch or list asked for a revision older than the compaction point. */
export class CompactedError extends BerthError {
  readonly compactRevision: number;
  constructor(requested: number, compactRevision: number) {
    super('Expired', `too old resource version: ${requested} (${compactRevision})`);
    this.compactRevision = compactRevision;
  }
}
