import { createServer as createHttp } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { readFileSync } from 'node:fs';
import { Arns, DEFAULT_ARN_CONFIG, type ArnConfig } from '../api/arn.ts';
import { Kinds } from '../api/kinds.ts';
import { DEFAULT_LIMITS, type Limits } from '../api/validate.ts';
import { badRequest } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';
import type { Store } from '../store/store.ts';
import { CACHE_INDEXES, installAdmission } from './admission.ts';
import { cacheLookups } from './actions.ts';
import { AuditLog } from './audit.ts';
import { Compactor } from './compactor.ts';
import { DefaultAuthorizer, TokenAuthenticator, type Authorizer, type TokenEntry } from './auth.ts';
import { PolicyAuthorizer } from './authz.ts';
import { NO_POLICIES, PolicyFile, type PolicySource } from './policyfile.ts';
import { Binder, bindingRoute, type TxnLimits } from './binding.ts';
import { taskStatusRoute } from './taskstatus.ts';
import { defaultTxnLimits } from '../store/limits.ts';
import { bootstrapTokensRoute } from './bootstraptokens.ts';
import type { ServerLimits } from './limits.ts';
import { DEFAULT_FIRST_BYTE_TIMEOUT_MS, frontServer, type Listener } from './listener.ts';
import { logsRoute, type LogsProxyOptions } from './logs.ts';
import { Metrics } from './metrics.ts';
import { Registry } from './registry.ts';
import { selfReviewRoutes } from './selfreview.ts';
import { SecretAdmission, secretsRoute } from './secrets.ts';
import type { Keyring } from '../secrets/keyring.ts';
import { createApiHandler, type ApiRequest, type FrontDoorRequest } from './server.ts';
import { WatchCache, type WatchCacheOptions } from './watchcache.ts';
import { ensureBundle, type Bundle } from '../console/bundle.ts';
import { ConsoleLogins, type ConsoleLoginOptions } from '../console/logins.ts';
import { consoleRoute } from '../console/serve.ts';
import type { ServerResponse } from 'node:http';

/** how long a RunTask client token is honoured (ECS: 24 hours) */
export const CLIENT_TOKEN_TTL_MS = 24 * 3_600_000;

export interface ApiServerOptions {
  store: Store;
  log: Logger;
  /** static tokens; absent = dev mode (everyone is admin; listen on loopback only) */
  tokens?: TokenEntry[];
  /** the built-in rules (default: berth's groups); policies are composed with them */
  authorizer?: Authorizer;
  /** IAM policies attached to users and groups (--policy-file), re-read when the file changes */
  policyFile?: string;
  /** how often the policy file is checked for changes (default 1 s) */
  policyFileIntervalMs?: number;
  /** policies from elsewhere (instead of a file) */
  policies?: PolicySource;
  /** the audit log file (--audit-log): JSON lines of state-changing and denied requests */
  auditLog?: string;
  arn?: ArnConfig;
  limits?: Limits;
  bodyLimit?: number;
  /** request, watch and per-identity limits (S5) */
  serverLimits?: Partial<ServerLimits>;
  /** timeouts of the logs proxy (S3) */
  logsProxy?: LogsProxyOptions;
  /** the clock bootstrap token expiry is judged by (tests move it) */
  now?: () => number;
  /** the randomness of server-side watch timeouts (tests pin it) */
  random?: () => number;
  /** the watch cache's history cap (`--watch-cache-size`) */
  watchCacheCapacity?: number;
  /** the rest of the watch cache's options (history window, relist backoff, clock) */
  watchCache?: Omit<WatchCacheOptions, 'capacity'>;
  /** resolve before the watch cache has synced (it keeps trying; /readyz says 503 meanwhile) */
  noWaitForCache?: boolean;
  /** how often the compactor tries (ms, default 60 s; 0: no compactor) */
  compactionIntervalMs?: number;
  /** how much store history the compactor keeps (ms, default 5 min) */
  compactionRetentionMs?: number;
  /** a watch with allowWatchBookmarks gets one this often (ms, default 60 s) */
  bookmarkIntervalMs?: number;
  /** how big one txn may be (binding calls are split to fit); default etcd's own defaults, or the embedded store's */
  txnLimits?: TxnLimits;
  /** how long a deleted service or deregistered instance stays describable as INACTIVE (ECS: one hour) */
  inactiveRetentionMs?: number;
  /** the keys secrets are encrypted with (--encryption-key-file); absent, secrets are refused */
  keyring?: Keyring;
  /** more routes (the ECS API) */
  extensions?: Array<(req: ApiRequest, res: ServerResponse) => Promise<boolean>>;
  /**
   * routes that authenticate by themselves (the ECS API with SigV4), tried before bearer
   * auth; made from the server's parts so they share its registry, binder and ARNs
   */
  frontDoors?: (parts: ApiParts) => FrontDoor[];
  /** serve the web console under /ui/ (its bundle is built when missing or stale) */
  console?: boolean | ConsoleLoginOptions;
}

export type FrontDoor = (req: FrontDoorRequest, res: ServerResponse) => Promise<boolean>;
export interface ApiParts {
  registry: Registry;
  cache: WatchCache;
  arns: Arns;
  binder: Binder;
  log: Logger;
  /** the Secret kind's encryption (the Secrets Manager and SSM faces read values through it) */
  secrets: SecretAdmission;
}

export interface ApiServer {
  handler: ReturnType<typeof createApiHandler>;
  registry: Registry;
  cache: WatchCache;
  compactor: Compactor;
  /** resolves once the watch cache has synced the first time */
  synced: Promise<void>;
  metrics: Metrics;
  arns: Arns;
  binder: Binder;
  /** the authorizer in force (built-in rules composed with the policies); absent in dev mode */
  authorizer?: PolicyAuthorizer;
  /** the console's one-time login codes and sessions (when the console is served) */
  consoleLogins?: ConsoleLogins;
  /** stops the watch cache and the policy file watch; flushes the audit log */
  stop(): Promise<void>;
}

/** Wires the apiserver's parts on a store: watch cache, registry with admission, auth, binding. */
export async function buildApiServer(o: ApiServerOptions): Promise<ApiServer> {
  // a broken policy file or an unwritable audit log fails the start, before anything runs
  const policyFile = o.policyFile ? new PolicyFile(o.policyFile, o.log.child({ component: 'policies' }), { intervalMs: o.policyFileIntervalMs }) : undefined;
  const audit = o.auditLog ? new AuditLog(o.auditLog, o.log.child({ component: 'audit' })) : undefined;
  const metrics = new Metrics();
  const cache = new WatchCache(o.store, o.log.child({ component: 'watchcache' }), CACHE_INDEXES, { ...o.watchCache, capacity: o.watchCacheCapacity });
  const synced = cache.start();
  if (!o.noWaitForCache) await synced;
  const txnLimits = o.txnLimits ?? defaultTxnLimits(o.store);
  const registry = new Registry(o.store, cache, o.log.child({ component: 'registry' }), o.limits ?? DEFAULT_LIMITS, undefined, txnLimits);
  const arns = new Arns(o.arn ?? DEFAULT_ARN_CONFIG);
  installAdmission(registry, arns);
  if (o.keyring && !o.keyring.log) o.keyring.log = o.log.child({ component: 'keyring' });
  const secrets = new SecretAdmission(o.keyring);
  registry.use('Secret', secrets);
  const binder = new Binder(registry, txnLimits);
  const authenticator = o.tokens ? new TokenAuthenticator(o.tokens, cache, o.now) : undefined;
  const builtin = o.authorizer ?? new DefaultAuthorizer(cache);
  const authorizer = o.tokens ? new PolicyAuthorizer(builtin, policyFile ?? o.policies ?? NO_POLICIES, arns, cacheLookups(cache)) : undefined;
  policyFile?.start();
  const consoleLogins = o.console ? new ConsoleLogins(typeof o.console === 'object' ? o.console : {}) : undefined;
  if (consoleLogins) authenticator?.addSource((t) => consoleLogins.authenticate(t));
  // built (or read from its last build) once, on the first request for it
  let bundle: Promise<Bundle> | undefined;
  const consoleBundle = () => (bundle ??= ensureBundle().catch((e) => ((bundle = undefined), Promise.reject(e))));
  const handler = createApiHandler({
    registry,
    log: o.log,
    metrics,
    authenticator,
    authorizer,
    audit,
    bodyLimit: o.bodyLimit,
    limits: o.serverLimits,
    random: o.random,
    bookmarkIntervalMs: o.bookmarkIntervalMs,
    extensions: [bindingRoute(registry, binder), taskStatusRoute(registry), logsRoute(registry, o.logsProxy), bootstrapTokensRoute(registry, o.now), selfReviewRoutes(() => authorizer), secretsRoute(registry, secrets), ...(o.extensions ?? [])],
    frontDoors: o.frontDoors?.({ registry, cache, arns, binder, log: o.log, secrets }),
    console: consoleLogins ? consoleRoute(consoleBundle, consoleLogins) : undefined,
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
  // history is compacted by one apiserver at a time (elected through the store)
  const compactor = new Compactor(o.store, o.log.child({ component: 'compactor' }), { intervalMs: o.compactionIntervalMs, retentionMs: o.compactionRetentionMs });
  compactor.start();
  return {
    handler,
    registry,
    cache,
    compactor,
    synced,
    metrics,
    arns,
    binder,
    authorizer,
    consoleLogins,
    stop: async () => {
      clearInterval(sweep);
      policyFile?.stop();
      await compactor.stop();
      cache.stop();
      await audit?.close();
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
  /** CIDRs of load balancers whose connections start with a PROXY protocol header (v1 or v2) */
  proxyProtocolTrusted?: string[];
  /** a connection that sends nothing for this long is closed (default 10 s) */
  firstByteTimeoutMs?: number;
  /** the request line and headers must arrive within this (default 30 s; 408 after) */
  headersTimeoutMs?: number;
  /** the whole request, body included, must arrive within this (default 60 s; 408 after); answers may stream longer (watches) */
  bodyTimeoutMs?: number;
}

/** room for long selectors in the URL, which are then refused with a Status that says why */
const MAX_HEADER = 64 * 1024;

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) throw badRequest(`--listen ${JSON.stringify(s)}: expected host:port, e.g. 127.0.0.1:6443`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/**
 * Listens (HTTPS when a certificate is given, and plain HTTP too with `alsoPlain`); resolves
 * with the server and its URL. Every connection passes the TCP front (listener.ts): a
 * first-byte timeout and, from trusted balancers, the PROXY protocol header (S3, S5).
 */
export async function listen(handler: ApiServer['handler'], o: ListenOptions): Promise<{ server: Listener; url: string }> {
  const { host, port } = parseListen(o.listen);
  const tls = !!(o.tlsCertFile && o.tlsKeyFile);
  const serve = (q: Parameters<ApiServer['handler']>[0], r: Parameters<ApiServer['handler']>[1]) => void handler(q, r);
  const headersTimeout = o.headersTimeoutMs ?? 30_000;
  // how often the timeouts are checked (Node's default, 30 s, would let a short one run twice as long)
  const common = { maxHeaderSize: MAX_HEADER, connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(headersTimeout / 4))) };
  const https = tls ? createHttps({ ...common, handshakeTimeout: o.firstByteTimeoutMs ?? DEFAULT_FIRST_BYTE_TIMEOUT_MS, cert: readFileSync(o.tlsCertFile!), key: readFileSync(o.tlsKeyFile!) }, serve) : undefined;
  const http = !tls || o.alsoPlain ? createHttp(common, serve) : undefined;
  for (const s of [https, http]) {
    if (!s) continue;
    s.keepAliveTimeout = 65_000;
    // both bound receiving the request only: a watch's answer streams for as long as it lasts
    s.headersTimeout = headersTimeout;
    s.requestTimeout = Math.max(o.bodyTimeoutMs ?? 60_000, headersTimeout);
  }
  const front = frontServer({ tls: https, plain: http }, { firstByteTimeoutMs: o.firstByteTimeoutMs ?? DEFAULT_FIRST_BYTE_TIMEOUT_MS, proxyProtocolTrusted: o.proxyProtocolTrusted });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(port, host, () => resolve());
  });
  const addr = front.address() as { port: number };
  const h = host.includes(':') ? `[${host}]` : host;
  // closing the front closes both (callers use server.close / closeAllConnections)
  return { server: front, url: `${tls ? 'https' : 'http'}://${h}:${addr.port}` };
}
