import { expect } from 'chai';
import { imagesToDelete, type ImageCandidate } from '../../pkg/agent/imagecleanup.ts';
import { canonicalImageRef, holdKeys, ImagesInUse } from '../../pkg/agent/imageuse.ts';

describe('image cleanup policy (pure)', () => {
  const now = 10 * 3600_000;
  const img = (id: string, o: Partial<ImageCandidate> = {}): ImageCandidate => ({ id, names: [`${id}:1`], createdAt: 0, inUse: false, excluded: false, ...o });
  const policy = { now, minimumAgeMs: 3600_000, nonEcsMinimumAgeMs: 3600_000, perCycle: 2, untracked: false };
  const ids = (xs: ImageCandidate[]) => xs.map((x) => x.id);

  it('tracked, unused, old enough, not excluded; least recently used first; at most the per-cycle count', () => {
    const images = [
      img('recent', { pulledAt: now - 60_000, lastUsedAt: now - 60_000 }),
      img('lru', { pulledAt: 0, lastUsedAt: 1 }),
      img('mru', { pulledAt: 0, lastUsedAt: 5 }),
      img('mid', { pulledAt: 0, lastUsedAt: 3 }),
      img('busy', { pulledAt: 0, lastUsedAt: 0, inUse: true }),
      img('kept', { pulledAt: 0, lastUsedAt: 0, excluded: true }),
      img('foreign', { createdAt: 0 }),
    ];
    expect(ids(imagesToDelete(images, policy))).to.deep.equal(['lru', 'mid']);
    expect(ids(imagesToDelete(images, { ...policy, perCycle: 10 }))).to.deep.equal(['lru', 'mid', 'mru']);
    // ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP: untracked ones fill what the cycle has left
    expect(ids(imagesToDelete(images, { ...policy, perCycle: 4, untracked: true }))).to.deep.equal(['lru', 'mid', 'mru', 'foreign']);
    expect(ids(imagesToDelete([img('new', { createdAt: now - 1000 })], { ...policy, untracked: true })), 'NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE').to.deep.equal([]);
  });
});

describe('R2-8: images about to be used (ImagesInUse)', () => {
  it('R2-8: one spelling per reference; a held image is not removed; a hold waits for a removal that started first', async () => {
    expect(['busybox', 'busybox:latest', 'docker.io/library/busybox:latest', 'library/busybox'].map(canonicalImageRef)).to.deep.equal(Array(4).fill('busybox:latest'));
    expect(canonicalImageRef('reg.example:5000/app')).to.equal('reg.example:5000/app:latest');
    expect(canonicalImageRef('app@sha256:abc')).to.equal('app@sha256:abc');
    const u = new ImagesInUse();
    const release = await u.hold('docker.io/library/busybox');
    let removed = false;
    expect(await u.removeUnlessHeld(['busybox:latest', 'sha256:1'], async () => void (removed = true)), 'held: kept').to.equal(false);
    expect(removed).to.equal(false);
    release();
    release(); // idempotent
    expect(u.size).to.equal(0);
    // a removal in progress: a hold of that image waits until it is over
    let finish!: () => void;
    const order: string[] = [];
    const removal = u.removeUnlessHeld(['busybox:latest'], () => new Promise<void>((r) => (finish = r)).then(() => void order.push('removed')));
    const held = u.hold('busybox').then((rel) => (order.push('held'), rel));
    await new Promise((r) => setTimeout(r, 20));
    expect(order, 'the hold waits').to.deep.equal([]);
    finish();
    expect(await removal).to.equal(true);
    (await held)();
    expect(order).to.deep.equal(['removed', 'held']);
  });

  it('R3-6: a hold of name:tag@digest covers name@digest, the only name Docker lists for an image pulled by digest', async () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    // [the task definition's image, the references Docker lists for the image (RepoTags + RepoDigests + id), held?]
    const cases: Array<[string, string[], boolean]> = [
      [`busybox:1.36@sha256:${a}`, [`busybox@sha256:${a}`, `sha256:${'f'.repeat(64)}`], true],
      [`docker.io/library/busybox:1.36@sha256:${a}`, [`busybox@sha256:${a}`], true],
      [`localhost:5000/app:v1@sha256:${a}`, [`localhost:5000/app@sha256:${a}`], true],
      [`docker.io/library/busybox@sha256:${b}`, [`busybox@sha256:${b}`], true],
      ['busybox', ['busybox:latest', `busybox@sha256:${a}`], true],
      // another digest of the same name is another image
      [`busybox:1.36@sha256:${a}`, [`busybox@sha256:${b}`, 'busybox:1.36'], false],
    ];
    for (const [ref, listed, want] of cases) {
      const u = new ImagesInUse();
      const release = await u.hold(ref);
      expect(u.isHeld(listed), `${ref} held per cleanup of ${listed.join(', ')}`).to.equal(want);
      let removed = false;
      expect(await u.removeUnlessHeld(listed, async () => void (removed = true))).to.equal(!want);
      expect(removed).to.equal(!want);
      release();
      expect(u.size, 'released: nothing held').to.equal(0);
    }
    expect(holdKeys(`localhost:5000/app@sha256:${a}`), 'a registry port is not a tag').to.deep.equal([`localhost:5000/app@sha256:${a}`]);
  });
});
