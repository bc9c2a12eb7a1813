// `npm run bench:lb [-- --tasks 3 --seconds 5 --concurrency 16]`: the data plane's cost. On
// `berth up` (berth-lb on loopback, real Docker, busybox httpd tasks of
// deploy/examples/lb-web.yaml): requests per second and p50/p99 latency through HAProxy to K
// tasks, next to the same load straight to one task's host port (the ratio is what the
// load balancer costs); then, after a scale to K+1, the time from the new task's RUNNING
// (the agent's startedAt) to the first request it serves through the load balancer.
// Prints JSON and writes test/bench/results/lb.json. A benchmark, not a test.
import { Agent, request } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBerthUp } from '../support/berthup.ts';
import { stopDocker } from '../support/docker.ts';
import { freePort } from '../support/etcd.ts';
import { describeMachine } from './machine.ts';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const K = arg('tasks', 3);
const SECONDS = arg('seconds', 5);
const CONCURRENCY = arg('concurrency', 16);
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function get(port: number, agent: Agent): Promise<{ ok: boolean; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ ok: res.statusCode === 200, body: body.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ok: false, body: '' }));
    req.end();
  });
}

async function load(port: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const lat: number[] = [];
  let errors = 0;
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < end) {
        const t0 = process.hrtime.bigint();
        const r = await get(port, agent);
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!r.ok) errors++;
      }
    }),
  );
  agent.destroy();
  lat.sort((a, b) => a - b);
  const q = (p: number) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] * 100) / 100;
  return { requests: lat.length, errors, rps: Math.round(lat.length / SECONDS), p50Ms: q(0.5), p99Ms: q(0.99) };
}

// below the kernel's ephemeral ports (32768-60999), which the benchmark's own connections take
const from = 29_000 + (process.pid % 60) * 60;
const b = await startBerthUp('berth-lb-bench-', { ECS_DYNAMIC_HOST_PORT_RANGE: `${from}-${from + 49}` });
try {
  const lbPort = await freePort();
  const manifest = readFileSync(join(root, 'deploy/examples/lb-web.yaml'), 'utf8').replace('loadBalancerPort: 8081', `loadBalancerPort: ${lbPort}`).replace('desiredCount: 3', `desiredCount: ${K}`);
  await b.ok(['apply', '-f', '-'], manifest);
  const targets = async () => (JSON.parse(await b.ok(['get', 'targetgroup', 'lb-web', '-o', 'json'])).status?.targets ?? []) as Array<{ task: string; port: number; state: string }>;
  const healthy = async (n: number) => {
    for (let i = 0; i < 600; i++) {
      const ts = await targets();
      if (ts.length === n && ts.every((t) => t.state === 'healthy')) return ts;
      await sleep(500);
    }
    throw new Error(`${n} healthy targets: timed out`);
  };
  const ts = await healthy(K);
  const direct = await load(ts[0].port);
  const through = await load(lbPort);

  // RUNNING -> first request served through the load balancer
  const before = new Set(ts.map((t) => t.task));
  await b.ok(['scale', 'service/lb-web', '--replicas', String(K + 1)]);
  type T = { metadata: { name: string }; status?: { lastStatus: string; startedAt?: string; containers?: Array<{ dockerId?: string }> } };
  let fresh: T | undefined;
  for (let i = 0; i < 600 && !fresh?.status?.startedAt; i++) {
    const items = JSON.parse(await b.ok(['get', 'tasks', '--field-selector', 'spec.group=service:lb-web', '-o', 'json'])).items as T[];
    fresh = items.find((t) => !before.has(`default/${t.metadata.name}`) && t.status?.lastStatus === 'RUNNING');
    if (!fresh) await sleep(200);
  }
  if (!fresh?.status?.startedAt) throw new Error('the new task never reached RUNNING');
  const hostname = fresh.status.containers![0].dockerId!.slice(0, 12);
  const agent = new Agent({ keepAlive: false });
  let servedAt = 0;
  for (let i = 0; i < 6_000 && !servedAt; i++) {
    if ((await get(lbPort, agent)).body === hostname) servedAt = Date.now();
    else await sleep(20);
  }
  const runningToServedMs = servedAt ? servedAt - Date.parse(fresh.status.startedAt) : null;
  await b.ok(['delete', 'service', 'lb-web']);
  const results = {
    tasks: K,
    seconds: SECONDS,
    concurrency: CONCURRENCY,
    direct,
    throughHaproxy: through,
    rpsRatio: Math.round((through.rps / direct.rps) * 100) / 100,
    p99Ratio: Math.round((through.p99Ms / direct.p99Ms) * 100) / 100,
    runningToFirstServedMs: runningToServedMs,
    note: 'health check every 2 s, healthy threshold 2: a new target takes traffic after two passed checks (ELB initial -> healthy)',
  };
  const out = { benchmark: 'lb', date: new Date().toISOString(), machine: describeMachine(), command: `npm run bench:lb -- ${args.join(' ')}`.trim(), results };
  console.log(JSON.stringify(out, null, 2));
  mkdirSync(join(root, 'test/bench/results'), { recursive: true });
  writeFileSync(join(root, 'test/bench/results/lb.json'), JSON.stringify(out, null, 2) + '\n');
} finally {
  // the service's containers are stopped by the delete; berth up and its haproxy stop here
  await sleep(5_000);
  const containers = await b.docker.docker.listContainers({ all: true, filters: { label: ['com.amazonaws.ecs.task-definition-family=lb-web'] } });
  await b.stop();
  for (const c of containers) await b.docker.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  await stopDocker();
}
