// What a benchmark ran on, for its result JSON. Every probe is guarded: a missing file or
// tool gives undefined, never a throw.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';

// Taken when the benchmark imports this module (at its start), so a benchmark that builds
// its report at the end still records the load it started under.
const loadAtImport = loadavg();

export interface Machine {
  cpus: number;
  cpu_model: string | undefined;
  cpu_mhz: number | undefined;
  memory_gib: number;
  os: string | undefined;
  kernel: string | undefined;
  node: string;
  etcd: string | undefined;
  docker: string | undefined;
  load_avg_at_start: number[];
}

const probe = <T>(fn: () => T | undefined): T | undefined => {
  try {
    return fn();
  } catch {
    return undefined;
  }
};

const run = (cmd: string, args: string[]): string | undefined =>
  probe(() => execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined);

function cpuMhz(): number | undefined {
  const speed = probe(() => cpus()[0]?.speed);
  if (speed) return speed;
  // VMs often report speed 0 through os.cpus(); /proc/cpuinfo has the current clock
  const m = probe(() => /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8')));
  return m ? Math.round(Number(m[1])) : undefined;
}

function osName(): string | undefined {
  const text = probe(() => readFileSync('/etc/os-release', 'utf8'));
  const m = text ? /^PRETTY_NAME=("?)(.*)\1$/m.exec(text) : null;
  return m?.[2] || undefined;
}

function etcdVersion(): string | undefined {
  const out = run('etcd', ['--version']);
  if (!out) return undefined;
  return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0];
}

export function describeMachine(): Machine {
  return {
    cpus: probe(() => cpus().length) ?? 0,
    cpu_model: probe(() => cpus()[0]?.model),
    cpu_mhz: cpuMhz(),
    memory_gib: probe(() => Math.round((totalmem() / 2 ** 30) * 10) / 10) ?? 0,
    os: osName(),
    kernel: probe(() => release()),
    node: process.version,
    etcd: etcdVersion(),
    docker: run('docker', ['version', '--format', '{{.Server.Version}}']),
    load_avg_at_start: loadAtImport.map((x) => Math.round(x * 100) / 100),
  };
}
