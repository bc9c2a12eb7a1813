/**
 * Test support: real `berth-apiserver` processes (cmd/berth-apiserver) on one etcd cluster,
 * each on a free loopback port, in dev mode (loopback only, every caller is the admin).
 * They can be paused (SIGSTOP) and resumed, and are stopped by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { freePort } from './etcd.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'berth-apiserver', 'bin.mjs');

export interface ApiProcess {
  index: number;
  url: string;
  readonly pid: number;
  pause(): void;
  resume(): void;
  /** the last lines it wrote to stderr (for failure messages) */
  log(): string;
}

export interface ApiProcesses {
  servers: ApiProcess[];
  stop(): Promise<void>;
}

/** `storeUrls[i]` overrides the store of apiserver i (e.g. etcd behind a slow proxy). */
export async function startApiProcesses(storeUrl: string, n: number, extraArgs: string[] = [], storeUrls: Array<string | undefined> = []): Promise<ApiProcesses> {
  const children: ChildProcess[] = [];
  const servers: ApiProcess[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill('SIGCONT');
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }),
    );
  };
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      const child = spawn(process.execPath, [BIN, '--store', storeUrls[i] ?? storeUrl, '--listen', `127.0.0.1:${port}`, '--log-level', process.env.BERTH_TEST_LOG ? 'debug' : 'warn', ...extraArgs], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      let err = '';
      child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
      servers.push({
        index: i,
        url: `http://127.0.0.1:${port}`,
        get pid() {
          return child.pid!;
        },
        pause: () => void child.kill('SIGSTOP'),
        resume: () => void child.kill('SIGCONT'),
        log: () => err,
      });
    }
    const deadline = Date.now() + 60_000;
    for (const s of servers) {
      for (;;) {
        const c = children[s.index];
        if (c.exitCode !== null) throw new Error(`berth-apiserver ${s.index} exited: ${s.log()}`);
        try {
          if ((await fetch(`${s.url}/readyz`, { signal: AbortSignal.timeout(2000) })).ok) break;
        } catch {
          /* not yet */
        }
        if (Date.now() > deadline) throw new Error(`berth-apiserver ${s.index} did not become ready: ${s.log()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { servers, stop };
}
