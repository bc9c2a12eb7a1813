/**
 * The agent's checkpoint in ECS_DATADIR: its identity and, per task, the Docker names of its
 * containers, recorded BEFORE `docker create` so a crash between create and the next
 * checkpoint never leaves an unknown container (the name is the idempotency key).
 * Written atomically: tmp file, fsync, rename, fsync of the directory.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { internal } from '../errors/errors.ts';

export const CheckpointTask = z.object({
  taskArn: z.string(),
  /** container name (task definition) -> docker container name */
  containerNames: z.record(z.string(), z.string()),
  /** container name -> docker id, once known */
  dockerIds: z.record(z.string(), z.string()).default({}),
  desiredStatus: z.string().optional(),
});
export type CheckpointTask = z.infer<typeof CheckpointTask>;

export const CheckpointData = z.object({
  version: z.literal(1),
  cluster: z.string().optional(),
  containerInstanceArn: z.string().optional(),
  instanceId: z.string().optional(),
  /** the node credential issued at registration */
  token: z.string().optional(),
  /** the host the instance registered from: a data dir copied elsewhere is refused */
  hostFingerprint: z.string().optional(),
  tasks: z.record(z.string(), CheckpointTask).default({}),
});
export type CheckpointData = z.infer<typeof CheckpointData>;

export const CHECKPOINT_FILE = 'berth-agent.json';

export class Checkpoint {
  private data: CheckpointData = { version: 1, tasks: {} };
  /** serialises writes so two saves never interleave */
  private chain: Promise<void> = Promise.resolve();
  readonly file: string;

  constructor(
    readonly dir: string,
    /** false: keep in memory only (ECS_CHECKPOINT=false) */
    readonly enabled = true,
  ) {
    this.file = path.join(dir, CHECKPOINT_FILE);
  }

  /** Load from disk; a missing file is an empty checkpoint, a corrupt one an error. */
  async load(): Promise<CheckpointData> {
    if (!this.enabled) return this.snapshot();
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.snapshot();
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw internal(`checkpoint ${this.file} is not valid JSON`);
    }
    const r = CheckpointData.safeParse(parsed);
    if (!r.success) throw internal(`checkpoint ${this.file} is invalid: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    this.data = r.data;
    return this.snapshot();
  }

  snapshot(): CheckpointData {
    return structuredClone(this.data);
  }

  /** Apply a change and persist it before returning. */
  async update(fn: (d: CheckpointData) => void): Promise<CheckpointData> {
    const next = structuredClone(this.data);
    fn(next);
    CheckpointData.parse(next);
    this.data = next;
    const body = JSON.stringify(next, null, 2);
    const write = this.chain.then(() => this.write(body));
    this.chain = write.catch(() => undefined);
    await write;
    return this.snapshot();
  }

  /** Record the docker name of a container before it is created. */
  recordContainerName(taskArn: string, container: string, dockerName: string): Promise<CheckpointData> {
    return this.update((d) => {
      const t = (d.tasks[taskArn] ??= { taskArn, containerNames: {}, dockerIds: {} });
      t.containerNames[container] = dockerName;
    });
  }

  recordDockerId(taskArn: string, container: string, dockerId: string): Promise<CheckpointData> {
    return this.update((d) => {
      const t = (d.tasks[taskArn] ??= { taskArn, containerNames: {}, dockerIds: {} });
      t.dockerIds[container] = dockerId;
    });
  }

  removeTask(taskArn: string): Promise<CheckpointData> {
    return this.update((d) => {
      delete d.tasks[taskArn];
    });
  }

  private async write(body: string): Promise<void> {
    if (!this.enabled) return;
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
