// `npm run bench:scale [-- --quick] [-- --instances N --tasks M --store etcd|embedded|both]`:
// the control plane at scale. Real etcd (or the embedded store), berth-apiserver and
// berth-controller-manager as their own processes, and a hollow fleet of N real agents
// (registration, heartbeats, task watch, task engine, status reports; only the containers
// are simulated) split over --fleet-procs worker processes (test/bench/fleet-worker.ts), so
// the fleet's CPU does not queue behind the Tracker that times tasks in this process.
// Creates services totalling M tasks at once and reports bind and RUNNING rates and
// latencies, time to steady, peak RSS and CPU of each process, store operations, and the
// raw etcd txn rate of a plain client measured in the same run. Then rolls every service to
// a new revision, then kills 10% of the agents (through the workers). Other flags:
// --heartbeat S (agents' heartbeat period), --hb-timeout S and --lost-grace S (the
// controller-manager's --instance-heartbeat-timeout and --instance-lost-grace). Last, one
// service of --delete-tasks tasks (default 10,000; 0 skips it) is created, then deleted, and
// the time until it is gone with every task stopped is reported. --healthy-after S passes the
// controller-manager's --task-healthy-after (absent: its default, ECS's 40 s). Placement
// passes per second come from the controller-manager's metrics.
// A benchmark, not a test: it prints figures and asserts nothing. Writes
// test/bench/results/scale.json. SIGINT/SIGTERM stop every child it started, by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { freePort, startEtcd, type EtcdProcess } from '../support/etcd.ts';
import { FleetWorker } from './fleet-worker.ts';
import { describeMachine } from './machine.ts';

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
const FLEET_PROCS = Math.max(1, Math.min(N, Number(flag('fleet-procs', '2'))));
// agents heartbeat every 10 s (Kubernetes renews node leases every 10 s), silent for 30 s = disconnected
const HEARTBEAT_S = Number(flag('heartbeat', '10'));
const HB_TIMEOUT_S = Number(flag('hb-timeout', '30'));
// --cpu-prof DIR: the apiserver and the controller-manager write V8 CPU profiles there on exit
const CPU_PROF = flag('cpu-prof', '');
// --api-node-args "...": extra node flags for berth-apiserver (e.g. --max-old-space-size=256)
const API_NODE_ARGS = flag('api-node-args', '').split(' ').filter(Boolean);
const profArgs = () => (CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : []); // one CPU.<date>.<pid>.<thread>.cpuprofile per thread
const LOST_GRACE_S = Number(flag('lost-grace', '5'));
const DELETE_TASKS = Number(flag('delete-tasks', quick ? '1000' : '10000'));
const HEALTHY_AFTER = flag('healthy-after', '');
if (!Number.isFinite(DELETE_TASKS) || DELETE_TASKS < 0) throw new Error(`--delete-tasks: expected 0 or more, got ${DELETE_TASKS}`);
if (HEALTHY_AFTER && !(Number(HEALTHY_AFTER) >= 0)) throw new Error(`--healthy-after: expected 0 or more seconds, got ${HEALTHY_AFTER}`);
for (const [k, v] of Object.entries({ instances: N, tasks: M, 'per-service': PER_SERVICE, 'fleet-procs': FLEET_PROCS, heartbeat: HEARTBEAT_S, 'hb-timeout': HB_TIMEOUT_S, 'lost-grace': LOST_GRACE_S })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k}: expected a positive number, got ${v}`);
}
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

/** Resets this process's peak RSS (VmHWM), so each store's run reports its own; best effort. */
const resetHwm = () => {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    /* not Linux, or not allowed */
  }
};

/** SIGTERM by pid, then SIGKILL if it has not exited within graceMs. */
async function stopChild(p: ChildProcess, graceMs = CPU_PROF ? 30_000 : 5000) {
  const alive = () => p.exitCode === null && p.signalCode === null;
  if (!alive() || !p.pid) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const within = (ms: number) => Promise.race([exited.then(() => true), sleep(ms).then(() => false)]);
  process.kill(p.pid, 'SIGTERM');
  if (await within(graceMs)) return;
  if (alive()) process.kill(p.pid, 'SIGKILL');
  await within(5000);
}

/** Direct children of this process still alive (pids from /proc), whatever started them. */
function childPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ');
      if (Number(f[1]) === process.pid && f[0] !== 'Z') out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

// SIGINT/SIGTERM (Ctrl-C, a kill): stop the current run's children by pid, remove its temp
// dir, and exit. A second signal while that runs is ignored; the cleanup has its own timeouts.
let interrupted: NodeJS.Signals | undefined;
let cleanupCurrent: (() => Promise<void>) | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return console.error(`[bench] ${sig} again: still stopping the children`);
    interrupted = sig;
    console.error(`[bench] ${sig}: stopping every child process`);
    void (async () => {
      await (cleanupCurrent?.() ?? Promise.resolve()).catch((e) => console.error(`[bench] cleanup: ${(e as Error).message}`));
      // anything a half-finished start left behind (it was never recorded): by pid
      for (const pid of childPids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      process.exit(sig === 'SIGINT' ? 130 : 143);
    })();
  });
}

/** The controller-manager's reconciles by controller, from its /metrics (all results). */
async function reconciles(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^berth_controller_reconciles_total\{controller="([^"]+)",result="[^"]+"\} (\d+)$/gm)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  return out;
}

async function waitHttp(url: string, token: string) {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(url + '/readyz', { headers: { authorization: `Bearer ${token}` } });
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

/** The apiserver's own request counters (berth_apiserver_requests_total), summed by verb and resource. */
async function apiRequests(url: string, token: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^berth_apiserver_requests_total\{verb="([^"]+)",resource="([^"]+)",code="\d+"\} (\d+)$/gm)) {
    const k = `${m[1]} ${m[2]}`;
    out[k] = (out[k] ?? 0) + Number(m[3]);
  }
  return out;
}
const delta = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]).filter(([, v]) => (v as number) > 0).sort((x, y) => (y[1] as number) - (x[1] as number)));

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
  /** every task's latest state and every service's latest object, from the watches: the
   * benchmark judges progress from these, never by listing 20,000 tasks from the apiserver
   * it is measuring (listing them every 500 ms was a large part of its load) */
  tasks = new Map<string, { desired: string; last?: string; instance?: string; group?: string }>();
  services = new Map<string, Service>();
  private abort = new AbortController();
  constructor(private readonly client: Client) {}
  private follow<T extends Task | Service>(kind: 'Task' | 'Service', rv: string, on: (type: string, o: T) => void) {
    void (async () => {
      let from = rv;
      while (!this.abort.signal.aborted) {
        try {
          for await (const ev of this.client.watch<T>(kind, 'default', { resourceVersion: from, signal: this.abort.signal })) {
            if (ev.type === 'ERROR') continue;
            from = ev.object.metadata.resourceVersion ?? from;
            if (ev.type !== 'BOOKMARK') on(ev.type, ev.object);
          }
        } catch {
          await sleep(100);
        }
      }
    })();
  }
  async start() {
    const rv = (await this.client.list('Task', 'default', { limit: 1 })).resourceVersion;
    this.follow<Task>('Task', rv, (type, t) => {
      const now = Date.now();
      const k = t.metadata.name;
      if (type === 'DELETED') return void this.tasks.delete(k);
      this.tasks.set(k, { desired: t.spec.desiredStatus, last: t.status?.lastStatus, instance: t.spec.containerInstance, group: t.spec.group });
      if (!this.created.has(k)) this.created.set(k, Date.parse(t.metadata.creationTimestamp ?? '') || now);
      if (t.spec.containerInstance && !this.bound.has(k)) this.bound.set(k, now);
      if (t.status?.lastStatus === 'RUNNING' && !this.running.has(k)) this.running.set(k, now);
    });
    this.follow<Service>('Service', rv, (type, s) => (type === 'DELETED' ? this.services.delete(s.metadata.name) : this.services.set(s.metadata.name, s)));
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

async function untilSteady(tracker: Tracker, services: string[], td: (i: number) => string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = services.every((name, idx) => {
      const s = tracker.services.get(name);
      const dep = s?.status?.deployments ?? [];
      return !!s && s.status?.runningCount === s.spec.desiredCount && dep.length === 1 && dep[0].taskDefinition === td(idx) && dep[0].runningCount === s.spec.desiredCount && dep[0].rolloutState === 'COMPLETED';
    });
    if (ok) return Date.now();
    if (Date.now() > deadline) throw new Error('services did not become steady in time');
    await sleep(100);
  }
}

async function runOne(store: string) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-scale-'));
  let etcd: EtcdProcess | undefined;
  let etcdStarting: Promise<EtcdProcess> | undefined;
  const procs: ChildProcess[] = [];
  const workers: FleetWorker[] = [];
  let cleaning: Promise<void> | undefined;
  // Every child by pid: the fleet workers first (their agents stop while the apiserver still
  // answers), then the controller-manager and the apiserver, then etcd; then the temp dir
  // (which also holds the agents' data dirs: each worker's --tmp-dir is inside it).
  const cleanup = () =>
    (cleaning ??= (async () => {
      await Promise.all(workers.map((w) => w.shutdown().catch((e) => console.error(`[${store}] fleet-worker ${w.pid}: ${(e as Error).message}`))));
      for (const p of [...procs].reverse()) await stopChild(p).catch(() => undefined);
      const e = etcd ?? (await etcdStarting?.catch(() => undefined));
      await e?.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    })());
  cleanupCurrent = cleanup;
  resetHwm();
  const benchCpu0 = cpuSeconds(process.pid);
  try {
    let storeSpec = `embedded:${join(dir, 'data')}`;
    let raw = 0;
    if (store === 'etcd') {
      etcdStarting = startEtcd();
      etcd = await etcdStarting;
      storeSpec = etcd.url;
      raw = await rawEtcdTxnRate(etcd.endpoint);
    }
    const token = 'bench-admin-token-0123456789';
    const boot = 'bench-bootstrap-token-0123456789';
    writeFileSync(join(dir, 'tokens.csv'), `${token},admin,1,"berth:admins"\n${boot},bootstrap,2,"berth:bootstrappers"\n`);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const apiserver = spawn(process.execPath, [...API_NODE_ARGS, ...profArgs(), join(root, 'cmd/berth-apiserver/bin.mjs'), '--store', storeSpec, '--listen', `127.0.0.1:${port}`, '--token-auth-file', join(dir, 'tokens.csv'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(apiserver);
    await waitHttp(url, token);
    const client = new Client({ server: url, token, maxSockets: 128 });
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } }).catch(() => undefined);
    const cmMetricsPort = await freePort();
    const cmMetrics = `http://127.0.0.1:${cmMetricsPort}`;
    const cm = spawn(
      process.execPath,
      [
        ...profArgs(),
        join(root, 'cmd/berth-controller-manager/bin.mjs'),
        '--server', url, '--token', token, '--leader-elect', 'false',
        '--instance-heartbeat-timeout', String(HB_TIMEOUT_S), '--instance-lost-grace', String(LOST_GRACE_S),
        '--metrics-listen', `127.0.0.1:${cmMetricsPort}`, '--log-level', 'warn',
        ...(HEALTHY_AFTER ? ['--task-healthy-after', HEALTHY_AFTER] : []),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    procs.push(cm);

    const tf = Date.now();
    // each hollow instance: 4 vCPU, 16 GiB; tasks of 10 CPU units / 64 MiB => capacity is not the limit.
    // The fleet runs in FLEET_PROCS worker processes, started together, N split evenly.
    for (let w = 0; w < FLEET_PROCS; w++) {
      const count = Math.floor(N / FLEET_PROCS) + (w < N % FLEET_PROCS ? 1 : 0);
      const tmp = join(dir, `fleet-${w}`);
      await mkdir(tmp);
      workers.push(new FleetWorker({ server: url, bootstrapToken: boot, count, cpus: 4, memoryMiB: 16384, heartbeatMs: HEARTBEAT_S * 1000, tmpDir: tmp }));
    }
    await Promise.all(workers.map((w) => w.ready));
    const fleetUpS = Math.round((Date.now() - tf) / 100) / 10;
    console.error(`[${store}] fleet of ${N} agents in ${FLEET_PROCS} processes (${workers.map((w) => w.opts.count).join('+')}) registered in ${fleetUpS} s`);

    const tracker = new Tracker(client);
    await tracker.start();
    const S = Math.ceil(M / PER_SERVICE);
    const services = Array.from({ length: S }, (_, i) => `svc-${i}`);
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'bench' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', cpu: 10, memory: 64, command: ['sleep', '1d'] }] } });
    const cpu0 = { api: cpuSeconds(apiserver.pid!), cm: cpuSeconds(cm.pid!) };
    const ops0 = await storeOps(etcd);
    const req0 = await apiRequests(url, token);

    await waitHttp(cmMetrics, token);
    const rec0 = await reconciles(cmMetrics);
    // ---- scenario 1: M tasks at once
    const t0 = Date.now();
    await Promise.all(services.map((name, i) => client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { taskDefinition: 'bench:1', desiredCount: Math.min(PER_SERVICE, M - i * PER_SERVICE) } })));
    const steady1 = await untilSteady(tracker, services, () => 'bench:1', 30 * 60_000);
    const create = tracker.phase(undefined, t0, steady1);
    const rec1 = await reconciles(cmMetrics);
    const placementPassesCreate = (rec1.placement ?? 0) - (rec0.placement ?? 0);
    console.error(`[${store}] create: ${JSON.stringify(create)}; placement passes ${placementPassesCreate}`);
    const cpu1 = { api: cpuSeconds(apiserver.pid!), cm: cpuSeconds(cm.pid!) };
    const ops1 = await storeOps(etcd);
    const req1 = await apiRequests(url, token);

    // ---- scenario 2: roll every service to a new revision
    const before = new Set(tracker.created.keys());
    await client.request('PUT', client.path('TaskDefinition', undefined, 'bench'), { ...(await client.get('TaskDefinition', undefined, 'bench')), spec: { containerDefinitions: [{ name: 'app', image: 'busybox', cpu: 10, memory: 64, command: ['sleep', '2d'] }] } });
    const t1 = Date.now();
    await Promise.all(services.map((name) => client.patch('Service', 'default', name, { spec: { taskDefinition: 'bench:2' } })));
    const steady2 = await untilSteady(tracker, services, () => 'bench:2', 30 * 60_000);
    const rolled = new Set([...tracker.created.keys()].filter((k) => !before.has(k)));
    const rollout = tracker.phase(rolled, t1, steady2);
    console.error(`[${store}] rollout: ${JSON.stringify(rollout)}`);

    // ---- scenario 3: kill 10% of the agents (they stop heartbeating; their containers stay),
    // taken round-robin over the workers so every process loses its share
    const K = Math.max(1, Math.floor(N / 10));
    const byWorker = workers.map(() => [] as string[]);
    const most = Math.max(...workers.map((w) => w.instanceIds.length));
    for (let i = 0, picked = 0; picked < K && i < most * workers.length; i++) {
      const w = i % workers.length;
      const id = workers[w].instanceIds[Math.floor(i / workers.length)];
      if (id !== undefined) {
        byWorker[w].push(id);
        picked++;
      }
    }
    const victimIds = new Set(byWorker.flat());
    const lostTasks = [...tracker.tasks.values()].filter((t) => t.desired === 'RUNNING' && victimIds.has(t.instance ?? '')).length;
    const before3 = new Set(tracker.created.keys());
    const t2 = Date.now();
    const stopped = await Promise.all(workers.map((w, i) => (byWorker[i].length ? w.stopAgents(byWorker[i]) : Promise.resolve([]))));
    if (stopped.flat().length !== victimIds.size) throw new Error(`stopped ${stopped.flat().length} agents, wanted ${victimIds.size}`);
    let recovered = 0;
    for (;;) {
      let live = 0;
      for (const t of tracker.tasks.values()) if (t.desired === 'RUNNING' && t.last === 'RUNNING' && !victimIds.has(t.instance ?? '')) live++;
      if (live >= M) {
        recovered = Date.now();
        break;
      }
      if (Date.now() - t2 > 20 * 60_000) throw new Error('tasks were not replaced in time');
      await sleep(100);
    }
    const replaced = new Set([...tracker.created.keys()].filter((k) => !before3.has(k)));
    const failover = { killed_agents: victimIds.size, killed_per_worker: byWorker.map((b) => b.length), tasks_on_them: lostTasks, heartbeat_timeout_s: HB_TIMEOUT_S, lost_grace_s: LOST_GRACE_S, all_running_elsewhere_s: Math.round((recovered - t2) / 100) / 10, replacements: tracker.phase(replaced, t2, recovered) };
    console.error(`[${store}] failover: ${JSON.stringify(failover)}`);

    // ---- scenario 4: one service of DELETE_TASKS tasks, deleted once it runs
    let deletion: Record<string, number> | undefined;
    if (DELETE_TASKS > 0) {
      const tb = Date.now();
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'big', namespace: 'default' }, spec: { taskDefinition: 'bench:2', desiredCount: DELETE_TASKS } });
      await untilSteady(tracker, ['big'], () => 'bench:2', 30 * 60_000);
      const upS = Math.round((Date.now() - tb) / 100) / 10;
      const bigTasks = new Set([...tracker.tasks.entries()].filter(([, t]) => t.group === 'service:big' && t.desired === 'RUNNING').map(([k]) => k));
      const cpuD0 = cpuSeconds(cm.pid!);
      const recD0 = await reconciles(cmMetrics);
      const td0 = Date.now();
      await client.delete('Service', 'default', 'big');
      for (;;) {
        const stoppedAll = [...bigTasks].every((k) => tracker.tasks.get(k)?.last === 'STOPPED' || !tracker.tasks.has(k));
        if (stoppedAll && !tracker.services.has('big')) break;
        if (Date.now() - td0 > 20 * 60_000) throw new Error('the big service was not deleted in time');
        await sleep(100);
      }
      const recD1 = await reconciles(cmMetrics);
      deletion = { tasks: bigTasks.size, up_s: upS, deleted_s: Math.round((Date.now() - td0) / 100) / 10, controller_manager_cpu_s: Math.round((cpuSeconds(cm.pid!) - cpuD0) * 10) / 10, service_reconciles: (recD1.service ?? 0) - (recD0.service ?? 0) };
      console.error(`[${store}] delete a ${DELETE_TASKS}-task service: ${JSON.stringify(deletion)}`);
    }
    const recEnd = await reconciles(cmMetrics);
    tracker.stop();

    const result = {
      store,
      instances: N,
      tasks: M,
      services: S,
      fleet_procs: FLEET_PROCS,
      heartbeat_s: HEARTBEAT_S,
      instance_heartbeat_timeout_s: HB_TIMEOUT_S,
      instance_lost_grace_s: LOST_GRACE_S,
      fleet_registered_s: fleetUpS,
      create,
      rollout,
      failover,
      apiserver: { peak_rss_mib: hwmMiB(apiserver.pid!), cpu_s_create: Math.round((cpu1.api - cpu0.api) * 10) / 10, cpu_s_total: Math.round(cpuSeconds(apiserver.pid!) * 10) / 10 },
      controller_manager: {
        peak_rss_mib: hwmMiB(cm.pid!),
        cpu_s_create: Math.round((cpu1.cm - cpu0.cm) * 10) / 10,
        cpu_s_total: Math.round(cpuSeconds(cm.pid!) * 10) / 10,
        placement_passes_create: placementPassesCreate,
        placement_passes_per_s_create: Math.round((placementPassesCreate / Math.max(1, (steady1 - t0) / 1000)) * 10) / 10,
        placement_passes_total: (recEnd.placement ?? 0) - (rec0.placement ?? 0),
        reconciles_total: Object.fromEntries(Object.entries(recEnd).map(([k, v]) => [k, v - (rec0[k] ?? 0)])),
        task_healthy_after_s: HEALTHY_AFTER || 'default',
      },
      delete_service: deletion,
      fleet_workers: workers.map((w) => ({ agents: w.opts.count, ...(w.stats() ?? { peak_rss_mib: undefined, cpu_s: undefined }) })),
      bench_process: { peak_rss_mib: hwmMiB(process.pid), cpu_s: Math.round((cpuSeconds(process.pid) - benchCpu0) * 10) / 10 },
      apiserver_requests_during_create: delta(req0, req1),
      etcd_ops_during_create: Object.fromEntries(Object.entries(ops1).map(([k, v]) => [k, v - (ops0[k] ?? 0)])),
      raw_etcd_txn_per_s: store === 'etcd' ? raw : undefined,
      bound_rate_vs_raw_etcd: store === 'etcd' && raw ? Math.round((create.bound_per_s / raw) * 1000) / 1000 : undefined,
    };
    client.close();
    return result;
  } finally {
    await cleanup();
    if (cleanupCurrent === cleanup) cleanupCurrent = undefined;
  }
}

const machine = describeMachine(); // before the runs: load_avg_at_start is the load they started under
const results = [];
for (const s of STORES) {
  if (interrupted) break;
  // after a signal the run fails as its children go away: the handler reports and exits
  results.push(await runOne(s).catch((e) => (interrupted ? new Promise<never>(() => undefined) : Promise.reject(e))));
}
if (interrupted) await new Promise(() => undefined); // the signal handler exits once its cleanup is done
const out = { benchmark: 'scale', date: new Date().toISOString(), machine, command: `npm run bench:scale -- ${args.join(' ')}`.trim(), results };
console.log(JSON.stringify(out, null, 2));
console.table(results.map((r) => ({ store: r.store, instances: r.instances, tasks: r.tasks, 'bound/s': r.create.bound_per_s, 'running/s': r.create.running_per_s, 'bind p99 ms': r.create.to_bound_ms.p99, 'running p99 ms': r.create.to_running_ms.p99, 'steady s': r.create.all_steady_s, 'rollout s': r.rollout.all_steady_s, 'failover s': r.failover.all_running_elsewhere_s, 'delete s': r.delete_service?.deleted_s, 'cm CPU s': r.controller_manager.cpu_s_total, 'placement/s': r.controller_manager.placement_passes_per_s_create, 'api MiB': r.apiserver.peak_rss_mib, 'cm MiB': r.controller_manager.peak_rss_mib })));
mkdirSync(join(root, 'test/bench/results'), { recursive: true });
writeFileSync(join(root, `test/bench/results/scale${quick ? '-quick' : ''}.json`), JSON.stringify(out, null, 2) + '\n');
process.exit(0);
