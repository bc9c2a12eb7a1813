// `npm run bench:docker [-- --replicas 20,50]`: real containers on one dockerd (berth's own,
// with the local busybox image), side by side. For K replicas: time until all are running
// for (a) berth via `berth up` (a separate process: apiserver, controllers, agent),
// (b) Docker Swarm mode on the same daemon (a replicated service of the same image and
// count), (c) K containers created and started directly through dockerode, all at once
// (each berth task runs its own task runner, so berth's concurrency is K too). Then a rolling
// update of the K replicas for berth (100%/200%: new tasks start, then old ones stop) and for
// Swarm configured the same way (--update-parallelism 0 --update-order start-first).
// Prints JSON with the ratios berth/Swarm and berth/direct, and writes
// test/bench/results/docker.json. A benchmark, not a test.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import type { Service } from '../../pkg/api/kinds.ts';
import { clientFromKubeconfig } from '../../pkg/client/client.ts';
import { startDockerd } from '../../pkg/dockerd/dockerd.ts';
import { ensureBusyboxImage } from '../../pkg/dockerd/image.ts';
import { freePort } from '../support/etcd.ts';
import { describeMachine } from './machine.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const i = args.indexOf('--replicas');
const SIZES = (i >= 0 ? args[i + 1] : '20,50').split(',').map(Number);
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secs = (ms: number) => Math.round(ms / 10) / 100;

async function until(what: string, f: () => Promise<boolean>, timeoutMs = 600_000) {
  const t0 = Date.now();
  while (!(await f())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

const dir = await mkdtemp(join(tmpdir(), 'berth-bench-docker-'));
const dockerd = await startDockerd({ dir: join(dir, 'docker'), bridgeName: 'berthbench0', octet: 17, removeDirOnStop: true });
const docker = new Docker({ socketPath: dockerd.socketPath });
const dockerCli = (...a: string[]) => run('docker', ['-H', `unix://${dockerd.socketPath}`, ...a], { maxBuffer: 1 << 24 });
const image = await ensureBusyboxImage(docker);
const results: Array<Record<string, unknown>> = [];

async function removeAll(label?: string) {
  const cs = await docker.listContainers({ all: true, ...(label ? { filters: { label: [label] } } : {}) });
  await Promise.all(cs.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
}

try {
  // ---- (a) berth up as its own process, on this dockerd
  const home = join(dir, 'berth-home');
  const port = await freePort();
  const up = spawn(process.execPath, [join(root, 'cmd/berth/bin.mjs'), 'up', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { env: { ...process.env, BERTH_HOME: home, DOCKER_HOST: `unix://${dockerd.socketPath}` }, stdio: ['ignore', 'ignore', 'inherit'] });
  const { client } = await (async () => {
    for (let k = 0; k < 300; k++) {
      try {
        const c = await clientFromKubeconfig({ path: join(home, 'config') });
        await c.client.request('GET', '/healthz');
        if ((await c.client.list('ContainerInstance', 'default')).items.length) return c;
      } catch {
        /* not yet */
      }
      await sleep(200);
    }
    throw new Error('berth up did not come up');
  })();
  const td = (cmd: string[]) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'bench' }, spec: { containerDefinitions: [{ name: 'app', image, memory: 8, command: cmd }] } });
  await client.create(td(['sleep', '1d']));
  const steady = async (name: string, k: number, rev: string) => {
    const s = await client.get<Service>('Service', 'default', name);
    const d = s.status?.deployments ?? [];
    return s.status?.runningCount === k && d.length === 1 && d[0].taskDefinition === rev && d[0].runningCount === k;
  };
  const berth: Record<number, { start_s: number; rolling_update_s: number }> = {};
  for (const K of SIZES) {
    const name = `b${K}`;
    let t = Date.now();
    const cur = `bench:${(await client.get('TaskDefinition', undefined, 'bench')).status.revision}`;
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { taskDefinition: cur, desiredCount: K } });
    await until(`berth ${K} running`, () => steady(name, K, cur));
    const start = Date.now() - t;
    await client.request('PUT', client.path('TaskDefinition', undefined, 'bench'), { ...(await client.get('TaskDefinition', undefined, 'bench')), spec: td(['sleep', `${K}d`]).spec });
    const next = `bench:${(await client.get('TaskDefinition', undefined, 'bench')).status.revision}`;
    t = Date.now();
    await client.patch('Service', 'default', name, { spec: { taskDefinition: next } });
    await until(`berth ${K} rolled`, () => steady(name, K, next));
    const roll = Date.now() - t;
    berth[K] = { start_s: secs(start), rolling_update_s: secs(roll) };
    console.error(`berth K=${K}: ${JSON.stringify(berth[K])}`);
    await client.delete('Service', 'default', name);
    await until(`berth ${K} deleted`, async () => (await client.tryGet('Service', 'default', name)) === undefined);
    await until('berth containers gone', async () => (await docker.listContainers({ filters: { label: ['com.amazonaws.ecs.cluster=default'] } })).length === 0, 120_000);
  }
  client.close();
  up.kill('SIGTERM');
  await new Promise((r) => up.once('exit', r));
  await removeAll('com.amazonaws.ecs.cluster');

  // ---- (b) Docker Swarm on the same daemon
  await dockerCli('swarm', 'init', '--advertise-addr', '127.0.0.1');
  const swarm: Record<number, { start_s: number; rolling_update_s: number }> = {};
  try {
    for (const K of SIZES) {
      const name = `s${K}`;
      const running = async (arg: string) => {
        const { stdout } = await dockerCli('service', 'ps', name, '--filter', 'desired-state=running', '--format', '{{.CurrentState}} {{.Image}}');
        const lines = stdout.trim().split('\n').filter((l) => l.startsWith('Running'));
        return lines.length === K && (await docker.listContainers({ filters: { label: [`com.docker.swarm.service.name=${name}`] } })).filter((c) => c.Command.includes(arg)).length === K;
      };
      let t = Date.now();
      await dockerCli('service', 'create', '--detach', '--name', name, '--replicas', String(K), '--update-parallelism', '0', '--update-order', 'start-first', image, 'sleep', '1d');
      await until(`swarm ${K} running`, () => running('1d'));
      const start = Date.now() - t;
      t = Date.now();
      await dockerCli('service', 'update', '--detach', '--args', `sleep ${K}d`, name);
      await until(`swarm ${K} updated`, async () => (await running(`${K}d`)) && (await docker.listContainers({ filters: { label: [`com.docker.swarm.service.name=${name}`] } })).length === K);
      const roll = Date.now() - t;
      swarm[K] = { start_s: secs(start), rolling_update_s: secs(roll) };
      console.error(`swarm K=${K}: ${JSON.stringify(swarm[K])}`);
      await dockerCli('service', 'rm', name);
      await until('swarm containers gone', async () => (await docker.listContainers({ all: true, filters: { label: [`com.docker.swarm.service.name=${name}`] } })).length === 0, 120_000);
    }
  } finally {
    await dockerCli('swarm', 'leave', '--force').catch(() => undefined);
  }

  // ---- (c) direct: K containers created and started at once
  const direct: Record<number, { start_s: number }> = {};
  for (const K of SIZES) {
    const t = Date.now();
    await Promise.all(
      Array.from({ length: K }, async (_, n) => {
        const c = await docker.createContainer({ Image: image, Cmd: ['sleep', '1d'], name: `direct-${K}-${n}`, Labels: { 'berth.bench': 'direct' }, HostConfig: { Memory: 8 * 2 ** 20 } });
        await c.start();
      }),
    );
    direct[K] = { start_s: secs(Date.now() - t) };
    console.error(`direct K=${K}: ${JSON.stringify(direct[K])}`);
    await removeAll('berth.bench=direct');
  }

  for (const K of SIZES) {
    results.push({
      replicas: K,
      berth: berth[K],
      swarm: swarm[K],
      direct: direct[K],
      ratio_berth_to_swarm_start: Math.round((berth[K].start_s / swarm[K].start_s) * 100) / 100,
      ratio_berth_to_swarm_rolling_update: Math.round((berth[K].rolling_update_s / swarm[K].rolling_update_s) * 100) / 100,
      ratio_berth_to_direct_start: Math.round((berth[K].start_s / direct[K].start_s) * 100) / 100,
    });
  }
} finally {
  await removeAll().catch(() => undefined);
  await dockerd.stop();
  await rm(dir, { recursive: true, force: true });
}

const out = { benchmark: 'docker', date: new Date().toISOString(), machine: describeMachine(), command: `npm run bench:docker -- ${args.join(' ')}`.trim(), results };
console.log(JSON.stringify(out, null, 2));
mkdirSync(join(root, 'test/bench/results'), { recursive: true });
writeFileSync(join(root, 'test/bench/results/docker.json'), JSON.stringify(out, null, 2) + '\n');
process.exit(0);
