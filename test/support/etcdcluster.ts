/**
 * Test support: a real etcd cluster of N members (Debian's etcd-server), each its own
 * process with its own data dir, on free ports. Members listen on loopback by default, or on
 * the addresses given (a test host's namespace address, say) with a command wrapper
 * (`ip netns exec NS`). Optional TLS: every member serves clients and peers with the given
 * certificate and requires client certificates signed by the CA.
 *
 * Members can be killed, stopped (SIGSTOP), resumed and restarted on the same data dir, so
 * fault tests can take a leader away for real. Everything is stopped by pid and removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './etcd.ts';

export interface EtcdTls {
  caFile: string;
  /** serving and peer certificate of every member (its SANs must cover every member's address) */
  certFile: string;
  keyFile: string;
  /** a client certificate for the health checks of this fixture (and for clients) */
  clientCertFile: string;
  clientKeyFile: string;
}

export interface EtcdClusterOptions {
  members?: number;
  /** the address each member listens on (default 127.0.0.1 for all) */
  hosts?: string[];
  /** runs a member's command inside something (e.g. ['ip', 'netns', 'exec', 'h1']) */
  wrap?: (index: number) => string[];
  tls?: EtcdTls;
  /** extra etcd flags for every member */
  extraArgs?: string[];
}

export interface EtcdMember {
  name: string;
  index: number;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** the end of what the member wrote to stderr (why it exited) */
  stderrTail(): string;
  /** SIGKILL (or another signal); the process is gone afterwards unless the signal is SIGSTOP */
  kill(signal?: NodeJS.Signals): Promise<void>;
  pause(): void;
  resume(): void;
  /** starts the member again on its data dir (after kill) */
  restart(): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** client URLs of all members */
  endpoints: string[];
  /** the --store spec: etcd://h:p,h:p,h:p (etcd+https:// with TLS) */
  storeUrl: string;
  /** the member etcd currently reports as leader */
  leader(): Promise<EtcdMember>;
  /** waits until every running member answers /health */
  healthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startEtcdCluster(o: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const n = o.members ?? 3;
  const scheme = o.tls ? 'https' : 'http';
  const root = await mkdtemp(join(tmpdir(), 'berth-etcdc-'));
  const specs: Array<{ name: string; host: string; client: number; peer: number; dataDir: string }> = [];
  for (let i = 0; i < n; i++) {
    specs.push({ name: `m${i}`, host: o.hosts?.[i] ?? '127.0.0.1', client: await freePort(), peer: await freePort(), dataDir: join(root, `m${i}`) });
  }
  const initialCluster = specs.map((s) => `${s.name}=${scheme}://${s.host}:${s.peer}`).join(',');
  const token = `berth-test-${process.pid}-${Date.now()}`;

  const launchers: Array<() => void> = [];
  const members: EtcdMember[] = specs.map((s, index) => {
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let stderr = '';
    const clientUrl = `${scheme}://${s.host}:${s.client}`;
    const peerUrl = `${scheme}://${s.host}:${s.peer}`;
    const args = [
      '--name', s.name,
      '--data-dir', s.dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', token,
      '--initial-cluster-state', 'new',
      '--log-level', 'error',
      '--logger', 'zap',
      ...(o.tls
        ? [
            '--cert-file', o.tls.certFile, '--key-file', o.tls.keyFile, '--trusted-ca-file', o.tls.caFile, '--client-cert-auth',
            '--peer-cert-file', o.tls.certFile, '--peer-key-file', o.tls.keyFile, '--peer-trusted-ca-file', o.tls.caFile, '--peer-client-cert-auth',
          ]
        : []),
      ...(o.extraArgs ?? []),
    ];
    const launch = () => {
      const cmd = [...(o.wrap?.(index) ?? []), 'etcd', ...args];
      const c = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      c.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
      exited = new Promise<void>((r) => c.once('exit', () => r()));
      child = c;
    };
    launchers.push(launch);
    const m: EtcdMember = {
      name: s.name,
      index,
      clientUrl,
      peerUrl,
      dataDir: s.dataDir,
      get pid() {
        return child?.pid;
      },
      get running() {
        return !!child && child.exitCode === null && child.signalCode === null;
      },
      stderrTail: () => stderr,
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        if (!child || !m.running) return;
        if (signal === 'SIGSTOP') return void child.kill('SIGSTOP');
        child.kill('SIGCONT');
        child.kill(signal);
        await exited;
      },
      pause() {
        if (m.running) child!.kill('SIGSTOP');
      },
      resume() {
        if (m.running) child!.kill('SIGCONT');
      },
      async restart() {
        if (m.running) await m.kill('SIGKILL');
        launch();
        await waitHealthy(m, o.tls, 30_000, () => stderr);
      },
    };
    return m;
  });

  for (const launch of launchers) launch();
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    storeUrl: `${o.tls ? 'etcd+https' : 'etcd'}://${specs.map((s) => `${s.host}:${s.client}`).join(',')}`,
    async leader() {
      const deadline = Date.now() + 30_000;
      for (;;) {
        for (const m of members) {
          if (!m.running) continue;
          try {
            const st = (await getJson(`${m.clientUrl}/v3/maintenance/status`, o.tls, '{}')) as { header?: { member_id?: string }; leader?: string };
            if (st.leader && st.header?.member_id === st.leader) return m;
          } catch {
            /* not answering */
          }
        }
        if (Date.now() > deadline) throw new Error('etcd cluster has no leader');
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async healthy(timeoutMs = 30_000) {
      await Promise.all(members.filter((m) => m.running).map((m) => waitHealthy(m, o.tls, timeoutMs, () => m.stderrTail())));
    },
    async stop() {
      await Promise.all(members.map((m) => m.kill('SIGKILL')));
      await rm(root, { recursive: true, force: true });
    },
  };
  try {
    await cluster.healthy(60_000);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

async function waitHealthy(m: EtcdMember, tls: EtcdTls | undefined, timeoutMs: number, err: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!m.running) throw new Error(`etcd member ${m.name} exited: ${err()}`);
    try {
      const h = (await getJson(`${m.clientUrl}/health`, tls)) as { health?: string };
      if (h.health === 'true') return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`etcd member ${m.name} did not become healthy: ${err()}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** GET (or POST with a body) a JSON document from a member, over TLS with the client certificate when given. */
async function getJson(url: string, tls: EtcdTls | undefined, postBody?: string): Promise<unknown> {
  if (!tls) {
    const res = await fetch(url, postBody === undefined ? { signal: AbortSignal.timeout(3000) } : { method: 'POST', body: postBody, signal: AbortSignal.timeout(3000) });
    return res.json();
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: postBody === undefined ? 'GET' : 'POST',
        ca: readFileSync(tls.caFile),
        cert: readFileSync(tls.clientCertFile),
        key: readFileSync(tls.clientKeyFile),
        timeout: 3000,
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(text));
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(postBody);
  });
}
