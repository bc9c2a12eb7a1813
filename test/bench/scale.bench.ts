// `npm run bench:scale [-- --quick] [-- --instances N --tasks M --store etcd|embedded|both]`:
// the control plane at scale. Real etcd (or the embedded store), berth-apiserver and
// berth-controller-manager as their own processes, and a hollow fleet of N real agents
// (registration, heartbeats, task watch, task engine, status reports; only the containers
// are simulated) in this process. Creates services totalling M tasks at once and reports
// bind and RUNNING rates and latencies, time to steady, peak RSS and CPU of each process,
// store operations, and the raw etcd txn rate of a plain client measured in the same run.
// Then rolls every service to a new revision, then kills 10% of the agents. A benchmark,
// not a test: it prints figures and asserts nothing. Writes test/bench/results/scale.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { freePort, startEtcd, type EtcdProcess } from '../support/etcd.ts';
import { startFleet, type Fleet } from '../support/fleet.ts';

const args = process.argv.slice(2);
const flag = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const quick = args.includes('--quick');
const N = Number(flag('instances', quick ? '100' : '2000'));
const M = Number(flag('tasks', quick ? '1000' : '20000'));
const PER_SERVICE = Number(flag('per-service', '100'));
const STORES = flag('store', 'both') === 'both' ? ['etcd', 'embedded'] : [flag('store', 'etcd')];
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

const pct = (xs: number[], p: number) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hwmMiB = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);
const cpuSeconds = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in clock ticks (100/s)
};

async function waitHttp(url: string, token: string) {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(url + '/healthz', { headers: { authorization: `Bearer ${token}` } });
      if (r.status < 500) return;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

async function rawEtcdTxnRate(endpoint: string): Promise<number> {
  const c = new Etcd3({ hosts: endpoint });
  const t0 = Date.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: 64 }, async (_, w) => {
      while (Date.now() - t0 < 5000) {
        await c.if(`/bench/raw/${w}`, 'Mod', '>', -1).then(c.put(`/bench/raw/${w}`).value(String(n))).commit();
        n++;
      }
    }),
  );
  const rate = Math.round(n / ((Date.now() - t0) / 1000));
  await c.delete().prefix('/bench/raw/');
  c.close();
  return rate;
}

/** etcd's own counters of writes and transactions (etcd_mvcc_*_total); empty on the embedded store. */
async function storeOps(etcd: EtcdProcess | undefined): Promise<Record<string, number>> {
  if (!etcd) return {};
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^etcd_mvcc_(put|delete|txn|range)_total (\d+(?:\.\d+)?(?:e\+\d+)?)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

interface Phase {
  tasks: number;
  bound_per_s: number;
  running_per_s: number;
  to_bound_ms: { p50: number; p99: number; max: number };
  to_running_ms: { p50: number; p99: number; max: number };
  all_steady_s: number;
}

/** Watches tasks from this process and times creation -> bound -> RUNNING per task. */
class Tracker {
  created = new Map<string, number>();
  bound = new Map<string, number>();
  running = new Map<string, number>();
  private abort = new AbortController();
  constructor(private readonly client: Client) {}
  async start() {
    const rv = (await this.client.list('Task', 'default', { limit: 1 })).resourceVersion;
    void (async () => {
      let from = rv;
      while (!this.abort.signal.aborted) {
        try {
          for await (const ev of this.client.watch<Task>('Task', 'default', { resourceVersion: from, signal: this.abort.signal })) {
            if (ev.type === 'BOOKMARK' || ev.type === 'ERROR') continue;
            const t = ev.object;
            from = t.metadata.resourceVersion ?? from;
            const now = Date.now();
            const k = t.metadata.name;
            if (!this.created.has(k)) this.created.set(k, Date.parse(t.metadata.creationTimestamp ?? '') || now);
            if (t.spec.containerInstance && !this.bound.has(k)) this.bound.set(k, now);
            if (t.status?.lastStatus === 'RUNNING' && !this.running.has(k)) this.running.set(k, now);
          }
        } catch {
          await sleep(100);
        }
      }
    })();
  }
  stop() {
    this.abort.abort();
  }
  phase(names: Set<string> | undefined, t0: number, steadyAt: number): Phase {
    const pick = (m: Map<string, number>) => [...m].filter(([k]) => !names || names.has(k));
    const b = pick(this.bound);
    const r = pick(this.running);
    const lat = (xs: Array<[string, number]>) => xs.map(([k, t]) => t - (this.created.get(k) ?? t0));
    const tb = lat(b);
    const tr = lat(r);
    const span = (xs: Array<[string, number]>) => Math.max(1, (Math.max(...xs.map(([, t]) => t)) - t0) / 1000);
    return {
      tasks: r.length,
      bound_per_s: Math.round(b.length / span(b)),
      running_per_s: Math.round(r.length / span(r)),
      to_bound_ms: { p50: pct(tb, 50), p99: pct(tb, 99), max: Math.max(0, ...tb) },
      to_running_ms: { p50: pct(tr, 50), p99: pct(tr, 99), max: Math.max(0, ...tr) },
      all_steady_s: Math.round((steadyAt - t0) / 100) / 10,
    };
  }
}

async function untilSteady(client: Client, services: string[], td: (i: number) => string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = (await client.listAll<Service>('Service', 'default')).items.filter((s) => services.includes(s.metadata.name));
    const ok = list.every((s, i) => {
      const idx = services.indexOf(s.metadata.name);
      const dep = s.status?.deployments ?? [];
      return s.status?.runningCount === s.spec.desiredCount && dep.length === 1 && dep[0].taskDefinition === td(idx) && dep[0].runningCount === s.spec.desiredCount && i >= 0;
    });
    if (ok && list.length === services.length) return Date.now();
    if (Date.now() > deadline) throw new Error('services did not become steady in time');
    await sleep(250);
  }
}

async function runOne(store: string) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-scale-'));
  let etcd: EtcdProcess | undefined;
  const procs: ChildProcess[] = [];
  let fleet: Fleet | undefined;
  try {
    let storeSpec = `embedded:${join(dir, 'data')}`;
    let raw = 0;
    if (store === 'etcd') {
      etcd = await startEtcd();
      storeSpec = etcd.url;
      raw = await rawEtcdTxnRate(etcd.endpoint);
    }
    const token = 'bench-admin-token-0123456789';
    const boot = 'bench-bootstrap-token-0123456789';
    writeFileSync(join(dir, 'tokens.csv'), `${token},admin,1,"berth:admins"\n${boot},bootstrap,2,"berth:bootstrappers"\n`);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const apiserver = spawn(process.execPath, [join(root, 'cmd/berth-apiserver/bin.mjs'), '--store', storeSpec, '--listen', `127.0.0.1:${port}`, '--token-auth-file', join(dir, 'tokens.csv'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(apiserver);
    await waitHttp(url, token);
    const client = new Client({ server: url, token, maxSockets: 128 });
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } }).catch(() => undefined);
    const cm = spawn(process.execPath, [join(root, 'cmd/berth-controller-manager/bin.mjs'), '--server', url, '--token', token, '--leader-elect', 'false', '--instance-heartbeat-timeout', '10', '--instance-lost-grace', '5', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(cm);

    const tf = Date.now();
    // each hollow instance: 4 vCPU, 16 GiB; tasks of 10 CPU units / 64 MiB => capacity is not the limit
    fleet = await startFleet(url, boot, N, { cpus: 4, memoryMiB: 16384, heartbeatMs: 5000 });
    const fleetUpS = Math.round((Date.now() - tf) / 100) / 10;
    console.error(`[${store}] fleet of ${N} agents registered in ${fleetUpS} s`);

    const tracker = new Tracker(client);
    await tracker.start();
    const S = Math.ceil(M / PER_SERVICE);
    const services = Array.from({ length: S }, (_, i) => `svc-${i}`);
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'bench' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', cpu: 10, memory: 64, command: ['sleep', '1d'] }] } });
    const cpu0 = { api: cpuSeconds(apiserver.pid!), cm: cpuSeconds(cm.pid!) };
    const ops0 = await storeOps(etcd);

    // ---- scenario 1: M tasks at once
    const t0 = Date.now();
    await Promise.all(services.map((name, i) => client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { taskDefinition: 'bench:1', desiredCount: Math.min(PER_SERVICE, M - i * PER_SERVICE) } })));
    const steady1 = await untilSteady(client, services, () => 'bench:1', 30 * 60_000);
    const create = tracker.phase(undefined, t0, steady1);
    console.error(`[${store}] create: ${JSON.stringify(create)}`);
    const cpu1 = { api: cpuSeconds(apiserver.pid!), cm: cpuSeconds(cm.pid!) };
    const ops1 = await storeOps(etcd);

    // ---- scenario 2: roll every service to a new revision
    const before = new Set(tracker.created.keys());
    await client.request('PUT', client.path('TaskDefinition', undefined, 'bench'), { ...(await client.get('TaskDefinition', undefined, 'bench')), spec: { containerDefinitions: [{ name: 'app', image: 'busybox', cpu: 10, memory: 64, command: ['sleep', '2d'] }] } });
    const t1 = Date.now();
    await Promise.all(services.map((name) => client.patch('Service', 'default', name, { spec: { taskDefinition: 'bench:2' } })));
    const steady2 = await untilSteady(client, services, () => 'bench:2', 30 * 60_000);
    const rolled = new Set([...tracker.created.keys()].filter((k) => !before.has(k)));
    const rollout = tracker.phase(rolled, t1, steady2);
    console.error(`[${store}] rollout: ${JSON.stringify(rollout)}`);

    // ---- scenario 3: kill 10% of the agents (they stop heartbeating; their containers stay)
    const victims = fleet.agents.slice(0, Math.max(1, Math.floor(N / 10)));
    const victimIds = new Set(victims.map((v) => v.agent.instanceId));
    const lostTasks = (await client.listAll<Task>('Task', 'default', { fieldSelector: 'spec.desiredStatus=RUNNING' })).items.filter((t) => victimIds.has(t.spec.containerInstance ?? '')).length;
    const before3 = new Set(tracker.created.keys());
    const t2 = Date.now();
    for (const v of victims) await v.agent.stop();
    let recovered = 0;
    for (;;) {
      const live = (await client.listAll<Task>('Task', 'default', { fieldSelector: 'status.lastStatus=RUNNING' })).items.filter((t) => t.spec.desiredStatus === 'RUNNING' && !victimIds.has(t.spec.containerInstance ?? ''));
      if (live.length >= M) {
        recovered = Date.now();
        break;
      }
      if (Date.now() - t2 > 20 * 60_000) throw new Error('tasks were not replaced in time');
      await sleep(500);
    }
    const replaced = new Set([...tracker.created.keys()].filter((k) => !before3.has(k)));
    const failover = { killed_agents: victims.length, tasks_on_them: lostTasks, heartbeat_timeout_s: 10, lost_grace_s: 5, all_running_elsewhere_s: Math.round((recovered - t2) / 100) / 10, replacements: tracker.phase(replaced, t2, recovered) };
    console.error(`[${store}] failover: ${JSON.stringify(failover)}`);
    tracker.stop();

    const result = {
      store,
      instances: N,
      tasks: M,
      services: S,
      fleet_registered_s: fleetUpS,
      create,
      rollout,
      failover,
      apiserver: { peak_rss_mib: hwmMiB(apiserver.pid!), cpu_s_create: Math.round((cpu1.api - cpu0.api) * 10) / 10, cpu_s_total: Math.round(cpuSeconds(apiserver.pid!) * 10) / 10 },
      controller_manager: { peak_rss_mib: hwmMiB(cm.pid!), cpu_s_create: Math.round((cpu1.cm - cpu0.cm) * 10) / 10, cpu_s_total: Math.round(cpuSeconds(cm.pid!) * 10) / 10 },
      bench_process_with_fleet: { peak_rss_mib: hwmMiB(process.pid) },
      etcd_ops_during_create: Object.fromEntries(Object.entries(ops1).map(([k, v]) => [k, v - (ops0[k] ?? 0)])),
      raw_etcd_txn_per_s: store === 'etcd' ? raw : undefined,
      bound_rate_vs_raw_etcd: store === 'etcd' && raw ? Math.round((create.bound_per_s / raw) * 1000) / 1000 : undefined,
    };
    client.close();
    return result;
  } finally {
    await fleet?.stop().catch(() => undefined);
    for (const p of procs.reverse()) {
      if (p.exitCode === null) {
        p.kill('SIGTERM');
        await new Promise((r) => setTimeout(r, 500));
        if (p.exitCode === null) p.kill('SIGKILL');
      }
    }
    await etcd?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const s of STORES) results.push(await runOne(s));
const out = { benchmark: 'scale', date: new Date().toISOString(), machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version }, command: `npm run bench:scale -- ${args.join(' ')}`.trim(), results };
console.log(JSON.stringify(out, null, 2));
console.table(results.map((r) => ({ store: r.store, instances: r.instances, tasks: r.tasks, 'bound/s': r.create.bound_per_s, 'running/s': r.create.running_per_s, 'bind p99 ms': r.create.to_bound_ms.p99, 'running p99 ms': r.create.to_running_ms.p99, 'steady s': r.create.all_steady_s, 'rollout s': r.rollout.all_steady_s, 'failover s': r.failover.all_running_elsewhere_s, 'api MiB': r.apiserver.peak_rss_mib, 'cm MiB': r.controller_manager.peak_rss_mib })));
mkdirSync(join(root, 'test/bench/results'), { recursive: true });
writeFileSync(join(root, `test/bench/results/scale${quick ? '-quick' : ''}.json`), JSON.stringify(out, null, 2) + '\n');
process.exit(0);
