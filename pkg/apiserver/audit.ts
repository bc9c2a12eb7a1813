import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { sourceAddressOf } from './listener.ts';
import type { IncomingMessage } from 'node:http';
import { badRequest } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';
import type { Identity, RequestAttributes } from './auth.ts';

/**
 * The audit log (`--audit-log FILE`): one JSON line per request that changes state (on the
 * resource API POST, PUT, PATCH and DELETE; on the ECS face every action but Describe* and
 * List*) and per denied request (any verb: 401 and 403, and the ECS face's authentication
 * and authorization errors). A line says when, which request (the `Audit-Id` header of a
 * resource-API response, the `x-amzn-RequestId` of an ECS one), who (user and groups), from
 * where (source address, user agent), what (verb and resource, or the ECS action and the
 * ARNs it names) and how it ended (HTTP code, and for denials the message). It never holds a
 * token, a signature, a secret or a request body: nothing from the request but its method,
 * path parts and user agent goes in.
 *
 * Lines go to an append stream (the request path never waits for the disk); if the disk
 * falls far behind, lines beyond a bound are dropped, counted and reported in the server's
 * log rather than growing memory without end. `close()` flushes.
 */

export interface AuditLine {
  time: string;
  requestId: string;
  /** `k8s`: the resource API; `ecs`: the ECS API */
  face: 'k8s' | 'ecs';
  user?: string;
  groups?: string[];
  sourceAddress: string;
  userAgent?: string;
  /** the resource API's verb (get, list, watch, create, update, patch, delete) */
  verb?: string;
  /** the resource API's object: plural, cluster (namespace), name, subresource */
  resource?: { plural?: string; namespace?: string; name?: string; subresource?: string };
  /** a non-resource path (the resource API) */
  path?: string;
  /** the ECS face: the IAM action (`ecs:RunTask`) and the ARNs it names */
  action?: string;
  arns?: string[];
  code: number;
  /** the ECS face's error type (`AccessDeniedException`, ...) */
  error?: string;
  /** denied requests: the message the caller got */
  message?: string;
  dryRun?: true;
  /** a batch request (taskstatuses): each item's object name and the code it was answered */
  items?: Array<{ name: string; code: number }>;
}

/** What a request fills in while it is served; the server writes it out when the response ends. */
export interface AuditRecord {
  received: Date;
  requestId: string;
  face: 'k8s' | 'ecs';
  identity?: Identity;
  /** the last authorization attributes asked for (the resource API: the request's verb and object) */
  attrs?: Omit<RequestAttributes, 'path'>;
  /** the ECS face: the operation's IAM action and the ARNs it names */
  iam?: { action: string; resources: string[] };
  /** the name of a created object (known after the create) */
  createdName?: string;
  /** a state-changing request (always logged) */
  mutating: boolean;
  /** an authentication or authorization failure (always logged) */
  denied?: boolean;
  errorType?: string;
  message?: string;
  dryRun?: boolean;
  /** a batch request: each item's outcome */
  items?: Array<{ name: string; code: number }>;
}

/** The request's source address: the client's own, behind a trusted balancer that sends the PROXY protocol. */
export function sourceAddress(req: IncomingMessage): string {
  return req.socket ? sourceAddressOf(req.socket) : '';
}

const MAX_UA = 256;

export function auditLine(rec: AuditRecord, req: IncomingMessage, code: number, path: string): AuditLine {
  const a = rec.attrs;
  const ua = req.headers['user-agent'];
  let what: Pick<AuditLine, 'verb' | 'resource' | 'path' | 'action' | 'arns'> = {};
  if (rec.face === 'ecs') {
    const iam = rec.iam ?? a?.action;
    if (iam) what = { action: iam.action, arns: iam.resources };
  } else if (a?.resource) {
    const name = a.name ?? rec.createdName;
    const resource: AuditLine['resource'] = { plural: a.resource };
    if (a.namespace) resource.namespace = a.namespace;
    if (name) resource.name = name;
    if (a.subresource) resource.subresource = a.subresource;
    what = { verb: a.verb, resource };
  } else what = { verb: a?.verb ?? methodVerb(req.method), path };
  return {
    time: rec.received.toISOString(),
    requestId: rec.requestId,
    face: rec.face,
    ...(rec.identity ? { user: rec.identity.user, groups: [...rec.identity.groups] } : {}),
    sourceAddress: sourceAddress(req),
    ...(typeof ua === 'string' && ua ? { userAgent: ua.slice(0, MAX_UA) } : {}),
    ...what,
    code,
    ...(rec.errorType ? { error: rec.errorType } : {}),
    ...(rec.denied && rec.message ? { message: rec.message } : {}),
    ...(rec.dryRun ? { dryRun: true as const } : {}),
    ...(rec.items ? { items: rec.items } : {}),
  };
}

const VERB_OF: Record<string, string> = { GET: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
const methodVerb = (m: string | undefined) => VERB_OF[m ?? ''] ?? (m ?? '').toLowerCase();

/** Whether a finished request goes into the audit log. */
export const audited = (rec: AuditRecord, code: number) => rec.mutating || rec.denied === true || code === 401 || code === 403;

/** The audit log's file: an append stream, JSON lines. */
export class AuditLog {
  private readonly stream: WriteStream;
  private dropped = 0;
  private lastWarn = 0;
  private failed = false;

  constructor(
    readonly file: string,
    private readonly log: Logger,
    private readonly maxPendingBytes = 64 * 1024 * 1024,
  ) {
    // opened now, so a path that cannot be written fails the start with its reason
    let fd: number;
    try {
      fd = openSync(file, 'a', 0o600);
    } catch (e) {
      throw badRequest(`audit log ${file}: cannot open it to append (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    this.stream = createWriteStream(file, { fd, flags: 'a' });
    this.stream.on('error', (e) => {
      if (!this.failed) this.log.error({ file, err: e.message }, 'audit log: writing failed; audit lines are being lost');
      this.failed = true;
    });
  }

  write(line: AuditLine) {
    if (this.stream.writableLength > this.maxPendingBytes || this.failed) {
      this.dropped++;
      const now = Date.now();
      if (now - this.lastWarn > 10_000) {
        this.lastWarn = now;
        this.log.error({ file: this.file, dropped: this.dropped }, 'audit log: the disk is not keeping up; audit lines dropped');
      }
      return;
    }
    this.stream.write(JSON.stringify(line) + '\n');
  }

  get droppedLines() {
    return this.dropped;
  }

  /** Flushes what is pending and closes the file. */
  close(): Promise<void> {
    if (this.stream.closed || this.stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.stream.end(() => resolve()));
  }
}
