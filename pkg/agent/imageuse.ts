/**
 * Images about to be used (review R2-8). A task runner holds a reference to its container's
 * image from before the pull until the container exists (or the container or the task is
 * done without one); image cleanup removes an image only while no reference to it is held,
 * and a hold of a reference whose image is being removed waits for the removal to end. So a
 * pull either starts after a removal (and fetches the image again) or keeps the image. The
 * ECS agent's image manager serialises the same way (its `updateLock` around
 * RecordContainerReference and the cleanup's removal). Once the container exists, Docker
 * itself refuses to remove its image (cleanup never forces). In-process only: another agent
 * on a shared dockerd is not covered.
 */
import { imageRef } from './runtime/translate.ts';

/** One spelling per image reference: `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` are one image. */
export function canonicalImageRef(ref: string): string {
  return imageRef(ref)
    .replace(/^(docker\.io|index\.docker\.io|registry-1\.docker\.io)\//, '')
    .replace(/^library\//, '');
}

/**
 * The references a hold of `ref` covers: its canonical spelling and, for `name:tag@digest`,
 * `name@digest` too, which is how Docker lists an image pulled by digest (the tag is
 * ignored then, RepoTags stays empty: review R3-6).
 */
export function holdKeys(ref: string): string[] {
  const k = canonicalImageRef(ref);
  const at = k.indexOf('@');
  if (at < 0) return [k];
  const untagged = `${k.slice(0, at).replace(/:[^/:]+$/, '')}${k.slice(at)}`;
  return untagged === k ? [k] : [k, untagged];
}

export class ImagesInUse {
  /** canonical reference -> holders */
  private readonly held = new Map<string, number>();
  /** canonical references of an image being removed -> the removal */
  private readonly removing = new Map<string, Promise<unknown>>();

  /** Hold `ref` (waits while its image is being removed); the release is idempotent. */
  async hold(ref: string): Promise<() => void> {
    const keys = holdKeys(ref);
    const removal = () => keys.map((k) => this.removing.get(k)).find((r) => r !== undefined);
    for (let r = removal(); r; r = removal()) await r.catch(() => undefined);
    for (const k of keys) this.held.set(k, (this.held.get(k) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of keys) {
        const n = (this.held.get(k) ?? 1) - 1;
        if (n > 0) this.held.set(k, n);
        else this.held.delete(k);
      }
    };
  }

  /** Is any of these references (an image's tags, digests and id) held? */
  isHeld(refs: string[]): boolean {
    return refs.some((r) => this.held.has(canonicalImageRef(r)));
  }

  /**
   * Run `remove` for the image known by `refs`, unless one of them is held: deciding and
   * removing are one step for holders, which wait until it is done. False: held, kept.
   */
  async removeUnlessHeld(refs: string[], remove: () => Promise<void>): Promise<boolean> {
    if (this.isHeld(refs)) return false;
    const keys = [...new Set(refs.map(canonicalImageRef))];
    const run = remove();
    for (const k of keys) this.removing.set(k, run);
    try {
      await run;
      return true;
    } finally {
      for (const k of keys) if (this.removing.get(k) === run) this.removing.delete(k);
    }
  }

  get size(): number {
    return this.held.size;
  }
}
