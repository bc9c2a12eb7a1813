// `npm run bench:cli`: how long a `berth` command takes from exec to exit, against a real
// apiserver (in this process, embedded store, TLS and a token as kubectl needs), beside
// `kubectl get` of the same objects in the same run: median and p90 over repeated runs of
// `berth version`, `berth get services`, `berth describe service`, and the same berth commands
// through tsx (what every start cost before the bundle). Writes test/bench/results/cli.json.
// A benchmark, not a test: it asserts nothing. BENCH_RUNS (default 20) runs per command, 5 for
// the slow tsx ones; BENCH_BEFORE=DIR adds the same berth commands run by another checkout's
// cmd/berth/bin.mjs (e.g. `git archive` of an older commit, with a node_modules link).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleReason } from '../../hack/dist.mjs';
import { startApiServer } from '../support/apiserver.ts';
import { KUBECTL } from '../support/kubectl.ts';
import { describeMachine } from './machine.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const SLOW_RUNS = Math.min(RUNS, 5);
const BEFORE = process.env.BENCH_BEFORE;
const SERVICES = 10;
const TICKS = 100; // USER_HZ, what /proc reports times in on Linux
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
};

/**
 * One run: wall time from spawn to exit, and the CPU time (user + system) the command used,
 * which a loaded machine inflates far less than the wall time. The command runs under a
 * shell that then reads its own /proc stat: cutime + cstime are its waited-for children's
 * (clock ticks of 10 ms; the shell adds about 1 ms of wall time to every command alike). A
 * non-zero exit is an error (a broken command is not a fast one).
 */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ wall: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn('/bin/sh', ['-c', '"$@" >/dev/null || exit $?; cat /proc/$$/stat', 'sh', cmd, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = performance.now() - t;
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`));
      // fields after the command name in parentheses: cutime and cstime are the 14th and 15th
      const f = out.slice(out.lastIndexOf(')') + 2).split(' ');
      resolve({ wall, cpu: ((Number(f[13]) + Number(f[14])) * 1000) / TICKS });
    });
  });
}

const why = staleReason('berth');
if (why) throw new Error(`${why}: run npm run build first (npm run bench:cli does)`);
const api = await startApiServer();
try {
  const td = { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'web', image: 'busybox', memory: 64, command: ['httpd', '-f'] }] } };
  const created = await api.call('POST', '/apis/berth.dev/v1/taskdefinitions', td);
  if (created.status >= 300) throw new Error(`task definition: ${created.status} ${JSON.stringify(created.body)}`);
  for (let i = 0; i < SERVICES; i++) {
    const r = await api.call('POST', '/apis/berth.dev/v1/namespaces/default/services', { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: `web-${i}` }, spec: { taskDefinition: 'web', desiredCount: 0 } });
    if (r.status >= 300) throw new Error(`service: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const env = { ...process.env, KUBECONFIG: api.kubeconfigPath };
  const kc = ['--kubeconfig', api.kubeconfigPath];
  const node = process.execPath;
  const bundle = join(root, 'cmd/berth/bin.mjs');
  const viaTsx = ['--import', 'tsx', join(root, 'cmd/berth/main.ts')];
  const commands: Array<{ name: string; cmd: string; args: string[]; slow?: boolean }> = [
    { name: 'berth version', cmd: node, args: [bundle, 'version', ...kc] },
    { name: 'berth get services', cmd: node, args: [bundle, 'get', 'services', ...kc] },
    { name: 'berth describe service web-0', cmd: node, args: [bundle, 'describe', 'service', 'web-0', ...kc] },
    { name: 'kubectl get services.berth.dev', cmd: KUBECTL, args: ['get', 'services.berth.dev'] },
    { name: 'kubectl get services.berth.dev web-0 -o yaml', cmd: KUBECTL, args: ['get', 'services.berth.dev', 'web-0', '-o', 'yaml'] },
    { name: 'berth version (through tsx, no bundle)', cmd: node, args: [...viaTsx, 'version', ...kc], slow: true },
    { name: 'berth get services (through tsx, no bundle)', cmd: node, args: [...viaTsx, 'get', 'services', ...kc], slow: true },
    ...(BEFORE
      ? [
          { name: `berth version (${BEFORE})`, cmd: node, args: [join(BEFORE, 'cmd/berth/bin.mjs'), 'version', ...kc], slow: true },
          { name: `berth get services (${BEFORE})`, cmd: node, args: [join(BEFORE, 'cmd/berth/bin.mjs'), 'get', 'services', ...kc], slow: true },
          { name: `berth describe service web-0 (${BEFORE})`, cmd: node, args: [join(BEFORE, 'cmd/berth/bin.mjs'), 'describe', 'service', 'web-0', ...kc], slow: true },
        ]
      : []),
    { name: 'node -e 0 (the floor: node starting and exiting)', cmd: node, args: ['-e', '0'] },
  ];
  const samples = new Map(commands.map((c) => [c.name, { wall: [] as number[], cpu: [] as number[] }]));
  for (const c of commands) await timed(c.cmd, c.args, env); // warm the page cache and tsx's cache
  // interleaved, so that a load change on a shared machine falls on every command alike
  for (let i = 0; i < RUNS; i++) {
    for (const c of commands) {
      if (c.slow && i >= SLOW_RUNS) continue;
      const r = await timed(c.cmd, c.args, env);
      samples.get(c.name)!.wall.push(r.wall);
      samples.get(c.name)!.cpu.push(r.cpu);
    }
  }
  const results = commands.map((c) => {
    const { wall, cpu } = samples.get(c.name)!;
    return { command: c.name, runs: wall.length, median_ms: pct(wall, 50), p90_ms: pct(wall, 90), min_ms: pct(wall, 0), cpu_median_ms: pct(cpu, 50), cpu_p90_ms: pct(cpu, 90) };
  });
  const out = { benchmark: 'cli', date: new Date().toISOString(), command: 'npm run bench:cli', services: SERVICES, machine: describeMachine(), results };
  mkdirSync(join(root, 'test/bench/results'), { recursive: true });
  writeFileSync(join(root, 'test/bench/results/cli.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(JSON.stringify(out, null, 2));
} finally {
  await api.stop();
}
