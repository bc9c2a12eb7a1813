import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApiServer, listen, type ApiServer, type ApiServerOptions, type ListenOptions } from '../../pkg/apiserver/apiserver.ts';
import type { Listener } from '../../pkg/apiserver/listener.ts';
import { newToken, type TokenEntry } from '../../pkg/apiserver/auth.ts';
import { newLogger, silentLogger } from '../../pkg/log/log.ts';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { EtcdStore } from '../../pkg/store/etcd.ts';
import { ensureSelfSignedCert } from '../../pkg/tls/selfsigned.ts';
import type { Store } from '../../pkg/store/store.ts';
import { startEtcd, type EtcdProcess } from './etcd.ts';
import { Keyring, newKeyLine } from '../../pkg/secrets/keyring.ts';

export interface TestApiServer {
  /** plain http (for fetch-based tests) */
  url: string;
  /** the same server over TLS with a self-signed certificate (kubectl sends tokens only over TLS) */
  tlsUrl: string;
  certPem: string;
  adminToken: string;
  viewerToken: string;
  bootstrapToken: string;
  /** a kubeconfig for `kubectl --kubeconfig` (admin, context berth, over TLS) */
  kubeconfigPath: string;
  api: ApiServer;
  store: Store;
  /** authenticated fetch against the server: JSON in, `{status, body}` out */
  call(method: string, path: string, body?: unknown, opts?: { token?: string; contentType?: string; raw?: string }): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}


/**
 * Starts a real apiserver in this process on a free loopback port, on the embedded store
 * (a temp dir) or on a real etcd (a fresh key prefix per server is not possible with the
 * /berth/ keyspace, so each etcd-backed server gets its own etcd). The `default` cluster
 * exists unless `noDefaultCluster`.
 */
export async function startApiServer(
  opts: {
    store?: 'embedded' | 'etcd';
    noDefaultCluster?: boolean;
    watchCacheCapacity?: number;
    /** how long INACTIVE records of deleted services / deregistered instances are kept */
    inactiveRetentionMs?: number;
    /** routes that authenticate by themselves, e.g. the ECS API (passed to buildApiServer) */
    frontDoors?: ApiServerOptions['frontDoors'];
    /** tokens besides the admin, viewer and bootstrap ones */
    tokens?: TokenEntry[];
    /** more options for buildApiServer (limits, clocks) */
    build?: Partial<Omit<ApiServerOptions, 'store' | 'log' | 'tokens'>>;
    /** more options for both listeners (timeouts, PROXY protocol) */
    listen?: Partial<Omit<ListenOptions, 'listen' | 'tlsCertFile' | 'tlsKeyFile'>>;
    /** passed to buildApiServer: IAM policies, the audit log */
    policyFile?: string;
    policyFileIntervalMs?: number;
    auditLog?: string;
    /** serve from an etcd (cluster) that is already running, through these client URLs, instead of starting one */
    etcdEndpoints?: string[];
    /** the admin's and the bootstrap token (several apiservers behind one address share their tokens) */
    adminToken?: string;
    bootstrapToken?: string;
    /** wraps the store the server uses (a fault-injecting store around the real one) */
    wrapStore?: (s: Store) => Store;
    /** more buildApiServer options (compaction, bookmarks, the watch cache) */
    server?: Pick<ApiServerOptions, 'compactionIntervalMs' | 'compactionRetentionMs' | 'bookmarkIntervalMs' | 'watchCache' | 'noWaitForCache'>;
  } = {},
): Promise<TestApiServer> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-api-'));
  let etcd: EtcdProcess | undefined;
  let store: Store;
  if (opts.etcdEndpoints) {
    store = new EtcdStore({ hosts: opts.etcdEndpoints });
  } else if (opts.store === 'etcd') {
    etcd = await startEtcd();
    store = new EtcdStore({ hosts: [etcd.endpoint] });
  } else {
    store = EmbeddedStore.open(join(dir, 'data'));
  }
  if (opts.wrapStore) store = opts.wrapStore(store);
  const adminToken = opts.adminToken ?? newToken();
  const viewerToken = newToken();
  const bootstrapToken = opts.bootstrapToken ?? newToken();
  const tokens: TokenEntry[] = [
    { token: adminToken, user: 'admin', uid: '1', groups: ['berth:admins'] },
    { token: viewerToken, user: 'viewer', uid: '2', groups: ['berth:viewers'] },
    { token: bootstrapToken, user: 'bootstrap', uid: '3', groups: ['berth:bootstrappers'] },
    ...(opts.tokens ?? []),
  ];
  const api = await buildApiServer({
    store,
    log: process.env.BERTH_TEST_LOG ? newLogger({ level: 'debug' }) : silentLogger(),
    tokens,
    watchCacheCapacity: opts.watchCacheCapacity,
    inactiveRetentionMs: opts.inactiveRetentionMs,
    frontDoors: opts.frontDoors,
    policyFile: opts.policyFile,
    policyFileIntervalMs: opts.policyFileIntervalMs,
    auditLog: opts.auditLog,
    // secrets work as under `berth up` (a test without a key passes build: { keyring: undefined })
    keyring: Keyring.parse(newKeyLine('test')),
    ...opts.server,
    ...opts.build,
  });
  const { server, url } = await listen(api.handler, { ...opts.listen, listen: '127.0.0.1:0' });
  const cert = await ensureSelfSignedCert(join(dir, 'pki'));
  const { server: tlsServer, url: tlsUrl } = await listen(api.handler, { ...opts.listen, listen: '127.0.0.1:0', tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile });
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfigPath,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'berth', cluster: { server: tlsUrl, 'certificate-authority-data': Buffer.from(cert.certPem).toString('base64') } }],
      users: [{ name: 'admin', user: { token: adminToken } }],
      contexts: [{ name: 'berth', context: { cluster: 'berth', user: 'admin', namespace: 'default' } }],
      'current-context': 'berth',
    }),
    { mode: 0o600 },
  );
  const call: TestApiServer['call'] = async (method, path, body, o = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: {
        ...(o.token === '' ? {} : { Authorization: `Bearer ${o.token ?? adminToken}` }),
        ...(body !== undefined || o.raw !== undefined ? { 'Content-Type': o.contentType ?? 'application/json' } : {}),
      },
      body: o.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed };
  };
  if (!opts.noDefaultCluster) {
    const r = await call('POST', '/apis/berth.dev/v1/clusters', { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } });
    // a second apiserver on a shared etcd finds it there
    if (r.status !== 201 && !(opts.etcdEndpoints && r.status === 409)) throw new Error(`creating the default cluster: ${JSON.stringify(r.body)}`);
  }
  return {
    url,
    tlsUrl,
    certPem: cert.certPem,
    adminToken,
    viewerToken,
    bootstrapToken,
    kubeconfigPath,
    api,
    store,
    call,
    async stop() {
      await api.stop();
      await Promise.all([closeServer(server), closeServer(tlsServer)]);
      await store.close();
      await etcd?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function closeServer(server: Listener): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
