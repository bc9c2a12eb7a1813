/**
 * Test support: network namespaces as hosts. Every name this test run makes carries the
 * prefix `bt<pid base36>_<n>` (interface names stay within 15 characters), so a later run
 * can find and remove what a crashed run left behind: its namespaces (after killing every
 * process in them), root-namespace links and temp dirs.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const PREFIX_RE = /^bt([0-9a-z]+)_(\d+)/;

/** Runs `ip ...` (throws with ip's stderr). */
export function ip(...args: string[]): string {
  try {
    return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    throw new Error(`ip ${args.join(' ')}: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`);
  }
}

/** Runs a command inside a namespace. */
export function nsExec(ns: string, ...argv: string[]): string {
  try {
    return execFileSync('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    throw new Error(`[${ns}] ${argv.join(' ')}: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`);
  }
}

/**
 * Runs a command inside a namespace without blocking the event loop (a sampler keeps
 * running meanwhile); resolves with its stdout, rejects with its stderr.
 */
export function nsExecAsync(ns: string, ...argv: string[]): Promise<string> {
  const cmd = [...inNetns(ns), ...argv];
  return new Promise((resolve, reject) => {
    execFile(cmd[0], cmd.slice(1), { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`[${ns}] ${argv.join(' ')}: ${String(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export function netnsList(): string[] {
  return ip('netns', 'list').split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

/** Kills every process in the namespace (SIGKILL), then deletes it. Synchronous, so it can run on exit. */
export function deleteNetns(ns: string): void {
  for (let i = 0; i < 3; i++) {
    let pids: number[] = [];
    try {
      pids = ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
    } catch {
      return; // no such namespace
    }
    if (!pids.length) break;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    execFileSync('sleep', ['0.2']);
  }
  try {
    ip('netns', 'del', ns);
  } catch {
    /* gone already */
  }
}

export function deleteLink(name: string, ns?: string): void {
  try {
    ip(...(ns ? ['-n', ns] : []), 'link', 'del', name);
  } catch {
    /* gone already (a veth goes with its namespace) */
  }
}

/**
 * Removes what earlier runs of this suite left behind when their process died: namespaces
 * and root links with our prefix whose pid is gone, and their temp dirs.
 */
export function sweepLeftovers(): string[] {
  const removed: string[] = [];
  const dead = (name: string) => {
    const m = PREFIX_RE.exec(name);
    return !!m && !alive(parseInt(m[1], 36));
  };
  for (const ns of netnsList()) {
    if (dead(ns)) {
      deleteNetns(ns);
      removed.push(`netns ${ns}`);
    }
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name && dead(name)) {
      deleteLink(name);
      removed.push(`link ${name}`);
    }
  }
  for (const d of fs.readdirSync(os.tmpdir())) {
    const m = /^berth-topo-(bt[0-9a-z]+_\d+)/.exec(d);
    if (m && dead(m[1])) {
      // overlay mounts of its dockerds (they ran in this mount namespace)
      try {
        execFileSync('sh', ['-c', `grep -o " ${path.join(os.tmpdir(), d)}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
      } catch {
        /* nothing mounted */
      }
      fs.rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
      removed.push(`dir ${d}`);
    }
  }
  return removed;
}

export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  logFile: string;
  readonly running: boolean;
  exited: Promise<void>;
  /** SIGSTOP / SIGCONT */
  pause(): void;
  resume(): void;
  /** SIGTERM, then SIGKILL after `graceMs` */
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
  tail(chars?: number): string;
}

/**
 * The command prefix that runs a program in a namespace: `nsenter --net` enters only the network
 * namespace (`ip netns exec` would also mount a fresh /sys, hiding the cgroup mounts dockerd needs).
 */
export const inNetns = (ns: string) => ['nsenter', `--net=/run/netns/${ns}`, '--'];

/** Starts argv inside a namespace (or here with ns undefined), output appended to logFile. */
export function spawnIn(ns: string | undefined, name: string, argv: string[], o: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string }): Proc {
  const fd = fs.openSync(o.logFile, 'a');
  const cmd = [...(ns ? inNetns(ns) : []), ...argv];
  const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', fd, fd], env: o.env ?? process.env, cwd: o.cwd });
  fs.closeSync(fd);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const p: Proc = {
    name,
    pid: child.pid!,
    child,
    logFile: o.logFile,
    get running() {
      return running();
    },
    exited,
    pause() {
      if (running()) child.kill('SIGSTOP');
    },
    resume() {
      if (running()) child.kill('SIGCONT');
    },
    async stop(graceMs = 10_000) {
      if (!running()) return;
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const t = setTimeout(() => running() && child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
    async kill() {
      if (!running()) return;
      child.kill('SIGKILL');
      await exited;
    },
    tail(chars = 3000) {
      try {
        const s = fs.readFileSync(o.logFile, 'utf8');
        return s.slice(-chars);
      } catch {
        return '';
      }
    },
  };
  return p;
}
