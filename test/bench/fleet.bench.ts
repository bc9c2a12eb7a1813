// `npm run bench:fleet [-- --instances 2000 --store etcd|embedded]`: can one apiserver carry a
// fleet? N hollow agents (the real agent: registration with a bootstrap token, node
// credential, a watch of its own tasks, heartbeats every 10 s) register against
// berth-apiserver (its own process) and heartbeat for three periods. Reports registration
// time, how many instances stayed connected with a fresh heartbeat, the requests/s the
// apiserver answered meanwhile (its /metrics, by verb and resource), and the RSS and CPU of
// the apiserver and of the fleet's process. A benchmark, not a test.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerInstance } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { freePort, startEtcd, type EtcdProcess } from '../support/etcd.ts';
import { startFleet } from '../support/fleet.ts';
import { describeMachine } from './machine.ts';

const args = process.argv.slice(2);
const flag = (n: string, d: string) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);
const N = Number(flag('instances', '2000'));
const STORE = flag('store', 'embedded');
const HEARTBEAT_MS = 10_000;
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hwm = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);
const cpuS = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Math.round((Number(f[11]) + Number(f[12])) / 10) / 10;
};

const dir = await mkdtemp(join(tmpdir(), 'berth-fleet-'));
let etcd: EtcdProcess | undefined;
const token = 'fleet-admin-token-0123456789';
const boot = 'fleet-bootstrap-token-0123456789';
writeFileSync(join(dir, 'tokens.csv'), `${token},admin,1,"berth:admins"\n${boot},bootstrap,2,"berth:bootstrappers"\n`);
if (STORE === 'etcd') etcd = await startEtcd();
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const api = spawn(process.execPath, [join(root, 'cmd/berth-apiserver/bin.mjs'), '--store', etcd ? etcd.url : `embedded:${join(dir, 'data')}`, '--listen', `127.0.0.1:${port}`, '--token-auth-file', join(dir, 'tokens.csv'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
const client = new Client({ server: url, token });
let result: Record<string, unknown> = {};
try {
  for (let i = 0; i < 300; i++) {
    try {
      await client.request('GET', '/readyz');
      break;
    } catch {
      await sleep(100);
    }
  }
  await client.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'default' } }).catch(() => undefined);
  const t0 = Date.now();
  const fleet = await startFleet(url, boot, N, { heartbeatMs: HEARTBEAT_MS, env: { BERTH_LOGS_LISTEN: '' } });
  const registered = (Date.now() - t0) / 1000;
  console.error(`${N} agents registered in ${registered.toFixed(1)} s`);
  // requests the apiserver answered (its /metrics), by resource: what the heartbeats cost it
  const requests = async () => {
    const text = String((await client.request('GET', '/metrics', undefined, { accept: 'text/plain' }).catch(() => '')) ?? '');
    const by: Record<string, number> = {};
    for (const m of text.matchAll(/^berth_apiserver_requests_total\{([^}]*)\} (\d+)/gm)) {
      const verb = /verb="([^"]*)"/.exec(m[1])?.[1] ?? '?';
      const resource = /resource="([^"]*)"/.exec(m[1])?.[1] ?? '?';
      by[`${verb} ${resource}`] = (by[`${verb} ${resource}`] ?? 0) + Number(m[2]);
    }
    return by;
  };
  const rss = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${api.pid}/status`, 'utf8'))![1]) / 1024);
  const req0 = await requests();
  const cpu0 = { api: cpuS(api.pid!), fleet: cpuS(process.pid) };
  const rssSamples: number[] = [];
  const sampler = setInterval(() => rssSamples.push(rss()), 1000);
  await sleep(3 * HEARTBEAT_MS);
  clearInterval(sampler);
  const req1 = await requests();
  const steadyRequests: Record<string, number> = Object.fromEntries(
    Object.keys(req1)
      .map((k): [string, number] => [k, Math.round(((req1[k] - (req0[k] ?? 0)) / ((3 * HEARTBEAT_MS) / 1000)) * 10) / 10])
      .filter(([, v]) => v > 0),
  );
  const list = (await client.listAll<ContainerInstance>('ContainerInstance', 'default')).items;
  const now = Date.now();
  const fresh = list.filter((i) => i.status?.agentConnected && now - Date.parse(i.status?.lastHeartbeat ?? '') <= 2 * HEARTBEAT_MS).length;
  const cpu1 = { api: cpuS(api.pid!), fleet: cpuS(process.pid) };
  result = {
    store: STORE,
    instances: N,
    registered_s: Math.round(registered * 10) / 10,
    registered_per_s: Math.round(N / registered),
    instances_listed: list.length,
    connected_with_fresh_heartbeat: fresh,
    heartbeat_period_s: HEARTBEAT_MS / 1000,
    heartbeats_per_s: Math.round(N / (HEARTBEAT_MS / 1000)),
    requests_per_s_steady: Math.round(Object.values(steadyRequests).reduce((a, b) => a + b, 0) * 10) / 10,
    requests_per_s_steady_by_verb_resource: steadyRequests,
    apiserver: { peak_rss_mib: hwm(api.pid!), steady_rss_mib_max: Math.max(...rssSamples), cpu_s_per_s_steady: Math.round(((cpu1.api - cpu0.api) / (3 * HEARTBEAT_MS / 1000)) * 100) / 100 },
    fleet_process: { peak_rss_mib: hwm(process.pid), cpu_s_per_s_steady: Math.round(((cpu1.fleet - cpu0.fleet) / (3 * HEARTBEAT_MS / 1000)) * 100) / 100 },
  };
  await fleet.stop();
} finally {
  client.close();
  api.kill('SIGTERM');
  await new Promise((r) => api.once('exit', r));
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
}
const out = { benchmark: 'fleet', date: new Date().toISOString(), machine: describeMachine(), load_average: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), command: `npm run bench:fleet -- ${args.join(' ')}`.trim(), result };
console.log(JSON.stringify(out, null, 2));
mkdirSync(join(root, 'test/bench/results'), { recursive: true });
writeFileSync(join(root, `test/bench/results/fleet-${STORE}.json`), JSON.stringify(out, null, 2) + '\n');
process.exit(0);
