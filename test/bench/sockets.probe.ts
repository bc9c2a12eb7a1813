// `npx tsx test/bench/sockets.probe.ts [--connections N]`: what a connection costs the
// apiserver. berth-apiserver runs as its own process (dev mode, embedded store), once plain and
// once over TLS; N connections each make one request and stay open (idle keep-alive, what an
// agent's request connection is between reports), then each starts a watch of its own
// instance's tasks (what an agent holds all the time). Prints the server's RSS growth per
// connection for each. A probe, not a test: it asserts nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/etcd.ts';
import { ensureSelfSignedCert } from '../../pkg/tls/selfsigned.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('connections', 2000);
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function server(dir: string, tls: boolean): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const certs = tls ? await ensureSelfSignedCert(join(dir, 'pki')) : undefined;
  const args = ['--import', 'tsx', join(root, 'cmd/berth-apiserver/main.ts'), '--store', `embedded:${join(dir, tls ? 'tls' : 'plain')}`, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--max-watches-per-identity', '0', '--max-connections-per-identity', '0', '--no-console'];
  if (certs) args.push('--tls-cert-file', certs.certFile, '--tls-private-key-file', certs.keyFile);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 300; i++) {
    try {
      const s = await open(port, tls);
      const r = await exchange(s, 'GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
      s.destroy();
      if (r.startsWith('HTTP/1.1 200')) return { child, port };
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error('apiserver did not start');
}

function open(port: number, tls: boolean): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tls ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(s)) : netConnect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** sends a request and resolves with the first chunk of the answer (its headers) */
function exchange(s: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    s.once('data', (d) => resolve(d.toString('latin1')));
    s.write(text);
  });
}

async function pool(n: number, conc: number, f: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) await f(next++);
  }));
}

async function measure(dir: string, tls: boolean) {
  const { child, port } = await server(dir, tls);
  const socks: Socket[] = [];
  try {
    const post = async (path: string, body: unknown) => {
      const s = await open(port, tls);
      const text = JSON.stringify(body);
      await exchange(s, `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      s.destroy();
    };
    await post('/apis/berth.dev/v1/clusters', { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } });
    // warm up the paths measured (JIT, lazy modules), then measure from a settled server
    await pool(50, 10, async () => {
      const s = await open(port, tls);
      await exchange(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      s.destroy();
    });
    await sleep(2000);
    const base = rssKiB(child.pid!);
    await pool(N, 20, async () => {
      const s = await open(port, tls);
      s.on('error', () => undefined);
      await exchange(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      socks.push(s);
    });
    await sleep(2000);
    const idle = rssKiB(child.pid!);
    await pool(N, 20, async (i) => {
      await exchange(socks[i], `GET /apis/berth.dev/v1/namespaces/default/tasks?watch=1&timeoutSeconds=600&fieldSelector=spec.containerInstance%3Di-${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
    await sleep(2000);
    const watching = rssKiB(child.pid!);
    return {
      connections: N,
      base_rss_mib: Math.round(base / 1024),
      idle_keepalive_kib_per_connection: Math.round(((idle - base) / N) * 10) / 10,
      watching_kib_per_connection: Math.round(((watching - base) / N) * 10) / 10,
    };
  } finally {
    socks.forEach((s) => s.destroy());
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const dir = await mkdtemp(join(tmpdir(), 'berth-sockets-'));
try {
  const out = { plain: await measure(dir, false), tls: await measure(dir, true) };
  console.log(JSON.stringify(out, null, 2));
} finally {
  await rm(dir, { recursive: true, force: true });
}
