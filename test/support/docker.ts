/**
 * Test support: a reachable Docker daemon and the local busybox image.
 *
 * `ensureDocker()` uses DOCKER_HOST or /var/run/docker.sock when they answer; otherwise it
 * starts its own dockerd (pkg/dockerd: data root, exec root, pidfile and socket under a
 * temp dir), shared by every test of this mocha process and stopped by pid when it ends.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { findDocker, startDockerd, type OwnDockerd } from '../../pkg/dockerd/dockerd.ts';

export { BUSYBOX_APPLETS, ensureBusyboxImage } from '../../pkg/dockerd/image.ts';

export interface DockerHandle {
  /** unix socket path of the daemon */
  socketPath: string;
  /** DOCKER_HOST form: unix:///path */
  dockerHost: string;
  docker: Docker;
  /** stops the daemon if this process started it; a no-op otherwise */
  stop(): Promise<void>;
}

let shared: Promise<DockerHandle> | undefined;
let ownDaemon: OwnDockerd | undefined;

async function startOwn(): Promise<DockerHandle> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-dockerd-'));
  // our own bridge and address pool, so several daemons can run side by side
  ownDaemon = await startDockerd({ dir, bridgeName: `brth${process.pid.toString(36)}`.slice(0, 15), octet: 16 + (process.pid % 200), removeDirOnStop: true });
  return handle(ownDaemon.socketPath, stopOwn);
}

async function stopOwn(): Promise<void> {
  const own = ownDaemon;
  ownDaemon = undefined;
  await own?.stop();
}

function handle(socketPath: string, stop: () => Promise<void>): DockerHandle {
  return { socketPath, dockerHost: `unix://${socketPath}`, docker: new Docker({ socketPath }), stop };
}

/** A reachable Docker daemon, shared per process. */
export function ensureDocker(): Promise<DockerHandle> {
  if (!shared) {
    shared = (async () => {
      const found = await findDocker();
      return found ? handle(found, async () => undefined) : startOwn();
    })();
    shared.catch(() => {
      shared = undefined;
    });
  }
  return shared;
}

/** Runs a command in a running container; its stdout and stderr (raw, multiplexed). */
export async function execIn(docker: Docker, id: string, cmd: string[]): Promise<string> {
  const ex = await docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await ex.start({});
  let out = '';
  await new Promise<void>((r) => {
    stream.on('data', (d: Buffer) => (out += d.toString()));
    stream.on('end', () => r());
  });
  return out;
}

/** Stop the shared daemon if this process started it. */
export async function stopDocker(): Promise<void> {
  shared = undefined;
  await stopOwn();
}

process.once('exit', () => {
  try {
    if (ownDaemon) process.kill(ownDaemon.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
});

// a root-level hook when loaded by mocha: stop our daemon after all tests
const g = globalThis as { after?: (fn: () => Promise<void>) => void };
if (typeof g.after === 'function') {
  g.after(async function (this: { timeout?: (n: number) => void }) {
    this.timeout?.(60_000);
    await stopDocker();
  });
}

