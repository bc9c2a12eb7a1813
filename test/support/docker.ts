/**
 * Test support: a reachable Docker daemon and the local busybox image.
 *
 * `ensureDocker()` uses DOCKER_HOST or /var/run/docker.sock when they answer; otherwise it
 * starts its own dockerd (data root, exec root, pidfile and socket under a temp dir), shared
 * by every test of this mocha process and stopped by pid when the process ends.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';

export interface DockerHandle {
  /** unix socket path of the daemon */
  socketPath: string;
  /** DOCKER_HOST form: unix:///path */
  dockerHost: string;
  docker: Docker;
  /** stops the daemon if this process started it; a no-op otherwise */
  stop(): Promise<void>;
}

async function answers(socketPath: string): Promise<boolean> {
  if (!fs.existsSync(socketPath)) return false;
  try {
    const d = new Docker({ socketPath, timeout: 3000 });
    await d.ping();
    return true;
  } catch {
    return false;
  }
}

function socketFromHost(host: string | undefined): string | undefined {
  if (!host) return undefined;
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  return undefined;
}

let shared: Promise<DockerHandle> | undefined;
let ownDaemon: { proc: ChildProcess; dir: string; bridgeName: string } | undefined;

async function startOwn(): Promise<DockerHandle> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-dockerd-'));
  const socketPath = path.join(dir, 'docker.sock');
  // our own bridge and address pools, so several daemons can run side by side
  const bridgeName = `brth${process.pid.toString(36)}`.slice(0, 15);
  const octet = 16 + (process.pid % 200);
  execFileSync('sh', ['-c', `ip link add name ${bridgeName} type bridge && ip addr add 10.${octet}.0.1/24 dev ${bridgeName} && ip link set ${bridgeName} up`]);
  const args = [
    `--data-root=${path.join(dir, 'data')}`,
    `--exec-root=${path.join(dir, 'exec')}`,
    `--pidfile=${path.join(dir, 'docker.pid')}`,
    `--host=unix://${socketPath}`,
    '--storage-driver=overlay2',
    `--bridge=${bridgeName}`,
    `--default-address-pool=base=10.${octet}.16.0/20,size=24`,
    // iptables stay on: with br_netfilter and a DROP forward policy, bridged traffic needs
    // docker's ACCEPT rules (tried --iptables=false: links between containers break)
    '--iptables=true',
  ];
  const logFd = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
  const proc = spawn('/usr/sbin/dockerd', args, { stdio: ['ignore', logFd, logFd], detached: false });
  fs.closeSync(logFd);
  ownDaemon = { proc, dir, bridgeName };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) break;
    if (await answers(socketPath)) {
      return handle(socketPath, stopOwn);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const log = fs.existsSync(path.join(dir, 'dockerd.log')) ? fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8').slice(-3000) : '';
  await stopOwn();
  throw new Error(`dockerd did not answer on ${socketPath} within 60s:\n${log}`);
}

async function stopOwn(): Promise<void> {
  const own = ownDaemon;
  if (!own) return;
  ownDaemon = undefined;
  const { proc, dir, bridgeName } = own;
  if (proc.exitCode === null && proc.pid) {
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.exitCode === null && proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
  // overlay mounts may linger briefly; best effort
  try {
    execFileSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
  } catch {
    /* ignore */
  }
  try {
    execFileSync('ip', ['link', 'del', bridgeName], { stdio: 'ignore' });
  } catch {
    /* ignore */
  }
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

function handle(socketPath: string, stop: () => Promise<void>): DockerHandle {
  return { socketPath, dockerHost: `unix://${socketPath}`, docker: new Docker({ socketPath }), stop };
}

/** A reachable Docker daemon, shared per process. */
export function ensureDocker(): Promise<DockerHandle> {
  if (!shared) {
    shared = (async () => {
      for (const candidate of [socketFromHost(process.env.DOCKER_HOST), '/var/run/docker.sock']) {
        if (candidate && (await answers(candidate))) return handle(candidate, async () => undefined);
      }
      return startOwn();
    })();
    shared.catch(() => {
      shared = undefined;
    });
  }
  return shared;
}

/** Stop the shared daemon if this process started it. */
export async function stopDocker(): Promise<void> {
  shared = undefined;
  await stopOwn();
}

process.once('exit', () => {
  if (ownDaemon?.proc.exitCode === null) ownDaemon.proc.kill('SIGTERM');
});

// a root-level hook when loaded by mocha: stop our daemon after all tests
const g = globalThis as { after?: (fn: () => Promise<void>) => void };
if (typeof g.after === 'function') {
  g.after(async function (this: { timeout?: (n: number) => void }) {
    this.timeout?.(60_000);
    await stopDocker();
  });
}

export const BUSYBOX_APPLETS = [
  'sh', 'ash', 'sleep', 'echo', 'cat', 'nc', 'wget', 'httpd', 'ls', 'ps', 'id', 'env', 'hostname', 'ip', 'ifconfig',
  'true', 'false', 'kill', 'mkdir', 'rm', 'touch', 'test', 'grep', 'sed', 'head', 'tail', 'ping', 'nslookup', 'route',
  'printf', 'whoami', 'date', 'uname', 'mount', 'df', 'pwd', 'trap', 'sysctl', 'wc', 'tr', 'cut', 'seq', 'timeout',
  'udhcpc', 'netstat', 'find', 'xargs', 'chmod', 'ln', 'cp', 'mv', 'dd', 'stat',
];

const BUSYBOX_TAGS = ['berth/busybox:latest', 'busybox:latest'];

async function hasImage(docker: Docker, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch {
    return false;
  }
}

function busyboxBinary(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (fs.existsSync(p)) {
      const out = execFileSync('file', ['-L', p]).toString();
      if (/statically linked/.test(out)) return p;
    }
  }
  execFileSync('apt-get', ['install', '-y', 'busybox-static'], { stdio: 'ignore' });
  return '/bin/busybox';
}

/** Build `berth/busybox:latest` (also tagged `busybox:latest`) from the host's static busybox. Idempotent. */
export async function ensureBusyboxImage(docker: Docker): Promise<string> {
  const present = await Promise.all(BUSYBOX_TAGS.map((t) => hasImage(docker, t)));
  if (present.every(Boolean)) return BUSYBOX_TAGS[0];
  if (!present[0]) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-busybox-'));
    try {
      const root = path.join(dir, 'rootfs');
      await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
      for (const d of ['tmp', 'etc', 'proc', 'sys', 'dev', 'root', 'var/www', 'usr/bin']) await fsp.mkdir(path.join(root, d), { recursive: true });
      await fsp.chmod(path.join(root, 'tmp'), 0o1777);
      await fsp.copyFile(busyboxBinary(), path.join(root, 'bin/busybox'));
      await fsp.chmod(path.join(root, 'bin/busybox'), 0o755);
      for (const a of BUSYBOX_APPLETS) await fsp.symlink('busybox', path.join(root, 'bin', a));
      await fsp.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
      await fsp.writeFile(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
      const tar = path.join(dir, 'rootfs.tar');
      execFileSync('tar', ['-C', root, '-cf', tar, '.']);
      const stream: NodeJS.ReadableStream = await (docker.importImage as (...a: unknown[]) => Promise<NodeJS.ReadableStream>).call(docker, tar, { repo: 'berth/busybox', tag: 'latest', changes: ['CMD ["sh"]', 'ENV PATH=/bin:/usr/bin'] } as never);
      await new Promise<void>((resolve, reject) =>
        docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) => {
          const bad = res?.find((r) => r.error);
          if (err || bad) reject(err ?? new Error(bad!.error));
          else resolve();
        }),
      );
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }
  if (!(await hasImage(docker, 'busybox:latest'))) {
    await docker.getImage('berth/busybox:latest').tag({ repo: 'busybox', tag: 'latest' });
  }
  return BUSYBOX_TAGS[0];
}
