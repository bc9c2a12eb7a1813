import { createServer as createHttp, type Server } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { Arns, DEFAULT_ARN_CONFIG, type ArnConfig } from '../api/arn.ts';
import { Kinds } from '../api/kinds.ts';
import { DEFAULT_LIMITS, type Limits } from '../api/validate.ts';
import { badRequest } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';
import type { Store } from '../store/store.ts';
import { CACHE_INDEXES, installAdmission } from './admission.ts';
import { DefaultAuthorizer, TokenAuthenticator, type Authorizer, type TokenEntry } from './auth.ts';
import { Binder, bindingRoute, EMBEDDED_TXN_LIMITS, ETCD_TXN_LIMITS, type TxnLimits } from './binding.ts';
import { logsRoute } from './logs.ts';
import { Metrics } from './metrics.ts';
import { Registry } from './registry.ts';
import { createApiHandler, type ApiRequest, type FrontDoorRequest } from './server.ts';
import { WatchCache } from './watchcache.ts';
import type { ServerResponse } from 'node:http';

/** how long a RunTask client token is honoured (ECS: 24 hours) */
export const CLIENT_TOKEN_TTL_MS = 24 * 3_600_000;

export interface ApiServerOptions {
  store: Store;
  log: Logger;
  /** static tokens; absent = dev mode (everyone is admin; listen on loopback only) */
  tokens?: TokenEntry[];
  authorizer?: Authorizer;
  arn?: ArnConfig;
  limits?: Limits;
  bodyLimit?: number;
  watchCacheCapacity?: number;
  /** how big one txn may be (binding calls are split to fit); default etcd's own defaults, or the embedded store's */
  txnLimits?: TxnLimits;
  /** how long a deleted service or deregistered instance stays describable as INACTIVE (ECS: one hour) */
  inactiveRetentionMs?: number;
  /** more routes (the ECS API) */
  extensions?: Array<(req: ApiRequest, res: ServerResponse) => Promise<boolean>>;
  /**
   * routes that authenticate by themselves (the ECS API with SigV4), tried before bearer
   * auth; made from the server's parts so they share its registry, binder and ARNs
   */
  frontDoors?: (parts: ApiParts) => FrontDoor[];
}

export type FrontDoor = (req: FrontDoorRequest, res: ServerResponse) => Promise<boolean>;
export interface ApiParts {
  registry: Registry;
  cache: WatchCache;
  arns: Arns;
  binder: Binder;
  log: Logger;
}

export interface ApiServer {
  handler: ReturnType<typeof createApiHandler>;
  registry: Registry;
  cache: WatchCache;
  metrics: Metrics;
  arns: Arns;
  binder: Binder;
  stop(): void;
}

/** Wires the apiserver's parts on a store: watch cache, registry with admission, auth, binding. */
export async function buildApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const metrics = new Metrics();
  const cache = new WatchCache(o.store, o.log.child({ component: 'watchcache' }), CACHE_INDEXES, o.watchCacheCapacity);
  await cache.start();
  const registry = new Registry(o.store, cache, o.log.child({ component: 'registry' }), o.limits ?? DEFAULT_LIMITS);
  const arns = new Arns(o.arn ?? DEFAULT_ARN_CONFIG);
  installAdmission(registry, arns);
  const binder = new Binder(registry, o.txnLimits ?? (o.store.backend === 'etcd' ? ETCD_TXN_LIMITS : EMBEDDED_TXN_LIMITS));
  const authenticator = o.tokens ? new TokenAuthenticator(o.tokens, cache) : undefined;
  const handler = createApiHandler({
    registry,
    log: o.log,
    metrics,
    authenticator,
    authorizer: o.tokens ? (o.authorizer ?? new DefaultAuthorizer(cache)) : undefined,
    bodyLimit: o.bodyLimit,
    extensions: [bindingRoute(registry, binder), logsRoute(registry), ...(o.extensions ?? [])],
    frontDoors: o.frontDoors?.({ registry, cache, arns, binder, log: o.log }),
  });
  // the INACTIVE records of deleted services and deregistered instances expire after the
  // retention; every apiserver sweeps (a delete pinned to the record's version is idempotent)
  const retention = o.inactiveRetentionMs ?? 3_600_000;
  const sweep = setInterval(() => {
    registry.sweepInactive([Kinds.Service, Kinds.ContainerInstance], retention).catch((e) => o.log.warn({ err: (e as Error).message }, 'sweeping INACTIVE records failed'));
    // RunTask's client tokens are honoured for a day, as in ECS
    registry.sweepRecords('clienttokens', CLIENT_TOKEN_TTL_MS).catch((e) => o.log.warn({ err: (e as Error).message }, 'sweeping client tokens failed'));
  }, Math.max(1000, Math.min(retention / 4, 60_000)));
  sweep.unref();
  return {
    handler,
    registry,
    cache,
    metrics,
    arns,
    binder,
    stop: () => {
      clearInterval(sweep);
      cache.stop();
    },
  };
}

export interface ListenOptions {
  /** host:port */
  listen: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /**
   * with a certificate: also answer plain HTTP on the same port (the first byte of a
   * connection tells a TLS handshake from HTTP). `berth up` uses it so kubectl gets TLS (it
   * sends tokens only over TLS) while SDKs may use http:// on loopback.
   */
  alsoPlain?: boolean;
}

/** room for long selectors in the URL, which are then refused with a Status that says why */
const MAX_HEADER = 64 * 1024;

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) throw badRequest(`--listen ${JSON.stringify(s)}: expected host:port, e.g. 127.0.0.1:6443`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Listens (HTTPS when a certificate is given); resolves with the server and its URL. */
export async function listen(handler: ApiServer['handler'], o: ListenOptions): Promise<{ server: Server; url: string }> {
  const { host, port } = parseListen(o.listen);
  const tls = o.tlsCertFile && o.tlsKeyFile;
  if (tls && o.alsoPlain) return listenBoth(handler, host, port, o);
  const server = tls
    ? createHttps({ cert: readFileSync(o.tlsCertFile!), key: readFileSync(o.tlsKeyFile!), maxHeaderSize: MAX_HEADER }, (q, s) => void handler(q, s))
    : createHttp({ maxHeaderSize: MAX_HEADER }, (q, s) => void handler(q, s));
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0; // watches are long
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as { port: number };
  const h = host.includes(':') ? `[${host}]` : host;
  return { server, url: `${tls ? 'https' : 'http'}://${h}:${addr.port}` };
}

/** One port, two protocols: TLS connections go to an https server, the rest to an http one. */
async function listenBoth(handler: ApiServer['handler'], host: string, port: number, o: ListenOptions): Promise<{ server: Server; url: string }> {
  const https = createHttps({ cert: readFileSync(o.tlsCertFile!), key: readFileSync(o.tlsKeyFile!), maxHeaderSize: MAX_HEADER }, (q, s) => void handler(q, s));
  const http = createHttp({ maxHeaderSize: MAX_HEADER }, (q, s) => void handler(q, s));
  for (const s of [https, http]) {
    s.keepAliveTimeout = 65_000;
    s.requestTimeout = 0;
  }
  const front = createNetServer((sock) => {
    sock.once('data', (first: Buffer) => {
      sock.pause();
      sock.unshift(first);
      (first[0] === 0x16 ? https : http).emit('connection', sock);
      process.nextTick(() => sock.resume());
    });
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(port, host, () => resolve());
  });
  // closing the front closes both (callers use server.close / closeAllConnections)
  const facade = front as unknown as Server;
  facade.closeAllConnections = () => {
    https.closeAllConnections();
    http.closeAllConnections();
  };
  const addr = front.address() as { port: number };
  const h = host.includes(':') ? `[${host}]` : host;
  return { server: facade, url: `https://${h}:${addr.port}` };
}
