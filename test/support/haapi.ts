/**
 * Test support: several apiservers in this process on ONE real etcd cluster, each with its
 * own etcd client and its own watch cache, as in the HA deployment. Each can
 * have etcd-like write latency added (every txn commits `txnDelayMs` late, as etcd does on
 * a loaded machine) so races that need an etcd round trip show on a loaded 2-core machine, and the
 * ECS API on the same port (dev mode: no keys, every caller is the admin, loopback only).
 */
import type { Listener } from '../../pkg/apiserver/listener.ts';
import { ECSClient } from '@aws-sdk/client-ecs';
import { buildApiServer, listen, type ApiServer, type ApiServerOptions } from '../../pkg/apiserver/apiserver.ts';
import { ecsFrontDoor } from '../../pkg/ecsapi/ecsapi.ts';
import { newLogger, silentLogger } from '../../pkg/log/log.ts';
import { EtcdStore } from '../../pkg/store/etcd.ts';
import type { Compare, Op, Store, WatchHandlers } from '../../pkg/store/store.ts';
import { startEtcdCluster, type EtcdCluster } from './etcdcluster.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The store with etcd-like delays: every txn commits `txnMs` late (reads are untouched), and
 * every watch delivers `watchMs` late (an apiserver whose cache lags the store, as one on a
 * busy machine or a slow link does). Order is kept.
 */
export function delayedStore(inner: Store, d: { txnMs?: number; watchMs?: number }): Store {
  if (!d.txnMs && !d.watchMs) return inner;
  const later = (ms: number | undefined, fn: () => void) => (ms ? void setTimeout(fn, ms) : fn());
  return new Proxy(inner, {
    get(t, p) {
      if (p === 'txn' && d.txnMs) {
        return async (c: Compare[], o: Op[]) => {
          await sleep(d.txnMs!);
          return t.txn(c, o);
        };
      }
      if (p === 'watch' && d.watchMs) {
        return (prefix: string, after: number, h: WatchHandlers) =>
          t.watch(prefix, after, {
            onEvents: (e) => later(d.watchMs, () => h.onEvents(e)),
            onError: (e) => later(d.watchMs, () => h.onError(e)),
            ...(h.onProgress ? { onProgress: (r: number) => later(d.watchMs, () => h.onProgress!(r)) } : {}),
          });
      }
      const v = (t as unknown as Record<string | symbol, unknown>)[p];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

export interface HaServer {
  url: string;
  api: ApiServer;
  /** the server's own etcd client (undelayed) */
  store: EtcdStore;
  /** fetch against this server, JSON in, `{status, body}` out */
  call(method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; body: any }>;
  /** an AWS SDK client for this server's ECS API (no retries) */
  ecs(): ECSClient;
}

export interface HaApiServers {
  etcd: EtcdCluster;
  servers: HaServer[];
  /** a raw etcd client of the test (undelayed), to read the store's own state */
  store: EtcdStore;
  stop(): Promise<void>;
}

export async function startHaApiServers(o: {
  n?: number;
  /** share a cluster; otherwise one of 3 members with etcd's default limits is started */
  etcd?: EtcdCluster;
  txnDelayMs?: number;
  /** per server: how late its watch (and so its cache) sees the store's events */
  lagMs?: number[];
  ecs?: boolean;
  options?: Partial<ApiServerOptions>;
} = {}): Promise<HaApiServers> {
  const etcd = o.etcd ?? (await startEtcdCluster({ members: 3 }));
  const servers: HaServer[] = [];
  const closers: Array<() => Promise<void>> = [];
  const clients: ECSClient[] = [];
  const raw = new EtcdStore({ hosts: etcd.endpoints });
  try {
    for (let i = 0; i < (o.n ?? 2); i++) {
      const store = new EtcdStore({ hosts: etcd.endpoints });
      const log = process.env.BERTH_TEST_LOG ? newLogger({ level: 'debug' }).child({ apiserver: i }) : silentLogger();
      const api = await buildApiServer({
        store: delayedStore(store, { txnMs: o.txnDelayMs, watchMs: o.lagMs?.[i] }),
        log,
        ...(o.ecs ? { frontDoors: (parts) => [ecsFrontDoor(parts, { keys: [], region: 'us-east-1' })] } : {}),
        ...o.options,
      });
      const { server, url } = await listen(api.handler, { listen: '127.0.0.1:0' });
      closers.push(async () => {
        api.stop();
        await closeServer(server);
        await store.close();
      });
      servers.push({
        url,
        api,
        store,
        async call(method, path, body, contentType) {
          const res = await fetch(url + path, {
            method,
            headers: body !== undefined ? { 'Content-Type': contentType ?? 'application/json' } : {},
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          const text = await res.text();
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          return { status: res.status, body: parsed };
        },
        ecs() {
          const c = new ECSClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'AKIADEV', secretAccessKey: 'dev' }, maxAttempts: 1 });
          clients.push(c);
          return c;
        },
      });
    }
  } catch (e) {
    for (const c of closers) await c();
    await raw.close();
    if (!o.etcd) await etcd.stop();
    throw e;
  }
  return {
    etcd,
    servers,
    store: raw,
    async stop() {
      for (const c of clients) c.destroy();
      for (const c of closers) await c();
      await raw.close();
      if (!o.etcd) await etcd.stop();
    },
  };
}

function closeServer(server: Listener): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Polls `fn` until it returns a truthy value (generous deadline: the machine is shared). */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100);
  }
}
