import { expect } from 'chai';
import { serviceBounds } from '../support/invariants.ts';

/**
 * The fault suite's service bounds (test/support/invariants.ts), as a table. Found by R8 and
 * R10: the checker held a service that had just been scaled to its new count at once (a
 * scale-up "fewer than minimumHealthyPercent RUNNING" before the new tasks could start, a
 * scale-down "more than maximumPercent live" before the old ones were stopped): violations
 * of bounds ECS sets for deployments, not for a count that changes.
 */
describe('fault-suite checker: service bounds of a deployment and of a changing count', () => {
  const table: Array<[string, Parameters<typeof serviceBounds>[0], { maxLive: number; minHealthy: number }]> = [
    ['a rolling deployment at 4, ECS defaults', { desired: 4, settled: 4 }, { maxLive: 8, minHealthy: 4 }],
    ['a rolling deployment at 3, 150% / 50%', { desired: 3, settled: 3, maximumPercent: 150, minimumHealthyPercent: 50 }, { maxLive: 4, minHealthy: 2 }],
    ['3 at 100% / 66%: stop one first', { desired: 3, settled: 3, maximumPercent: 100, minimumHealthyPercent: 66 }, { maxLive: 3, minHealthy: 2 }],
    ['scaled up from 2 to 4: the 2 running must stay, the new ones may still start', { desired: 4, settled: 2 }, { maxLive: 8, minHealthy: 2 }],
    ['scaled down from 4 to 0: the 4 may live until stopped', { desired: 0, settled: 4 }, { maxLive: 8, minHealthy: 0 }],
    ['created at 0, then scaled to 3', { desired: 3, settled: 0 }, { maxLive: 6, minHealthy: 0 }],
    ['never settled: the desired count alone', { desired: 3 }, { maxLive: 6, minHealthy: 3 }],
  ];
  for (const [what, input, want] of table) {
    it(what, () => expect(serviceBounds(input)).to.deep.equal(want));
  }
});
