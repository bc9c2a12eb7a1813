/**
 * The local image berth runs without a registry: `berth/busybox:latest` (also tagged
 * `busybox:latest`, so the task definitions of ECS's documents run unchanged), imported from
 * Debian's static busybox with `docker import`.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';

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

/** Is this an ELF executable without a program interpreter (statically linked)? Reads the ELF program headers. */
export function isStaticElf(file: string): boolean {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return false;
  }
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) return false;
  const is64 = buf[4] === 2;
  const le = buf[5] === 1;
  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const phoff = is64 ? Number(le ? buf.readBigUInt64LE(32) : buf.readBigUInt64BE(32)) : u32(28);
  const phentsize = u16(is64 ? 54 : 42);
  const phnum = u16(is64 ? 56 : 44);
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    if (off + 4 > buf.length) return false;
    if (u32(off) === 3) return false; // PT_INTERP: dynamically linked
  }
  return true;
}

export const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox'];

/** The host's static busybox; with `install`, apt-get installs busybox-static when there is none. */
function busyboxBinary(paths = BUSYBOX_PATHS, install = true): string {
  for (const p of paths) if (fs.existsSync(p) && isStaticElf(p)) return p;
  if (!install) throw new Error(`no statically linked busybox at ${paths.join(' or ')}`);
  execFileSync('apt-get', ['install', '-y', 'busybox-static'], { stdio: 'ignore' });
  return '/bin/busybox';
}

/**
 * Write a tiny rootfs (the host's static busybox and its applets, /etc/passwd, /tmp) under
 * `dir` and return the path of its tar, ready for `docker import`.
 */
export async function buildBusyboxRootfs(dir: string, o: { busyboxPaths?: string[]; install?: boolean } = {}): Promise<string> {
  const bin = busyboxBinary(o.busyboxPaths, o.install ?? true);
  const root = path.join(dir, 'rootfs');
  await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
  for (const d of ['tmp', 'etc', 'proc', 'sys', 'dev', 'root', 'var/www', 'usr/bin']) await fsp.mkdir(path.join(root, d), { recursive: true });
  await fsp.chmod(path.join(root, 'tmp'), 0o1777);
  await fsp.copyFile(bin, path.join(root, 'bin/busybox'));
  await fsp.chmod(path.join(root, 'bin/busybox'), 0o755);
  for (const a of BUSYBOX_APPLETS) await fsp.symlink('busybox', path.join(root, 'bin', a));
  await fsp.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await fsp.writeFile(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  const tar = path.join(dir, 'rootfs.tar');
  execFileSync('tar', ['-C', root, '-cf', tar, '.']);
  return tar;
}

/** Build `berth/busybox:latest` (also tagged `busybox:latest`) from the host's static busybox. Idempotent. */
export async function ensureBusyboxImage(docker: Docker): Promise<string> {
  const present = await Promise.all(BUSYBOX_TAGS.map((t) => hasImage(docker, t)));
  if (present.every(Boolean)) return BUSYBOX_TAGS[0];
  if (!present[0]) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'berth-busybox-'));
    try {
      const tar = await buildBusyboxRootfs(dir);
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
