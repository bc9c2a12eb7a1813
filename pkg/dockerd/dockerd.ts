/**
 * Running a Docker daemon of berth's own (for `berth up` and the tests) when none is
 * reachable: its own data root, exec root, pidfile, unix socket, bridge and address pool,
 * so it can run beside another daemon; stopped by pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Docker from 'dockerode';
import { unavailable } from '../errors/errors.ts';

export async function dockerAnswers(socketPath: string): Promise<boolean> {
  if (!fs.existsSync(socketPath)) return false;
  try {
    await new Docker({ socketPath, timeout: 3000 }).ping();
    return true;
  } catch {
    return false;
  }
}

/** The unix socket of a DOCKER_HOST value, if it is one. */
export const socketFromHost = (host: string | undefined) => (host?.startsWith('unix://') ? host.slice('unix://'.length) : undefined);

/** A reachable daemon's socket: DOCKER_HOST, then /var/run/docker.sock; undefined when neither answers. */
export async function findDocker(): Promise<string | undefined> {
  for (const candidate of [socketFromHost(process.env.DOCKER_HOST), '/var/run/docker.sock']) {
    if (candidate && (await dockerAnswers(candidate))) return candidate;
  }
  return undefined;
}

export interface OwnDockerd {
  socketPath: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts dockerd with everything under `dir` (kept across runs when the caller keeps the
 * dir: images survive), a bridge named `bridgeName` on 10.OCTET.0.1/24 and an address pool
 * 10.OCTET.16.0/20. Waits until it answers (60 s). With `liveRestore` containers keep
 * running when it stops, and the next start re-attaches to them.
 */
export async function startDockerd(o: {
  dir: string;
  bridgeName: string;
  octet: number;
  removeDirOnStop?: boolean;
  liveRestore?: boolean;
  /**
   * run inside this network namespace (a name of `ip netns`): its bridge, routes and iptables are the namespace's.
   * Entered with `nsenter --net` only: `ip netns exec` also mounts a fresh /sys, which hides the cgroup mounts dockerd needs.
   */
  netns?: string;
  /** the bridge's address (CIDR) and the pool of user networks, instead of 10.OCTET.0.1/24 and 10.OCTET.16.0/20 */
  bridgeCidr?: string;
  addressPool?: string;
}): Promise<OwnDockerd> {
  await fsp.mkdir(o.dir, { recursive: true });
  const socketPath = path.join(o.dir, 'docker.sock');
  const ip = (...args: string[]) => execFileSync('ip', [...(o.netns ? ['-n', o.netns] : []), ...args], { stdio: 'ignore' });
  try {
    ip('link', 'show', o.bridgeName);
  } catch {
    ip('link', 'add', 'name', o.bridgeName, 'type', 'bridge');
    ip('addr', 'add', o.bridgeCidr ?? `10.${o.octet}.0.1/24`, 'dev', o.bridgeName);
    ip('link', 'set', o.bridgeName, 'up');
  }
  const args = [
    `--data-root=${path.join(o.dir, 'data')}`,
    `--exec-root=${path.join(o.dir, 'exec')}`,
    `--pidfile=${path.join(o.dir, 'docker.pid')}`,
    `--host=unix://${socketPath}`,
    '--storage-driver=overlay2',
    `--bridge=${o.bridgeName}`,
    `--default-address-pool=${o.addressPool ?? `base=10.${o.octet}.16.0/20,size=24`}`,
    // iptables stay on: with br_netfilter and a DROP forward policy, bridged traffic needs
    // docker's ACCEPT rules (with --iptables=false links between containers break)
    '--iptables=true',
    // berth up: containers outlive the daemon, so tasks keep running across restarts
    ...(o.liveRestore ? ['--live-restore'] : []),
  ];
  const logFile = path.join(o.dir, 'dockerd.log');
  const logFd = fs.openSync(logFile, 'a');
  const cmd = [...(o.netns ? ['nsenter', `--net=/run/netns/${o.netns}`, '--'] : []), 'dockerd', ...args];
  const proc: ChildProcess = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  const stop = async () => {
    // the bridges of its user-defined networks (berth's daemon_bridge, 169.254.172.0/22)
    // outlive dockerd; left behind they clash with the next daemon's network of that subnet
    let bridges: string[] = [];
    if (!o.liveRestore && proc.exitCode === null) {
      try {
        const nets = await new Docker({ socketPath, timeout: 5000 }).listNetworks();
        bridges = nets.filter((n) => n.Driver === 'bridge' && n.Name !== 'bridge').map((n) => n.Options?.['com.docker.network.bridge.name'] ?? `br-${n.Id.slice(0, 12)}`);
      } catch {
        /* not answering: nothing to learn */
      }
    }
    if (proc.exitCode === null && proc.pid) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.exitCode === null && proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    }
    // with live restore the containers still run on these mounts and this bridge
    if (o.liveRestore) return;
    // overlay mounts may linger briefly; best effort
    try {
      execFileSync('sh', ['-c', `grep -o " ${o.dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
    } catch {
      /* nothing mounted */
    }
    for (const b of [o.bridgeName, ...bridges]) {
      try {
        ip('link', 'del', b);
      } catch {
        /* gone already */
      }
    }
    if (o.removeDirOnStop) await fsp.rm(o.dir, { recursive: true, force: true }).catch(() => undefined);
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) break;
    if (await dockerAnswers(socketPath)) return { socketPath, pid: proc.pid!, stop };
    await new Promise((r) => setTimeout(r, 200));
  }
  const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-3000) : '';
  await stop();
  throw unavailable(`dockerd did not answer on ${socketPath} within 60 s:\n${log}`);
}
