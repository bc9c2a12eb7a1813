import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './etcd.ts';

export interface TestRegistry {
  /** host:port, on loopback */
  host: string;
  stop(): Promise<void>;
}

/**
 * A private image registry (Debian's docker-registry, distribution 2.x) on a free loopback
 * port with htpasswd authentication for one user; its storage in a temp dir. Stopped by pid.
 */
export async function startRegistry(user: string, password: string): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-registry-'));
  const port = await freePort();
  await writeFile(join(dir, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', user, password]));
  await writeFile(
    join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log: { level: error }',
      `storage: { filesystem: { rootdirectory: ${join(dir, 'data')} } }`,
      `http: { addr: "127.0.0.1:${port}" }`,
      `auth: { htpasswd: { realm: berth-test, path: ${join(dir, 'htpasswd')} } }`,
      '',
    ].join('\n'),
  );
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const host = `127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr.slice(-500)}`);
    const ok = await fetch(`http://${host}/v2/`).then((r) => r.status === 401 || r.status === 200, () => false);
    if (ok) break;
    if (Date.now() - t0 > 10_000) throw new Error(`docker-registry did not answer on ${host}: ${stderr.slice(-500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        process.kill(child.pid!, 'SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
