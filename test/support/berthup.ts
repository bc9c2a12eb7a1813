/**
 * Test support: `berth up` in the background on real Docker, in its own BERTH_HOME, and the
 * CLI run as separate processes against it, as a user runs them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ensureBusyboxImage, ensureDocker, type DockerHandle } from './docker.ts';
import { freePort } from './etcd.ts';
import { eventually } from './fleet.ts';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

export interface BerthUp {
  home: string;
  docker: DockerHandle;
  /** everything `berth up` printed so far */
  output(): string;
  /** the CLI as a separate process */
  berth(args: string[], input?: string): Promise<CliResult>;
  /** the same, expecting exit code 0: its stdout */
  ok(args: string[], input?: string): Promise<string>;
  /** stops berth up (SIGTERM) and removes its home */
  stop(): Promise<void>;
}

export async function startBerthUp(prefix: string, extraEnv: Record<string, string> = {}): Promise<BerthUp> {
  const docker = await ensureDocker();
  await ensureBusyboxImage(docker.docker);
  const home = await mkdtemp(join(tmpdir(), prefix));
  const env = { ...process.env, BERTH_HOME: home, DOCKER_HOST: docker.dockerHost, ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: '1s', BERTH_LOG_LEVEL: 'warn', ...extraEnv };
  const port = await freePort();
  let out = '';
  const up: ChildProcess = spawn(process.execPath, ['cmd/berth/bin.mjs', 'up', '--listen', `127.0.0.1:${port}`], { env });
  up.stdout!.on('data', (d) => (out += d));
  up.stderr!.on('data', (d) => (out += d));
  const berth = (args: string[], input?: string) =>
    new Promise<CliResult>((resolve) => {
      const p = spawn(process.execPath, ['cmd/berth/bin.mjs', ...args], { env });
      let o = '';
      let e = '';
      p.stdout.on('data', (d) => (o += d));
      p.stderr.on('data', (d) => (e += d));
      p.on('close', (code) => resolve({ code: code ?? -1, out: o, err: e }));
      p.stdin.end(input ?? '');
    });
  const ok = async (args: string[], input?: string) => {
    const r = await berth(args, input);
    expect(r.code, `berth ${args.join(' ')}: ${r.err}`).to.equal(0);
    return r.out;
  };
  const stop = async () => {
    if (up.exitCode === null && up.signalCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up.once('exit', r));
    }
    await rm(home, { recursive: true, force: true });
  };
  try {
    await eventually(() => out.includes('berth is up on'), 60_000, `berth up (output so far: ${out})`);
    await eventually(async () => (await berth(['get', 'ci', '-o', 'name'])).out.includes('containerinstance'), 30_000, 'the agent registered');
  } catch (e) {
    await stop();
    throw e;
  }
  return { home, docker, output: () => out, berth, ok, stop };
}
