import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EtcdProcess {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** etcd://127.0.0.1:PORT, the --store spec */
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  stop(): Promise<void>;
}

/** A free loopback TCP port (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts a real etcd (Debian's etcd-server) on free loopback ports with a throwaway data
 * dir, waits until it answers, and returns how to stop it (by pid; the dir is removed).
 * etcd's default message limits (1.5 MiB requests); no auto-compaction: the apiserver's
 * compactor does it, as in development (hack/etcd.sh). `--max-txn-ops` is 10000 unless
 * `maxTxnOps: 'default'` leaves etcd's own default (128), as production runs it.
 */
export async function startEtcd(opts: { port?: number; dataDir?: string; maxTxnOps?: number | 'default' } = {}): Promise<EtcdProcess> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'berth-etcd-')));
  const port = opts.port ?? (await freePort());
  const peer = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(
    'etcd',
    [
      '--name', 'default',
      '--data-dir', dataDir,
      '--listen-client-urls', endpoint,
      '--advertise-client-urls', endpoint,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `default=http://127.0.0.1:${peer}`,
      ...(opts.maxTxnOps === 'default' ? [] : ['--max-txn-ops', String(opts.maxTxnOps ?? 10000)]),
      '--quota-backend-bytes', String(4 * 1024 * 1024 * 1024),
      '--log-level', 'error',
      '--logger', 'zap',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd exited at start: ${stderr}`);
    try {
      const res = await fetch(`${endpoint}/health`);
      if (res.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`etcd did not become healthy: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  let stopped = false;
  return {
    endpoint,
    url: `etcd://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    dataDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
