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
  /** a component the apiserver proxies to (an agent's logs) failed or answered something else */
  | 'BadGateway'
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
  BadGateway: 502,
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
  /** Forbidden: why, in a few words, without the who/what prefix (the faces word that themselves) */
  why?: string;
  /**
   * Client-side: the request never left the client (its connection was never established:
   * refused, no route, no such host), so it certainly took no effect. Unset: it may have.
   */
  notSent?: boolean;
  /** Forbidden by the authorizer: what each face words its denial from (AWS's sentence on the ECS face) */
  denial?: Denial;
}

/** An authorization denial, as the authorizer saw it. */
export interface Denial {
  /** the caller as an IAM principal ARN, e.g. `arn:aws:iam::000000000000:user/alice` */
  principal: string;
  /** the IAM action asked for, e.g. `ecs:RunTask` (absent for non-resource paths) */
  action?: string;
  /** the resource the denial is about (an ARN, or `*`) */
  resource?: string;
  /** an explicit Deny in a policy (else: nothing allowed it) */
  explicit: boolean;
}

const BRAND = Symbol.for('berth.dev/BerthError');

export class BerthError extends Error {
  /**
   * `instanceof` by brand, not by prototype: the same module loaded twice (a test runner's
   * CommonJS copy beside the ESM one a dynamic import loads, as mocha with tsx does) still makes
   * one kind of error, so a command module imported lazily recognises the client's errors.
   */
  static override [Symbol.hasInstance](x: unknown): boolean {
    // a subclass (CompactedError, ...) is checked by its prototype as usual
    if (this !== BerthError) return Function.prototype[Symbol.hasInstance].call(this, x);
    return typeof x === 'object' && x !== null && (x as { [BRAND]?: boolean })[BRAND] === true;
  }
  readonly [BRAND] = true;
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
export const forbidden = (message: string, details: ErrorDetails = {}) => new BerthError('Forbidden', message, details);
export const tooLarge = (message: string) => new BerthError('RequestEntityTooLarge', message);
export const tooManyRequests = (message: string, retryAfterSeconds = 1) =>
  new BerthError('TooManyRequests', message, { retryAfterSeconds });
export const expired = (message: string) => new BerthError('Expired', message);
export const internal = (message: string) => new BerthError('InternalError', message);
export const unavailable = (message: string) => new BerthError('ServiceUnavailable', message);
export const badGateway = (message: string) => new BerthError('BadGateway', message);
export const timeout = (message: string) => new BerthError('Timeout', message);
export const leaseLost = (message: string) => new BerthError('LeaseLost', message);

/** Store-level: a watch or list asked for a revision older than the compaction point. */
export class CompactedError extends BerthError {
  readonly compactRevision: number;
  constructor(requested: number, compactRevision: number) {
    super('Expired', `too old resource version: ${requested} (${compactRevision})`);
    this.compactRevision = compactRevision;
  }
}

/**
 * A read asked for a revision the store (or the watch cache, after waiting) does not have
 * yet: Kubernetes' "Too large resource version" (504, reason Timeout, cause
 * ResourceVersionTooLarge). The client retries after a second, or reads without a version.
 */
export class TooLargeResourceVersionError extends BerthError {
  readonly requested: number;
  readonly current: number;
  constructor(requested: number, current: number) {
    super('Timeout', `Too large resource version: ${requested}, current: ${current}`, {
      causes: [{ field: 'metadata.resourceVersion', reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
      retryAfterSeconds: 1,
    });
    this.requested = requested;
    this.current = current;
  }
}

/** The watch cache is not synced with the store (starting, or relisting after its watch ended): 429, retry. */
export const storageInitializing = (why: string) => tooManyRequests(`storage is (re)initializing: ${why}`, 1);

/**
 * The watch cache did not catch up with the store's current revision within the bounded
 * wait of a consistent read (504). The registry then reads the store itself.
 */
export class StaleCacheError extends BerthError {
  constructor(cacheRevision: number, storeRevision: number, waitedMs: number) {
    super('Timeout', `the watch cache did not catch up with the store within ${waitedMs} ms (at revision ${cacheRevision}, the store at ${storeRevision})`, {
      retryAfterSeconds: 1,
    });
  }
}

/**
 * Agent-level: a container-runtime (Docker) call failed. `errorName` is the ECS agent's name
 * for it (DockerTimeoutError, CannotPullContainerError, CannotCreateContainerError,
 * CannotStartContainerError, CannotStopContainerError, CannotInspectContainerError, ...);
 * `uncertain` says the call may have happened anyway (a timeout, a dropped connection), so
 * the caller reconciles instead of assuming it failed.
 */
export class RuntimeError extends BerthError {
  readonly errorName: string;
  readonly statusCode?: number;
  readonly uncertain: boolean;
  /** a failure that stops the whole task (a pull with ECS_IMAGE_PULL_BEHAVIOR always/once) */
  readonly stopsTask: boolean;
  constructor(errorName: string, message: string, o: { statusCode?: number; uncertain?: boolean; stopsTask?: boolean; kind?: string; name?: string } = {}) {
    super(o.statusCode === 404 ? 'NotFound' : errorName === 'DockerTimeoutError' ? 'Timeout' : 'ServiceUnavailable', `${errorName}: ${message}`, { kind: o.kind, name: o.name });
    this.errorName = errorName;
    this.statusCode = o.statusCode;
    this.uncertain = o.uncertain ?? errorName === 'DockerTimeoutError';
    this.stopsTask = o.stopsTask ?? false;
  }
}

export const isRuntimeError = (e: unknown, errorName?: string): e is RuntimeError =>
  e instanceof RuntimeError && (errorName === undefined || e.errorName === errorName);
