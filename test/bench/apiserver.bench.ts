// `npm run bench:apiserver`: the apiserver as its own process (berth-apiserver, dev mode) on
// etcd and on the embedded store, with 10,000 tasks and 1,000 container instances stored:
// p50/p99 latency of get, list by field selector, create, status update, a 100-task binding,
// watch fan-out to 1,000 concurrent watchers, and the server's RSS. Prints JSON and writes
// test/bench/results/apiserver.json. A benchmark, not a test: it asserts nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startEtcd } from '../support/etcd.ts';
import { describeMachine } from './machine.ts';

const TASKS = Number(process.env.BENCH_TASKS ?? 10_000);
const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 1_000);
const WATCHERS = Number(process.env.BENCH_WATCHERS ?? 1_000);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 400);
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 100) / 100;
};

async function call(base: string, method: string, path: string, body?: unknown): Promise<any> {
  const r = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

async function pool<T>(n: number, conc: number, f: (i: number) => Promise<T>) {
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) await f(next++);
  }));
}

async function latency(n: number, f: (i: number) => Promise<unknown>) {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    xs.push(performance.now() - t);
  }
  return { p50_ms: pct(xs, 50), p99_ms: pct(xs, 99) };
}

const rssMiB = (pid: number) => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);

async function startServer(storeSpec: string): Promise<{ base: string; child: ChildProcess }> {
  const port = await freePort();
  // one identity holds all WATCHERS watches (and their connections) here: the per-identity limits are off for this measurement
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'cmd/berth-apiserver/main.ts'), '--store', storeSpec, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--max-watches-per-identity', '0', '--max-connections-per-identity', '0'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) return { base, child };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  child.kill('SIGKILL');
  throw new Error('apiserver did not start');
}

async function bench(storeSpec: string) {
  const { base, child } = await startServer(storeSpec);
  try {
    const out: Record<string, unknown> = {};
    await call(base, 'POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } });
    await call(base, 'POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'b' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 8, cpu: 1, portMappings: [{ containerPort: 80 }] }] } });
    const resources = (cpu: number, mem: number) => [{ name: 'CPU', type: 'INTEGER', integerValue: cpu }, { name: 'MEMORY', type: 'INTEGER', integerValue: mem }];
    let t = performance.now();
    await pool(INSTANCES, 32, (i) => call(base, 'POST', `${NS}/containerinstances`, { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: `i-${i}` }, spec: { registeredResources: resources(100_000, 100_000) } }));
    await pool(TASKS, 32, (i) => call(base, 'POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: `t-${i}` }, spec: { taskDefinition: 'b', group: `g-${i % 100}` } }));
    out.load_s = Math.round((performance.now() - t) / 100) / 10;
    // bind them all, 100 per call (so each instance has ~10)
    t = performance.now();
    for (let b = 0; b < TASKS / 100; b++) {
      await call(base, 'POST', `${NS}/bindings`, { bindings: Array.from({ length: 100 }, (_, k) => ({ task: `t-${b * 100 + k}`, containerInstance: `i-${(b * 100 + k) % INSTANCES}` })) });
    }
    out.bind_all_s = Math.round((performance.now() - t) / 100) / 10;
    out.get_task = await latency(SAMPLES, (i) => call(base, 'GET', `${NS}/tasks/t-${(i * 37) % TASKS}`));
    out.list_tasks_by_instance = await latency(SAMPLES, (i) => call(base, 'GET', `${NS}/tasks?fieldSelector=spec.containerInstance%3Di-${i % INSTANCES}`));
    out.create_task = await latency(SAMPLES, (i) => call(base, 'POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: `n-${i}` }, spec: { taskDefinition: 'b' } }));
    out.status_update = await latency(SAMPLES, (i) => call(base, 'PATCH', `${NS}/tasks/t-${i}/status`, { status: { healthStatus: i % 2 ? 'HEALTHY' : 'UNHEALTHY' } }));
    out.bind_100 = await latency(Math.floor(SAMPLES / 100), (b) =>
      call(base, 'POST', `${NS}/bindings`, { bindings: Array.from({ length: 100 }, (_, k) => ({ task: `n-${b * 100 + k}`, containerInstance: `i-${(b * 100 + k) % INSTANCES}` })) }),
    );
    // watch fan-out: WATCHERS watch every task of the cluster; 100 status updates
    const rv = (await call(base, 'GET', `${NS}/tasks?limit=1`)).metadata.resourceVersion;
    const UPDATES = 100;
    let delivered = 0;
    const want = WATCHERS * UPDATES;
    let resolveAll!: () => void;
    const all = new Promise<void>((r) => (resolveAll = r));
    const ctl = new AbortController();
    await Promise.all(Array.from({ length: WATCHERS }, async () => {
      const r = await fetch(`${base}${NS}/tasks?watch=1&resourceVersion=${rv}`, { signal: ctl.signal });
      (async () => {
        try {
          for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
            for (const b of chunk) if (b === 10) delivered++;
            if (delivered >= want) resolveAll();
          }
        } catch { /* aborted */ }
      })();
    }));
    t = performance.now();
    for (let i = 0; i < UPDATES; i++) await call(base, 'PATCH', `${NS}/tasks/t-${i}/status`, { status: { healthStatus: i % 2 ? 'UNKNOWN' : 'HEALTHY' } });
    await Promise.race([all, new Promise((r) => setTimeout(r, 120_000))]);
    const secs = (performance.now() - t) / 1000;
    out.watch_fanout = { watchers: WATCHERS, events_delivered: delivered, events_per_s: Math.round(delivered / secs) };
    ctl.abort();
    out.apiserver_rss_mib = rssMiB(child.pid!);
    return out;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const dir = await mkdtemp(join(tmpdir(), 'berth-bench-api-'));
const etcd = await startEtcd();
try {
  const results = {
    machine: describeMachine(),
    tasks: TASKS,
    instances: INSTANCES,
    etcd: await bench(`etcd://${etcd.endpoint.replace(/^https?:\/\//, '')}`),
    embedded: await bench(`embedded:${join(dir, 'data')}`),
  };
  console.log(JSON.stringify(results, null, 2));
  mkdirSync(join(root, 'test/bench/results'), { recursive: true });
  writeFileSync(join(root, 'test/bench/results/apiserver.json'), JSON.stringify(results, null, 2) + '\n');
} finally {
  await etcd.stop();
  await rm(dir, { recursive: true, force: true });
}
