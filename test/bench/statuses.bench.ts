// `npx tsx test/bench/statuses.bench.ts [AGENTS] [TASKS_PER_AGENT] [etcd|embedded]`: what the
// agents' status reports cost the control plane. AGENTS real agents on the hollow runtime,
// each with TASKS_PER_AGENT two-container tasks bound in one call; counts the apiserver's
// write requests and the store revisions from the binding until every task is RUNNING, and
// this process's CPU (the apiserver and the agents run in it). BERTH_ROOT=DIR measures
// another berth tree with this same script (a `git archive` of an earlier commit, say).
// A benchmark, not a test: it prints one JSON line and asserts nothing.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
const ROOT = process.env.BERTH_ROOT ?? join(dirname(fileURLToPath(import.meta.url)), '../..');
const { Agent } = await import(`${ROOT}/pkg/agent/agent.ts`);
const { loadAgentConfig } = await import(`${ROOT}/pkg/agent/config.ts`);
const { HollowRuntime } = await import(`${ROOT}/pkg/agent/runtime/hollow.ts`);
const { Client } = await import(`${ROOT}/pkg/client/client.ts`);
const { silentLogger } = await import(`${ROOT}/pkg/log/log.ts`);
const { startApiServer } = await import(`${ROOT}/test/support/apiserver.ts`);
const A = Number(process.argv[2] ?? 10);
const T = Number(process.argv[3] ?? 50);
const STORE = (process.argv[4] ?? 'etcd') as 'etcd' | 'embedded';
const api = await startApiServer({ store: STORE });
const admin = new Client({ server: api.url, token: api.adminToken });
const dirs: string[] = []; const agents: any[] = [];
for (let i = 0; i < A; i++) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-count-')); dirs.push(dir);
  const agent = new Agent({ config: loadAgentConfig({ env: { ECS_CLUSTER: 'default', ECS_DATADIR: dir, BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken, ECS_BACKEND_HOST: api.url, ECS_INTROSPECTION_PORT: '0' } }), client: new Client({ server: api.url, token: api.bootstrapToken }), runtime: new HollowRuntime(), log: silentLogger(), host: { cpus: 64, totalMemory: 256 * 1024 ** 3 }, fingerprint: `hollow-${dir}`, heartbeatMs: 600_000 });
  await agent.start(); agents.push(agent);
}
await admin.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'c' }, spec: { containerDefinitions: [{ name: 'a', image: 'app', memory: 8 }, { name: 'b', image: 'app', memory: 8 }] } });
const names: string[][] = agents.map(() => []);
let n = 0;
for (let i = 0; i < A; i++) for (let k = 0; k < T; k++) { const name = `t${n++}`; names[i].push(name); await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default' }, spec: { taskDefinition: 'c' } }); }
const metrics = async () => { const text = await (await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${api.adminToken}` } })).text(); const out: Record<string, number> = {}; for (const m of text.matchAll(/^berth_apiserver_requests_total\{verb="([^"]+)",resource="([^"]+)",code="\d+"\} (\d+)$/gm)) out[`${m[1]} ${m[2]}`] = (out[`${m[1]} ${m[2]}`] ?? 0) + Number(m[3]); return out; };
const m0 = await metrics(); const rev0 = await api.store.currentRevision(); const cpu0 = process.cpuUsage(); const t0 = Date.now();
await admin.bind('default', agents.flatMap((a, i) => names[i].map((task) => ({ task, containerInstance: a.instanceId }))));
for (;;) { const l = await admin.list('Task', 'default'); if (l.items.every((t: any) => t.status?.lastStatus === 'RUNNING')) break; await new Promise((r) => setTimeout(r, 100)); }
const t1 = Date.now(); const rev1 = await api.store.currentRevision(); const cpu1 = process.cpuUsage(cpu0); const m1 = await metrics();
const d = Object.fromEntries(Object.entries(m1).map(([k, v]) => [k, v - (m0[k] ?? 0)]).filter(([k, v]) => (v as number) > 0 && !String(k).startsWith('get ') && !String(k).startsWith('list ')));
console.log(JSON.stringify({ root: ROOT, store: STORE, agents: A, tasks: A * T, store_revisions_bind_to_running: rev1 - rev0, revisions_per_task: Math.round(((rev1 - rev0) / (A * T)) * 100) / 100, seconds: (t1 - t0) / 1000, process_cpu_s: Math.round((cpu1.user + cpu1.system) / 1e4) / 100, write_requests: d }));
for (const a of agents) await a.stop().catch(() => undefined);
admin.close(); await api.stop(); for (const x of dirs) await rm(x, { recursive: true, force: true });
process.exit(0);
