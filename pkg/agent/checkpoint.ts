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
 *
 * A change costs O(1) on the event loop whatever the number of tasks (review R2-5): a
 * record (a task, an image) is changed in place, validated alone, and serialised alone into
 * a cache of record texts; a write joins the cached texts (the ECS agent's boltdb keeps a
 * record per task for the same reason). Only `update` (the identity, at registration) and
 * `load` handle the whole checkpoint.
 */
import fs from 'node:fs/promises';
import { linkSync, mkdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
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

/** How records are validated (injectable: a test counts what a change validates). */
export interface CheckpointSchemas {
  task(t: unknown): CheckpointTask;
  image(i: unknown): CheckpointImage;
  all(d: unknown): CheckpointData;
}
const ZOD_SCHEMAS: CheckpointSchemas = { task: (t) => CheckpointTask.parse(t), image: (i) => CheckpointImage.parse(i), all: (d) => CheckpointData.parse(d) };

export class Checkpoint {
  private data: CheckpointData = { version: 2, tasks: {}, images: {} };
  /** each task's and image's JSON text, kept as records change: a write joins them */
  private readonly taskText = new Map<string, string>();
  private readonly imageText = new Map<string, string>();
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
    private readonly schemas: CheckpointSchemas = ZOD_SCHEMAS,
  ) {
    this.file = path.join(dir, CHECKPOINT_FILE);
  }

  /** Replace everything (load, update) and rebuild the record texts. */
  private setAll(d: CheckpointData): void {
    this.data = d;
    this.taskText.clear();
    this.imageText.clear();
    for (const [k, t] of Object.entries(d.tasks)) this.taskText.set(k, JSON.stringify(t));
    for (const [k, i] of Object.entries(d.images)) this.imageText.set(k, JSON.stringify(i));
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
    this.setAll(r.data);
    return this.snapshot();
  }

  private async removeStaleTemps(): Promise<void> {
    for (const f of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (f.startsWith(`${CHECKPOINT_FILE}.tmp-`)) await fs.rm(path.join(this.dir, f), { force: true }).catch(() => undefined);
    }
  }

  /**
   * Refuse a data dir another live agent holds (its pid in the lock file, or an agent of this
   * process). Atomic: the lock file is created only where none exists (a hard link of a
   * written temp file: link, like O_EXCL, fails when the name exists), so of two agents
   * starting at once only one creates it. A lock left by a dead process is taken over under a takeover
   * guard (a directory made with mkdir, also atomic): only its holder may remove a stale
   * lock, and it re-reads the lock first, so a fresh lock is never removed.
   */
  lock(): void {
    if (!this.enabled || this.locked) return;
    const dir = path.resolve(this.dir);
    const file = path.join(dir, LOCK_FILE);
    if (lockedHere.has(dir)) throw badRequest(`ECS_DATADIR ${this.dir} is in use by another agent in this process`);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw internal(`cannot create ${dir}: ${(e as Error).message}`);
    }
    const holderOf = (): number | undefined => {
      try {
        return Number(readFileSync(file, 'utf8').trim()) || undefined;
      } catch {
        return undefined;
      }
    };
    const refuse = (pid: number) => badRequest(`ECS_DATADIR ${this.dir} is in use by another agent (pid ${pid}, ${file}); two agents on one data dir would run as one container instance`);
    const guard = `${file}.takeover`;
    // longer than a takeover guard lives: one left by an agent that died in the middle of a takeover expires first
    const deadline = Date.now() + GUARD_EXPIRY_MS + 5_000;
    for (;;) {
      if (createExclusive(file, `${process.pid}\n`)) break;
      const holder = holderOf();
      if (holder && holder !== process.pid && alive(holder)) throw refuse(holder);
      // no pid in it yet: where there are no hard links the file is created, then written (createExclusive);
      // a lock that stays empty for a second is stale like one with a dead pid
      if (holder === undefined && lockAgeMs(file) < EMPTY_LOCK_GRACE_MS && Date.now() <= deadline) {
        sleepSync(20);
        continue;
      }
      // stale: a dead pid, our own from an earlier life, or no pid at all
      if (Date.now() > deadline) throw internal(`cannot take over the stale lock ${file} (guard ${guard}): remove both if no agent runs on ${this.dir}`);
      if (!takeGuard(guard)) {
        sleepSync(20); // another agent is taking the stale lock over: look again
        continue;
      }
      try {
        // under the guard nobody else removes the lock: if it is still the stale one, it goes
        const again = holderOf();
        if (again === holder && !(again && again !== process.pid && alive(again))) {
          try {
            unlinkSync(file);
          } catch {
            /* gone already */
          }
        }
        if (createExclusive(file, `${process.pid}\n`)) break;
      } finally {
        try {
          rmdirSync(guard);
        } catch {
          /* gone */
        }
      }
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

  /**
   * Apply a change to the whole checkpoint (the identity, at registration) and persist it
   * before returning. O(tasks): per-record changes go through the record methods.
   */
  async update(fn: (d: CheckpointData) => void): Promise<CheckpointData> {
    const next = structuredClone(this.data);
    fn(next);
    this.setAll(this.schemas.all(next));
    await this.persist();
    return this.snapshot();
  }

  /** Change one task's record (created when missing, unless `create` is false): only it is copied, validated and serialised. */
  private async updateTask(taskArn: string, fn: (t: CheckpointTask) => void, create = true): Promise<void> {
    const cur = this.data.tasks[taskArn];
    if (!cur && !create) return;
    const next: CheckpointTask = cur ? structuredClone(cur) : { taskArn, containerNames: {}, dockerIds: {} };
    fn(next);
    const t = this.schemas.task(next);
    this.data.tasks[taskArn] = t;
    this.taskText.set(taskArn, JSON.stringify(t));
    await this.persist();
  }

  private async updateImage(id: string, fn: (i: CheckpointImage | undefined) => CheckpointImage | undefined): Promise<void> {
    const cur = this.data.images[id];
    const next = fn(cur ? structuredClone(cur) : undefined);
    if (next) {
      const i = this.schemas.image(next);
      this.data.images[id] = i;
      this.imageText.set(id, JSON.stringify(i));
    } else {
      if (!cur) return;
      delete this.data.images[id];
      this.imageText.delete(id);
    }
    await this.persist();
  }

  /** The file's text: the identity, then the cached record texts (no record is serialised again). */
  private body(): string {
    const { tasks: _t, images: _i, ...identity } = this.data;
    const head = JSON.stringify(identity);
    const records = (m: Map<string, string>) => {
      const parts: string[] = [];
      for (const [k, v] of m) parts.push(`${JSON.stringify(k)}:${v}`);
      return `{${parts.join(',')}}`;
    };
    return `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"tasks":${records(this.taskText)},"images":${records(this.imageText)}}\n`;
  }

  private persist(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.queued) return this.queued;
    const run = this.chain.then(() => {
      this.queued = undefined;
      return this.write(this.body());
    });
    this.queued = run;
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Record the docker name of a container before it is created. */
  recordContainerName(taskArn: string, container: string, dockerName: string): Promise<void> {
    return this.updateTask(taskArn, (t) => {
      t.containerNames[container] = dockerName;
    });
  }

  recordDockerId(taskArn: string, container: string, dockerId: string): Promise<void> {
    return this.updateTask(taskArn, (t) => {
      t.dockerIds[container] = dockerId;
    });
  }

  /** The task's engine state (known/desired status, times, exits). */
  recordTaskState(taskArn: string, s: Pick<CheckpointTask, 'desiredStatus' | 'known' | 'knownAt' | 'stoppedReason' | 'stopCode' | 'containers'>): Promise<void> {
    return this.updateTask(taskArn, (t) => {
      Object.assign(t, s);
    });
  }

  /** The apiserver accepted `status` for the task. */
  recordSent(taskArn: string, status: string, at: number): Promise<void> {
    return this.updateTask(
      taskArn,
      (t) => {
        t.sentStatus = status;
        t.sentAt = at;
      },
      false,
    );
  }

  async removeTask(taskArn: string): Promise<void> {
    delete this.data.tasks[taskArn];
    this.taskText.delete(taskArn);
    await this.persist();
  }

  /** A container was created from `name` (image id `id`). */
  recordImageUse(id: string, name: string, at: number): Promise<void> {
    return this.updateImage(id, (cur) => {
      const img = cur ?? { names: [], pulledAt: at, lastUsedAt: at };
      if (!img.names.includes(name)) img.names.push(name);
      img.lastUsedAt = Math.max(img.lastUsedAt, at);
      return img;
    });
  }

  /** Did a container of this agent use this image reference? */
  knowsImage(ref: string): boolean {
    return Object.values(this.data.images).some((i) => i.names.includes(ref));
  }

  forgetImage(id: string): Promise<void> {
    return this.updateImage(id, () => undefined);
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

/**
 * Creates `file` holding `text` only if it does not exist; false when it does. The text is
 * written to a temp file first and hard-linked into place (link fails when the name
 * exists, atomically, like O_EXCL), so the lock is never seen empty half-written.
 */
/** Link errors of a file system without hard links (vfat, some FUSE and network mounts, overlay corner cases). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS']);

/**
 * Creates `file` holding `text` only if no file of that name exists (false: one does). A
 * hard link of a written temp file, so the file is never seen half-written; where the file
 * system has no hard links, `open(file, 'wx')` (O_EXCL: still exclusive) and one write, so
 * it can be seen empty for an instant (the lock's takeover waits that out: R3-8). `link` is
 * injectable for tests.
 */
export function createExclusive(file: string, text: string, link: (from: string, to: string) => void = linkSync): boolean {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
    try {
      link(tmp, file);
    } catch (e) {
      if (!NO_HARD_LINKS.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw internal(`cannot write ${file}: ${(e as Error).message}`);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* not written */
    }
  }
}

const GUARD_EXPIRY_MS = 10_000;
/** how long a lock file without a pid may be one being written (see createExclusive) */
const EMPTY_LOCK_GRACE_MS = 1_000;

/** ms since the lock file was last written (Infinity: gone). */
function lockAgeMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return Infinity;
  }
}

/** The takeover guard: a directory (mkdir is atomic). One left by an agent that died while taking over expires after 10 s. */
function takeGuard(guard: string): boolean {
  try {
    mkdirSync(guard);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw internal(`cannot create ${guard}: ${(e as Error).message}`);
  }
  try {
    if (Date.now() - statSync(guard).mtimeMs > GUARD_EXPIRY_MS) rmdirSync(guard);
  } catch {
    /* gone meanwhile */
  }
  return false;
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Is the lock's holder alive? By pid, in this process's pid namespace: the agents sharing a
 * data dir are meant to share one (one host, or one container per data dir). An agent in
 * another pid namespace on the same data dir (two containers bind-mounting one directory)
 * reads a pid that means nothing here: a live holder may look dead (and its lock be taken
 * over) or a dead one alive (then the lock is refused until removed by hand). Not handled
 * (review R3-8): give each agent container its own ECS_DATADIR.
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
