import { expect } from 'chai';
import { ContainerDefinition } from '../../pkg/api/taskdefinition.ts';
import {
  ESSENTIAL_EXITED,
  actionFailed,
  advanceDesired,
  dependencyState,
  newEngineTask,
  observe,
  plan,
  requestStop,
  shouldRestart,
  taskKnownStatus,
  type Action,
  type ContainerStatus,
  type EngineContainer,
  type EngineTask,
} from '../../pkg/agent/engine/engine.ts';

const defs = (...d: unknown[]) => d.map((x) => ContainerDefinition.parse(x));
const mk = (...d: unknown[]) => newEngineTask('arn:task/1', defs(...d), 30_000);
const set = (t: EngineTask, name: string, patch: Partial<EngineContainer>): EngineTask => {
  const n = structuredClone(t);
  Object.assign(n.containers.find((c) => c.name === name)!, patch);
  return n;
};
const acts = (a: Action[]) => a.map((x) => `${x.kind}:${x.container}`).sort();

/** A tiny pure world: performs actions instantly, with per-container exit codes for run-to-completion containers. */
function drive(t: EngineTask, exits: Record<string, number> = {}, maxSteps = 50): { task: EngineTask; log: string[] } {
  const log: string[] = [];
  let now = 1_000_000;
  for (let i = 0; i < maxSteps; i++) {
    const p = plan(t, now);
    t = p.task;
    if (p.actions.length === 0) break;
    for (const a of p.actions) {
      log.push(`${a.kind}:${a.container}`);
      const to: ContainerStatus = a.kind === 'pull' ? 'PULLED' : a.kind === 'create' ? 'CREATED' : a.kind === 'stop' ? 'STOPPED' : 'RUNNING';
      t = observe(t, a.container, { known: to, at: now, exitCode: a.kind === 'stop' ? 143 : undefined });
      if (to === 'RUNNING' && exits[a.container] !== undefined) {
        t = observe(t, a.container, { known: 'STOPPED', exitCode: exits[a.container], at: now + 1 });
      }
    }
    now += 1000;
  }
  return { task: t, log };
}

describe('task engine state machine', () => {
  it('desired status only moves forward', () => {
    const table: Array<[ContainerStatus, ContainerStatus, ContainerStatus]> = [
      ['RUNNING', 'STOPPED', 'STOPPED'],
      ['STOPPED', 'RUNNING', 'STOPPED'],
      ['NONE', 'RUNNING', 'RUNNING'],
      ['RUNNING', 'CREATED', 'RUNNING'],
    ];
    for (const [cur, next, want] of table) expect(advanceDesired(cur, next), `${cur}->${next}`).to.equal(want);
    const t = requestStop(mk({ name: 'a', image: 'x' }), 'scale in');
    expect(plan(requestStop(t, 'again'), 0).task.desired).to.equal('STOPPED');
    expect(t.stoppedReason).to.equal('scale in');
  });

  it('task known status is the minimum of its containers', () => {
    const table: Array<[ContainerStatus[], ContainerStatus]> = [
      [['RUNNING', 'RUNNING'], 'RUNNING'],
      [['RUNNING', 'CREATED'], 'CREATED'],
      [['NONE', 'STOPPED'], 'NONE'],
      [['STOPPED', 'RUNNING'], 'RUNNING'],
      [['STOPPED', 'STOPPED'], 'STOPPED'],
    ];
    for (const [ks, want] of table) {
      let t = mk({ name: 'a', image: 'x' }, { name: 'b', image: 'x', essential: false });
      t = set(set(t, 'a', { known: ks[0] }), 'b', { known: ks[1] });
      expect(taskKnownStatus(t), ks.join(',')).to.equal(want);
    }
  });

  it('transition table: the next action per known status', () => {
    const table: Array<[ContainerStatus, ContainerStatus, string[]]> = [
      ['RUNNING', 'NONE', ['pull:a']],
      ['RUNNING', 'PULLED', ['create:a']],
      ['RUNNING', 'CREATED', ['start:a']],
      ['RUNNING', 'RUNNING', []],
      ['STOPPED', 'RUNNING', ['stop:a']],
      ['STOPPED', 'CREATED', []],
      ['STOPPED', 'STOPPED', []],
    ];
    for (const [desired, known, want] of table) {
      let t = set(mk({ name: 'a', image: 'x' }), 'a', { desired, known });
      if (desired === 'STOPPED') t = { ...t, desired: 'STOPPED' };
      const p = plan(t, 0);
      expect(acts(p.actions), `${desired}/${known}`).to.deep.equal(want);
      if (desired === 'STOPPED' && known === 'CREATED') expect(p.task.containers[0].known, 'never-started container is marked stopped').to.equal('STOPPED');
    }
  });

  it('never issues a second action while one is pending', () => {
    const p1 = plan(mk({ name: 'a', image: 'x' }), 0);
    expect(acts(p1.actions)).to.deep.equal(['pull:a']);
    expect(plan(p1.task, 1).actions).to.deep.equal([]);
  });

  it('stop uses the container stopTimeout, else the instance default', () => {
    let t = mk({ name: 'a', image: 'x', stopTimeout: 5 }, { name: 'b', image: 'x' });
    t = requestStop(set(set(t, 'a', { known: 'RUNNING' }), 'b', { known: 'RUNNING' }), 'stop');
    const stops = plan(t, 0).actions as Array<Action & { timeoutMs: number }>;
    expect(stops.map((s) => [s.container, s.timeoutMs]).sort()).to.deep.equal([['a', 5000], ['b', 30000]]);
  });

  it('dependency conditions', () => {
    const c = (patch: Partial<EngineContainer>): EngineContainer => ({ ...mk({ name: 'd', image: 'x' }).containers[0], ...patch });
    const table: Array<[Partial<EngineContainer>, 'START' | 'COMPLETE' | 'SUCCESS' | 'HEALTHY', string]> = [
      [{ known: 'CREATED' }, 'START', 'waiting'],
      [{ known: 'RUNNING' }, 'START', 'satisfied'],
      [{ known: 'RUNNING' }, 'COMPLETE', 'waiting'],
      [{ known: 'STOPPED', exitCode: 1 }, 'COMPLETE', 'satisfied'],
      [{ known: 'STOPPED', exitCode: 0 }, 'SUCCESS', 'satisfied'],
      [{ known: 'STOPPED', exitCode: 2 }, 'SUCCESS', 'never'],
      [{ known: 'RUNNING', hasHealthCheck: true, health: 'UNKNOWN' }, 'HEALTHY', 'waiting'],
      [{ known: 'RUNNING', hasHealthCheck: true, health: 'HEALTHY' }, 'HEALTHY', 'satisfied'],
      [{ known: 'RUNNING', hasHealthCheck: false }, 'HEALTHY', 'never'],
    ];
    for (const [patch, cond, want] of table) expect(dependencyState(c(patch), cond), `${JSON.stringify(patch)} ${cond}`).to.equal(want);
  });

  it('starts dependencies in order: init (SUCCESS) -> db (HEALTHY) -> app', () => {
    const t = mk(
      { name: 'init', image: 'x', essential: false },
      { name: 'db', image: 'x', healthCheck: { command: ['CMD', 'true'] }, dependsOn: [{ containerName: 'init', condition: 'SUCCESS' }] },
      { name: 'app', image: 'x', dependsOn: [{ containerName: 'db', condition: 'HEALTHY' }] },
    );
    let { task, log } = drive(t, { init: 0 });
    expect(log.indexOf('start:db')).to.be.greaterThan(log.indexOf('start:init'));
    expect(log).to.not.include('start:app');
    const p = plan(task, 0);
    expect(p.waiting).to.deep.include({ container: 'app', on: 'db', condition: 'HEALTHY' });
    task = observe(task, 'db', { known: 'RUNNING', health: 'HEALTHY', at: 0 });
    ({ task, log } = drive(task));
    expect(log).to.include('start:app');
    expect(task.containers.map((c) => c.known)).to.deep.equal(['STOPPED', 'RUNNING', 'RUNNING']);
    expect(taskKnownStatus(task)).to.equal('RUNNING');
    expect(task.desired).to.equal('RUNNING');
  });

  it('a dependency that misses its startTimeout fails its dependent', () => {
    let t = mk({ name: 'db', image: 'x', startTimeout: 10, healthCheck: { command: ['CMD', 'true'] } }, { name: 'app', image: 'x', dependsOn: [{ containerName: 'db', condition: 'HEALTHY' }] });
    t = set(set(t, 'db', { known: 'RUNNING', startedAt: 1000 }), 'app', { known: 'PULLED' });
    expect(plan(t, 5000).waiting).to.deep.equal([{ container: 'app', on: 'db', condition: 'HEALTHY' }]);
    const late = plan(t, 12_000);
    expect(late.task.desired).to.equal('STOPPED');
    expect(late.task.stoppedReason).to.match(/db.*HEALTHY/);
    expect(late.task.containers[1]).to.include({ known: 'STOPPED', desired: 'STOPPED' });
  });

  it('a SUCCESS dependency that failed stops the task', () => {
    const t = mk({ name: 'init', image: 'x', essential: false }, { name: 'app', image: 'x', dependsOn: [{ containerName: 'init', condition: 'SUCCESS' }] });
    const { task, log } = drive(t, { init: 3 });
    expect(log).to.not.include('start:app');
    expect(task.desired).to.equal('STOPPED');
    expect(task.stoppedReason).to.match(/init.*SUCCESS/);
    expect(taskKnownStatus(task)).to.equal('STOPPED');
  });

  it('links and volumesFrom are implicit dependencies', () => {
    const t = mk({ name: 'web', image: 'x', links: ['db:database'], volumesFrom: [{ sourceContainer: 'data' }] }, { name: 'db', image: 'x' }, { name: 'data', image: 'x' });
    const { log } = drive(t);
    expect(log.indexOf('create:web')).to.be.greaterThan(log.indexOf('create:data'));
    expect(log.indexOf('create:web')).to.be.greaterThan(log.indexOf('create:db'));
    expect(log.indexOf('start:web')).to.be.greaterThan(log.indexOf('start:db'));
  });

  it('essential exit stops the task; non-essential exits are allowed', () => {
    const t = mk({ name: 'app', image: 'x' }, { name: 'job', image: 'x', essential: false });
    const r1 = drive(t, { job: 0 });
    expect(r1.task.desired).to.equal('RUNNING');
    expect(taskKnownStatus(r1.task)).to.equal('RUNNING');
    const r2 = drive(t, { app: 1 });
    expect(r2.task.desired).to.equal('STOPPED');
    expect(r2.task.stoppedReason).to.equal(ESSENTIAL_EXITED);
    expect(r2.log).to.include('stop:job');
    expect(taskKnownStatus(r2.task)).to.equal('STOPPED');
  });

  it('stops dependents before their dependencies', () => {
    let t = mk({ name: 'app', image: 'x', dependsOn: [{ containerName: 'proxy', condition: 'START' }] }, { name: 'proxy', image: 'x' });
    t = requestStop(set(set(t, 'app', { known: 'RUNNING' }), 'proxy', { known: 'RUNNING' }), 'stop');
    const p = plan(t, 0);
    expect(acts(p.actions)).to.deep.equal(['stop:app']);
    const p2 = plan(observe(p.task, 'app', { known: 'STOPPED', exitCode: 0, at: 0 }), 1);
    expect(acts(p2.actions)).to.deep.equal(['stop:proxy']);
  });

  it('restart policy: restarts after the attempt period, not for ignored codes or early exits', () => {
    const base = mk({ name: 'a', image: 'x', restartPolicy: { enabled: true, ignoredExitCodes: [0], restartAttemptPeriod: 60 } });
    const exited = (code: number, ranMs: number) => ({ ...set(base, 'a', { known: 'STOPPED', exitCode: code, startedAt: 1000 }), now: 1000 + ranMs });
    const table: Array<[number, number, boolean]> = [
      [1, 61_000, true],
      [1, 10_000, false],
      [0, 120_000, false],
      [137, 60_000, true],
    ];
    for (const [code, ran, restart] of table) {
      const { now, ...t } = exited(code, ran);
      expect(shouldRestart(t.containers[0], now), `${code}/${ran}`).to.equal(restart);
      const p = plan(t, now);
      expect(acts(p.actions), `${code}/${ran}`).to.deep.equal(restart ? ['restart:a'] : []);
      expect(p.task.desired, `${code}/${ran}`).to.equal(restart ? 'RUNNING' : 'STOPPED');
      if (restart) {
        const back = observe(p.task, 'a', { known: 'RUNNING', at: now + 5 });
        expect(back.containers[0]).to.include({ known: 'RUNNING', restartCount: 1, startedAt: now + 5 });
        expect(back.containers[0].pending).to.equal(undefined);
      }
    }
  });

  it('a failed pull stops an essential container and the task with the reason', () => {
    let t = mk({ name: 'a', image: 'x' });
    const p = plan(t, 0);
    t = actionFailed(p.task, 'a', 'CannotPullContainerError: no such image');
    expect(t.containers[0]).to.include({ known: 'STOPPED', desired: 'STOPPED', reason: 'CannotPullContainerError: no such image' });
    expect(t.desired).to.equal('STOPPED');
    expect(t.stoppedReason).to.contain('CannotPullContainerError');
    expect(taskKnownStatus(t)).to.equal('STOPPED');
  });

  it('known status never moves backwards from a stale observation', () => {
    let t = set(mk({ name: 'a', image: 'x' }), 'a', { known: 'RUNNING' });
    t = observe(t, 'a', { known: 'CREATED', at: 0 });
    expect(t.containers[0].known).to.equal('RUNNING');
  });

  it('plan does not mutate its input', () => {
    const t = mk({ name: 'a', image: 'x' });
    const copy = structuredClone(t);
    plan(t, 0);
    expect(t).to.deep.equal(copy);
  });
});
