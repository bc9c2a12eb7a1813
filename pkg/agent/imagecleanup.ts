/**
 * Image cleanup (the ECS agent's docker_image_manager.go): every ECS_IMAGE_CLEANUP_INTERVAL
 * the agent removes up to ECS_NUM_IMAGES_DELETE_PER_CYCLE images that its containers used,
 * that no container on the daemon uses now, first used longer than
 * ECS_IMAGE_MINIMUM_CLEANUP_AGE ago, least recently used first, never one excluded
 * (ECS_EXCLUDE_UNTRACKED_IMAGE / ECS_IMAGE_CLEANUP_EXCLUDE, and the namespace image). With
 * ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP it also removes unused images it never tracked, created
 * longer than NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE ago, up to the same per-cycle count (but,
 * unlike ECS, no containers: on a dockerd shared with other agents those are not this
 * agent's). Off with ECS_DISABLE_IMAGE_CLEANUP, and, as in ECS, with
 * ECS_IMAGE_PULL_BEHAVIOR=prefer-cached (the cached images are the point then).
 */
import type { Logger } from 'pino';
import type { Checkpoint } from './checkpoint.ts';
import type { AgentConfig } from './config.ts';
import type { ImagesInUse } from './imageuse.ts';
import type { DockerApi } from './runtime/dockerapi.ts';
import { NAMESPACE_IMAGE, type Owner } from './runtime/translate.ts';

export interface ImageCandidate {
  id: string;
  names: string[];
  /** tracked: first used by one of this agent's containers (ms epoch) */
  pulledAt?: number;
  lastUsedAt?: number;
  /** untracked: Docker's Created (ms epoch) */
  createdAt: number;
  inUse: boolean;
  excluded: boolean;
}

export interface CleanupPolicy {
  now: number;
  minimumAgeMs: number;
  nonEcsMinimumAgeMs: number;
  perCycle: number;
  untracked: boolean;
}

/** Which images one cycle removes, in order. Pure. */
export function imagesToDelete(images: ImageCandidate[], p: CleanupPolicy): ImageCandidate[] {
  const free = images.filter((i) => !i.inUse && !i.excluded);
  const tracked = free
    .filter((i) => i.pulledAt !== undefined && p.now - i.pulledAt > p.minimumAgeMs)
    .sort((a, b) => (a.lastUsedAt ?? 0) - (b.lastUsedAt ?? 0))
    .slice(0, p.perCycle);
  if (!p.untracked) return tracked;
  const untracked = free
    .filter((i) => i.pulledAt === undefined && p.now - i.createdAt > p.nonEcsMinimumAgeMs)
    .sort((a, b) => a.createdAt - b.createdAt)
    .slice(0, Math.max(0, p.perCycle - tracked.length));
  return [...tracked, ...untracked];
}

type CleanupConfig = Pick<
  AgentConfig,
  | 'disableImageCleanup'
  | 'imagePullBehavior'
  | 'imageCleanupIntervalMs'
  | 'imageMinimumCleanupAgeMs'
  | 'nonEcsImageMinimumCleanupAgeMs'
  | 'numImagesDeletePerCycle'
  | 'enableUntrackedImageCleanup'
  | 'imageCleanupExclude'
>;

export class ImageCleanup {
  private timer?: NodeJS.Timeout;
  private running?: Promise<string[]>;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(
    private readonly o: {
      api: DockerApi;
      checkpoint: Checkpoint;
      config: CleanupConfig;
      logger: Logger;
      owner: Owner;
      intervalMs?: number;
      now?: () => number;
      namespaceImage?: string;
      /** images the task runners are about to use (pulled or pulling, no container yet): kept (R2-8) */
      inUse?: ImagesInUse;
    },
  ) {
    this.log = o.logger.child({ component: 'image-cleanup' });
    this.now = o.now ?? Date.now;
  }

  get enabled(): boolean {
    return !this.o.config.disableImageCleanup && this.o.config.imagePullBehavior !== 'prefer-cached';
  }

  start(): void {
    if (!this.enabled || this.timer) return;
    const every = this.o.intervalMs ?? this.o.config.imageCleanupIntervalMs;
    this.timer = setInterval(() => void this.runOnce().catch((e: Error) => this.log.warn({ err: e.message }, 'image cleanup failed')), every);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One cycle; the references it removed. */
  runOnce(): Promise<string[]> {
    this.running ??= this.cycle().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async cycle(): Promise<string[]> {
    const cfg = this.o.config;
    const state = this.o.checkpoint.snapshot().images;
    const images = await this.o.api.listImages();
    // in use by any container on the daemon, whoever made it
    const used = new Set((await this.o.api.listContainers({})).map((c) => c.ImageID));
    const exclude = new Set(cfg.imageCleanupExclude);
    const nsImage = this.o.namespaceImage ?? NAMESPACE_IMAGE;
    // every reference an image answers to: a task runner holds the one its task definition names
    const refsOf = new Map(images.map((i) => [i.Id, [...(i.RepoTags ?? []), ...(i.RepoDigests ?? []), i.Id].filter((r) => !r.startsWith('<none>'))]));
    const candidates: ImageCandidate[] = images.map((i) => {
      const names = (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
      const s = state[i.Id];
      return {
        id: i.Id,
        names: s ? names.filter((n) => s.names.includes(n)).concat(s.names.filter((n) => !names.includes(n) && false)) : names,
        ...(s ? { pulledAt: s.pulledAt, lastUsedAt: s.lastUsedAt } : {}),
        createdAt: i.Created * 1000,
        inUse: used.has(i.Id) || !!this.o.inUse?.isHeld(refsOf.get(i.Id)!),
        excluded: names.includes(nsImage) || names.some((n) => exclude.has(n)),
      };
    });
    // tracked images Docker no longer has are forgotten
    for (const id of Object.keys(state)) if (!images.some((i) => i.Id === id)) await this.o.checkpoint.forgetImage(id);
    const doomed = imagesToDelete(candidates, {
      now: this.now(),
      minimumAgeMs: cfg.imageMinimumCleanupAgeMs,
      nonEcsMinimumAgeMs: cfg.nonEcsImageMinimumCleanupAgeMs,
      perCycle: cfg.numImagesDeletePerCycle,
      untracked: cfg.enableUntrackedImageCleanup,
    });
    const removed: string[] = [];
    for (const img of doomed) {
      // untag each name berth knows (the image goes with its last name), or by id when it has none
      const refs = img.names.length ? img.names : [img.id];
      const remove = async () => {
        for (const ref of refs) {
          try {
            await this.o.api.removeImage(ref);
            removed.push(ref);
          } catch (e) {
            this.log.info({ image: ref, err: (e as Error).message }, 'cannot remove image');
          }
        }
      };
      // a task runner may have started to pull it since the list: then it stays, and its pull waits for no removal
      if (this.o.inUse && !(await this.o.inUse.removeUnlessHeld(refsOf.get(img.id)!, remove))) {
        this.log.info({ image: img.id }, 'not removing an image a task is about to use');
        continue;
      }
      if (!this.o.inUse) await remove();
      if (state[img.id]) await this.o.checkpoint.forgetImage(img.id);
    }
    if (removed.length) this.log.info({ removed }, 'removed unused images');
    return removed;
  }
}
