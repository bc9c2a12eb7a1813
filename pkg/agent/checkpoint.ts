/**
 * The agent's checkpoint in ECS_DATADIR: its identity and, per task, the Docker names of its
 * containers, recorded BEFORE `docker create` so a crash between create and the next
 * checkpoint never leaves an unknown container (the name is the idempotency key); the Docker
 * ids once known (a recorded id that Docker no longer has is a vanished container, not one
 * to create again: review D3); and the task's state (known and desired status, when it was
 * reached, exit codes, restart counts, the status last accepted by the apiserver), so a
 * restarted agent resumes where it was and cleans stopped tasks up on schedule (D4), as the
 * ECS agent's state file does. Also the images the agent's containers used (image cleanup).
 *
 * Written atomically (tmp file, fsync, rename, fsync of the directory, the recipe of the ECS
 * agent's statemanager); writes queued behind one in flight are coalesced into one. A lock
 * file refuses a second agent on the same data dir.
 */
import fs from 'node:fs/promises';
import { mkdirSync, readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { badRequest, internal } from '../errors/errors.ts';

const Status = z.enum(['NONE', 'PULLED', 'CREATED', 'RUNNING', 'STOPPED']);

export const CheckpointContainer = z.object({
  known: Status.optional(),
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  restartCount: z.number().int().optional(),
  /** ms epoch of the current run's start (runtime clock) */
  startedAt: z.number().optional(),
  finishedAt: z.number().optional(),
});
export type CheckpointContainer = z.infer<typeof CheckpointContainer>;

export const CheckpointTask = z.object({
  taskArn: z.string(),
  /** container name (task definition) -> docker container name */
  containerNames: z.record(z.string(), z.string()),
  /** container name -> docker id, once known */
  dockerIds: z.record(z.string(), z.string()).default({}),
  desiredStatus: z.enum(['RUNNING', 'STOPPED']).optional(),
  /** the task's known status and when it was reached (ms epoch) */
  known: Status.optional(),
  knownAt: z.number().optional(),
  stoppedReason: z.string().optional(),
  stopCode: z.string().optional(),
  containers: z.record(z.string(), CheckpointContainer).optional(),
  /** the last lastStatus the apiserver accepted from this agent, and when */
  sentStatus: z.string().optional(),
  sentAt: z.number().optional(),
});
export type CheckpointTask = z.infer<typeof CheckpointTask>;

export const CheckpointImage = z.object({
  /** the references (repo:tag) containers were created from */
  names: z.array(z.string()),
  /** first seen in use (ECS: PulledAt) and last used, ms epoch */
  pulledAt: z.number(),
  lastUsedAt: z.number(),
});
export type CheckpointImage = z.infer<typeof CheckpointImage>;

export const CheckpointData = z.object({
  /** 1: identity and names only (read and upgraded); 2: with task state and images */
  version: z.union([z.literal(1), z.literal(2)]).transform(() => 2 as const),
  cluster: z.string().optional(),
  containerInstanceArn: z.string().optional(),
  instanceId: z.string().optional(),
  /** the node credential issued at registration */
  token: z.string().optional(),
  /** the host the instance registered from: a data dir copied elsewhere is refused */
  hostFingerprint: z.string().optional(),
  tasks: z.record(z.string(), CheckpointTask).default({}),
  /** image id -> what the agent knows of it */
  images: z.record(z.string(), CheckpointImage).default({}),
});
export type CheckpointData = z.output<typeof CheckpointData>;

export const CHECKPOINT_FILE = 'berth-agent.json';
export const LOCK_FILE = 'berth-agent.lock';

/** data dirs locked by agents of this process (a pid cannot tell two of them apart) */
const lockedHere = new Set<string>();

export class Checkpoint {
  private data: CheckpointData = { version: 2, tasks: {}, images: {} };
  /** serialises writes so two saves never interleave */
  private chain: Promise<void> = Promise.resolve();
  /** a write queued and not started yet: later changes ride along with it */
  private queued?: Promise<void>;
  private locked = false;
  readonly file: string;

  constructor(
    readonly dir: string,
    /** false: keep in memory only (ECS_CHECKPOINT=false) */
    readonly enabled = true,
  ) {
    this.file = path.join(dir, CHECKPOINT_FILE);
  }

  /** Load from disk; a missing file is an empty checkpoint, a corrupt one an error. Temp files of a crashed write are removed. */
  async load(): Promise<CheckpointData> {
    if (!this.enabled) return this.snapshot();
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.snapshot();
      throw e;
    }
    await this.removeStaleTemps();
    const hint = `move it aside to start afresh (the agent then registers a new container instance, and the old instance's containers are left to remove by hand)`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw internal(`checkpoint ${this.file} is not valid JSON: ${hint}`);
    }
    const r = CheckpointData.safeParse(parsed);
    if (!r.success) throw internal(`checkpoint ${this.file} is invalid: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}; ${hint}`);
    this.data = r.data;
    return this.snapshot();
  }

  private async removeStaleTemps(): Promise<void> {
    for (const f of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (f.startsWith(`${CHECKPOINT_FILE}.tmp-`)) await fs.rm(path.join(this.dir, f), { force: true }).catch(() => undefined);
    }
  }

  /**
   * Refuse a data dir another live agent holds (its pid in the lock file, or an agent of this
   * process). A lock left by a dead process is taken over.
   */
  lock(): void {
    if (!this.enabled || this.locked) return;
    const dir = path.resolve(this.dir);
    const file = path.join(dir, LOCK_FILE);
    if (lockedHere.has(dir)) throw badRequest(`ECS_DATADIR ${this.dir} is in use by another agent in this process`);
    let holder: number | undefined;
    try {
      holder = Number(readFileSync(file, 'utf8').trim()) || undefined;
    } catch {
      /* no lock */
    }
    if (holder && holder !== process.pid && alive(holder)) {
      throw badRequest(`ECS_DATADIR ${this.dir} is in use by another agent (pid ${holder}, ${file}); two agents on one data dir would run as one container instance`);
    }
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(file, `${process.pid}\n`, { mode: 0o600 });
    } catch (e) {
      throw internal(`cannot write ${file}: ${(e as Error).message}`);
    }
    lockedHere.add(dir);
    this.locked = true;
  }

  unlock(): void {
    if (!this.locked) return;
    const dir = path.resolve(this.dir);
    lockedHere.delete(dir);
    this.locked = false;
    try {
      unlinkSync(path.join(dir, LOCK_FILE));
    } catch {
      /* gone */
    }
  }

  snapshot(): CheckpointData {
    return structuredClone(this.data);
  }

  task(arn: string): CheckpointTask | undefined {
    const t = this.data.tasks[arn];
    return t ? structuredClone(t) : undefined;
  }

  /** Apply a change and persist it before returning. */
  async update(fn: (d: CheckpointData) => void): Promise<CheckpointData> {
    const next = structuredClone(this.data);
    fn(next);
    this.data = CheckpointData.parse(next);
    await this.persist();
    return this.snapshot();
  }

  private persist(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.queued) return this.queued;
    const run = this.chain.then(() => {
      this.queued = undefined;
      return this.write(JSON.stringify(this.data, null, 2));
    });
    this.queued = run;
    this.chain = run.catch(() => undefined);
    return run;
  }

  private static taskOf(d: CheckpointData, taskArn: string): CheckpointTask {
    return (d.tasks[taskArn] ??= { taskArn, containerNames: {}, dockerIds: {} });
  }

  /** Record the docker name of a container before it is created. */
  recordContainerName(taskArn: string, container: string, dockerName: string): Promise<CheckpointData> {
    return this.update((d) => {
      Checkpoint.taskOf(d, taskArn).containerNames[container] = dockerName;
    });
  }

  recordDockerId(taskArn: string, container: string, dockerId: string): Promise<CheckpointData> {
    return this.update((d) => {
      Checkpoint.taskOf(d, taskArn).dockerIds[container] = dockerId;
    });
  }

  /** The task's engine state (known/desired status, times, exits). */
  recordTaskState(taskArn: string, s: Pick<CheckpointTask, 'desiredStatus' | 'known' | 'knownAt' | 'stoppedReason' | 'stopCode' | 'containers'>): Promise<CheckpointData> {
    return this.update((d) => {
      Object.assign(Checkpoint.taskOf(d, taskArn), s);
    });
  }

  /** The apiserver accepted `status` for the task. */
  recordSent(taskArn: string, status: string, at: number): Promise<CheckpointData> {
    return this.update((d) => {
      if (!d.tasks[taskArn]) return;
      d.tasks[taskArn].sentStatus = status;
      d.tasks[taskArn].sentAt = at;
    });
  }

  removeTask(taskArn: string): Promise<CheckpointData> {
    return this.update((d) => {
      delete d.tasks[taskArn];
    });
  }

  /** A container was created from `name` (image id `id`). */
  recordImageUse(id: string, name: string, at: number): Promise<CheckpointData> {
    return this.update((d) => {
      const img = (d.images[id] ??= { names: [], pulledAt: at, lastUsedAt: at });
      if (!img.names.includes(name)) img.names.push(name);
      img.lastUsedAt = Math.max(img.lastUsedAt, at);
    });
  }

  /** Did a container of this agent use this image reference? */
  knowsImage(ref: string): boolean {
    return Object.values(this.data.images).some((i) => i.names.includes(ref));
  }

  forgetImage(id: string): Promise<CheckpointData> {
    return this.update((d) => {
      delete d.images[id];
    });
  }

  private async write(body: string): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    const fh = await fs.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.file);
    try {
      const dh = await fs.open(this.dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch {
      /* directory fsync is best effort on some filesystems */
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
