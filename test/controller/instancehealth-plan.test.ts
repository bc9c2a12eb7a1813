import { expect } from 'chai';
import { planGc, planInstanceHealth, type HealthInstance, type HealthTask } from '../../pkg/controller/instancehealth/plan.ts';

const cfg = { heartbeatTimeoutMs: 30_000, lostGraceMs: 60_000 };
const inst = (id: string, silentMs: number, agentConnected = true): HealthInstance => ({ id, agentConnected, lastHeartbeat: 1_000_000 - silentMs, status: 'ACTIVE' });
const task = (name: string, ci: string, owned = true, desiredStatus = 'RUNNING', lastStatus = 'RUNNING'): HealthTask => ({ name, containerInstance: ci, owned, desiredStatus, lastStatus });

describe('instance health and gc plans', () => {
  it('marks an instance disconnected only past the heartbeat timeout', () => {
    const rows: Array<[number, boolean, string[]]> = [
      [0, true, []],
      [29_999, true, []], // jitter below the timeout never trips it
      [30_001, true, ['i']],
      [30_001, false, []], // already disconnected
    ];
    for (const [silent, connected, want] of rows) expect(planInstanceHealth([inst('i', silent, connected)], () => [], 1_000_000, cfg).disconnect, `${silent}`).to.deep.equal(want);
  });

  it('marks owned tasks on a lost instance for replacement after the grace, and leaves one-off and stopped tasks alone', () => {
    const all = [task('svc', 'i'), task('oneoff', 'i', false), task('done', 'i', true, 'STOPPED', 'STOPPED'), task('elsewhere', 'j')];
    const tasks = (id: string) => all.filter((t) => t.containerInstance === id);
    expect(planInstanceHealth([inst('i', 60_000, false), inst('j', 0)], tasks, 1_000_000, cfg).lost).to.deep.equal([]);
    const p = planInstanceHealth([inst('i', 90_001, false), inst('j', 0)], tasks, 1_000_000, cfg);
    expect(p.lost.map((l) => l.task)).to.deep.equal(['svc']);
    expect(p.lost[0].reason).to.match(/heartbeats/);
  });

  it('D8: an instance is lost only once it is recorded disconnected, whatever this controller\'s clock says', () => {
    const tasks = () => [task('svc', 'i')];
    // silent far past timeout + grace by our clock, but the disconnect never landed (a heartbeat won, or our cache is stale)
    const p = planInstanceHealth([inst('i', 1_000_000, true)], tasks, 1_000_000, cfg);
    expect(p.disconnect).to.deep.equal(['i']);
    expect(p.lost).to.deep.equal([]);
    expect(planInstanceHealth([inst('i', 1_000_000, false)], tasks, 1_000_000, cfg).lost.map((l) => l.task)).to.deep.equal(['svc']);
  });

  it('D8: when most instances look lost at once, nothing is evicted (the controller is more likely the one cut off)', () => {
    const all = ['a', 'b', 'c', 'd'].map((id) => task(`t-${id}`, id));
    const tasks = (id: string) => all.filter((t) => t.containerInstance === id);
    const three = planInstanceHealth([inst('a', 200_000, false), inst('b', 200_000, false), inst('c', 200_000, false), inst('d', 0)], tasks, 1_000_000, cfg);
    expect(three.lost).to.deep.equal([]);
    expect(three.halted).to.deep.equal({ lost: 3, of: 4 });
    // one of four lost: evicted as usual
    const one = planInstanceHealth([inst('a', 200_000, false), inst('b', 0), inst('c', 0), inst('d', 0)], tasks, 1_000_000, cfg);
    expect(one.lost.map((l) => l.task)).to.deep.equal(['t-a']);
    expect(one.halted).to.equal(undefined);
  });

  it('deletes finished objects only after the retention', () => {
    const objs = [
      { plural: 'tasks' as const, namespace: 'default', name: 'old', finishedAt: 0 },
      { plural: 'tasks' as const, namespace: 'default', name: 'recent', finishedAt: 3_000_000 },
      { plural: 'services' as const, namespace: 'default', name: 'live' },
    ];
    expect(planGc(objs, 3_600_000).map((o) => o.name)).to.deep.equal(['old']);
  });
});
