import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { GROUP, VERSION, type KindInfo } from '../api/meta.ts';
import { KINDS, kindByPlural } from '../api/kinds.ts';
import { BerthError, badRequest, isBerthError, notFound, tooLarge, unauthorized } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';
import { AllowAll, BOOTSTRAPPERS, type Authorizer, type Identity, type RequestAttributes, type TokenAuthenticator } from './auth.ts';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, coreResources, openApiV2, openApiV3Group, openApiV3Index } from './discovery.ts';
import type { Metrics } from './metrics.ts';
import { Registry, type Obj, type RequestContext } from './registry.ts';
import { toStatus, type K8sStatus } from './status.ts';
import { toTable } from './table.ts';
import { parseFieldSelector, parseLabelSelector } from './selectors.ts';
import { FENCE_HEADER, parseFence } from './fence.ts';

export const DEFAULT_BODY_LIMIT = 3 * 1024 * 1024;

export interface ApiServerDeps {
  registry: Registry;
  log: Logger;
  metrics: Metrics;
  /** absent: dev mode, every request is an admin */
  authenticator?: TokenAuthenticator;
  authorizer?: Authorizer;
  bodyLimit?: number;
  version?: { gitVersion: string };
  /** extra routes: the binding call, the ECS API; return true when handled */
  extensions?: Array<(req: ApiRequest, res: ServerResponse) => Promise<boolean>>;
  /** routes that authenticate by themselves (the ECS API, SigV4): tried before bearer auth */
  frontDoors?: Array<(req: FrontDoorRequest, res: ServerResponse) => Promise<boolean>>;
}

/** A request handed to a front door: it authenticates, then uses the one authorizer. */
export interface FrontDoorRequest {
  raw: IncomingMessage;
  method: string;
  path: string;
  query: URLSearchParams;
  /** the raw body (size-limited); SigV4 hashes it */
  bodyText(): Promise<string>;
  /** the one authorization decision point, for an identity the front door established */
  authorize(identity: Identity, attrs: Omit<RequestAttributes, 'path'>): void;
  /** true in dev mode (no token file): every caller is an admin */
  devMode: boolean;
}

/** A parsed request, handed to extensions. */
export interface ApiRequest {
  raw: IncomingMessage;
  method: string;
  path: string;
  query: URLSearchParams;
  identity: Identity;
  body(): Promise<unknown>;
  bodyText(): Promise<string>;
  authorize(attrs: Omit<RequestAttributes, 'path'>): void;
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
  if (s.reason === 'TooManyRequests') res.setHeader('Retry-After', String(s.details?.retryAfterSeconds ?? 1));
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
  } catch (e) {
    throw badRequest(`the request body is not valid ${yaml ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
  if (objectOnly && (typeof v !== 'object' || v === null || Array.isArray(v))) {
    throw badRequest(`the request body must be a ${yaml ? 'YAML mapping' : 'JSON object'} (got ${Array.isArray(v) ? 'a list' : v === null ? 'null' : typeof v})`);
  }
  return v;
}

const wantsTable = (accept: string | undefined) => !!accept && /as=Table/.test(accept);

/**
 * The resource API's request handler (Kubernetes-compatible). Built apart from listen()
 * so tests and `berth up` can mount it on any server.
 */
export function createApiHandler(deps: ApiServerDeps) {
  const { registry, log, metrics } = deps;
  const authorizer = deps.authorizer ?? new AllowAll();
  const limit = deps.bodyLimit ?? DEFAULT_BODY_LIMIT;

  return async function handle(req: IncomingMessage, res: ServerResponse) {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    let resourceLabel = 'other';
    let verbLabel = method.toLowerCase();
    res.setHeader('Cache-Control', 'no-cache, private');
    res.on('finish', () => {
      metrics.observeRequest(verbLabel, resourceLabel, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    });
    try {
      const path = url.pathname.replace(/\/+$/, '') || '/';
      // unauthenticated endpoints
      if (method === 'GET' && (path === '/healthz' || path === '/livez' || path === '/readyz')) {
        const ready = path !== '/readyz' || registry.cache.isReady;
        res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' });
        res.end(ready ? 'ok' : 'watch cache not ready');
        return;
      }
      if (method === 'GET' && path === '/version') {
        return sendJson(res, 200, { major: '1', minor: '0', gitVersion: deps.version?.gitVersion ?? 'v0.1.0-berth', platform: `${process.platform}/${process.arch}` });
      }
      let bodyText: string | undefined;
      if (deps.frontDoors?.length) {
        const front: FrontDoorRequest = {
          raw: req,
          method,
          path,
          query: url.searchParams,
          bodyText: async () => (bodyText ??= await readBody(req, limit)),
          authorize: (id, attrs) => authorizer.authorize(id, { ...attrs, path }),
          devMode: !deps.authenticator,
        };
        for (const door of deps.frontDoors) {
          if (await door(front, res)) return;
        }
      }
      let identity: Identity;
      if (deps.authenticator) {
        const id = deps.authenticator.authenticate(req.headers.authorization);
        if (!id) throw unauthorized('Unauthorized: a valid bearer token is required');
        identity = id;
      } else identity = DEV_IDENTITY;
      const apiReq: ApiRequest = {
        raw: req,
        method,
        path,
        query: url.searchParams,
        identity,
        bodyText: async () => (bodyText ??= await readBody(req, limit)),
        body: async () => parseBody(await apiReq.bodyText(), String(req.headers['content-type'] ?? 'application/json')),
        authorize: (attrs) => authorizer.authorize(identity, { ...attrs, path }),
      };
      for (const ext of deps.extensions ?? []) {
        if (await ext(apiReq, res)) return;
      }
      if (method === 'GET' && path === '/metrics') {
        apiReq.authorize({ verb: 'get' });
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
        res.end(metrics.render());
        return;
      }
      if (method === 'GET') {
        const doc = discovery(path);
        if (doc !== undefined) return sendJson(res, 200, doc);
        const ev = /^\/api\/v1(\/namespaces\/[^/]+)?\/events$/.exec(path);
        if (ev) return sendJson(res, 200, { kind: 'EventList', apiVersion: 'v1', metadata: { resourceVersion: String(registry.cache.revision) }, items: [] });
      }
      const m = /^\/apis\/([^/]+)\/([^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(path);
      if (!m) throw notFound('path', path, `the server could not find the requested resource (${method} ${path})`);
      const [, group, version, ns, plural, rawName, sub] = m;
      if (group !== GROUP) throw notFound('group', group, `the server does not serve API group "${group}"`);
      if (version !== VERSION) throw notFound('version', version, `the server does not serve version "${version}" of ${GROUP}; use ${VERSION}`);
      const kind = kindByPlural(plural);
      if (!kind) throw notFound('resource', plural, `the server does not have a resource type "${plural}"`);
      if (sub !== undefined && sub !== 'status') throw notFound('subresource', sub, `${plural} has no subresource "${sub}"`);
      const name = rawName === undefined ? undefined : decodeURIComponent(rawName);
      resourceLabel = plural;
      await resource(apiReq, res, kind, ns, name, sub as 'status' | undefined, (v) => (verbLabel = v));
    } catch (e) {
      if (res.headersSent) {
        res.end();
        return;
      }
      sendStatus(res, e, log);
    }
  };

  function discovery(path: string): unknown {
    switch (path) {
      case '/api':
        return apiVersions();
      case '/api/v1':
        return coreResources();
      case '/apis':
        return apiGroupList();
      case `/apis/${GROUP}`:
        return apiGroup();
      case `/apis/${GROUP}/${VERSION}`:
        return apiResourceList(KINDS);
      case '/openapi/v2':
        return openApiV2(KINDS);
      case '/openapi/v3':
        return openApiV3Index(KINDS);
      case `/openapi/v3/apis/${GROUP}/${VERSION}`:
        return openApiV3Group(KINDS);
    }
    return undefined;
  }

  async function resource(
    r: ApiRequest,
    res: ServerResponse,
    kind: KindInfo,
    ns: string | undefined,
    name: string | undefined,
    sub: 'status' | undefined,
    setVerb: (v: string) => void,
  ) {
    const q = r.query;
    const ctx: RequestContext = {
      user: r.identity.user,
      dryRun: q.get('dryRun') === 'All',
      fieldValidation: q.get('fieldValidation') ?? 'Strict',
      issueNodeCredential: r.identity.groups.includes(BOOTSTRAPPERS),
      // a controller's writes carry its lease fence; reads ignore it
      fence: r.method === 'GET' ? undefined : parseFence(r.raw.headers[FENCE_HEADER], registry.cache, (namespace, name) => r.authorize({ verb: 'update', resource: 'leases', namespace, name })),
    };
    if (ctx.dryRun === false && q.has('dryRun') && q.get('dryRun') !== '') throw badRequest(`dryRun: only "All" is supported`);
    const accept = r.raw.headers.accept;
    const nsForKind = kind.namespaced ? ns : undefined;
    if (!kind.namespaced && ns) throw notFound('resource', kind.plural, `${kind.plural} are not namespaced`);
    switch (r.method) {
      case 'GET': {
        if (name === undefined) {
          const watch = q.get('watch') === '1' || q.get('watch') === 'true';
          setVerb(watch ? 'watch' : 'list');
          r.authorize({ verb: watch ? 'watch' : 'list', resource: kind.plural, namespace: nsForKind, fieldSelector: q.get('fieldSelector') ?? undefined });
          if (watch) return serveWatch(r, res, kind, nsForKind, wantsTable(accept));
          const limitStr = q.get('limit');
          const lim = limitStr ? Number(limitStr) : undefined;
          if (limitStr && (!Number.isInteger(lim) || lim! < 0)) throw badRequest(`limit: "${limitStr}" is not a whole number`);
          const list = await registry.list(kind, nsForKind, {
            labelSelector: q.get('labelSelector') ?? undefined,
            fieldSelector: q.get('fieldSelector') ?? undefined,
            limit: lim,
            continue: q.get('continue') ?? undefined,
          });
          const meta = { resourceVersion: list.resourceVersion, ...(list.continue ? { continue: list.continue, remainingItemCount: list.remainingItemCount } : {}) };
          if (wantsTable(accept)) return sendJson(res, 200, toTable(kind, list.items, meta, includeObject(q)));
          return sendJson(res, 200, { apiVersion: `${GROUP}/${VERSION}`, kind: `${kind.kind}List`, metadata: meta, items: list.items });
        }
        setVerb('get');
        r.authorize({ verb: 'get', resource: kind.plural, namespace: nsForKind, name, subresource: sub });
        const o = await registry.get(kind, nsForKind, name);
        if (wantsTable(accept)) return sendJson(res, 200, toTable(kind, [o], { resourceVersion: o.metadata.resourceVersion }, includeObject(q)));
        return sendJson(res, 200, o);
      }
      case 'POST': {
        setVerb('create');
        if (name !== undefined) throw new BerthError('MethodNotAllowed', `POST is not allowed on a named ${kind.singular}; use PUT or PATCH`);
        r.authorize({ verb: 'create', resource: kind.plural, namespace: nsForKind });
        const body = await r.body();
        const { obj, created } = await registry.create(kind, nsForKind, body, ctx);
        return sendJson(res, created ? 201 : 200, obj);
      }
      case 'PUT': {
        setVerb('update');
        if (name === undefined) throw new BerthError('MethodNotAllowed', 'PUT needs the name of the object in the URL');
        r.authorize({ verb: 'update', resource: kind.plural, namespace: nsForKind, name, subresource: sub });
        return sendJson(res, 200, await registry.update(kind, nsForKind, name, await r.body(), sub, ctx));
      }
      case 'PATCH': {
        setVerb('patch');
        if (name === undefined) throw new BerthError('MethodNotAllowed', 'PATCH needs the name of the object in the URL');
        r.authorize({ verb: 'patch', resource: kind.plural, namespace: nsForKind, name, subresource: sub });
        const ct = String(r.raw.headers['content-type'] ?? '').split(';')[0].trim();
        let type: 'merge' | 'json';
        if (ct === 'application/merge-patch+json' || ct === 'application/json') type = 'merge';
        else if (ct === 'application/json-patch+json') type = 'json';
        else if (ct === 'application/strategic-merge-patch+json') {
          throw new BerthError('UnsupportedMediaType', `strategic merge patch is not supported for ${kind.plural} (custom kinds); use a JSON merge patch (application/merge-patch+json)`);
        } else if (ct === 'application/apply-patch+yaml') {
          throw new BerthError('UnsupportedMediaType', 'server-side apply is not supported; use client-side apply (kubectl apply without --server-side)');
        } else {
          throw new BerthError('UnsupportedMediaType', `unsupported patch content type "${ct}"; use application/merge-patch+json or application/json-patch+json`);
        }
        const patch = parseBody(await r.bodyText(), 'application/json', { objectOnly: type === 'merge' });
        if (type === 'json' && !Array.isArray(patch)) throw badRequest('a JSON patch (application/json-patch+json) must be a list of operations');
        return sendJson(res, 200, await registry.patch(kind, nsForKind, name, type, patch, sub, ctx));
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
          if (opts?.dryRun?.includes('All')) ctx.dryRun = true;
        }
        return sendJson(res, 200, await registry.delete(kind, nsForKind, name, ctx, precondition));
      }
      default:
        throw new BerthError('MethodNotAllowed', `method ${r.method} is not allowed`);
    }
  }

  async function serveWatch(r: ApiRequest, res: ServerResponse, kind: KindInfo, ns: string | undefined, table: boolean) {
    const q = r.query;
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1';
    let closed = false;
    let first = true;
    const memo = new WeakMap<object, string>();
    const write = (line: string) => {
      if (closed) return;
      res.write(line);
      if (res.writableLength > 16 * 1024 * 1024) {
        log.warn({ kind: kind.plural }, 'watch: client too slow, closing');
        close();
      }
    };
    const sink = (type: string, obj: Obj) => {
      let body: string;
      if (table && type !== 'BOOKMARK') {
        const t = toTable(kind, [obj], { resourceVersion: obj.metadata.resourceVersion }, includeObject(q));
        if (!first) (t as { columnDefinitions?: unknown }).columnDefinitions = [];
        first = false;
        body = JSON.stringify(t);
      } else {
        body = memo.get(obj) ?? JSON.stringify(obj);
        memo.set(obj, body);
      }
      write(`{"type":"${type}","object":${body}}\n`);
    };
    // bad selectors and versions are plain 400s, before the stream starts
    const rvq = q.get('resourceVersion');
    if (rvq && !/^\d+$/.test(rvq)) throw badRequest(`resourceVersion: "${rvq}" is not a valid resource version`);
    parseLabelSelector(q.get('labelSelector') ?? undefined);
    parseFieldSelector(q.get('fieldSelector') ?? undefined, kind.fieldSelectors);
    let stop: (() => void) | undefined;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    metrics.watchers(+1);
    const timers: NodeJS.Timeout[] = [];
    const close = () => {
      if (closed) return;
      closed = true;
      stop?.();
      timers.forEach((t) => clearTimeout(t));
      metrics.watchers(-1);
      res.end();
    };
    r.raw.on('close', close);
    res.on('close', close);
    try {
      stop = await registry.watch(
        kind,
        ns,
        {
          labelSelector: q.get('labelSelector') ?? undefined,
          fieldSelector: q.get('fieldSelector') ?? undefined,
          resourceVersion: q.get('resourceVersion') ?? undefined,
          allowWatchBookmarks: bookmarks,
          sendInitialEvents: q.get('sendInitialEvents') === 'true',
        },
        (type, obj) => sink(type, obj),
      );
      if (closed) stop();
    } catch (e) {
      // like Kubernetes: a watch that cannot start answers 200 and one ERROR event
      const s = toStatus(e);
      if (!isBerthError(e)) log.error({ err: (e as Error).stack }, 'watch failed');
      write(`{"type":"ERROR","object":${JSON.stringify(s)}}\n`);
      close();
      return;
    }
    if (timeout > 0) timers.push(setTimeout(close, timeout * 1000));
    if (bookmarks) {
      const tick = () => {
        if (closed) return;
        write(`{"type":"BOOKMARK","object":${JSON.stringify({ apiVersion: `${GROUP}/${VERSION}`, kind: kind.kind, metadata: { resourceVersion: String(registry.cache.revision) } })}}\n`);
        timers.push(setTimeout(tick, 30_000));
      };
      timers.push(setTimeout(tick, 30_000));
    }
  }
}

function includeObject(q: URLSearchParams): 'Object' | 'Metadata' | 'None' {
  const v = q.get('includeObject');
  return v === 'None' || v === 'Metadata' ? v : 'Object';
}
