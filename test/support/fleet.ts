import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { HollowRuntime, type HollowOptions } from '../../pkg/agent/runtime/hollow.ts';
import { Client } from '../../pkg/client/client.ts';
import { silentLogger, newLogger } from '../../pkg/log/log.ts';
import { ControllerManager, type ManagerOptions } from '../../pkg/controller/manager.ts';

export interface HollowAgent {
  agent: Agent;
  runtime: HollowRuntime;
  dir: string;
  env?: Record<string, string>;
}

export interface Fleet {
  agents: HollowAgent[];
  add(n?: number, env?: Record<string, string>): Promise<HollowAgent[]>;
  /** stops an agent and starts a new one on its data dir and containers (a restarted agent) */
  restart(h: HollowAgent): Promise<void>;
  stop(): Promise<void>;
}

const log = () => (process.env.BERTH_TEST_LOG ? newLogger({ level: 'debug' }) : silentLogger());

/**
 * Real berth agents (registration, heartbeats, task watch, task engine, status reports)
 * on the hollow runtime, in this process: the kubemark way to have many instances.
 */
export async function startFleet(server: string, bootstrapToken: string, n: number, opts: { cluster?: string; env?: Record<string, string>; hollow?: HollowOptions; memoryMiB?: number; cpus?: number; heartbeatMs?: number } = {}): Promise<Fleet> {
  const agents: HollowAgent[] = [];
  const newAgent = (dir: string, runtime: HollowRuntime, env: Record<string, string>) =>
    new Agent({
      config: loadAgentConfig({
        env: { ECS_CLUSTER: opts.cluster ?? 'default', ECS_DATADIR: dir, ECS_CHECKPOINT: 'true', BERTH_BOOTSTRAP_TOKEN: bootstrapToken, ECS_BACKEND_HOST: server, ECS_INTROSPECTION_PORT: '0', BERTH_RUNTIME: 'hollow', ECS_CONTAINER_STOP_TIMEOUT: '2s', BERTH_LOGS_LISTEN: '127.0.0.1:0', ...opts.env, ...env },
      }),
      client: new Client({ server, token: bootstrapToken }),
      runtime,
      log: log(),
      host: { cpus: opts.cpus ?? 2, totalMemory: (opts.memoryMiB ?? 4096) * 1024 * 1024 },
      fingerprint: `hollow-${dir}`,
      heartbeatMs: opts.heartbeatMs ?? 1000,
    });
  const add = async (k = 1, env: Record<string, string> = {}) => {
    const made: HollowAgent[] = [];
    for (let i = 0; i < k; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'berth-agent-'));
      const runtime = new HollowRuntime(opts.hollow);
      const agent = newAgent(dir, runtime, env);
      await agent.start();
      const h = { agent, runtime, dir, env };
      agents.push(h);
      made.push(h);
    }
    return made;
  };
  await add(n);
  return {
    agents,
    add,
    async restart(h) {
      await h.agent.stop();
      // the same data dir and the same (hollow) containers: the agent resumes its instance
      h.agent = newAgent(h.dir, h.runtime, h.env ?? {});
      await h.agent.start();
    },
    async stop() {
      for (const a of agents) {
        await a.agent.stop();
        await a.runtime.close();
        await rm(a.dir, { recursive: true, force: true });
      }
    },
  };
}

/** Polls until `fn` returns a truthy value (returned) or the time runs out (the last error is thrown). */
export async function eventually<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > timeoutMs) throw last instanceof Error ? last : new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Running {
  client: Client;
  fleet: Fleet;
  mgr: ControllerManager;
  stop(): Promise<void>;
}

/**
 * Beside a test apiserver: an admin client, a hollow fleet of real agents, and the real
 * controller-manager (no leader election), stopped together.
 */
export async function startControlPlane(
  api: { url: string; adminToken: string; bootstrapToken: string },
  agents: number,
  opts: { fleet?: Parameters<typeof startFleet>[3]; manager?: Partial<ManagerOptions> } = {},
): Promise<Running> {
  const client = new Client({ server: api.url, token: api.adminToken });
  const fleet = await startFleet(api.url, api.bootstrapToken, agents, opts.fleet);
  // ECS counts a task without health checks as healthy 40 s after RUNNING; the suites use 1 s unless they say otherwise
  const mgr = new ControllerManager({ client, log: log(), leaderElect: false, resyncMs: 5000, healthyAfterMs: 1000, ...opts.manager });
  await mgr.start();
  return {
    client,
    fleet,
    mgr,
    async stop() {
      await mgr.stop();
      await fleet.stop();
      client.close();
    },
  };
}
