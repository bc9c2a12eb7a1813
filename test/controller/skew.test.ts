import { expect } from 'chai';
import type { Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { ControllerManager } from '../../pkg/controller/manager.ts';
import { ObservedStarts } from '../../pkg/controller/service/starts.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const td = (name: string) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32 }] } });

/**
 * R2-9: a task without health checks counts as healthy 40 s (here 4 s) after it started, and
 * the start is the service controller's own observation, not the agent's `startedAt`, which
 * the agent's clock stamps. The test plays an agent whose clock is an hour off (it writes the
 * tasks' status itself) against the real apiserver and the real service controller.
 */
describe('R2-9: the healthy rule does not compare the agent\'s clock with the controller\'s', function () {
  this.timeout(120_000);
  const HEALTHY_AFTER = 4000;
  let api: TestApiServer;
  let client: Client;
  let mgr: ControllerManager;
  before(async () => {
    api = await startApiServer();
    client = new Client({ server: api.url, token: api.adminToken });
    mgr = new ControllerManager({ client, log: silentLogger(), leaderElect: false, controllers: ['service'], resyncMs: 3000, healthyAfterMs: HEALTHY_AFTER });
    await mgr.start();
    for (const n of ['skew-a', 'skew-b', 'skew-c']) await client.create(td(n));
  });
  after(async () => {
    await mgr?.stop();
    client?.close();
    await api?.stop();
  });

  const tasks = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=service:skew' })).items;
  const live = (ts: Task[], tdName: string) => ts.filter((t) => t.spec.taskDefinition.split(':')[0] === tdName && t.spec.desiredStatus === 'RUNNING');
  /** the skewed agent: its tasks of `tdName` run, stamped `skewMs` off the real time */
  const run = async (tdName: string, skewMs: number) => {
    await eventually(async () => live(await tasks(), tdName).length === 2, 30_000, `2 tasks of ${tdName}`);
    for (const t of live(await tasks(), tdName)) {
      await client.patch('Task', 'default', t.metadata.name, { status: { lastStatus: 'RUNNING', startedAt: new Date(Date.now() + skewMs).toISOString() } }, { status: true });
    }
  };

  it('R2-9: tasks an agent an hour behind says started long ago are not healthy at once: the old ones stay until 4 s after the controller saw the new ones run', async () => {
    await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'skew', namespace: 'default' }, spec: { taskDefinition: 'skew-a', desiredCount: 2 } });
    await run('skew-a', -3600_000);
    await client.patch('Service', 'default', 'skew', { spec: { taskDefinition: 'skew-b' } });
    await run('skew-b', -3600_000);
    // for the next 2 s (well inside the 4 s), both old tasks keep running
    for (const until = Date.now() + 2000; Date.now() < until; await sleep(100)) {
      expect(live(await tasks(), 'skew-a'), 'an old task was stopped: a new task counted as healthy by the agent\'s clock').to.have.length(2);
    }
    await eventually(async () => live(await tasks(), 'skew-a').length === 0, 30_000, 'the old tasks are replaced once the new ones are healthy');
  });

  it('R2-9: tasks an agent an hour ahead says start in the future become healthy 4 s after the controller saw them run (the rollout does not stall)', async () => {
    await client.patch('Service', 'default', 'skew', { spec: { taskDefinition: 'skew-c' } });
    await run('skew-c', 3600_000);
    await eventually(async () => live(await tasks(), 'skew-b').length === 0, 30_000, 'the old tasks are replaced (by the agent\'s clock they would wait an hour)');
    expect(live(await tasks(), 'skew-c')).to.have.length(2);
  });
});

describe('R2-9: ObservedStarts (the service controller\'s clock of task starts)', () => {
  let now = 1_000_000;
  const clock = () => now;
  it('R2-9: a start seen happening counts from when it was seen; one listed already started from its stamp, never from later than now', () => {
    const s = new ObservedStarts(clock);
    // seen happening: an update brings a startedAt the previous version lacked; the agent is an hour behind
    s.observe('a', now - 3600_000, undefined, false);
    expect(s.startedAt('a', now - 3600_000)).to.equal(now);
    // listed already started (process start, failover): its stamp, bounded by our clock
    s.observe('b', now - 5000, undefined, true);
    expect(s.startedAt('b', now - 5000)).to.equal(now - 5000);
    s.observe('c', now + 3600_000, undefined, true);
    expect(s.startedAt('c', now + 3600_000)).to.equal(now);
    // read from the cache before its event arrived: first seen now, and it stays put
    expect(s.startedAt('d', now + 3600_000)).to.equal(now);
    now += 10_000;
    expect(s.startedAt('d', now + 3600_000 - 10_000)).to.equal(now - 10_000);
    // the same stamp again changes nothing; a new run (a new stamp) counts from when it was seen
    s.observe('a', now - 3600_000 - 10_000, now - 3600_000 - 10_000, false);
    expect(s.startedAt('a', now - 3600_000 - 10_000)).to.equal(now - 10_000);
    s.observe('a', now - 3600_000, now - 3600_000 - 10_000, false);
    expect(s.startedAt('a', now - 3600_000)).to.equal(now);
    // never started; forgotten when the task goes
    expect(s.startedAt('e', undefined)).to.equal(undefined);
    s.forget('a');
    s.forget('b');
    s.forget('c');
    s.forget('d');
    expect(s.size).to.equal(0);
  });

  it('R3-4: a start first seen already there (a relist\'s add) counts from no earlier than the task\'s creation (apiserver clock) and no later than now', () => {
    const t0 = 5_000_000;
    const h = 3600_000;
    // [what, agent startedAt, creationTimestamp, counts from]
    const cases: Array<[string, number, number | undefined, number]> = [
      ['an agent an hour behind, task created 5 s ago', t0 - h + 2000, t0 - 5000, t0 - 5000],
      ['a true clock: its stamp, after the creation', t0 - 3000, t0 - 5000, t0 - 3000],
      ['an agent an hour ahead: now', t0 + h, t0 - 5000, t0],
      ['no creation known: its stamp, bounded by now', t0 - 3000, undefined, t0 - 3000],
      ['created "in the future" (apiserver ahead): still never later than now', t0 - 3000, t0 + 10_000, t0],
    ];
    for (const [what, agent, created, want] of cases) {
      const s = new ObservedStarts(() => t0);
      s.observe('t', agent, undefined, true, created);
      expect(s.startedAt('t', agent, created), `${what} (observed)`).to.equal(want);
      const r = new ObservedStarts(() => t0);
      expect(r.startedAt('t', agent, created), `${what} (read from the cache before its event)`).to.equal(want);
    }
    // a start seen happening still counts from when it was seen, whatever the creation
    const s = new ObservedStarts(() => t0);
    s.observe('u', t0 - h, undefined, false, t0 - 5000);
    expect(s.startedAt('u', t0 - h, t0 - 5000)).to.equal(t0);
  });
});
