import 'reflect-metadata';
import { Keyring } from '../../pkg/secrets/keyring.ts';
import { Command } from 'commander';
import { container } from 'tsyringe';
import { existsSync } from 'node:fs';
import { DEFAULT_ARN_CONFIG } from '../../pkg/api/arn.ts';
import { buildApiServer, listen, parseListen } from '../../pkg/apiserver/apiserver.ts';
import { loadTokenFile } from '../../pkg/apiserver/auth.ts';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from '../../pkg/apiserver/limits.ts';
import { cidrList } from '../../pkg/apiserver/listener.ts';
import { EMBEDDED_TXN_LIMITS, ETCD_TXN_LIMITS } from '../../pkg/apiserver/binding.ts';
import { DEFAULT_WATCH_CACHE_SIZE } from '../../pkg/apiserver/watchcache.ts';
import { isLoopback, onShutdown, runMain } from '../../pkg/cmdutil/cmdutil.ts';
import { DEPLOYMENT_WAIT_MS, ecsFrontDoor } from '../../pkg/ecsapi/ecsapi.ts';
import { badRequest } from '../../pkg/errors/errors.ts';
import { newLogger, type Logger } from '../../pkg/log/log.ts';
import { openStore } from '../../pkg/store/open.ts';
import type { Store } from '../../pkg/store/store.ts';

const program = new Command('berth-apiserver')
  .description('the berth resource API (Kubernetes-compatible) and the ECS API (JSON 1.1, SigV4) on one port, on etcd or the embedded store')
  .option('--store <spec>', 'embedded:PATH, etcd://host:port[,host:port...] or etcd+https://host:port[,...] (TLS)', 'embedded:./.berth/data')
  .option('--etcd-cafile <file>', 'CA bundle that signed the etcd members\' serving certificates (etcd+https)')
  .option('--etcd-certfile <file>', 'client certificate for etcd members started with --client-cert-auth')
  .option('--etcd-keyfile <file>', 'key of --etcd-certfile')
  .option('--listen <host:port>', 'address to serve on', '127.0.0.1:6443')
  .option('--tls-cert-file <file>', 'serving certificate (PEM)')
  .option('--tls-private-key-file <file>', 'serving key (PEM)')
  .option('--token-auth-file <file>', 'static bearer tokens, CSV: token,user,uid,"group1,group2"; absent: dev mode (loopback only, everyone is admin)')
  .option('--access-key-file <file>', 'ECS API keys, CSV: accessKeyId,secretAccessKey,user,"group1,group2" (re-read when it changes)')
  .option('--region <region>', 'the region the ECS API answers as', 'us-east-1')
  .option(
    '--watch-cache-size <events>',
    'the most past events the watch cache keeps for watchers that resume: it keeps the last 75 s of events (at least 1,000) ' +
      'up to this; older resume points get 410 Gone and relist',
    String(DEFAULT_WATCH_CACHE_SIZE),
  )
  .option(
    '--compaction-interval <seconds>',
    'how often the store history is compacted (one apiserver at a time does it); 0: never (etcd then needs its own --auto-compaction)',
    '60',
  )
  .option('--compaction-retention <seconds>', 'how much store history compaction keeps: older watches, continue tokens and exact reads get 410 Gone', '300')
  .option('--inactive-retention <seconds>', 'how long a deleted service or deregistered container instance stays describable (INACTIVE)', '3600')
  .option(
    '--proxy-protocol-trusted <cidrs>',
    'CIDR[,CIDR...] of TCP load balancers that send a PROXY protocol header (v1 or v2): their clients\' real addresses count (registration, logs, audit); off by default',
  )
  .option('--request-timeout <seconds>', 'a request that is not a watch or a followed log is answered 504 after this', String(DEFAULT_SERVER_LIMITS.requestTimeoutMs / 1000))
  .option('--min-request-timeout <seconds>', 'a watch without timeoutSeconds ends after a random time between this and twice this', String(DEFAULT_SERVER_LIMITS.minWatchTimeoutMs / 1000))
  .option('--max-watches-per-identity <n>', 'open watches (and followed logs) per identity; beyond: 429 (0: no limit)', String(DEFAULT_SERVER_LIMITS.maxWatchesPerIdentity))
  .option('--max-requests-inflight-per-identity <n>', 'requests in flight per identity, watches aside; beyond: 429 (0: no limit)', String(DEFAULT_SERVER_LIMITS.maxInFlightPerIdentity))
  .option(
    '--max-connections-per-identity <n>',
    'connections one identity\'s requests may come on; a request on one more: 429 (0: no limit)',
    String(DEFAULT_SERVER_LIMITS.maxConnectionsPerIdentity),
  )
  .option('--watch-buffer-bytes <bytes>', 'a watch whose client has this much unread is closed (it relists)', String(DEFAULT_SERVER_LIMITS.watchBufferBytes))
  .option('--policy-file <file>', 'IAM policies attached to users and groups (JSON or YAML; see the README); re-read when it changes')
  .option('--audit-log <file>', 'append one JSON line per state-changing or denied request to this file')
  .option('--encryption-key-file <file>', 'keys secrets are encrypted with, one ID:BASE64 (32 bytes) a line: the first encrypts, all decrypt; without it secrets are refused')
  .option('--max-txn-ops <n>', "etcd's --max-txn-ops (default 128): binding calls are split into txns within it and 1 MiB; raise both for fewer txns")
  .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
  .option('--no-console', 'do not serve the web console under /ui/')
  .showHelpAfterError();

runMain('berth-apiserver', async () => {
  program.parse();
  const o = program.opts<{
    store: string;
    listen: string;
    tlsCertFile?: string;
    tlsPrivateKeyFile?: string;
    console: boolean;
    tokenAuthFile?: string;
    logLevel: string;
    inactiveRetention: string;
    watchCacheSize: string;
    proxyProtocolTrusted?: string;
    requestTimeout: string;
    minRequestTimeout: string;
    maxWatchesPerIdentity: string;
    maxRequestsInflightPerIdentity: string;
    maxConnectionsPerIdentity: string;
    watchBufferBytes: string;
    etcdCafile?: string;
    etcdCertfile?: string;
    etcdKeyfile?: string;
    accessKeyFile?: string;
    region: string;
    policyFile?: string;
    auditLog?: string;
    encryptionKeyFile?: string;
    compactionInterval: string;
    compactionRetention: string;
    maxTxnOps?: string;
  }>();
  const whole = (flag: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw badRequest(`${flag} ${v}: must be a whole number, at least ${min}`);
    return n;
  };
  const serverLimits: ServerLimits = {
    requestTimeoutMs: whole('--request-timeout', o.requestTimeout, 1) * 1000,
    minWatchTimeoutMs: whole('--min-request-timeout', o.minRequestTimeout, 1) * 1000,
    maxWatchesPerIdentity: whole('--max-watches-per-identity', o.maxWatchesPerIdentity, 0),
    maxInFlightPerIdentity: whole('--max-requests-inflight-per-identity', o.maxRequestsInflightPerIdentity, 0),
    maxConnectionsPerIdentity: whole('--max-connections-per-identity', o.maxConnectionsPerIdentity, 0),
    watchBufferBytes: whole('--watch-buffer-bytes', o.watchBufferBytes, 64 * 1024),
  };
  const proxyProtocolTrusted = o.proxyProtocolTrusted?.split(',').map((c) => c.trim()).filter(Boolean);
  if (proxyProtocolTrusted) cidrList(proxyProtocolTrusted); // a malformed CIDR fails here, naming the flag
  const maxTxnOps = o.maxTxnOps === undefined ? undefined : Number(o.maxTxnOps);
  if (maxTxnOps !== undefined && (!Number.isInteger(maxTxnOps) || maxTxnOps < 8)) {
    throw badRequest(`--max-txn-ops ${o.maxTxnOps}: must be a whole number, at least 8 (etcd's default is 128)`);
  }
  const watchCacheCapacity = Number(o.watchCacheSize);
  if (!Number.isInteger(watchCacheCapacity) || watchCacheCapacity < 100) throw badRequest(`--watch-cache-size ${o.watchCacheSize}: must be a whole number of events, at least 100`);
  const compactionInterval = Number(o.compactionInterval);
  if (!Number.isFinite(compactionInterval) || compactionInterval < 0) {
    throw badRequest(`--compaction-interval ${o.compactionInterval}: must be a number of seconds, 0 or more`);
  }
  const compactionRetention = Number(o.compactionRetention);
  if (!Number.isFinite(compactionRetention) || compactionRetention < 1) {
    throw badRequest(`--compaction-retention ${o.compactionRetention}: must be a number of seconds, at least 1`);
  }
  const retention = Number(o.inactiveRetention);
  if (!Number.isFinite(retention) || retention <= 0) throw badRequest(`--inactive-retention ${o.inactiveRetention}: must be a positive number of seconds`);
  const { host } = parseListen(o.listen);
  if (!o.tokenAuthFile && !isLoopback(host)) {
    throw badRequest(`--listen ${o.listen}: without --token-auth-file the server runs in dev mode, which listens on loopback only`);
  }
  if (!!o.tlsCertFile !== !!o.tlsPrivateKeyFile) throw badRequest('--tls-cert-file and --tls-private-key-file go together');
  const tokens = o.tokenAuthFile ? loadTokenFile(o.tokenAuthFile) : undefined;
  if (o.accessKeyFile && !existsSync(o.accessKeyFile)) throw badRequest(`--access-key-file ${o.accessKeyFile}: no such file`);
  if (o.policyFile && !tokens) throw badRequest('--policy-file needs --token-auth-file: in dev mode every caller is an admin, whom policies do not restrict');
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(o.region)) throw badRequest(`--region ${o.region}: expected an AWS region name such as us-east-1`);
  const etcdTls = o.etcdCafile || o.etcdCertfile || o.etcdKeyfile ? { caFile: o.etcdCafile, certFile: o.etcdCertfile, keyFile: o.etcdKeyfile } : undefined;

  container.register<Logger>('Logger', { useValue: newLogger({ level: o.logLevel }) });
  container.register<Store>('Store', { useValue: await openStore(o.store, { tls: etcdTls }) });
  const log = container.resolve<Logger>('Logger');
  const store = container.resolve<Store>('Store');

  // the ECS API on the same port, as `berth up` serves it; serve at once: /readyz answers 503
  // (saying why) until the watch cache has synced
  const txnLimits = maxTxnOps ? { ...(store.backend === 'etcd' ? ETCD_TXN_LIMITS : EMBEDDED_TXN_LIMITS), maxOps: maxTxnOps } : undefined;
  const api = await buildApiServer({
    store, log, tokens, inactiveRetentionMs: retention * 1000, watchCacheCapacity, serverLimits, txnLimits,
    compactionIntervalMs: compactionInterval * 1000,
    compactionRetentionMs: compactionRetention * 1000,
    noWaitForCache: true,
    policyFile: o.policyFile,
    auditLog: o.auditLog,
    keyring: o.encryptionKeyFile ? Keyring.fromFile(o.encryptionKeyFile) : undefined,
    arn: { ...DEFAULT_ARN_CONFIG, region: o.region },
    frontDoors: (parts) => [ecsFrontDoor(parts, { accessKeyFile: o.accessKeyFile, region: o.region, deploymentWaitMs: DEPLOYMENT_WAIT_MS })],
    console: o.console,
  });
  const { server, url } = await listen(api.handler, { listen: o.listen, tlsCertFile: o.tlsCertFile, tlsKeyFile: o.tlsPrivateKeyFile, proxyProtocolTrusted });
  const serving = { url, store: o.store, etcdTls: !!etcdTls, auth: tokens ? 'tokens' : 'dev', ecsKeys: o.accessKeyFile ?? 'none', policies: o.policyFile, audit: o.auditLog };
  log.info(serving, 'berth-apiserver serving');
  void api.synced.then(() => log.info({ revision: api.cache.revision }, 'watch cache synced; ready'));
  onShutdown(log, async () => {
    server.close();
    server.closeAllConnections();
    await api.stop();
    await store.close();
  });
});
