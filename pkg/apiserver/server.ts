import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { GROUP, VERSION, type KindInfo } from '../api/meta.ts';
import { KINDS, kindByPlural } from '../api/kinds.ts';
import { BerthError, badRequest, isBerthError, notFound, timeout as timedOut, tooLarge, unauthorized } from '../errors/errors.ts';
import { assertSafeKeys, UnsafeKeyError } from '../api/safepath.ts';
import type { Logger } from '../log/log.ts';
import { AllowAll, BOOTSTRAPPERS, NODES, type Authorizer, type Identity, type RequestAttributes, type TokenAuthenticator } from './auth.ts';
import { discoveryDocuments } from './discovery.ts';
import { ConnectionTracker, DEFAULT_SERVER_LIMITS, IdentityLimiter, watchTimeoutMs, type ServerLimits } from './limits.ts';
import { sourceAddressOf } from './listener.ts';
import { createNamesFamily, namesFamily } from './actions.ts';
import { specFieldSet } from './patch.ts';
import { patchScale, replicasPatch, scaleOf, scaleRequest } from './scale.ts';
import { eventTable, eventsOf, selectEvents } from './events.ts';
import { audited, auditLine, type AuditLog, type AuditRecord } from './audit.ts';
import type { Metrics } from './metrics.ts';
import { Registry, type ListOptions, type Obj, type RequestContext, type WatchHandle } from './registry.ts';
import { toStatus, type K8sStatus } from './status.ts';
import { toTable } from './table.ts';
import { parseFieldSelector, parseLabelSelector, type FieldRequirement } from './selectors.ts';
import { FENCE_HEADER, parseFence } from './fence.ts';
import { INSTANCE_LEASE_HEADER, parseInstanceLeaseRevision } from './instancelease.ts';
import type { ConsoleRoute } from '../console/serve.ts';

export const DEFAULT_BODY_LIMIT = 3 * 1024 * 1024;

export interface ApiServerDeps {
  registry: Registry;
  log: Logger;
  metrics: Metrics;
  /** absent: dev mode, every request is an admin */
  authenticator?: TokenAuthenticator;
  authorizer?: Authorizer;
  bodyLimit?: number;
  /** request and watch limits (S5); each absent field takes its default */
  limits?: Partial<ServerLimits>;
  /** the randomness of server-side watch timeouts (tests pin it) */
  random?: () => number;
  version?: { gitVersion: string };
  /** extra routes: the binding call, the ECS API; return true when handled */
  extensions?: Array<(req: ApiRequest, res: ServerResponse) => Promise<boolean>>;
  /** routes that authenticate by themselves (the ECS API, SigV4): tried before bearer auth */
  frontDoors?: Array<(req: FrontDoorRequest, res: ServerResponse) => Promise<boolean>>;
  /** the audit log (--audit-log): state-changing and denied requests */
  audit?: AuditLog;
  /** a watch with allowWatchBookmarks gets a bookmark this often (ms, default 60 s) and ~2 s before its timeout */
  bookmarkIntervalMs?: number;
  /** the web console under /ui/ (its files and its login-code exchange; its data comes through the API) */
  console?: ConsoleRoute;
}

/** A request handed to a front door: it authenticates, then uses the one authorizer. */
export interface FrontDoorRequest {
  raw: IncomingMessage;
  method: string;
  path: string;
  query: URLSearchParams;
  /** the raw body, at most `limit` bytes (default: the server's body limit); SigV4 hashes it */
  bodyText(limit?: number): Promise<string>;
  /** the address the request came from (the PROXY protocol source behind a trusted balancer) */
  sourceAddress: string;
  /** the one authorization decision point, for an identity the front door established */
  authorize(identity: Identity, attrs: Omit<RequestAttributes, 'path'>): void;
  /** counts the request against the identity's in-flight limit (429 beyond it); call the result when done */
  admit(identity: Identity): () => void;
  /** true in dev mode (no token file): every caller is an admin */
  devMode: boolean;
  /** this request's id (the ECS face answers it as x-amzn-RequestId) */
  requestId: string;
  /** what the audit log will say about this request: the front door fills in its face, caller and outcome */
  audit: AuditRecord;
}

/** A parsed request, handed to extensions. */
export interface ApiRequest {
  raw: IncomingMessage;
  method: string;
  path: string;
  query: URLSearchParams;
  identity: Identity;
  /** the address the request came from (the PROXY protocol source behind a trusted balancer) */
  sourceAddress: string;
  body(): Promise<unknown>;
  bodyText(): Promise<string>;
  authorize(attrs: Omit<RequestAttributes, 'path'>): void;
  /** what the audit log will say about this request (authorize() records the attributes) */
  audit: AuditRecord;
}

const DEV_IDENTITY: Identity = { user: 'admin', groups: ['berth:admins'] };

export function sendJson(res: ServerResponse, code: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendStatus(res: ServerResponse, err: unknown, log?: Logger) {
  if (!isBerthError(err)) log?.error({ err: (err as Error)?.stack ?? String(err) }, 'internal error');
  const s: K8sStatus = toStatus(err);
  if (s.reason === 'TooManyRequests' || s.details?.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(s.details?.retryAfterSeconds ?? 1));
  sendJson(res, s.code, s);
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw tooLarge(`the request body is ${declared} bytes; the limit is ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw tooLarge(`the request body is over the limit of ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const BODY_TYPES = new Set(['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml', 'application/merge-patch+json', 'application/json-patch+json']);

function parseBody(text: string, contentType: string, { objectOnly = true } = {}): unknown {
  const ct = contentType.split(';')[0].trim().toLowerCase();
  if (ct && !BODY_TYPES.has(ct)) {
    throw new BerthError('UnsupportedMediaType', `unsupported content type "${ct}"; send application/json or application/yaml`);
  }
  if (!text.trim()) throw badRequest('the request body is empty');
  const yaml = /yaml/.test(ct);
  let v: unknown;
  try {
    v = yaml ? parseYaml(text) : JSON.parse(text);
    // S1: no object built from client input carries a key that reaches a prototype
    assertSafeKeys(v, 'the request body');
  } catch (e) {
    if (e instanceof UnsafeKeyError) throw badRequest(e.message);
    throw badRequest(`the request body is not valid ${yaml ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
  if (objectOnly && (typeof v !== 'object' || v === null || Array.isArray(v))) {
    throw badRequest(`the request body must be a ${yaml ? 'YAML mapping' : 'JSON object'} (got ${Array.isArray(v) ? 'a list' : v === null ? 'null' : typeof v})`);
  }
  return v;
}

/**
 * The request target's path and query, never throwing: `new URL` reads a target that starts
 * with `//` as a host (`//%ff/x`), and an invalid one throws outside any handler (FZ2: one
 * unauthenticated request crashed the process). Leading slashes are collapsed first; what
 * still does not parse is answered 400.
 */
function requestTarget(raw: string | undefined): { ok: boolean; pathname: string; searchParams: URLSearchParams } {
  try {
    const u = new URL((raw ?? '/').replace(/^\/+/, '/'), 'http://x');
    return { ok: true, pathname: u.pathname, searchParams: u.searchParams };
  } catch {
    return { ok: false, pathname: '/', searchParams: new URLSearchParams() };
  }
}

function decodable(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

/** methods that change state: always audited */
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

const wantsTable = (accept: string | undefined) => !!accept && /as=Table/.test(accept);

/** Watches and followed logs may run for as long as the client reads; every other request has a deadline. */
const isLongRunning = (method: string, path: string, q: URLSearchParams) =>
  method === 'GET' && (q.get('watch') === '1' || q.get('watch') === 'true' || (path.endsWith('/log') && q.get('follow') === 'true'));

/**
 * The resource API's request handler (Kubernetes-compatible). Built apart from listen()
 * so tests and `berth up` can mount it on any server.
 */
export function createApiHandler(deps: ApiServerDeps) {
  const { registry, log, metrics } = deps;
  const authorizer = deps.authorizer ?? new AllowAll();
  const limit = deps.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const lim: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...deps.limits };
  const watchSlots = new IdentityLimiter(lim.maxWatchesPerIdentity, 'watches');
  const requestSlots = new IdentityLimiter(lim.maxInFlightPerIdentity, 'requests in flight');
  const connections = new ConnectionTracker(lim.maxConnectionsPerIdentity);
  /** S5, per identity: the connections its requests come on, then its watches or its requests in flight */
  const admit = (id: Identity, req: IncomingMessage, res: ServerResponse, longRunning: boolean): (() => void) => {
    try {
      connections.admit(id, req.socket);
    } catch (e) {
      res.setHeader('Connection', 'close');
      throw e;
    }
    const release = (longRunning ? watchSlots : requestSlots).acquire(id);
    res.once('close', release);
    return release;
  };
  const documents = discoveryDocuments(KINDS);

  return async function handle(req: IncomingMessage, res: ServerResponse) {
    const started = process.hrtime.bigint();
    const url = requestTarget(req.url);
    const sourceAddress = sourceAddressOf(req.socket);
    const method = req.method ?? 'GET';
    let resourceLabel = 'other';
    let verbLabel = method.toLowerCase();
    res.setHeader('Cache-Control', 'no-cache, private');
    const rec: AuditRecord = { received: new Date(), requestId: randomUUID(), face: 'k8s', mutating: MUTATING.has(method) };
    // as Kubernetes: every response names its request (the ECS face's x-amzn-RequestId is the same id)
    res.setHeader('Audit-Id', rec.requestId);
    res.on('finish', () => {
      metrics.observeRequest(verbLabel, resourceLabel, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    });
    if (deps.audit) {
      // once per request, when the response ends (or the connection goes first)
      let done = false;
      const write = () => {
        if (done) return;
        done = true;
        const code = res.headersSent || res.writableFinished ? res.statusCode : 499;
        if (audited(rec, code)) deps.audit!.write(auditLine(rec, req, code, url.pathname));
      };
      res.once('finish', write);
      res.once('close', write);
    }
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const longRunning = isLongRunning(method, path, url.searchParams);
    if (!longRunning && lim.requestTimeoutMs > 0) {
      // S5: a request that is not a watch has a deadline; what it was doing may still complete
      const t = setTimeout(() => {
        if (res.writableEnded) return;
        if (res.headersSent) res.destroy();
        else sendStatus(res, timedOut(`the request did not finish within ${lim.requestTimeoutMs / 1000} s; it may still complete`));
      }, lim.requestTimeoutMs);
      res.once('close', () => clearTimeout(t));
    }
    try {
      if (!url.ok) throw badRequest(`the request target ${JSON.stringify((req.url ?? '').slice(0, 200))} is not a valid path`);
      // unauthenticated endpoints
      if (method === 'GET' && (path === '/healthz' || path === '/livez' || path === '/readyz')) {
        // ready only while the watch cache is synced (Kubernetes: storage readiness), saying why not
        const ready = path !== '/readyz' || registry.cache.isReady;
        res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' });
        res.end(ready ? 'ok' : `watch cache not ready: ${registry.cache.notReadyReason ?? 'not synced'}`);
        return;
      }
      if (method === 'GET' && path === '/version') {
        return sendJson(res, 200, { major: '1', minor: '0', gitVersion: deps.version?.gitVersion ?? 'v0.1.0-berth', platform: `${process.platform}/${process.arch}` });
      }
      if (deps.console && (await deps.console(req, res, method, url.pathname))) return;
      let bodyText: string | undefined;
      if (deps.frontDoors?.length) {
        const front: FrontDoorRequest = {
          raw: req,
          method,
          path,
          query: url.searchParams,
          bodyText: async (max = limit) => (bodyText ??= await readBody(req, Math.min(max, limit))),
          sourceAddress,
          authorize: (id, attrs) => {
            rec.attrs = attrs;
            rec.identity = id;
            authorizer.authorize(id, { ...attrs, path });
          },
          admit: (id) => admit(id, req, res, false),
          devMode: !deps.authenticator,
          requestId: rec.requestId,
          audit: rec,
        };
        for (const door of deps.frontDoors) {
          if (await door(front, res)) return;
        }
      }
      // a path that is not valid percent-encoding is refused once, here, for every route after
      // it (decoding a name in a route would otherwise throw a URIError: a 500)
      if (!decodable(path)) throw badRequest(`the path ${JSON.stringify(path.slice(0, 200))} is not valid percent-encoding`);
      let identity: Identity;
      if (deps.authenticator) {
        let id = deps.authenticator.authenticate(req.headers.authorization);
        if (!id && req.headers.authorization && registry.reader.ready) {
          // node credentials are read from the cache: one issued through another apiserver
          // may not be here yet; confirm against fresh state before a 401
          await registry.fresh();
          id = deps.authenticator.authenticate(req.headers.authorization);
        }
        if (!id) {
          rec.denied = true;
          throw unauthorized('Unauthorized: a valid bearer token is required');
        }
        identity = id;
      } else identity = DEV_IDENTITY;
      rec.identity = identity;
      admit(identity, req, res, longRunning);
      const apiReq: ApiRequest = {
        raw: req,
        method,
        path,
        query: url.searchParams,
        identity,
        sourceAddress,
        bodyText: async () => (bodyText ??= await readBody(req, limit)),
        body: async () => parseBody(await apiReq.bodyText(), String(req.headers['content-type'] ?? 'application/json')),
        authorize: (attrs) => {
          rec.attrs = attrs;
          authorizer.authorize(identity, { ...attrs, path });
        },
        audit: rec,
      };
      for (const ext of deps.extensions ?? []) {
        if (await ext(apiReq, res)) return;
      }
      if (method === 'GET' && path === '/metrics') {
        apiReq.authorize({ verb: 'get' }); // S8: admins and berth:metrics only
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
        res.end(metrics.render());
        return;
      }
      if (method === 'GET') {
        const doc = documents(path);
        if (doc !== undefined) {
          // S6: built once; a client that has it is told so
          if (req.headers['if-none-match'] === doc.etag) {
            res.writeHead(304, { ETag: doc.etag });
            res.end();
            return;
          }
          res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(doc.body), ETag: doc.etag });
          res.end(doc.body);
          return;
        }
        const ev = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/events(?:\/([^/]+))?$/.exec(path);
        if (ev) {
          resourceLabel = 'events';
          return await serveEvents(apiReq, res, ev[1] === undefined ? undefined : decodeURIComponent(ev[1]), ev[2] === undefined ? undefined : decodeURIComponent(ev[2]), (v) => (verbLabel = v));
        }
      }
      const m = /^\/apis\/([^/]+)\/([^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(path);
      if (!m) throw notFound('path', path, `the server could not find the requested resource (${method} ${path})`);
      const [, group, version, ns, plural, rawName, sub] = m;
      if (group !== GROUP) throw notFound('group', group, `the server does not serve API group "${group}"`);
      if (version !== VERSION) throw notFound('version', version, `the server does not serve version "${version}" of ${GROUP}; use ${VERSION}`);
      const kind = kindByPlural(plural);
      if (!kind) throw notFound('resource', plural, `the server does not have a resource type "${plural}"`);
      if (sub !== undefined && sub !== 'status' && !(sub === 'scale' && kind.scale)) throw notFound('subresource', sub, `${plural} has no subresource "${sub}"`);
      const name = rawName === undefined ? undefined : decodeURIComponent(rawName);
      resourceLabel = plural;
      await resource(apiReq, res, kind, ns, name, sub as 'status' | 'scale' | undefined, (v) => (verbLabel = v));
    } catch (e) {
      if (isBerthError(e, 'Forbidden') || isBerthError(e, 'Unauthorized')) {
        rec.denied = true;
        rec.message = e.message;
      }
      if (res.headersSent) {
        res.end();
        return;
      }
      sendStatus(res, e, log);
    }
  };

  async function resource(
    r: ApiRequest,
    res: ServerResponse,
    kind: KindInfo,
    ns: string | undefined,
    name: string | undefined,
    subresource: 'status' | 'scale' | undefined,
    setVerb: (v: string) => void,
  ) {
    const q = r.query;
    const ctx: RequestContext = {
      user: r.identity.user,
      dryRun: q.get('dryRun') === 'All',
      fieldValidation: q.get('fieldValidation') ?? 'Strict',
      issueNodeCredential: r.identity.groups.includes(BOOTSTRAPPERS),
      ...(r.identity.bootstrap ? { bootstrapToken: r.identity.bootstrap.tokenId } : {}),
      ...(r.identity.node ? { node: r.identity.node } : {}),
      sourceAddress: r.sourceAddress,
      // a controller's writes carry its lease fence; reads ignore it
      fence: r.method === 'GET' ? undefined : parseFence(r.raw.headers[FENCE_HEADER], registry.cache, (namespace, name) => r.authorize({ verb: 'update', resource: 'leases', namespace, name })),
      ...(r.method !== 'GET' && r.raw.headers[INSTANCE_LEASE_HEADER] !== undefined ? { instanceLeaseRevision: parseInstanceLeaseRevision(r.raw.headers[INSTANCE_LEASE_HEADER]) } : {}),
      // what a write turns out to do is authorized in the write path (writeauthz.ts), worded
      // (and audited) with the request's own verb
      authorize: (attrs) => r.authorize(attrs.verb === 'update' && r.method === 'PATCH' ? { ...attrs, verb: 'patch' } : attrs),
    };
    if (ctx.dryRun === false && q.has('dryRun') && q.get('dryRun') !== '') throw badRequest(`dryRun: only "All" is supported`);
    r.audit.dryRun = ctx.dryRun;
    const accept = r.raw.headers.accept;
    const nsForKind = kind.namespaced ? ns : undefined;
    if (!kind.namespaced && ns) throw notFound('resource', kind.plural, `${kind.plural} are not namespaced`);
    // a node's rights follow what is bound to it, read from the cache: a denial is confirmed
    // against fresh state first (a task bound through another apiserver may not be here yet)
    const authorize = async (attrs: Omit<RequestAttributes, 'path'>) => {
      try {
        r.authorize(attrs);
      } catch (e) {
        if (!isBerthError(e, 'Forbidden') || !r.identity.groups.includes(NODES) || !registry.reader.ready) throw e;
        await registry.fresh();
        r.authorize(attrs);
      }
    };
    if (subresource === 'scale') return serveScale(r, res, kind, nsForKind, name, ctx, authorize, setVerb);
    const sub = subresource;
    switch (r.method) {
      case 'GET': {
        if (name === undefined) {
          const watch = q.get('watch') === '1' || q.get('watch') === 'true';
          setVerb(watch ? 'watch' : 'list');
          // S2: the selectors are parsed once; authorization decides on what the list or watch runs
          // (a selector that does not parse proves nothing: it is authorized as none, so a node is
          // refused with 403, and whoever may list without one learns what is wrong with it, 400)
          const fieldSelector = q.get('fieldSelector') ?? undefined;
          let fields: FieldRequirement[] = [];
          let unparsed: unknown;
          try {
            fields = parseFieldSelector(fieldSelector, kind.fieldSelectors);
            parseLabelSelector(q.get('labelSelector') ?? undefined);
          } catch (e) {
            unparsed = e;
          }
          await authorize({ verb: watch ? 'watch' : 'list', resource: kind.plural, namespace: nsForKind, fieldSelector, fieldRequirements: fields });
          if (unparsed) throw unparsed;
          if (watch) return serveWatch(r, res, kind, nsForKind, wantsTable(accept), fields);
          const limitStr = q.get('limit');
          const lim = limitStr ? Number(limitStr) : undefined;
          if (limitStr && (!Number.isInteger(lim) || lim! < 0)) throw badRequest(`limit: "${limitStr}" is not a whole number`);
          const list = await registry.list(kind, nsForKind, {
            labelSelector: q.get('labelSelector') ?? undefined,
            fieldSelector,
            fields,
            limit: lim,
            continue: q.get('continue') ?? undefined,
            resourceVersion: q.get('resourceVersion') ?? undefined,
            resourceVersionMatch: (q.get('resourceVersionMatch') ?? undefined) as ListOptions['resourceVersionMatch'],
          });
          const meta = { resourceVersion: list.resourceVersion, ...(list.continue ? { continue: list.continue, remainingItemCount: list.remainingItemCount } : {}) };
          if (wantsTable(accept)) return sendJson(res, 200, toTable(kind, list.items, meta, includeObject(q)));
          return sendJson(res, 200, { apiVersion: `${GROUP}/${VERSION}`, kind: `${kind.kind}List`, metadata: meta, items: list.items });
        }
        setVerb('get');
        await authorize({ verb: 'get', resource: kind.plural, namespace: nsForKind, name, subresource: sub });
        const o = await registry.get(kind, nsForKind, name, { resourceVersion: q.get('resourceVersion') ?? undefined });
        if (wantsTable(accept)) return sendJson(res, 200, toTable(kind, [o], { resourceVersion: o.metadata.resourceVersion }, includeObject(q)));
        return sendJson(res, 200, o);
      }
      case 'POST': {
        setVerb('create');
        if (name !== undefined) throw new BerthError('MethodNotAllowed', `POST is not allowed on a named ${kind.singular}; use PUT or PATCH`);
        // the body first: what a create asks for depends on it (creating a task runs its task
        // definition); a body that cannot be read is refused after the authorization, so that a
        // caller who may not create gets 403 whatever it sent
        let body: unknown;
        let unreadable: unknown;
        try {
          body = await r.body();
        } catch (e) {
          unreadable = e;
        }
        // a task or service naming a family runs its latest revision: authorized on it as the
        // store has it, not as a lagging cache has it (R1-8); the write path asks again on the
        // revision admission resolved
        if (createNamesFamily(kind.plural, body) && registry.reader.ready) await registry.fresh();
        r.authorize({ verb: 'create', resource: kind.plural, namespace: nsForKind, object: body });
        if (unreadable !== undefined) throw unreadable;
        const { obj, created } = await registry.create(kind, nsForKind, body, ctx);
        r.audit.createdName = obj.metadata.name;
        return sendJson(res, created ? 201 : 200, obj);
      }
      case 'PUT':
      case 'PATCH': {
        const verb = r.method === 'PUT' ? 'update' : 'patch';
        setVerb(verb);
        if (name === undefined) throw new BerthError('MethodNotAllowed', `${r.method} needs the name of the object in the URL`);
        let type: 'put' | 'merge' | 'json' | undefined = verb === 'update' ? 'put' : undefined;
        let refused: unknown; // what is wrong with the request, told once it is authorized
        if (verb === 'patch') {
          const ct = String(r.raw.headers['content-type'] ?? '').split(';')[0].trim();
          if (ct === 'application/merge-patch+json' || ct === 'application/json') type = 'merge';
          else if (ct === 'application/json-patch+json') type = 'json';
          else if (ct === 'application/strategic-merge-patch+json') {
            const why = `strategic merge patch is not supported for ${kind.plural} (custom kinds); use a JSON merge patch (application/merge-patch+json)`;
            refused = new BerthError('UnsupportedMediaType', why);
          } else if (ct === 'application/apply-patch+yaml') {
            refused = new BerthError('UnsupportedMediaType', 'server-side apply is not supported; use client-side apply (kubectl apply without --server-side)');
          } else {
            const why = `unsupported patch content type "${ct}"; use application/merge-patch+json or application/json-patch+json`;
            refused = new BerthError('UnsupportedMediaType', why);
          }
        }
        // a service update is authorized with the task definition it names (ecs:task-definition,
        // as UpdateService on the ECS face: R1-3), so its body is read first; whatever else a
        // write turns out to do is authorized in the write path (writeauthz.ts)
        let body: unknown;
        let td: { set: boolean; value?: unknown } | undefined;
        if (kind.plural === 'services' && !sub && type && !refused) {
          try {
            body = type === 'put' ? await r.body() : parseBody(await r.bodyText(), 'application/json', { objectOnly: type === 'merge' });
            td = specFieldSet(type, body, 'taskDefinition');
          } catch (e) {
            refused = e;
          }
          if (td?.set && namesFamily(td.value) && registry.reader.ready) await registry.fresh();
        }
        const object = td?.set && typeof td.value === 'string' ? { spec: { taskDefinition: td.value } } : undefined;
        await authorize({ verb, resource: kind.plural, namespace: nsForKind, name, subresource: sub, ...(object ? { object } : {}) });
        if (refused !== undefined) throw refused;
        const wctx: RequestContext = { ...ctx, ...(td ? { namesTaskDefinition: td.set } : {}) };
        if (type === 'put') return sendJson(res, 200, await registry.update(kind, nsForKind, name, body ?? (await r.body()), sub, wctx));
        const patch = body ?? parseBody(await r.bodyText(), 'application/json', { objectOnly: type === 'merge' });
        if (type === 'json' && !Array.isArray(patch)) throw badRequest('a JSON patch (application/json-patch+json) must be a list of operations');
        return sendJson(res, 200, await registry.patch(kind, nsForKind, name, type as 'merge' | 'json', patch, sub, wctx));
      }
      case 'DELETE': {
        setVerb('delete');
        if (name === undefined) throw new BerthError('MethodNotAllowed', 'deleting a whole collection is not supported; name the object');
        if (sub) throw new BerthError('MethodNotAllowed', 'a subresource cannot be deleted');
        r.authorize({ verb: 'delete', resource: kind.plural, namespace: nsForKind, name });
        let precondition: string | undefined;
        const text = Number(r.raw.headers['content-length'] ?? 0) > 0 ? await r.bodyText() : '';
        if (text.trim()) {
          const opts = parseBody(text, 'application/json') as { preconditions?: { resourceVersion?: string }; dryRun?: string[] };
          precondition = opts?.preconditions?.resourceVersion;
          if (opts?.dryRun?.includes('All')) ctx.dryRun = r.audit.dryRun = true;
        }
        return sendJson(res, 200, await registry.delete(kind, nsForKind, name, ctx, precondition));
      }
      default:
        throw new BerthError('MethodNotAllowed', `method ${r.method} is not allowed`);
    }
  }

  /**
   * core/v1 Events (events.ts): get, list and watch. Reading them is reading the services of
   * the namespace (what they are about). A watch sends what is there (unless it resumes
   * from a list's resourceVersion), then each new event as it appears.
   */
  async function serveEvents(r: ApiRequest, res: ServerResponse, ns: string | undefined, name: string | undefined, setVerb: (v: string) => void) {
    const q = r.query;
    const watch = name === undefined && (q.get('watch') === '1' || q.get('watch') === 'true');
    const verb = name !== undefined ? 'get' : watch ? 'watch' : 'list';
    setVerb(verb);
    r.authorize({ verb: verb === 'get' ? 'get' : 'list', resource: 'services', namespace: ns });
    if (name !== undefined) {
      const e = eventsOf(registry.cache, ns).find((x) => x.metadata.name === name);
      if (!e) throw notFound('events', name, `events "${name}" not found`);
      return sendJson(res, 200, e);
    }
    const fieldSelector = q.get('fieldSelector') ?? undefined;
    const list = () => selectEvents(registry.cache, ns, fieldSelector);
    const table = wantsTable(r.raw.headers.accept);
    if (!watch) {
      const rv = String(registry.cache.revision);
      return sendJson(res, 200, table ? eventTable(list(), rv, includeObject(q)) : { kind: 'EventList', apiVersion: 'v1', metadata: { resourceVersion: rv }, items: list() });
    }
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? 0);
    const seen = new Set<string>();
    let sentRows = 0;
    // resumed from a list's resourceVersion: the list had what is at or below it, not what came after
    const from = Number(q.get('resourceVersion') ?? 0) || 0;
    let sentAt: number | undefined;
    const send = () => {
      // nothing changed since the last tick: nothing new to send
      if (sentAt === registry.cache.revision) return;
      sentAt = registry.cache.revision;
      for (const e of list()) {
        if (seen.has(e.metadata.name)) continue;
        seen.add(e.metadata.name);
        if (Number(e.metadata.resourceVersion) <= from) continue;
        // a Table watch: the columns come with the first row only, as serveWatch sends them
        const t = table ? eventTable([e], e.metadata.resourceVersion, includeObject(q)) : undefined;
        if (t && sentRows++ > 0) t.columnDefinitions = [];
        res.write(JSON.stringify({ type: 'ADDED', object: t ?? e }) + '\n');
      }
    };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    send();
    await new Promise<void>((done) => {
      const tick = setInterval(send, 1000);
      const end = () => {
        clearInterval(tick);
        clearTimeout(timer);
        done();
      };
      const timer = setTimeout(end, (timeoutSeconds > 0 ? timeoutSeconds : 1800) * 1000);
      res.on('close', end);
    });
    res.end();
  }

  /** GET, PUT and PATCH of an object's Scale (scale.ts): the replica count read from and written to the object */
  async function serveScale(
    r: ApiRequest,
    res: ServerResponse,
    kind: KindInfo,
    ns: string | undefined,
    name: string | undefined,
    ctx: RequestContext,
    authorize: (attrs: Omit<RequestAttributes, 'path'>) => Promise<void>,
    setVerb: (v: string) => void,
  ) {
    if (name === undefined) throw new BerthError('MethodNotAllowed', 'scale is a subresource of a named object');
    const verb = r.method === 'GET' ? 'get' : r.method === 'PUT' ? 'update' : r.method === 'PATCH' ? 'patch' : undefined;
    if (!verb) throw new BerthError('MethodNotAllowed', `method ${r.method} is not allowed on the scale subresource; use GET, PUT or PATCH`);
    setVerb(verb);
    await authorize({ verb, resource: kind.plural, namespace: ns, name, subresource: 'scale' });
    if (verb === 'get') return sendJson(res, 200, scaleOf(kind, await registry.get(kind, ns, name, { resourceVersion: r.query.get('resourceVersion') ?? undefined })));
    let want: { replicas: number; resourceVersion?: string };
    if (verb === 'update') want = scaleRequest(kind, name, await r.body());
    else {
      const ct = String(r.raw.headers['content-type'] ?? '').split(';')[0].trim();
      const type = ct === 'application/merge-patch+json' || ct === 'application/json' ? 'merge' : ct === 'application/json-patch+json' ? 'json' : undefined;
      if (!type) throw new BerthError('UnsupportedMediaType', `unsupported patch content type "${ct}" for the scale subresource; use application/merge-patch+json or application/json-patch+json`);
      const patch = parseBody(await r.bodyText(), 'application/json', { objectOnly: type === 'merge' });
      const cur = scaleOf(kind, await registry.get(kind, ns, name));
      want = scaleRequest(kind, name, patchScale(cur, type, patch));
      // the patch was applied to the Scale as it was: the write is conditional on that version
      want.resourceVersion ??= cur.metadata.resourceVersion;
    }
    const out = await registry.patch(kind, ns, name, 'merge', replicasPatch(kind, want.replicas, want.resourceVersion), undefined, ctx);
    return sendJson(res, 200, scaleOf(kind, out));
  }

  async function serveWatch(r: ApiRequest, res: ServerResponse, kind: KindInfo, ns: string | undefined, table: boolean, fields: FieldRequirement[]) {
    const q = r.query;
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? 0);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) throw badRequest(`timeoutSeconds: "${q.get('timeoutSeconds')}" is not a number of seconds`);
    const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1';
    let closed = false;
    let first = true;
    // the initial state (and a replay from the history) may queue more than the buffer: the
    // cap counts what is queued beyond it, until the socket has drained once
    let starting = true;
    let allowance = 0;
    let started = false;
    // headers go out once the synchronous checks passed (a refusal before them, 429 while
    // the cache resyncs, is a plain HTTP status); what fails later (a resourceVersion the
    // cache does not reach in time, one too old) is an ERROR event, as in Kubernetes
    const begin = () => {
      if (started) return;
      started = true;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.flushHeaders();
    };
    const write = (line: string | Buffer) => {
      if (closed) return;
      begin();
      res.write(line);
      if (!starting && res.writableLength > lim.watchBufferBytes + allowance) {
        // S5: a client that does not read is cut off: it relists and watches again
        log.warn({ kind: kind.plural, user: r.identity.user, queued: res.writableLength }, 'watch: client too slow, closing');
        close();
        res.destroy();
      }
    };
    const sink = (type: string, obj: Obj, frame: () => Buffer) => {
      if (table && type !== 'BOOKMARK') {
        // a Table watch (kubectl get -w) is this watcher's own: its columns come with the first row only
        const t = toTable(kind, [obj], { resourceVersion: obj.metadata.resourceVersion }, includeObject(q));
        if (!first) (t as { columnDefinitions?: unknown }).columnDefinitions = [];
        first = false;
        write(`{"type":"${type}","object":${JSON.stringify(t)}}\n`);
      } else {
        // the event's frame, encoded once and the same bytes written to every watcher it reaches
        write(frame());
      }
    };
    // bad selectors and versions are plain 400s, before the stream starts
    const rvq = q.get('resourceVersion');
    if (rvq && (!/^\d+$/.test(rvq) || !Number.isSafeInteger(Number(rvq)))) throw badRequest(`resourceVersion: "${rvq}" is not a valid resource version`);
    registry.reader.requireReady();
    let handle: WatchHandle | undefined;
    metrics.watchers(+1);
    const timers: NodeJS.Timeout[] = [];
    const close = () => {
      if (closed) return;
      closed = true;
      handle?.stop();
      timers.forEach((t) => clearTimeout(t));
      metrics.watchers(-1);
      res.end();
    };
    r.raw.on('close', close);
    res.on('close', close);
    begin();
    try {
      handle = await registry.watch(
        kind,
        ns,
        {
          labelSelector: q.get('labelSelector') ?? undefined,
          fieldSelector: q.get('fieldSelector') ?? undefined,
          fields,
          resourceVersion: rvq ?? undefined,
          allowWatchBookmarks: bookmarks,
          sendInitialEvents: q.get('sendInitialEvents') === 'true',
        },
        (type, obj, frame) => sink(type, obj, frame),
      );
      if (closed) handle.stop();
      starting = false;
      allowance = res.writableLength;
      if (allowance > 0) res.once('drain', () => (allowance = 0));
    } catch (e) {
      // like Kubernetes: a watch that cannot start answers 200 and one ERROR event
      const s = toStatus(e);
      if (!isBerthError(e)) log.error({ err: (e as Error).stack }, 'watch failed');
      write(`{"type":"ERROR","object":${JSON.stringify(s)}}\n`);
      close();
      return;
    }
    // S5: without timeoutSeconds the server ends the watch after [min, 2*min], so clients rebalance
    const lifetime = watchTimeoutMs(timeoutSeconds, lim.minWatchTimeoutMs, deps.random);
    const deadline = Date.now() + lifetime;
    timers.push(setTimeout(close, lifetime));
    if (bookmarks) {
      // about every minute, and once ~2 s before the timeout so the client resumes from a
      // fresh resourceVersion (Kubernetes' cacheWatcher); never below what was sent
      const every = deps.bookmarkIntervalMs ?? 60_000;
      let beforeDeadline = deadline !== undefined && deadline - 2000 > Date.now();
      const schedule = () => {
        let at = Date.now() + every;
        if (beforeDeadline && deadline! - 2000 < at) {
          at = deadline! - 2000;
          beforeDeadline = false;
        }
        timers.push(setTimeout(tick, Math.max(0, at - Date.now())));
      };
      const tick = () => {
        if (closed || !handle) return;
        const mark = { apiVersion: `${GROUP}/${VERSION}`, kind: kind.kind, metadata: { resourceVersion: String(handle.bookmarkRevision()) } };
        write(`{"type":"BOOKMARK","object":${JSON.stringify(mark)}}\n`);
        schedule();
      };
      schedule();
    }
  }
}

function includeObject(q: URLSearchParams): 'Object' | 'Metadata' | 'None' {
  const v = q.get('includeObject');
  return v === 'None' || v === 'Metadata' ? v : 'Object';
}
