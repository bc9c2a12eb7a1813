import { expect } from 'chai';
import { imagesToDelete, type ImageCandidate } from '../../pkg/agent/imagecleanup.ts';

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
