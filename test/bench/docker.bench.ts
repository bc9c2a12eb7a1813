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
//
// BENCH_BEFORE=DIR runs berth a second time from another checkout's cmd/berth/bin.mjs (e.g. a
// `git archive` of main with a node_modules link), first, in the same run: `berth_before`.
// `--profile` runs berth only (before and after), with debug logging, and breaks the start of
// the K replicas down per task: created, bound (both seen through a watch), the agent's own
// stages (its runner, adopt, pull, create, start, known RUNNING: the task runner's debug log),
// Docker's create and start events, RUNNING seen through the watch; and every Docker call the
// agent made with its duration. Writes test/bench/results/docker-profile.json.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import { clientFromKubeconfig } from '../../pkg/client/client.ts';
import { startDockerd } from '../../pkg/dockerd/dockerd.ts';
import { ensureBusyboxImage } from '../../pkg/dockerd/image.ts';
import { freePort } from '../support/etcd.ts';
import { describeMachine } from './machine.ts';

const run = promisify(execFile);
const args = process.argv.slice(2);
const i = args.indexOf('--replicas');
const SIZES = (i >= 0 ? args[i + 1] : '20,50').split(',').map(Number);
const PROFILE = args.includes('--profile');
const BEFORE = process.env.BENCH_BEFORE;
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

type BerthRun = Record<number, { start_s: number; rolling_update_s?: number }>;
interface Trace {
  /** per task (its ARN): when each stage was first reached (ms epoch) */
  tasks: Map<string, Record<string, number>>;
  /** the agent's Docker calls: kind -> durations (ms) */
  calls: Map<string, number[]>;
}

const pct = (xs: number[], p: number) => {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** The agent's debug log lines: the task runner's stages, the Docker calls. */
function readAgentLog(up: ChildProcess, trace: { current?: Trace }) {
  const lines = createInterface({ input: up.stderr! });
  lines.on('line', (line) => {
    if (!line.startsWith('{')) {
      process.stderr.write(line + '\n');
      return;
    }
    let o: { level?: number; time?: string; msg?: string; task?: string; stage?: string; container?: string; call?: string; ms?: number };
    try {
      o = JSON.parse(line);
    } catch {
      return;
    }
    const t = trace.current;
    if (o.level !== undefined && o.level >= 40) process.stderr.write(line + '\n');
    if (!t) return;
    if (o.msg === 'task stage' && o.task && o.stage) {
      const r = t.tasks.get(o.task) ?? {};
      const key = o.stage;
      r[key] ??= Date.parse(o.time!);
      t.tasks.set(o.task, r);
    } else if (o.msg === 'docker call' && o.call && o.ms !== undefined) {
      const xs = t.calls.get(o.call) ?? [];
      xs.push(o.ms);
      t.calls.set(o.call, xs);
    }
  });
}

/** The service's tasks seen through a watch: created, bound, RUNNING (bench clock) keyed by ARN. */
function watchTasks(client: Awaited<ReturnType<typeof clientFromKubeconfig>>['client'], service: string, trace: Trace, signal: AbortSignal) {
  void (async () => {
    try {
      for await (const ev of client.watch<Task>('Task', 'default', { signal })) {
        const t = ev.object;
        const arn = t.status?.taskArn;
        if (!arn || ev.type === 'ERROR' || ev.type === 'BOOKMARK' || t.spec.group !== `service:${service}`) continue;
        const r = trace.tasks.get(arn) ?? {};
        const now = Date.now();
        r['created (watch)'] ??= now;
        if (t.spec.containerInstance) r['bound (watch)'] ??= now;
        if (t.status?.lastStatus === 'RUNNING') r['RUNNING (watch)'] ??= now;
        trace.tasks.set(arn, r);
      }
    } catch (e) {
      if (!signal.aborted) console.error(`task watch ended: ${(e as Error).message}`);
    }
  })();
}

/** Docker's create and start events of berth's containers (the daemon's clock, the same host's). */
async function watchDocker(trace: Trace): Promise<() => void> {
  const stream = (await docker.getEvents({ filters: { type: ['container'], event: ['create', 'start'], label: ['com.amazonaws.ecs.cluster'] } })) as unknown as NodeJS.ReadableStream & { destroy(): void };
  const lines = createInterface({ input: stream });
  lines.on('line', (l) => {
    try {
      const e = JSON.parse(l) as { Action: string; timeNano: number; Actor: { Attributes: Record<string, string> } };
      const arn = e.Actor.Attributes['com.amazonaws.ecs.task-arn'];
      if (!arn) return;
      const r = trace.tasks.get(arn) ?? {};
      r[`docker ${e.Action} event`] ??= Math.round(e.timeNano / 1e6);
      trace.tasks.set(arn, r);
    } catch {
      /* not an event */
    }
  });
  return () => stream.destroy();
}

const STAGE_ORDER = ['created (watch)', 'bound (watch)', 'runner', 'adopted', 'pull', 'name recorded', 'docker create event', 'created', 'create', 'docker start event', 'start', 'known RUNNING', 'RUNNING (watch)'];

/** Per stage: when the median and the last task reached it (ms after the service's create), and the median step from the stage before. */
function breakdown(trace: Trace, t0: number, steadyAt: number) {
  const tasks = [...trace.tasks.values()].filter((r) => r['created (watch)'] !== undefined);
  const stages = STAGE_ORDER.filter((s) => tasks.some((r) => r[s] !== undefined));
  const rows = stages.map((s, n) => {
    const at = tasks.map((r) => r[s]).filter((x) => x !== undefined).map((x) => x - t0);
    const prev = stages[n - 1];
    const step = prev ? tasks.filter((r) => r[s] !== undefined && r[prev] !== undefined).map((r) => r[s] - r[prev]) : [];
    return { stage: s, tasks: at.length, first_ms: Math.min(...at), median_ms: pct(at, 50), last_ms: Math.max(...at), step_median_ms: pct(step, 50), step_p90_ms: pct(step, 90) };
  });
  const calls = Object.fromEntries(
    [...trace.calls].sort((a, b) => b[1].length - a[1].length).map(([k, xs]) => [k, { n: xs.length, median_ms: pct(xs, 50), p90_ms: pct(xs, 90), max_ms: Math.max(...xs), total_ms: Math.round(xs.reduce((a, b) => a + b, 0)) }]),
  );
  return { service_created_to_steady_ms: steadyAt - t0, stages: rows, docker_calls: calls };
}

/** berth up (from checkout `checkout`) as its own process on this dockerd: K replicas up, then rolled. */
async function runBerth(label: string, checkout: string): Promise<{ times: BerthRun; profile?: Record<number, unknown> }> {
  const home = join(dir, `berth-home-${label}`);
  const port = await freePort();
  const up = spawn(process.execPath, [join(checkout, 'cmd/berth/bin.mjs'), 'up', '--listen', `127.0.0.1:${port}`, '--log-level', PROFILE ? 'debug' : 'warn'], {
    env: { ...process.env, BERTH_HOME: home, DOCKER_HOST: `unix://${dockerd.socketPath}`, ECS_INTROSPECTION_PORT: '0' },
    stdio: ['ignore', 'ignore', PROFILE ? 'pipe' : 'inherit'],
  });
  const tracing: { current?: Trace } = {};
  if (PROFILE) readAgentLog(up, tracing);
  try {
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
    const times: BerthRun = {};
    const profile: Record<number, unknown> = {};
    for (const K of SIZES) {
      const name = `b${K}`;
      const cur = `bench:${(await client.get('TaskDefinition', undefined, 'bench')).status.revision}`;
      const trace: Trace = { tasks: new Map(), calls: new Map() };
      const ac = new AbortController();
      let stopDocker = () => {};
      if (PROFILE) {
        watchTasks(client, name, trace, ac.signal);
        stopDocker = await watchDocker(trace);
        await sleep(300); // the watches are open
        tracing.current = trace;
      }
      let t = Date.now();
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { taskDefinition: cur, desiredCount: K } });
      await until(`berth ${K} running`, () => steady(name, K, cur));
      const start = Date.now() - t;
      if (PROFILE) {
        await sleep(500); // the last log lines and events
        tracing.current = undefined;
        ac.abort();
        stopDocker();
        profile[K] = breakdown(trace, t, t + start);
        times[K] = { start_s: secs(start) };
        console.error(`${label} K=${K}: ${JSON.stringify(times[K])}`);
      } else {
        await client.request('PUT', client.path('TaskDefinition', undefined, 'bench'), { ...(await client.get('TaskDefinition', undefined, 'bench')), spec: td(['sleep', `${K}d`]).spec });
        const next = `bench:${(await client.get('TaskDefinition', undefined, 'bench')).status.revision}`;
        t = Date.now();
        await client.patch('Service', 'default', name, { spec: { taskDefinition: next } });
        await until(`berth ${K} rolled`, () => steady(name, K, next));
        times[K] = { start_s: secs(start), rolling_update_s: secs(Date.now() - t) };
        console.error(`${label} K=${K}: ${JSON.stringify(times[K])}`);
      }
      await client.delete('Service', 'default', name);
      await until(`berth ${K} deleted`, async () => (await client.tryGet('Service', 'default', name)) === undefined);
      await until('berth containers gone', async () => (await docker.listContainers({ filters: { label: ['com.amazonaws.ecs.cluster=default'] } })).length === 0, 120_000);
    }
    client.close();
    return { times, ...(PROFILE ? { profile } : {}) };
  } finally {
    up.kill('SIGTERM');
    await new Promise((r) => (up.exitCode !== null ? r(undefined) : up.once('exit', r)));
    await removeAll('com.amazonaws.ecs.cluster');
  }
}

/** Docker Swarm on the same daemon: a replicated service of K, then its update. */
async function runSwarm(): Promise<Record<number, { start_s: number; rolling_update_s: number }>> {
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
  return swarm;
}

/** K containers created and started at once through dockerode. */
async function runDirect(): Promise<Record<number, { start_s: number }>> {
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
  return direct;
}

let out: Record<string, unknown>;
try {
  // ---- (a) berth up as its own process, on this dockerd (the checkout before the change first, when given)
  const before = BEFORE ? await runBerth('berth-before', BEFORE) : undefined;
  const after = await runBerth('berth', root);
  const machine = describeMachine();
  const command = `${BEFORE ? 'BENCH_BEFORE=DIR ' : ''}npm run bench:docker -- ${args.join(' ')}`.trim();
  if (PROFILE) {
    out = { benchmark: 'docker-profile', date: new Date().toISOString(), machine, command, ...(before ? { before } : {}), after };
  } else {
    // ---- (b) Docker Swarm, (c) direct
    const swarm = await runSwarm();
    const direct = await runDirect();
    const berth = after.times;
    const r2 = (x: number) => Math.round(x * 100) / 100;
    for (const K of SIZES) {
      results.push({
        replicas: K,
        berth: berth[K],
        ...(before ? { berth_before: before.times[K] } : {}),
        swarm: swarm[K],
        direct: direct[K],
        ratio_berth_to_swarm_start: r2(berth[K].start_s / swarm[K].start_s),
        ratio_berth_to_swarm_rolling_update: r2(berth[K].rolling_update_s! / swarm[K].rolling_update_s),
        ratio_berth_to_direct_start: r2(berth[K].start_s / direct[K].start_s),
        ...(before ? { ratio_before_to_direct_start: r2(before.times[K].start_s / direct[K].start_s), ratio_before_to_swarm_start: r2(before.times[K].start_s / swarm[K].start_s) } : {}),
      });
    }
    out = { benchmark: 'docker', date: new Date().toISOString(), machine, command, results };
  }
} finally {
  await removeAll().catch(() => undefined);
  await dockerd.stop();
  await rm(dir, { recursive: true, force: true });
}

console.log(JSON.stringify(out, null, 2));
mkdirSync(join(root, 'test/bench/results'), { recursive: true });
writeFileSync(join(root, `test/bench/results/${PROFILE ? 'docker-profile' : 'docker'}.json`), JSON.stringify(out, null, 2) + '\n');
process.exit(0);
