import 'reflect-metadata';
import { Command } from 'commander';
import { container } from 'tsyringe';
import { buildApiServer, listen, parseListen } from '../../pkg/apiserver/apiserver.ts';
import { loadTokenFile } from '../../pkg/apiserver/auth.ts';
import { EMBEDDED_TXN_LIMITS, ETCD_TXN_LIMITS } from '../../pkg/apiserver/binding.ts';
import { DEFAULT_WATCH_CACHE_SIZE } from '../../pkg/apiserver/watchcache.ts';
import { isLoopback, onShutdown, runMain } from '../../pkg/cmdutil/cmdutil.ts';
import { badRequest } from '../../pkg/errors/errors.ts';
import { newLogger, type Logger } from '../../pkg/log/log.ts';
import { openStore } from '../../pkg/store/open.ts';
import type { Store } from '../../pkg/store/store.ts';

const program = new Command('berth-apiserver')
  .description('the berth resource API (Kubernetes-compatible) on etcd or the embedded store')
  .option('--store <spec>', 'embedded:PATH or etcd://host:port[,host:port...]', 'embedded:./.berth/data')
  .option('--listen <host:port>', 'address to serve on', '127.0.0.1:6443')
  .option('--tls-cert-file <file>', 'serving certificate (PEM)')
  .option('--tls-private-key-file <file>', 'serving key (PEM)')
  .option('--token-auth-file <file>', 'static bearer tokens, CSV: token,user,uid,"group1,group2"; absent: dev mode (loopback only, everyone is admin)')
  .option('--watch-cache-size <events>', 'past events the watch cache keeps for watchers that resume (older resume points get 410 Gone and relist)', String(DEFAULT_WATCH_CACHE_SIZE))
  .option('--inactive-retention <seconds>', 'how long a deleted service or deregistered container instance stays describable (INACTIVE)', '3600')
  .option('--max-txn-ops <n>', "etcd's --max-txn-ops (default 128): binding calls are split into txns within it and 1 MiB; raise both for fewer txns")
  .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
  .showHelpAfterError();

runMain('berth-apiserver', async () => {
  program.parse();
  const o = program.opts<{
    store: string;
    listen: string;
    tlsCertFile?: string;
    tlsPrivateKeyFile?: string;
    tokenAuthFile?: string;
    logLevel: string;
    inactiveRetention: string;
    watchCacheSize: string;
    maxTxnOps?: string;
  }>();
  const maxTxnOps = o.maxTxnOps === undefined ? undefined : Number(o.maxTxnOps);
  if (maxTxnOps !== undefined && (!Number.isInteger(maxTxnOps) || maxTxnOps < 8)) {
    throw badRequest(`--max-txn-ops ${o.maxTxnOps}: must be a whole number, at least 8 (etcd's default is 128)`);
  }
  const watchCacheCapacity = Number(o.watchCacheSize);
  if (!Number.isInteger(watchCacheCapacity) || watchCacheCapacity < 100) throw badRequest(`--watch-cache-size ${o.watchCacheSize}: must be a whole number of events, at least 100`);
  const retention = Number(o.inactiveRetention);
  if (!Number.isFinite(retention) || retention <= 0) throw badRequest(`--inactive-retention ${o.inactiveRetention}: must be a positive number of seconds`);
  const { host } = parseListen(o.listen);
  if (!o.tokenAuthFile && !isLoopback(host)) {
    throw badRequest(`--listen ${o.listen}: without --token-auth-file the server runs in dev mode, which listens on loopback only`);
  }
  if (!!o.tlsCertFile !== !!o.tlsPrivateKeyFile) throw badRequest('--tls-cert-file and --tls-private-key-file go together');
  const tokens = o.tokenAuthFile ? loadTokenFile(o.tokenAuthFile) : undefined;

  container.register<Logger>('Logger', { useValue: newLogger({ level: o.logLevel }) });
  container.register<Store>('Store', { useValue: await openStore(o.store) });
  const log = container.resolve<Logger>('Logger');
  const store = container.resolve<Store>('Store');

  const txnLimits = maxTxnOps ? { ...(store.backend === 'etcd' ? ETCD_TXN_LIMITS : EMBEDDED_TXN_LIMITS), maxOps: maxTxnOps } : undefined;
  const api = await buildApiServer({ store, log, tokens, inactiveRetentionMs: retention * 1000, watchCacheCapacity, txnLimits });
  const { server, url } = await listen(api.handler, { listen: o.listen, tlsCertFile: o.tlsCertFile, tlsKeyFile: o.tlsPrivateKeyFile });
  log.info({ url, store: o.store, auth: tokens ? 'tokens' : 'dev' }, 'berth-apiserver serving');
  onShutdown(log, async () => {
    server.close();
    server.closeAllConnections();
    api.stop();
    await store.close();
  });
});
