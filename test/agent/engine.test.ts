import { expect } from 'chai';
import { ContainerDefinition } from '../../pkg/api/taskdefinition.ts';
import {
  CONTAINER_VANISHED,
  ESSENTIAL_EXITED,
  actionDone,
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
      t = observe(t, a.container, { known: to, at: now, startedAt: to === 'RUNNING' ? now : undefined, exitCode: a.kind === 'stop' ? 143 : undefined });
      t = actionDone(t, a.container, a.kind, now);
      if (to === 'RUNNING' && exits[a.container] !== undefined) {
        t = observe(t, a.container, { known: 'STOPPED', exitCode: exits[a.container], at: now + 1, startedAt: now });
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
    const base = set(mk({ name: 'a', image: 'x', restartPolicy: { enabled: true, ignoredExitCodes: [0], restartAttemptPeriod: 60 } }), 'a', { known: 'RUNNING', startedAt: 1000 });
    const table: Array<[number, number, boolean]> = [
      [1, 61_000, true],
      [1, 10_000, false],
      [0, 120_000, false],
      [137, 60_000, true],
    ];
    for (const [code, ran, restart] of table) {
      const now = 1000 + ran;
      expect(shouldRestart(base.containers[0], code, now), `${code}/${ran}`).to.equal(restart);
      const exited = observe(base, 'a', { known: 'STOPPED', exitCode: code, at: now, startedAt: 1000, finishedAt: now });
      // D1: a restart is decided before the container would be marked STOPPED
      expect(exited.containers[0].known, `${code}/${ran}`).to.equal(restart ? 'RUNNING' : 'STOPPED');
      const p = plan(exited, now);
      expect(acts(p.actions), `${code}/${ran}`).to.deep.equal(restart ? ['restart:a'] : []);
      expect(p.task.desired, `${code}/${ran}`).to.equal(restart ? 'RUNNING' : 'STOPPED');
      expect(p.known, `${code}/${ran}`).to.equal(restart ? 'RUNNING' : 'STOPPED');
      if (restart) {
        const back = actionDone(observe(p.task, 'a', { known: 'RUNNING', at: now + 5, startedAt: now + 5 }), 'a', 'restart', now + 5);
        expect(back.containers[0]).to.include({ known: 'RUNNING', restartCount: 1, startedAt: now + 5 });
        expect(back.containers[0].pending).to.equal(undefined);
      }
    }
  });

  it('a failed pull stops an essential container and the task with the reason', () => {
    let t = mk({ name: 'a', image: 'x' });
    const p = plan(t, 0);
    t = actionFailed(p.task, 'a', 'pull', 'CannotPullContainerError: no such image');
    expect(t.containers[0]).to.include({ known: 'STOPPED', desired: 'STOPPED', reason: 'CannotPullContainerError: no such image' });
    expect(t.desired).to.equal('STOPPED');
    expect(t.stoppedReason).to.equal('CannotPullContainerError: no such image');
    expect(t.stopCode).to.equal('TaskFailedToStart');
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

  it('D1: a restarting container is never known STOPPED, so the task never reports STOPPED then RUNNING', () => {
    // one container, restart policy, three exits: the task's known status over the whole run
    let t = mk({ name: 'a', image: 'x', restartPolicy: { enabled: true, restartAttemptPeriod: 60 } });
    let now = 0;
    const seen: ContainerStatus[] = [];
    for (let i = 0; i < 40; i++) {
      const p = plan(t, now);
      t = p.task;
      seen.push(p.known);
      for (const a of p.actions) {
        const to: ContainerStatus = a.kind === 'pull' ? 'PULLED' : a.kind === 'create' ? 'CREATED' : a.kind === 'stop' ? 'STOPPED' : 'RUNNING';
        t = observe(t, a.container, { known: to, at: now, startedAt: to === 'RUNNING' ? now : undefined });
        t = actionDone(t, a.container, a.kind, now);
      }
      now += 61_000;
      // every 3rd step the container exits after running long enough to be restarted
      if (i % 3 === 2 && t.containers[0].known === 'RUNNING' && t.containers[0].restartCount < 3) {
        t = observe(t, 'a', { known: 'STOPPED', exitCode: 1, at: now, startedAt: t.containers[0].startedAt, finishedAt: now });
      }
    }
    expect(t.containers[0].restartCount).to.equal(3);
    const firstRunning = seen.indexOf('RUNNING');
    expect(firstRunning).to.be.greaterThan(0);
    expect(seen.slice(firstRunning), 'known status after RUNNING').to.satisfy((xs: string[]) => xs.every((x) => x === 'RUNNING'));
    expect(t.desired).to.equal('RUNNING');
  });

  it('D1: the task known status only rises, whatever its containers say', () => {
    let t = set(mk({ name: 'a', image: 'x' }), 'a', { known: 'RUNNING' });
    t = plan(t, 1).task;
    expect(t.known).to.equal('RUNNING');
    expect(t.knownAt).to.equal(1);
    // a container view lower than the task (e.g. restored from an older checkpoint) does not lower it
    const lower = set(t, 'a', { known: 'CREATED' });
    expect(taskKnownStatus(lower)).to.equal('RUNNING');
    expect(plan(lower, 2).known).to.equal('RUNNING');
    expect(plan(lower, 2).task.knownAt, 'knownAt marks when it was reached').to.equal(1);
  });

  it('D2: a start whose outcome is unknown is followed by a stop, and a container that comes back is stopped once more', () => {
    let t = set(mk({ name: 'a', image: 'x' }), 'a', { known: 'CREATED' });
    let p = plan(t, 0);
    expect(acts(p.actions)).to.deep.equal(['start:a']);
    t = actionFailed(p.task, 'a', 'start', 'DockerTimeoutError: no answer from Docker within 180000 ms', { uncertain: true });
    p = plan(t, 1);
    expect(acts(p.actions), 'force stop after an uncertain start').to.deep.equal(['stop:a']);
    expect(p.task.desired).to.equal('STOPPED');
    expect(p.task.stopCode).to.equal('TaskFailedToStart');
    // the stop found nothing running (the start had not happened yet): STOPPED
    t = actionDone(p.task, 'a', 'stop', 2);
    expect(plan(t, 2).known).to.equal('STOPPED');
    // then the late start happens: the container came back and is stopped again
    t = observe(plan(t, 2).task, 'a', { known: 'RUNNING', at: 3, startedAt: 3 });
    p = plan(t, 3);
    expect(acts(p.actions), 're-stopped once').to.deep.equal(['stop:a']);
    expect(p.known, 'the task stays STOPPED').to.equal('STOPPED');
    t = actionDone(observe(p.task, 'a', { known: 'STOPPED', exitCode: 143, at: 4, startedAt: 3 }), 'a', 'stop', 4);
    // only once: a second come-back is not chased
    expect(acts(plan(observe(t, 'a', { known: 'RUNNING', at: 5, startedAt: 5 }), 5).actions)).to.deep.equal([]);
    // a definite start failure (Docker said no) needs no stop
    const d = actionFailed(plan(set(mk({ name: 'b', image: 'x' }), 'b', { known: 'CREATED' }), 0).task, 'b', 'start', 'CannotStartContainerError: exec format error');
    expect(acts(plan(d, 1).actions)).to.deep.equal([]);
    expect(plan(d, 1).known).to.equal('STOPPED');
  });

  it('D3: a container that vanished is STOPPED with ContainerVanishedError and is not restarted or re-created', () => {
    let t = set(mk({ name: 'a', image: 'x', restartPolicy: { enabled: true, restartAttemptPeriod: 60 } }), 'a', { known: 'RUNNING', startedAt: 0 });
    t = observe(t, 'a', { known: 'STOPPED', vanished: true, reason: CONTAINER_VANISHED, at: 600_000 });
    const p = plan(t, 600_000);
    expect(p.actions).to.deep.equal([]);
    expect(p.task.containers[0]).to.include({ known: 'STOPPED', reason: CONTAINER_VANISHED });
    expect(p.task.desired).to.equal('STOPPED');
    expect(p.known).to.equal('STOPPED');
  });

  it('D7: a failed stop is retried only after its backoff', () => {
    let t = requestStop(set(mk({ name: 'a', image: 'x' }), 'a', { known: 'RUNNING' }), 'stop');
    let p = plan(t, 0);
    expect(acts(p.actions)).to.deep.equal(['stop:a']);
    t = actionFailed(p.task, 'a', 'stop', 'DockerTimeoutError', { notBefore: 1300 });
    p = plan(t, 10);
    expect(p.actions, 'no retry before the backoff').to.deep.equal([]);
    expect(p.wakeAt).to.equal(1300);
    expect(acts(plan(t, 1300).actions)).to.deep.equal(['stop:a']);
  });

  it('D15: an exit of the run before a restart, landing after it, changes nothing', () => {
    let t = set(mk({ name: 'a', image: 'x', restartPolicy: { enabled: true, restartAttemptPeriod: 60 } }), 'a', { known: 'RUNNING', startedAt: 0 });
    t = observe(t, 'a', { known: 'STOPPED', exitCode: 1, at: 120_000, startedAt: 0, finishedAt: 120_000 });
    t = plan(t, 120_000).task;
    t = actionDone(observe(t, 'a', { known: 'RUNNING', at: 120_100, startedAt: 120_100 }), 'a', 'restart', 120_100);
    // a slow inspect taken before the restart: exited, with the old start time
    const stale = observe(t, 'a', { known: 'STOPPED', exitCode: 1, at: 120_200, startedAt: 0, finishedAt: 120_000 });
    expect(stale.containers[0]).to.include({ known: 'RUNNING', startedAt: 120_100 });
    expect(stale.containers[0].restartDue).to.not.equal(true);
    // a die event of the old run (no start time, an older exit time) is stale too
    const staleEvent = observe(t, 'a', { known: 'STOPPED', exitCode: 1, at: 120_200, finishedAt: 120_000 });
    expect(staleEvent.containers[0].known).to.equal('RUNNING');
    expect(plan(stale, 120_300).known).to.equal('RUNNING');
  });

  it('ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT: by default a container pulls once its dependsOn is met', () => {
    const defsOf = [{ name: 'db', image: 'x', healthCheck: { command: ['CMD', 'true'] } }, { name: 'app', image: 'y', dependsOn: [{ containerName: 'db', condition: 'HEALTHY' }] }];
    expect(acts(plan(mk(...defsOf), 0).actions)).to.deep.equal(['pull:db']);
    const upfront = newEngineTask('arn:task/1', defs(...defsOf), 30_000, { pullDependentUpfront: true });
    expect(acts(plan(upfront, 0).actions)).to.deep.equal(['pull:app', 'pull:db']);
  });

  it('D10: a pull failure with ECS_IMAGE_PULL_BEHAVIOR always/once stops the task even for a non-essential container', () => {
    const t = mk({ name: 'app', image: 'x' }, { name: 'side', image: 'y', essential: false });
    const p = plan(t, 0);
    const soft = actionFailed(p.task, 'side', 'pull', 'CannotPullContainerError: x');
    expect(soft.desired, 'default: only that container').to.equal('RUNNING');
    const hard = actionFailed(p.task, 'side', 'pull', 'CannotPullContainerError: x', { stopsTask: true });
    expect(hard.desired).to.equal('STOPPED');
    expect(hard).to.include({ stoppedReason: 'CannotPullContainerError: x', stopCode: 'TaskFailedToStart' });
  });

  it('D12: a task definition with mutual links (registered before registration refused them) stops with TaskDependencyError instead of waiting forever', () => {
    let t = mk({ name: 'a', image: 'x', links: ['b'] }, { name: 'b', image: 'x', links: ['a'] });
    const p0 = plan(t, 0);
    expect(p0.actions).to.deep.equal([]);
    expect(p0.known).to.equal('STOPPED');
    expect(p0.task.stoppedReason).to.match(/^TaskDependencyError: Task dependencies cannot be resolved \(a -> b -> a\)/);
    t = mk({ name: 'a', image: 'x', links: ['b'] }, { name: 'b', image: 'x' });
    expect(acts(plan(t, 0).actions), 'one-way links run').to.deep.equal(['pull:a', 'pull:b']);
  });
});
