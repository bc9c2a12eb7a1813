/**
 * Task-level cpu and memory limits as a cgroup of the task's own (ECS_ENABLE_TASK_CPU_MEM_LIMIT,
 * the ECS agent's agent/taskresource/cgroup): the agent makes `<root>/.../berth/<task>` with
 * the task's memory limit, CPU quota (task cpu units / 1024 cores over ECS_CGROUP_CPU_PERIOD)
 * and ECS_TASK_PIDS_LIMIT, and every container of the task is created with it as its
 * CgroupParent, so the containers together never exceed the task's limits. This needs Docker's
 * cgroupfs driver and the host's cgroup filesystem at ECS_CGROUP_PATH (cgroup v1 or v2);
 * otherwise the runtime falls back to per-container limits that sum to the task's
 * (translate.ts splitTaskLimits).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { silentLogger } from '../../log/log.ts';
import type { RuntimeTask } from './runtime.ts';

export interface CgroupLimits {
  /** microseconds per period the task may run (task cpu / 1024 * period) */
  cpuQuotaUs?: number;
  cpuPeriodUs: number;
  memoryBytes?: number;
  pids?: number;
}

/** The limits of a task's cgroup. Pure. */
export function taskCgroupLimits(task: Pick<RuntimeTask, 'cpu' | 'memory'>, o: { cpuPeriodMs: number; pidsLimit?: number }): CgroupLimits {
  const period = Math.round(o.cpuPeriodMs * 1000);
  return {
    cpuPeriodUs: period,
    ...(task.cpu ? { cpuQuotaUs: Math.max(1000, Math.round((task.cpu / 1024) * period)) } : {}),
    ...(task.memory ? { memoryBytes: task.memory * 1024 * 1024 } : {}),
    ...(o.pidsLimit ? { pids: o.pidsLimit } : {}),
  };
}

export const CGROUP_PARENT = 'berth';

export class TaskCgroups {
  private readonly root: string;
  private readonly log: Logger;
  private version?: Promise<1 | 2>;

  constructor(o: { root: string; logger?: Logger }) {
    this.root = o.root;
    this.log = (o.logger ?? silentLogger()).child({ component: 'cgroups' });
  }

  private detect(): Promise<1 | 2> {
    this.version ??= fs.access(path.join(this.root, 'cgroup.controllers')).then(
      () => 2 as const,
      () => 1 as const,
    );
    return this.version;
  }

  /** The CgroupParent for the task's containers, or undefined when this host cannot have one. */
  async ensure(name: string, l: CgroupLimits): Promise<string | undefined> {
    try {
      if ((await this.detect()) === 2) await this.ensureV2(name, l);
      else await this.ensureV1(name, l);
      return `/${CGROUP_PARENT}/${name}`;
    } catch (e) {
      this.log.warn({ err: (e as Error).message, root: this.root }, 'cannot make the task cgroup; task-level limits become per-container limits');
      return undefined;
    }
  }

  private async ensureV1(name: string, l: CgroupLimits): Promise<void> {
    const dir = (ctrl: string) => path.join(this.root, ctrl, CGROUP_PARENT, name);
    if (l.memoryBytes !== undefined) {
      await fs.mkdir(dir('memory'), { recursive: true });
      await fs.writeFile(path.join(dir('memory'), 'memory.limit_in_bytes'), String(l.memoryBytes));
    }
    if (l.cpuQuotaUs !== undefined) {
      await fs.mkdir(dir('cpu'), { recursive: true });
      await fs.writeFile(path.join(dir('cpu'), 'cpu.cfs_period_us'), String(l.cpuPeriodUs));
      await fs.writeFile(path.join(dir('cpu'), 'cpu.cfs_quota_us'), String(l.cpuQuotaUs));
    }
    if (l.pids !== undefined) {
      await fs.mkdir(dir('pids'), { recursive: true });
      await fs.writeFile(path.join(dir('pids'), 'pids.max'), String(l.pids));
    }
  }

  private async ensureV2(name: string, l: CgroupLimits): Promise<void> {
    const enable = async (dir: string) => {
      const want = ['cpu', 'memory', 'pids'];
      const have = (await fs.readFile(path.join(dir, 'cgroup.controllers'), 'utf8')).split(/\s+/);
      const on = (await fs.readFile(path.join(dir, 'cgroup.subtree_control'), 'utf8')).split(/\s+/);
      const add = want.filter((c) => have.includes(c) && !on.includes(c));
      if (add.length) await fs.writeFile(path.join(dir, 'cgroup.subtree_control'), add.map((c) => `+${c}`).join(' '));
    };
    const parent = path.join(this.root, CGROUP_PARENT);
    await enable(this.root);
    await fs.mkdir(parent, { recursive: true });
    await enable(parent);
    const dir = path.join(parent, name);
    await fs.mkdir(dir, { recursive: true });
    if (l.memoryBytes !== undefined) await fs.writeFile(path.join(dir, 'memory.max'), String(l.memoryBytes));
    if (l.cpuQuotaUs !== undefined) await fs.writeFile(path.join(dir, 'cpu.max'), `${l.cpuQuotaUs} ${l.cpuPeriodUs}`);
    if (l.pids !== undefined) await fs.writeFile(path.join(dir, 'pids.max'), String(l.pids));
  }

  /** Where a controller's file of the task lives (tests read the limits back). */
  async file(name: string, ctrl: 'memory' | 'cpu' | 'pids', file: string): Promise<string> {
    return (await this.detect()) === 2 ? path.join(this.root, CGROUP_PARENT, name, file) : path.join(this.root, ctrl, CGROUP_PARENT, name, file);
  }

  /** Remove the task's cgroup (its containers are gone), in every hierarchy Docker's runtime made it in. */
  async remove(name: string): Promise<void> {
    const dirs =
      (await this.detect()) === 2
        ? [path.join(this.root, CGROUP_PARENT, name)]
        : (await fs.readdir(this.root).catch(() => [] as string[])).map((c) => path.join(this.root, c, CGROUP_PARENT, name));
    for (const d of dirs) await fs.rmdir(d).catch(() => undefined);
  }
}
