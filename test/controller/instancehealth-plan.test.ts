import { expect } from 'chai';
import { observe, planGc, planInstanceHealth, type HealthInstance, type HealthTask, type Observed } from '../../pkg/controller/instancehealth/plan.ts';

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

  describe('R2-4: the 55% halt counts losses of now, not instances that died long ago and were never deregistered', () => {
    const DAY = 86_400_000;
    const NOW = 1_000_000_000;
    // the defaults: timeout 60 s + grace 120 s, a disruption window of 30 minutes
    const at = (id: string, o: Partial<HealthInstance>): HealthInstance => ({ id, agentConnected: true, lastHeartbeat: NOW - 1000, status: 'ACTIVE', ...o });
    // 10 instances: 5 died a week ago (their tasks were evicted then), 4 healthy, web's instance i-9 silent for 10 minutes
    const ancient = [0, 1, 2, 3, 4].map((k) => at(`i-${k}`, { agentConnected: false, lastHeartbeat: NOW - 7 * DAY, disconnectedAt: NOW - 7 * DAY + 60_000 }));
    const healthy = [5, 6, 7, 8].map((k) => at(`i-${k}`, {}));
    const today = at('i-9', { agentConnected: false, lastHeartbeat: NOW - 10 * 60_000, disconnectedAt: NOW - 9 * 60_000 });
    const web = (id: string) => (id === 'i-9' ? [task('web-1', 'i-9')] : []);

    it('R2-4: instances lost long ago with nothing left to evict do not halt the eviction of a newly lost one', () => {
      const p = planInstanceHealth([...ancient, ...healthy, today], web, NOW);
      expect(p.halted).to.equal(undefined);
      expect(p.lost.map((l) => l.task)).to.deep.equal(['web-1']);
      expect(p.longLost).to.equal(5);
    });

    it('R2-4: a record from before the disconnect time was kept is judged by its silence', () => {
      const old = ancient.map(({ disconnectedAt: _, ...i }) => i);
      expect(planInstanceHealth([...old, ...healthy, today], web, NOW).lost.map((l) => l.task)).to.deep.equal(['web-1']);
    });

    it('R2-4: most of the cluster lost now still halts; and a disruption that halted keeps halting while its instances hold tasks', () => {
      // 6 of 10 lost in the last minutes, each with a task: halted, as before
      const now6 = [0, 1, 2, 3, 4, 5].map((k) => at(`i-${k}`, { agentConnected: false, lastHeartbeat: NOW - 5 * 60_000, disconnectedAt: NOW - 4 * 60_000 }));
      const all = (id: string) => [task(`t-${id}`, id)];
      const p = planInstanceHealth([...now6, ...[6, 7, 8, 9].map((k) => at(`i-${k}`, {}))], all, NOW);
      expect(p.lost).to.deep.equal([]);
      expect(p.halted).to.deep.equal({ lost: 6, of: 10 });
      // the same outage a day later: their tasks were never evicted, so it is still one disruption
      const dayOld = now6.map((i) => ({ ...i, lastHeartbeat: i.lastHeartbeat - DAY, disconnectedAt: i.disconnectedAt! - DAY }));
      expect(planInstanceHealth([...dayOld, ...[6, 7, 8, 9].map((k) => at(`i-${k}`, {}))], all, NOW).halted).to.deep.equal({ lost: 6, of: 10 });
    });

    it('R2-4: a loss inside the window counts even with nothing to evict (it is evidence of the disruption of now)', () => {
      const recentIdle = [0, 1, 2, 3, 4].map((k) => at(`i-${k}`, { agentConnected: false, lastHeartbeat: NOW - 10 * 60_000, disconnectedAt: NOW - 9 * 60_000 }));
      const p = planInstanceHealth([...recentIdle, ...healthy, today], web, NOW);
      expect(p.halted).to.deep.equal({ lost: 6, of: 10 });
      expect(p.lost).to.deep.equal([]);
    });
  });

  it('R3-3: a record disconnected without a recorded time is backfilled (once: it then carries one); no other record is', () => {
    const NOW = 1_000_000;
    const rows: Array<[string, HealthInstance, boolean]> = [
      ['disconnected, no time (from before the condition)', { id: 'i', agentConnected: false, lastHeartbeat: NOW, status: 'ACTIVE' }, true],
      ['disconnected, time recorded', { id: 'i', agentConnected: false, lastHeartbeat: NOW, status: 'ACTIVE', disconnectedAt: NOW - 5000 }, false],
      ['connected', { id: 'i', agentConnected: true, lastHeartbeat: NOW, status: 'ACTIVE' }, false],
      ['deregistered', { id: 'i', agentConnected: false, lastHeartbeat: NOW, status: 'INACTIVE' }, false],
    ];
    for (const [what, i, want] of rows) expect(planInstanceHealth([i], () => [], NOW, cfg).backfill, what).to.deep.equal(want ? ['i'] : []);
    // the probe's cluster: 6 hosts dead for a week without a recorded time, 3 healthy, web-1 lost today. Once backfilled at
    // the first controller start, a later start (a failover, 34 minutes on: past the window) no longer halts web-1's eviction
    const start = 1_000_000_000;
    const h = { heartbeatTimeoutMs: 60_000, lostGraceMs: 120_000 };
    const cluster = (now: number, deadAt?: number) => [
      ...[0, 1, 2, 3, 4, 5].map((k): HealthInstance => ({ id: `dead-${k}`, agentConnected: false, lastHeartbeat: now - 5 * 60_000, status: 'ACTIVE', ...(deadAt ? { disconnectedAt: deadAt } : {}) })),
      ...[0, 1, 2].map((k): HealthInstance => ({ id: `ok-${k}`, agentConnected: true, lastHeartbeat: now - 1000, status: 'ACTIVE' })),
      { id: 'web-1', agentConnected: false, lastHeartbeat: now - 5 * 60_000, status: 'ACTIVE', disconnectedAt: now - 4 * 60_000 },
    ];
    const web = (id: string) => (id === 'web-1' ? [task('svc-task', 'web-1')] : []);
    const later = start + 34 * 60_000;
    // heardAt is the second controller's first sight: without the backfilled time each failover counts them as lost now
    const unrecorded = planInstanceHealth(cluster(later), web, later, h);
    expect(unrecorded.halted, 'without a recorded time: halted after every failover').to.deep.equal({ lost: 7, of: 10 });
    expect(unrecorded.backfill).to.have.length(6);
    const recorded = planInstanceHealth(cluster(later, start), web, later, h);
    expect(recorded.halted).to.equal(undefined);
    expect(recorded.lost.map((l) => l.task)).to.deep.equal(['svc-task']);
    expect(recorded.backfill).to.deep.equal([]);
  });

  describe('observe: heartbeats timed when they are seen (a lease renewal, or an old agent\'s lastHeartbeat), never by their timestamps (table)', () => {
    const T0 = 1_000;
    const NOW = 9_000;
    const rows: Array<[string, Observed | undefined, { lease?: string; heartbeat?: string }, number]> = [
      ['first sight counts as heard now', undefined, {}, NOW],
      ['first sight of a lease counts as heard now', undefined, { lease: '7' }, NOW],
      ['a renewal (new lease revision) is a heartbeat', { lease: '7', heartbeat: 'h1', at: T0 }, { lease: '8' }, NOW],
      ['the same lease revision again (a resync) is none', { lease: '7', heartbeat: 'h1', at: T0 }, { lease: '7' }, T0],
      ['the lease first appearing (the agent\'s first renewal) is a heartbeat', { heartbeat: 'h1', at: T0 }, { lease: '3' }, NOW],
      ['an instance event with the same lastHeartbeat is none (a lease renewal alone does not touch the instance)', { lease: '7', heartbeat: 'h1', at: T0 }, { heartbeat: 'h1' }, T0],
      ['an agent from before leases: a changed lastHeartbeat is a heartbeat', { heartbeat: 'h1', at: T0 }, { heartbeat: 'h2' }, NOW],
      ['a lease event says nothing of lastHeartbeat', { lease: '7', heartbeat: 'h1', at: T0 }, { lease: '7' }, T0],
    ];
    for (const [what, prev, seen, at] of rows) {
      it(what, () => {
        const o = observe(prev, seen, NOW);
        expect(o.at).to.equal(at);
        expect(o.lease).to.equal('lease' in seen ? seen.lease : prev?.lease);
        expect(o.heartbeat).to.equal('heartbeat' in seen ? seen.heartbeat : prev?.heartbeat);
      });
    }
    it('an instance renewing its lease is never planned disconnected; one whose renewals stopped is, past the timeout', () => {
      let live = observe(undefined, { lease: '1' }, 0);
      let quiet = observe(undefined, { lease: '1' }, 0);
      for (let t = 10_000; t <= 100_000; t += 10_000) {
        live = observe(live, { lease: String(t) }, t);
        quiet = observe(quiet, { lease: '1' }, t); // resyncs of the same revision
      }
      const plan = planInstanceHealth(
        [
          { id: 'live', agentConnected: true, lastHeartbeat: live.at, status: 'ACTIVE' },
          { id: 'quiet', agentConnected: true, lastHeartbeat: quiet.at, status: 'ACTIVE' },
        ],
        () => [],
        100_000,
        cfg,
      );
      expect(plan.disconnect).to.deep.equal(['quiet']);
    });
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
