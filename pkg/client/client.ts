import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname } from 'node:path';
import type { ListOptions } from '../api/meta.ts';
import type { KindName } from '../api/kinds.ts';
import { API_VERSION, GROUP, VERSION, namesOf, type KindNames } from '../api/names.ts';
import { BerthError, isBerthError, type Reason } from '../errors/errors.ts';

export type { ListOptions };

/**
 * The typed REST client every berth component (controllers, agents, the CLI, the ECS
 * front door's tests) uses to talk to the apiserver. Keep-alive connections, the
 * apiserver's Kubernetes `Status` errors turned back into BerthErrors (so callers test
 * `isBerthError(e, 'Conflict')`), watch as an async stream of events, and the
 * read-modify-write loop (`guaranteedUpdate`) that optimistic concurrency needs.
 */

export interface ClientConfig {
  /** http(s)://host:port */
  server: string;
  token?: string;
  /** PEM of the CA that signed the server's certificate */
  ca?: string | Buffer;
  insecureSkipTlsVerify?: boolean;
  userAgent?: string;
  /** per-request timeout for non-watch calls (ms, default 30 s) */
  timeoutMs?: number;
  /** concurrent connections (default 64) */
  maxSockets?: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyObj = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: any }; spec?: any; status?: any };

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
  continue?: string;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export type KindRef = KindName | KindNames | string;

const kindInfo = (k: KindRef): KindNames => {
  if (typeof k !== 'string') return k;
  const info = namesOf(k);
  if (!info) throw new BerthError('BadRequest', `unknown kind "${k}"`);
  return info;
};

const reasons = new Set<Reason>([
  'NotFound', 'AlreadyExists', 'Conflict', 'Invalid', 'BadRequest', 'Unauthorized', 'Forbidden', 'RequestEntityTooLarge',
  'TooManyRequests', 'Expired', 'MethodNotAllowed', 'UnsupportedMediaType', 'NotAcceptable', 'ServiceUnavailable', 'BadGateway', 'Timeout', 'InternalError', 'LeaseLost',
]);
const byCode: Record<number, Reason> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 410: 'Expired', 412: 'LeaseLost', 413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests', 502: 'BadGateway', 503: 'ServiceUnavailable', 504: 'Timeout',
};

/**
 * What a scoped client adds to every request it sends: an AbortSignal (a controller's
 * leadership term: when it ends, requests in flight are aborted), headers (the term's lease
 * fence), and a check run before every write that may refuse to send it.
 */
export interface RequestScope {
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** runs before every request that is not a GET; throws to refuse sending it */
  beforeWrite?: (method: string, path: string) => void;
}

/** An aborted request (its scope's signal fired): the caller stopped wanting the answer. */
export const isAbort = (e: unknown) => (e as Error | undefined)?.name === 'AbortError';

/** A Kubernetes Status body (or anything else an error response carried) as a BerthError. */
export function statusError(code: number, body: unknown): BerthError {
  const s = (body ?? {}) as { reason?: string; message?: string; details?: { kind?: string; name?: string; causes?: Array<{ field?: string; message?: string; reason?: string }>; retryAfterSeconds?: number } };
  const reason: Reason = s.reason && reasons.has(s.reason as Reason) ? (s.reason as Reason) : (byCode[code] ?? 'InternalError');
  const message = s.message ?? (typeof body === 'string' && body ? body : `the server answered ${code}`);
  return new BerthError(reason, message, {
    kind: s.details?.kind,
    name: s.details?.name,
    causes: s.details?.causes?.map((c) => ({ field: c.field ?? '', message: c.message ?? '', reason: c.reason })),
    retryAfterSeconds: s.details?.retryAfterSeconds,
  });
}

export class Client {
  readonly server: string;
  private readonly agent: http.Agent;
  private readonly streamAgent: http.Agent;
  private readonly mod: typeof http | typeof https;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly owner: boolean;

  constructor(
    readonly config: ClientConfig,
    /** a scoped client shares its parent's connection pools (see `scoped`) */
    shared?: { agent: http.Agent; streamAgent: http.Agent },
    private readonly scope: RequestScope = {},
  ) {
    this.server = config.server.replace(/\/+$/, '');
    const url = new URL(this.server);
    const tls = url.protocol === 'https:';
    this.mod = tls ? https : http;
    const agentOpts = { keepAlive: true, maxSockets: config.maxSockets ?? 64, ...(tls ? { ca: config.ca, rejectUnauthorized: !config.insecureSkipTlsVerify } : {}) };
    this.owner = !shared;
    this.agent = shared?.agent ?? (tls ? new https.Agent(agentOpts) : new http.Agent(agentOpts));
    // watches hold their connection for minutes: they must not starve the request pool
    this.streamAgent = shared?.streamAgent ?? (tls ? new https.Agent({ ...agentOpts, maxSockets: Infinity }) : new http.Agent({ ...agentOpts, maxSockets: Infinity }));
    this.headers = { Accept: 'application/json', 'User-Agent': config.userAgent ?? 'berth-client/0.1', ...scope.headers };
    if (config.token) this.headers.Authorization = `Bearer ${config.token}`;
    this.timeoutMs = config.timeoutMs ?? 30_000;
  }

  /**
   * The same client (same connections) with a scope on every request: an AbortSignal,
   * extra headers, a check before each write. Scopes nest: the inner one adds to the outer.
   */
  scoped(scope: RequestScope): Client {
    const outer = this.scope;
    const signal = outer.signal && scope.signal ? AbortSignal.any([outer.signal, scope.signal]) : (scope.signal ?? outer.signal);
    if (signal) setMaxListeners(0, signal); // shared by every request of the scope
    const beforeWrite = outer.beforeWrite && scope.beforeWrite ? (m: string, p: string) => (outer.beforeWrite!(m, p), scope.beforeWrite!(m, p)) : (scope.beforeWrite ?? outer.beforeWrite);
    return new Client(this.config, { agent: this.agent, streamAgent: this.streamAgent }, { signal, beforeWrite, headers: { ...outer.headers, ...scope.headers } });
  }

  /** The same server with another credential (the agent swaps its bootstrap token for its node token). */
  withToken(token: string): Client {
    return new Client({ ...this.config, token });
  }

  /** Closes the connection pools (a scoped client leaves its parent's open). */
  close(): void {
    if (!this.owner) return;
    this.agent.destroy();
    this.streamAgent.destroy();
  }

  /**
   * Closes the idle connections this client keeps alive (requests in flight keep theirs); it
   * stays usable: a later request connects anew. For a credential used once: the agent's
   * bootstrap token, whose idle keep-alive connection would count against that token's
   * connections at the apiserver until the server's idle timeout, while the fleet's other
   * hosts register.
   */
  releaseIdleConnections(): void {
    for (const pool of [this.agent, this.streamAgent]) {
      for (const list of Object.values(pool.freeSockets)) for (const sock of list ?? []) sock.destroy();
    }
  }

  /** The path of a kind's collection or of one object. */
  path(kind: KindRef, ns: string | undefined, name?: string, sub?: 'status'): string {
    const k = kindInfo(kind);
    let p = `/apis/${GROUP}/${VERSION}`;
    if (k.namespaced) {
      if (!ns) throw new BerthError('BadRequest', `${k.plural} live in a cluster: give the cluster (namespace)`);
      p += `/namespaces/${encodeURIComponent(ns)}`;
    }
    p += `/${k.plural}`;
    if (name !== undefined) p += `/${encodeURIComponent(name)}`;
    if (sub) p += `/${sub}`;
    return p;
  }

  /** One request; JSON in and out; a non-2xx answer throws its Status as a BerthError. */
  async request<T = unknown>(method: string, path: string, body?: unknown, opts: { query?: Record<string, string | number | boolean | undefined>; contentType?: string; accept?: string } = {}): Promise<T> {
    const qs = query(opts.query);
    const { signal, beforeWrite } = this.scope;
    signal?.throwIfAborted();
    if (method !== 'GET') beforeWrite?.(method, path);
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = { ...this.headers };
    if (opts.accept) headers.Accept = opts.accept;
    if (payload !== undefined) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }
    const { code, text } = await new Promise<{ code: number; text: string }>((resolve, reject) => {
      const req = this.mod.request(this.server + path + qs, { method, headers, agent: this.agent, timeout: this.timeoutMs, signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ code: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      // Until its socket connects, no byte of the request has left: a failure then (refused,
      // no route, no such host, a connect that timed out) certainly wrote nothing (R3-5).
      let connected = false;
      req.on('socket', (s) => {
        if (!s.connecting) connected = true; // a kept-alive socket, connected already
        else s.once('connect', () => (connected = true));
      });
      req.on('timeout', () => req.destroy(new BerthError('Timeout', `${method} ${path}: no answer from ${this.server} within ${this.timeoutMs} ms`, { notSent: !connected })));
      req.on('error', (e) =>
        reject(isBerthError(e) || isAbort(e) ? e : new BerthError('ServiceUnavailable', `cannot reach the apiserver at ${this.server}: ${(e as Error).message}`, { notSent: !connected })),
      );
      if (payload !== undefined) req.write(payload);
      req.end();
    });
    let parsed: unknown = text;
    if (text && /^\s*[[{]/.test(text)) {
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep the text */
      }
    }
    if (code < 200 || code >= 300) throw statusError(code, parsed);
    return parsed as T;
  }

  get<T extends AnyObj = AnyObj>(kind: KindRef, ns: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', this.path(kind, ns, name));
  }

  /** get, but undefined for NotFound */
  async tryGet<T extends AnyObj = AnyObj>(kind: KindRef, ns: string | undefined, name: string): Promise<T | undefined> {
    try {
      return await this.get<T>(kind, ns, name);
    } catch (e) {
      if (isBerthError(e, 'NotFound')) return undefined;
      throw e;
    }
  }

  async list<T extends AnyObj = AnyObj>(kind: KindRef, ns: string | undefined, opts: ListOptions = {}): Promise<ListResult<T>> {
    const k = kindInfo(kind);
    const path = k.namespaced && !ns ? `/apis/${GROUP}/${VERSION}/${k.plural}` : this.path(k, ns);
    const r = await this.request<{ items: T[]; metadata: { resourceVersion: string; continue?: string } }>('GET', path, undefined, { query: { ...opts } });
    const kindName = k.kind;
    for (const it of r.items) {
      it.apiVersion ??= API_VERSION;
      it.kind ??= kindName;
    }
    return { items: r.items, resourceVersion: r.metadata.resourceVersion, continue: r.metadata.continue || undefined };
  }

  /**
   * Every page of a list, at one consistent revision: the server pins page 1's revision in
   * the continue token. resourceVersion/resourceVersionMatch choose page 1's state; later
   * pages carry only the token (the server refuses both together).
   */
  async listAll<T extends AnyObj = AnyObj>(kind: KindRef, ns: string | undefined, opts: ListOptions = {}): Promise<ListResult<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = '';
    const { resourceVersion, resourceVersionMatch, ...rest } = opts;
    do {
      const page = await this.list<T>(kind, ns, { ...rest, limit: opts.limit ?? 2000, ...(cont ? { continue: cont } : { resourceVersion, resourceVersionMatch }) });
      items.push(...page.items);
      rv ||= page.resourceVersion;
      cont = page.continue;
    } while (cont);
    return { items, resourceVersion: rv };
  }

  create<T extends AnyObj>(obj: T): Promise<T> {
    return this.request<T>('POST', this.path(obj.kind ?? '', obj.metadata.namespace), { apiVersion: API_VERSION, ...obj });
  }

  /** PUT: fails with Conflict when `metadata.resourceVersion` is stale. */
  update<T extends AnyObj>(obj: T): Promise<T> {
    return this.request<T>('PUT', this.path(obj.kind ?? '', obj.metadata.namespace, obj.metadata.name), obj);
  }

  updateStatus<T extends AnyObj>(obj: T): Promise<T> {
    return this.request<T>('PUT', this.path(obj.kind ?? '', obj.metadata.namespace, obj.metadata.name, 'status'), obj);
  }

  /** JSON merge patch by default; `json` for RFC 6902. */
  patch<T extends AnyObj = AnyObj>(kind: KindRef, ns: string | undefined, name: string, patch: unknown, opts: { type?: 'merge' | 'json'; status?: boolean } = {}): Promise<T> {
    const ct = opts.type === 'json' ? 'application/json-patch+json' : 'application/merge-patch+json';
    return this.request<T>('PATCH', this.path(kind, ns, name, opts.status ? 'status' : undefined), patch, { contentType: ct });
  }

  delete(kind: KindRef, ns: string | undefined, name: string, opts: { resourceVersion?: string } = {}): Promise<unknown> {
    const body = opts.resourceVersion ? { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: opts.resourceVersion } } : undefined;
    return this.request('DELETE', this.path(kind, ns, name), body);
  }

  /**
   * Read, change, write; on Conflict read again and re-apply, like client-go's
   * RetryOnConflict. `mutate` returns undefined when there is nothing to write.
   */
  async guaranteedUpdate<T extends AnyObj>(kind: KindRef, ns: string | undefined, name: string, mutate: (cur: T) => T | undefined | Promise<T | undefined>, opts: { status?: boolean; attempts?: number; current?: T } = {}): Promise<T | undefined> {
    let cur = opts.current;
    for (let i = 0; i < (opts.attempts ?? 8); i++) {
      cur ??= await this.get<T>(kind, ns, name);
      const next = await mutate(structuredClone(cur));
      if (next === undefined) return cur;
      try {
        return await (opts.status ? this.updateStatus(next) : this.update(next));
      } catch (e) {
        if (!isBerthError(e, 'Conflict')) throw e;
        cur = undefined;
      }
    }
    throw new BerthError('Conflict', `${kindInfo(kind).singular} "${name}" kept changing under ${opts.attempts ?? 8} attempts to update it`);
  }

  /** POST /namespaces/NS/bindings: many (task, instance) bindings in one store txn. */
  bind(ns: string, bindings: Array<{ task: string; containerInstance: string; hostPorts?: unknown[] }>): Promise<{ results: BindResult[] }> {
    return this.request('POST', `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/bindings`, { bindings });
  }

  /**
   * POST /namespaces/NS/taskstatuses: merge patches of many tasks' status in one request (and
   * as few store txns as fit). Each result has its own outcome: `error` is what a single
   * status PATCH of that task would have thrown. An apiserver without the route throws
   * NotFound naming `taskstatuses` (details.name): the caller patches one by one then.
   */
  async patchTaskStatuses(ns: string, statuses: Array<{ task: string; status: Record<string, unknown> }>): Promise<Array<{ task: string; resourceVersion?: string; error?: BerthError }>> {
    const r = await this.request<{ results: Array<{ task: string; code: number; resourceVersion?: string; reason?: string; message?: string }> }>(
      'POST',
      `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/taskstatuses`,
      { statuses },
    );
    return r.results.map((x) => (x.code >= 200 && x.code < 300 ? { task: x.task, resourceVersion: x.resourceVersion } : { task: x.task, error: statusError(x.code, { reason: x.reason, message: x.message }) }));
  }

  /** A streamed GET (task logs): the body as it arrives; a non-2xx answer throws its Status. */
  stream(path: string, query: Record<string, string | number | boolean | undefined> = {}, signal?: AbortSignal): Promise<http.IncomingMessage> {
    return this.open(path + query_(query), { Accept: '*/*' }, signal);
  }

  /** Opens a long-lived GET on the stream pool; a non-2xx answer is read and thrown as its Status. */
  private async open(pathAndQuery: string, headers: Record<string, string>, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = this.mod.request(this.server + pathAndQuery, { method: 'GET', headers: { ...this.headers, ...headers }, agent: this.streamAgent, signal }, resolve);
      req.on('error', (e) => reject(e.name === 'AbortError' ? e : new BerthError('ServiceUnavailable', `cannot reach the apiserver at ${this.server}: ${e.message}`)));
      req.end();
    });
    if ((res.statusCode ?? 0) >= 300) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* text */
      }
      throw statusError(res.statusCode ?? 0, body);
    }
    return res;
  }

  /**
   * A watch stream from `resourceVersion`. Ends when the server closes it or `signal`
   * aborts; a 410 arrives as an ERROR event carrying a Status with code 410 (or as a thrown
   * BerthError('Expired') when the server refuses the watch up front).
   */
  async *watch<T extends AnyObj = AnyObj>(kind: KindRef, ns: string | undefined, opts: ListOptions & { signal?: AbortSignal; timeoutSeconds?: number } = {}): AsyncGenerator<WatchEvent<T>> {
    const k = kindInfo(kind);
    const path = k.namespaced && !ns ? `/apis/${GROUP}/${VERSION}/${k.plural}` : this.path(k, ns);
    const { signal, timeoutSeconds, ...q } = opts;
    const qs = query({ ...q, watch: 1, allowWatchBookmarks: true, timeoutSeconds });
    const res = await this.open(path + qs, {}, signal);
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as WatchEvent<T>;
        if (ev.object && ev.type !== 'ERROR' && ev.type !== 'BOOKMARK') {
          ev.object.apiVersion ??= API_VERSION;
          ev.object.kind ??= k.kind;
        }
        yield ev;
      }
    } catch (e) {
      if ((e as Error).name === 'AbortError' || signal?.aborted) return;
      throw e;
    } finally {
      res.destroy();
    }
  }
}

export interface BindResult {
  task: string;
  containerInstance: string;
  bound: boolean;
  hostPorts?: Array<{ containerName: string; containerPort: number; protocol: 'tcp' | 'udp'; hostPort: number }>;
  reason?: string;
  detail?: string;
  resourceVersion?: string;
}

const query_ = (q: Record<string, string | number | boolean | undefined>) => query(q);

function query(q: Record<string, string | number | boolean | undefined> | undefined): string {
  if (!q) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** A client from a kubeconfig file (berth's own `~/.berth/config` or any kubectl one). */
export async function clientFromKubeconfig(opts: { path?: string; context?: string; server?: string; token?: string } = {}): Promise<{ client: Client; namespace: string }> {
  if (opts.path) {
    // one file (what berth passes): read by berth's own small reader, a second quicker than the package
    const { resolveKubeconfig } = await import('./kubeconfig.ts');
    const t = resolveKubeconfig(readFileSync(opts.path, 'utf8'), dirname(opts.path), { context: opts.context, server: opts.server, readFile: (p) => readFileSync(p, 'utf8') });
    return { client: new Client({ server: t.server, token: opts.token ?? t.token, ca: t.ca, insecureSkipTlsVerify: t.insecureSkipTlsVerify }), namespace: t.namespace };
  }
  // $KUBECONFIG (several files merged) or ~/.kube/config: as kubectl merges them
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  if (opts.context) kc.setCurrentContext(opts.context);
  const ctx = kc.getContextObject(kc.getCurrentContext());
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  const server = opts.server ?? cluster?.server;
  if (!server) throw new BerthError('BadRequest', `the kubeconfig has no server for context "${kc.getCurrentContext()}"`);
  let ca: string | undefined;
  if (cluster?.caData) ca = Buffer.from(cluster.caData, 'base64').toString('utf8');
  else if (cluster?.caFile) ca = readFileSync(cluster.caFile, 'utf8');
  const token = opts.token ?? user?.token ?? (user?.authProvider as { config?: { 'access-token'?: string } } | undefined)?.config?.['access-token'];
  return { client: new Client({ server, token, ca, insecureSkipTlsVerify: cluster?.skipTLSVerify }), namespace: ctx?.namespace ?? 'default' };
}
