// A share of a benchmark's hollow fleet in its own process, so the agents' CPU does not queue
// behind (and distort) the benchmark's own measurements. As a process entry it is forked by
// a benchmark with an IPC channel, not run by hand; as a module it exports FleetWorker, the
// parent's side (fork, wait for ready, stop agents, shut down by pid).
//
// Parameters: --server URL --token BOOTSTRAP --count N [--cpus C] [--memory-mib M]
// [--heartbeat-ms H] [--cluster NAME] [--tmp-dir DIR], or the same as BERTH_FLEET_SERVER,
// _TOKEN, _COUNT, _CPUS, _MEMORY_MIB, _HEARTBEAT_MS, _CLUSTER, _TMP_DIR. --tmp-dir is where
// the agents' data dirs (berth-agent-*) go, so a parent that removes DIR leaves none behind
// even if this process is killed.
//
// Messages: child -> parent {type:'ready', instanceIds}, {type:'stopped', ids},
// {type:'error', message}; parent -> child {type:'stop-agents', ids}, {type:'shutdown'}.
// When the parent goes away (the IPC channel disconnects), or on SIGINT/SIGTERM, the fleet
// is stopped and the process exits.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startFleet, type Fleet } from '../support/fleet.ts';

export type ToWorker = { type: 'stop-agents'; ids: string[] } | { type: 'shutdown' };
export type FromWorker = { type: 'ready'; instanceIds: string[] } | { type: 'stopped'; ids: string[] } | { type: 'error'; message: string };

export interface FleetWorkerOptions {
  server: string;
  bootstrapToken: string;
  count: number;
  cpus?: number;
  memoryMiB?: number;
  heartbeatMs?: number;
  cluster?: string;
  /** where the child's agents' data dirs (berth-agent-*) go (default: the OS temp dir) */
  tmpDir?: string;
}

const SELF = fileURLToPath(import.meta.url);

/** The parent's side of one fleet worker process. */
export class FleetWorker {
  readonly child: ChildProcess;
  readonly pid: number;
  instanceIds: string[] = [];
  /** resolves with the instance ids once every agent of this worker has started */
  readonly ready: Promise<string[]>;
  private stopWaiters: Array<(ids: string[]) => void> = [];
  private readonly exited: Promise<void>;

  constructor(readonly opts: FleetWorkerOptions) {
    const args = ['--server', opts.server, '--token', opts.bootstrapToken, '--count', String(opts.count)];
    if (opts.cpus !== undefined) args.push('--cpus', String(opts.cpus));
    if (opts.memoryMiB !== undefined) args.push('--memory-mib', String(opts.memoryMiB));
    if (opts.heartbeatMs !== undefined) args.push('--heartbeat-ms', String(opts.heartbeatMs));
    if (opts.cluster !== undefined) args.push('--cluster', opts.cluster);
    if (opts.tmpDir !== undefined) args.push('--tmp-dir', opts.tmpDir);
    // TypeScript through tsx's loader, as cmd/*/bin.mjs do (register() of tsx/esm/api);
    // resolved here so the child's cwd does not matter
    this.child = fork(SELF, args, {
      execArgv: ['--import', import.meta.resolve('tsx')],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    if (!this.child.pid) throw new Error('fleet-worker: fork failed');
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.ready = new Promise<string[]>((resolve, reject) => {
      this.child.on('message', (raw) => {
        const m = raw as FromWorker;
        if (m.type === 'ready') {
          this.instanceIds = m.instanceIds;
          resolve(m.instanceIds);
        } else if (m.type === 'error') reject(new Error(`fleet-worker ${this.pid}: ${m.message}`));
        else if (m.type === 'stopped') this.stopWaiters.shift()?.(m.ids);
      });
      this.child.once('error', reject);
      this.child.once('exit', (code, signal) => reject(new Error(`fleet-worker ${this.pid} exited (${signal ?? code}) before it was ready`)));
    });
    this.ready.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Stops exactly these agents (they stop heartbeating; their hollow containers stay); resolves with the ids stopped. */
  stopAgents(ids: string[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      if (!this.child.connected) return reject(new Error(`fleet-worker ${this.pid} is not connected`));
      this.stopWaiters.push(resolve);
      this.child.send({ type: 'stop-agents', ids } satisfies ToWorker, (err) => err && reject(err));
      this.exited.then(() => reject(new Error(`fleet-worker ${this.pid} exited while stopping agents`)));
    });
  }

  /** Peak RSS (VmHWM) in MiB and CPU seconds (user + system) of the worker; undefined once it is gone. */
  stats(): { peak_rss_mib: number; cpu_s: number } | undefined {
    try {
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'))![1]);
      const f = readFileSync(`/proc/${this.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return { peak_rss_mib: Math.round(hwm / 1024), cpu_s: Math.round((Number(f[11]) + Number(f[12])) / 10) / 10 };
    } catch {
      return undefined;
    }
  }

  /** Asks the worker to stop its fleet and exit; SIGTERM, then SIGKILL (by pid) if it does not. */
  async shutdown(graceMs = 60_000): Promise<void> {
    const within = (ms: number) => Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    if (!this.alive) return;
    if (this.child.connected) {
      try {
        // a failed send (the channel closing) is no matter: the worker stops itself on disconnect
        this.child.send({ type: 'shutdown' } satisfies ToWorker, () => undefined);
      } catch {
        /* as above */
      }
      if (await within(graceMs)) return;
    }
    const kill = (sig: NodeJS.Signals) => {
      try {
        if (this.alive) process.kill(this.pid, sig);
      } catch {
        /* gone meanwhile */
      }
    };
    kill('SIGTERM');
    if (await within(10_000)) return;
    kill('SIGKILL');
    await within(5_000);
  }
}

const isMain = !!process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) await main();

async function main() {
  const argv = process.argv.slice(2);
  const param = (name: string, env: string, def?: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
    return process.env[`BERTH_FLEET_${env}`] ?? def;
  };
  const num = (name: string, env: string, def?: number): number | undefined => {
    const v = param(name, env);
    if (v === undefined || v === '') return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: not a number: ${v}`);
    return n;
  };

  const send = (m: FromWorker) =>
    new Promise<void>((resolve) => {
      if (!process.send || !process.connected) return resolve();
      try {
        process.send(m, undefined, {}, () => resolve());
      } catch {
        resolve();
      }
    });

  let fleet: Fleet | undefined;
  let exiting: Promise<never> | undefined;

  /** Stops every agent (idempotent), removes their data dirs, and exits. */
  function shutdown(code: number): Promise<never> {
    exiting ??= (async () => {
      // a hung stop must not keep the process (and its agents' sockets) around
      setTimeout(() => process.exit(code || 1), 60_000).unref();
      await fleet?.stop().catch((e) => console.error(`fleet-worker ${process.pid}: stop: ${(e as Error).message}`));
      process.disconnect?.();
      process.exit(code);
    })();
    return exiting;
  }

  process.on('disconnect', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  process.on('message', (raw) => {
    const m = raw as ToWorker;
    if (m?.type === 'shutdown') {
      void shutdown(0);
    } else if (m?.type === 'stop-agents') {
      void (async () => {
        const want = new Set(m.ids);
        const victims = (fleet?.agents ?? []).filter((a) => want.has(a.agent.instanceId));
        await Promise.all(victims.map((a) => a.agent.stop().catch(() => undefined)));
        await send({ type: 'stopped', ids: victims.map((a) => a.agent.instanceId) });
      })();
    }
  });

  try {
    if (!process.send) throw new Error('fleet-worker must be started with an IPC channel (child_process.fork)');
    const server = param('server', 'SERVER');
    const token = param('token', 'TOKEN');
    const count = num('count', 'COUNT');
    if (!server || !token || count === undefined) throw new Error('fleet-worker needs --server, --token and --count');
    // startFleet makes each agent's dir with mkdtemp(os.tmpdir()); TMPDIR is set only now, in
    // this process, so tsx's loader (which keeps its compile cache under TMPDIR) still uses
    // the shared cache it found at start
    const tmp = param('tmp-dir', 'TMP_DIR');
    if (tmp) process.env.TMPDIR = tmp;
    const opts = { cluster: param('cluster', 'CLUSTER', 'default'), cpus: num('cpus', 'CPUS', 2), memoryMiB: num('memory-mib', 'MEMORY_MIB', 4096), heartbeatMs: num('heartbeat-ms', 'HEARTBEAT_MS', 5000) };
    // Start with none and add them into the returned fleet, so the agents that did start are
    // in fleet.agents (and get stopped) even when a later one fails to register.
    fleet = await startFleet(server, token, 0, opts);
    await fleet.add(count);
    if (!exiting) await send({ type: 'ready', instanceIds: fleet.agents.map((a) => a.agent.instanceId) });
  } catch (e) {
    if (!exiting) {
      await send({ type: 'error', message: (e as Error).stack ?? String(e) });
      await shutdown(1);
    }
  }
}
