/**
 * Test support: the frame of a fault scenario (test/hosts/faults*.test.ts). A scenario runs
 * its body while the invariant checker (invariants.ts) samples the API every 100 ms. Whatever
 * happens -- it converges, a wait runs out, an assertion fails -- it prints ONE JSON line:
 * what was injected, the bounds, the convergence seconds, every invariant with its worst
 * value, and the error if there was one; the line goes into BERTH_FAULTS_OUT as well
 * (`npm run test:faults` writes test/bench/results/faults.json). It fails on any violation.
 *
 * Also the checks several scenarios share: what Docker runs on every host against what the
 * store says should run there ("the agent reports truthfully", "nothing runs twice").
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import type { Task } from '../../pkg/api/kinds.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { InvariantChecker, type CheckerReport } from './invariants.ts';
import type { TopoHost, Topology } from './topology.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** seconds since t0, one decimal */
export const since = (t0: number) => Math.round((Date.now() - t0) / 100) / 10;

export const live = (t: Task) => t.spec.desiredStatus !== 'STOPPED' && t.status?.lastStatus !== 'STOPPED';

export async function tasksOf(t: Topology, cluster = 'default'): Promise<Task[]> {
  return (await t.client.list<Task>('Task', cluster)).items;
}

export interface Scenario {
  name: string;
  /** what was injected, filled in as the scenario goes */
  injected: Record<string, unknown>;
  /** the bounds the scenario states (seconds, counts) */
  bounds: Record<string, number>;
  convergenceSeconds: Record<string, number>;
  /** anything else worth reading in the line (counts of requests, what a step met) */
  facts: Record<string, unknown>;
  checker: InvariantChecker;
  /**
   * A convergence the scenario states a bound for: seconds since t0, recorded and judged
   * (an invariant `converge.<what>`, worst = seconds, limit = bound).
   */
  converged(what: string, t0: number, boundS: number): number;
}

const results: Array<Record<string, unknown>> = [];
let commit: string | undefined;

function headCommit(): string {
  if (commit === undefined) {
    try {
      commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    } catch {
      commit = '';
    }
  }
  return commit;
}

/**
 * Writes every scenario line of this process to BERTH_FAULTS_OUT (after each scenario, so a
 * run that dies half way still leaves what it measured). BERTH_FAULTS_MERGE=1 keeps the lines
 * of scenarios this process did not run (re-running one file updates its own lines only).
 */
function writeResults(): void {
  const out = process.env.BERTH_FAULTS_OUT;
  if (!out) return;
  let kept: Array<Record<string, unknown>> = [];
  if (process.env.BERTH_FAULTS_MERGE && existsSync(out)) {
    try {
      const mine = new Set(results.map((r) => r.scenario));
      kept = ((JSON.parse(readFileSync(out, 'utf8')) as { scenarios?: Array<Record<string, unknown>> }).scenarios ?? []).filter((r) => !mine.has(r.scenario));
    } catch {
      kept = [];
    }
  }
  const order = (r: Record<string, unknown>) => Number(String(r.scenario).replace(/\D/g, '')) || 0;
  const scenarios = [...kept, ...results].sort((a, b) => order(a) - order(b));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ when: new Date().toISOString(), commit: headCommit(), scenarios }, null, 2) + '\n');
}

export function emitLine(line: Record<string, unknown>, report: CheckerReport): void {
  const out = { ...line, samples: report.samples, failedSamples: report.failedSamples, invariants: report.invariants, violations: report.violations };
  results.push(out);
  console.log(JSON.stringify(out));
  writeResults();
}

/**
 * Runs a scenario: the checker samples while `body` runs; then the line is printed and
 * recorded; then the scenario fails if the body threw or any invariant was violated.
 * `settleMs`: samples of the settled state taken after the body, before the checker stops.
 */
export async function runScenario(
  name: string,
  t: Topology,
  body: (s: Scenario) => Promise<void>,
  /** sample: false: no sampling of the API (a scenario that runs inside another one's, which samples) */
  o: { cluster?: string; settleMs?: number; checker?: InvariantChecker; sample?: boolean } = {},
): Promise<void> {
  const checker = o.checker ?? new InvariantChecker({ client: t.client, cluster: o.cluster ?? 'default', agentInstances: () => t.hosts.map((h) => h.instanceId) });
  const s: Scenario = {
    name,
    injected: {},
    bounds: {},
    convergenceSeconds: {},
    facts: {},
    checker,
    converged(what, t0, boundS) {
      const secs = since(t0);
      s.convergenceSeconds[what] = secs;
      s.bounds[`${what}WithinS`] = boundS;
      checker.note(`converge.${what}`, secs, boundS, `${what} took ${secs} s, bound ${boundS} s`);
      return secs;
    },
  };
  const started = Date.now();
  if (o.sample !== false) checker.start();
  let error: Error | undefined;
  try {
    await body(s);
    checker.faultEnds();
    if (o.sample !== false && (o.settleMs ?? 3000)) await sleep(o.settleMs ?? 3000);
  } catch (e) {
    error = e as Error;
  }
  const report = await checker.stop();
  // a scenario whose checker hardly sampled proves nothing about its invariants
  if (o.sample !== false && report.samples < 10) report.violations.push(`checker: only ${report.samples} samples (${report.failedSamples} failed)`);
  emitLine(
    {
      scenario: name,
      passed: !error && report.violations.length === 0,
      ...(error ? { error: error.message.split('\n').slice(0, 6).join('\n') } : {}),
      seconds: since(started),
      injected: s.injected,
      bounds: s.bounds,
      convergenceSeconds: s.convergenceSeconds,
      ...s.facts,
    },
    report,
  );
  if (error) throw error;
  if (report.violations.length) throw new Error(`${name}: invariants violated:\n${report.violations.join('\n')}`);
}

// ------------------------------------------------------------------ Docker against the store

export interface HostTruth {
  /** task containers running on a host whose task the store does not want running there */
  extra: string[];
  /** tasks the store says RUNNING on a host with a container not running there */
  missing: string[];
  /** a task's container (by container name) running more than once on its host, or on two hosts */
  duplicates: string[];
  /** running task containers counted */
  running: number;
}

/** The running containers of berth tasks on a host: task ARN -> container names (one entry per container). */
export async function taskContainers(h: TopoHost, cluster = 'default'): Promise<Map<string, string[]>> {
  const cs = await h.docker.listContainers({ filters: { label: [`${LABELS.cluster}=${cluster}`, LABELS.containerName] } });
  const out = new Map<string, string[]>();
  for (const c of cs) {
    const arn = c.Labels[LABELS.taskArn];
    if (!arn) continue;
    out.set(arn, [...(out.get(arn) ?? []), c.Labels[LABELS.containerName]]);
  }
  return out;
}

/**
 * What every host's Docker runs against what the store wants: a task desired RUNNING and
 * reported RUNNING must have each container reported RUNNING running exactly once, on its own host,
 * and no other host; a container whose task is desired STOPPED (or gone, or bound elsewhere)
 * must not run.
 */
export async function dockerVsStore(t: Topology, o: { cluster?: string } = {}): Promise<HostTruth> {
  const tasks = await tasksOf(t, o.cluster);
  const byArn = new Map(tasks.map((x) => [x.status?.taskArn ?? x.metadata.name, x]));
  const truth: HostTruth = { extra: [], missing: [], duplicates: [], running: 0 };
  const where = new Map<string, string[]>();
  const onHost = new Map<string, Map<string, string[]>>();
  for (const h of t.hosts) {
    const mine = await taskContainers(h, o.cluster);
    onHost.set(h.instanceId, mine);
    for (const [arn, names] of mine) {
      truth.running += names.length;
      where.set(arn, [...(where.get(arn) ?? []), h.name]);
      const task = byArn.get(arn);
      const id = arn.split('/').pop();
      if (!task || task.spec.desiredStatus === 'STOPPED' || task.spec.containerInstance !== h.instanceId) {
        truth.extra.push(`${h.name}: ${id} (${names.join(',')}) runs; the store has it ${task ? `desired ${task.spec.desiredStatus} on ${task.spec.containerInstance}` : 'gone'}`);
      }
      const dup = names.filter((n, i) => names.indexOf(n) !== i);
      if (dup.length) truth.duplicates.push(`${h.name}: ${id} runs ${dup.join(',')} more than once`);
    }
  }
  for (const [arn, hosts] of where) if (hosts.length > 1) truth.duplicates.push(`${arn.split('/').pop()} runs on ${hosts.join(' and ')}`);
  // what the agents reported: a container the store has RUNNING must run in Docker, on the task's host
  for (const task of tasks) {
    if (task.spec.desiredStatus !== 'RUNNING' || task.status?.lastStatus !== 'RUNNING') continue;
    const mine = onHost.get(task.spec.containerInstance ?? '');
    if (!mine) continue;
    const h = t.hosts.find((x) => x.instanceId === task.spec.containerInstance)!;
    const have = mine.get(task.status?.taskArn ?? task.metadata.name) ?? [];
    const absent = (task.status?.containers ?? []).filter((c) => c.lastStatus === 'RUNNING' && !have.includes(c.name)).map((c) => c.name);
    if (absent.length) truth.missing.push(`${h.name}: ${task.metadata.name} is RUNNING in the store, its container(s) ${absent.join(',')} not running in Docker`);
  }
  return truth;
}

export const truthOk = (x: HostTruth) => x.extra.length === 0 && x.missing.length === 0 && x.duplicates.length === 0;
export const describeTruth = (x: HostTruth) => [...x.extra, ...x.missing, ...x.duplicates].join('\n') || 'Docker and the store agree';

// ------------------------------------------------------------------ raw requests, the store itself

export interface Reply {
  status: number;
  text: string;
  /** the parsed body, when it is JSON */
  body: any;
}

/** keep-alive connections per CA, as real clients (kubectl, the SDKs) keep them */
const agents = new Map<string, HttpsAgent>();

/**
 * One HTTPS request through the load balancer (or to `base`), verifying the berth CA, on a
 * keep-alive connection as real clients send them; status 0 when no answer came.
 */
export function httpsCall(t: Topology, method: string, urlPath: string, o: { headers?: Record<string, string>; body?: string; base?: string; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve) => {
    const onResponse = (res: IncomingMessage) => {
      if (res.headers['transfer-encoding'] === 'chunked' && res.statusCode === 200 && /[?&]watch=(1|true)/.test(urlPath)) {
        // a watch that started: its status is the answer
        res.destroy();
        return resolve({ status: 200, text: '', body: undefined });
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, body });
      });
      res.on('error', () => resolve({ status: 0, text: 'response cut', body: undefined }));
    };
    let req: ClientRequest;
    // a body always goes with its length (node sends a DELETE's or GET's body unframed otherwise)
    const headers = { ...o.headers, ...(o.body !== undefined ? { 'Content-Length': String(Buffer.byteLength(o.body)) } : {}) };
    try {
      let agent = agents.get(t.caPem);
      if (!agent) agents.set(t.caPem, (agent = new HttpsAgent({ ca: t.caPem, keepAlive: true, maxSockets: 16 })));
      req = httpsRequest(`${o.base ?? t.url}${urlPath}`, { method, headers, timeout: o.timeoutMs ?? 15_000, agent }, onResponse);
    } catch (e) {
      // node refuses to send it (a path or header with characters HTTP does not allow)
      return resolve({ status: -1, text: (e as Error).message, body: undefined });
    }
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, text: e.message, body: undefined }));
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

/** An etcd client of the topology's store (the apiservers' client certificate), for checks of the store itself. */
export function storeClient(t: Topology): Etcd3 {
  return new Etcd3({
    hosts: t.etcd.endpoints,
    credentials: {
      rootCertificate: readFileSync(path.join(t.pkiDir, 'ca.crt')),
      certChain: readFileSync(path.join(t.pkiDir, 'berth-apiserver.crt')),
      privateKey: readFileSync(path.join(t.pkiDir, 'berth-apiserver.key')),
    },
    grpcOptions: { 'grpc.max_receive_message_length': -1 },
  });
}

interface Allocation {
  cpu: number;
  memory: number;
  tasks: Record<string, { cpu: number; memory: number; tcp: number[]; udp: number[] }>;
}

/**
 * Nothing half-written: the store's records agree with each other, as the transactions that
 * write them together promise. Every value is JSON; every instance's allocation record adds
 * up, names only live tasks bound to that instance (with their host ports), and every live
 * bound task is in it; every RunTask client token names tasks that exist. Returns what does
 * not hold.
 */
export async function storeIntegrity(t: Topology): Promise<string[]> {
  const etcd = storeClient(t);
  try {
    const raw = await etcd.getAll().prefix('/berth/').strings();
    const bad: string[] = [];
    const obj = new Map<string, any>();
    for (const [k, v] of Object.entries(raw)) {
      try {
        obj.set(k, JSON.parse(v));
      } catch {
        bad.push(`${k}: not JSON`);
      }
    }
    const tasks = [...obj].filter(([k]) => k.startsWith('/berth/tasks/')).map(([k, v]) => ({ key: k, ns: k.split('/')[3], name: k.split('/')[4], t: v as Task }));
    const taskAt = new Map(tasks.map((x) => [`${x.ns}/${x.name}`, x.t]));
    const liveBound = (x: Task) => !!x.spec.containerInstance && x.status?.lastStatus !== 'STOPPED';
    for (const [k, v] of obj) {
      const [, , plural, ns, name] = k.split('/');
      if (plural === 'allocations') {
        const a = v as Allocation;
        const entries = Object.entries(a.tasks ?? {});
        const cpu = entries.reduce((s, [, e]) => s + (e.cpu ?? 0), 0);
        const memory = entries.reduce((s, [, e]) => s + (e.memory ?? 0), 0);
        if (cpu !== a.cpu || memory !== a.memory) bad.push(`${k}: totals cpu ${a.cpu} memory ${a.memory}, its tasks add up to ${cpu}/${memory}`);
        for (const [task, e] of entries) {
          const x = taskAt.get(`${ns}/${task}`);
          if (!x) bad.push(`${k}: charges task ${task}, which does not exist`);
          else if (x.spec.containerInstance !== name) bad.push(`${k}: charges task ${task}, which is bound to ${x.spec.containerInstance}`);
          else if (!liveBound(x)) bad.push(`${k}: charges task ${task}, which is STOPPED`);
          else {
            const tcp = (x.spec.hostPorts ?? []).filter((p) => (p.protocol ?? 'tcp') === 'tcp').map((p) => p.hostPort).sort((p, q) => p - q);
            const held = [...(e.tcp ?? [])].sort((p, q) => p - q);
            if (JSON.stringify(tcp) !== JSON.stringify(held)) bad.push(`${k}: holds tcp ${held} for ${task}, whose host ports are ${tcp}`);
          }
        }
      } else if (plural === 'clienttokens') {
        for (const task of (v as { tasks?: string[] }).tasks ?? []) if (!taskAt.has(`${ns}/${task}`)) bad.push(`${k}: names task ${task}, which does not exist`);
      }
    }
    for (const x of tasks) {
      if (!liveBound(x.t)) continue;
      const a = obj.get(`/berth/allocations/${x.ns}/${x.t.spec.containerInstance}`) as Allocation | undefined;
      if (!a?.tasks?.[x.name]) bad.push(`task ${x.ns}/${x.name} is bound to ${x.t.spec.containerInstance} and live, and not in its allocation record`);
    }
    return bad;
  } finally {
    etcd.close();
  }
}
