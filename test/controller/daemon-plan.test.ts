import { expect } from 'chai';
import { daemonServiceMaxUnavailable, planDaemon, shouldContinueRunning, shouldRun, type DaemonInstance, type DaemonTask } from '../../pkg/controller/daemon/plan.ts';

const inst = (id: string, o: Partial<DaemonInstance> = {}): DaemonInstance => ({ id, status: 'ACTIVE', agentConnected: true, eligible: true, appTasks: 0, ...o });
const task = (name: string, ci: string, td = 'd:1', lastStatus = 'RUNNING'): DaemonTask => ({ name, containerInstance: ci, taskDefinition: td, desiredStatus: 'RUNNING', lastStatus });

describe('daemon controller plan', () => {
  it('shouldRun / shouldContinueRunning table', () => {
    const rows: Array<[Partial<DaemonInstance>, boolean, boolean]> = [
      [{}, true, true],
      [{ eligible: false }, false, false],
      [{ status: 'DRAINING', appTasks: 2 }, false, true],
      [{ status: 'DRAINING', appTasks: 0 }, false, false],
      [{ status: 'INACTIVE' }, false, false],
    ];
    for (const [o, run, cont] of rows) {
      expect(shouldRun(inst('i', o)), JSON.stringify(o)).to.equal(run);
      expect(shouldContinueRunning(inst('i', o)), JSON.stringify(o)).to.equal(cont);
    }
    expect(shouldContinueRunning(undefined)).to.equal(false);
  });

  it('starts one copy per eligible ACTIVE instance and none twice', () => {
    const p = planDaemon({ taskDefinition: 'd:1', instances: [inst('a'), inst('b'), inst('c', { eligible: false }), inst('d', { status: 'DRAINING' })], tasks: [task('x', 'a')], deleting: false });
    expect(p.start).to.deep.equal([{ containerInstance: 'b', taskDefinition: 'd:1' }]);
    expect(p.stop).to.deep.equal([]);
    expect(p.desiredCount).to.equal(2);
  });

  it('stops a duplicate copy and copies on ineligible or gone instances', () => {
    const p = planDaemon({ taskDefinition: 'd:1', instances: [inst('a'), inst('c', { eligible: false })], tasks: [task('x', 'a'), task('y', 'a', 'd:0'), task('z', 'c'), task('g', 'gone')], deleting: false });
    expect(p.stop.map((s) => s.task).sort()).to.deep.equal(['g', 'y', 'z']);
  });

  it('keeps the daemon on a DRAINING instance until its application tasks are gone', () => {
    const busy = planDaemon({ taskDefinition: 'd:1', instances: [inst('a', { status: 'DRAINING', appTasks: 1 })], tasks: [task('x', 'a')], deleting: false });
    expect(busy.stop).to.deep.equal([]);
    const idle = planDaemon({ taskDefinition: 'd:1', instances: [inst('a', { status: 'DRAINING', appTasks: 0 })], tasks: [task('x', 'a')], deleting: false });
    expect(idle.stop.map((s) => s.task)).to.deep.equal(['x']);
  });

  it('rolls a new revision instance by instance within maxUnavailable: stop old, then start new', () => {
    const instances = ['a', 'b', 'c', 'd'].map((i) => inst(i));
    let tasks = instances.map((i) => task(`old-${i.id}`, i.id, 'd:1'));
    let n = 0;
    for (let round = 0; round < 20; round++) {
      const p = planDaemon({ taskDefinition: 'd:2', instances, tasks, maxUnavailable: 1, deleting: false });
      // at most one instance without a running copy at any time
      const stopped = new Set(p.stop.map((s) => s.task));
      const runningAfter = new Set(tasks.filter((t) => t.desiredStatus === 'RUNNING' && t.lastStatus === 'RUNNING' && !stopped.has(t.name)).map((t) => t.containerInstance));
      expect(4 - runningAfter.size, `round ${round}`).to.be.at.most(1);
      tasks = tasks.map((t) => (stopped.has(t.name) ? { ...t, desiredStatus: 'STOPPED', lastStatus: 'STOPPED' } : t.lastStatus === 'PENDING' ? { ...t, lastStatus: 'RUNNING' } : t));
      for (const s of p.start) tasks.push(task(`new-${n++}`, s.containerInstance, s.taskDefinition, 'PENDING'));
    }
    const live = tasks.filter((t) => t.desiredStatus === 'RUNNING');
    expect(live.map((t) => `${t.containerInstance}:${t.taskDefinition}`).sort()).to.deep.equal(['a:d:2', 'b:d:2', 'c:d:2', 'd:d:2']);
  });

  it('on delete stops every copy and finishes when none is left', () => {
    const p = planDaemon({ taskDefinition: 'd:1', instances: [inst('a')], tasks: [task('x', 'a')], deleting: true });
    expect(p.stop.map((s) => s.task)).to.deep.equal(['x']);
    expect(p.finished).to.equal(false);
    const q = planDaemon({ taskDefinition: 'd:1', instances: [inst('a')], tasks: [{ ...task('x', 'a'), desiredStatus: 'STOPPED', lastStatus: 'STOPPED' }], deleting: true });
    expect(q.finished).to.equal(true);
  });
});

describe('daemon plan: review findings', () => {
  it('D5: one instance whose agent is gone (its copy lost, stopping for ever) does not freeze the roll of the others', () => {
    const p = planDaemon({
      taskDefinition: 'd:2',
      deleting: false,
      instances: [inst('dead', { agentConnected: false }), inst('y'), inst('z')],
      tasks: [{ name: 'lost', containerInstance: 'dead', taskDefinition: 'd:1', desiredStatus: 'STOPPED', lastStatus: 'RUNNING' }, task('ty', 'y'), task('tz', 'z')],
    });
    expect(p.stop.map((s) => s.task)).to.have.length(1);
    expect(['ty', 'tz']).to.include(p.stop[0].task);
    expect(p.desiredCount, 'an instance without a connected agent is not eligible').to.equal(2);
  });

  it('D5: an old copy that is not available is replaced outside the budget (allowedReplacementPods)', () => {
    const p = planDaemon({ taskDefinition: 'd:2', deleting: false, maxUnavailable: 1, instances: [inst('a'), inst('b'), inst('c')], tasks: [task('ta', 'a', 'd:1', 'PENDING'), task('tb', 'b', 'd:1', 'PENDING'), task('tc', 'c')] });
    // both unavailable old copies go at once, though maxUnavailable is 1 and two are unavailable already
    expect(p.stop.map((s) => s.task).sort()).to.deep.equal(['ta', 'tb']);
  });

  it('D5/eligibility: shouldRun requires a connected agent; an existing copy there is kept', () => {
    expect(shouldRun(inst('i', { agentConnected: false }))).to.equal(false);
    const p = planDaemon({ taskDefinition: 'd:1', deleting: false, instances: [inst('a', { agentConnected: false })], tasks: [task('x', 'a')] });
    expect(p.stop).to.deep.equal([]);
    expect(p.start).to.deep.equal([]);
    expect(p.desiredCount).to.equal(0);
  });

  it('D1: where the daemon does not fit, no copy is created: the instance cannot place it', () => {
    const p = planDaemon({ taskDefinition: 'd:1', deleting: false, instances: [inst('full', { noFit: { reason: 'RESOURCE:MEMORY', detail: 'needs 512 MiB, 0 remain' } }), inst('ok')], tasks: [] });
    expect(p.start).to.deep.equal([{ containerInstance: 'ok', taskDefinition: 'd:1' }]);
    expect(p.cannotPlace).to.deep.equal([{ containerInstance: 'full', reason: 'RESOURCE:MEMORY', detail: 'needs 512 MiB, 0 remain' }]);
    expect(p.desiredCount).to.equal(2);
  });

  it('D1: a pending copy the binder refused is bound again after its backoff, never stopped and created again', () => {
    const pending: DaemonTask = { name: 'p', nominated: 'a', taskDefinition: 'd:1', desiredStatus: 'RUNNING', lastStatus: 'PENDING' };
    const waiting = planDaemon({ taskDefinition: 'd:1', deleting: false, now: 1000, instances: [inst('a', { backoffUntil: 5000 })], tasks: [pending] });
    expect(waiting.start).to.deep.equal([]);
    expect(waiting.stop).to.deep.equal([]);
    expect(waiting.bind).to.deep.equal([]);
    expect(waiting.nextAttemptAt).to.equal(5000);
    const due = planDaemon({ taskDefinition: 'd:1', deleting: false, now: 6000, instances: [inst('a', { backoffUntil: 5000 })], tasks: [pending] });
    expect(due.bind).to.deep.equal([{ task: 'p', containerInstance: 'a' }]);
    expect(due.start).to.deep.equal([]);
  });

  it('D1: a copy that failed on its instance is acknowledged (asked to stop) and not replaced in the same pass; after the backoff it is', () => {
    const failed: DaemonTask = { name: 'f', containerInstance: 'a', taskDefinition: 'd:1', desiredStatus: 'RUNNING', lastStatus: 'STOPPED', stoppedReason: 'CannotCreateContainerError' };
    const p = planDaemon({ taskDefinition: 'd:1', deleting: false, now: 0, instances: [inst('a')], tasks: [failed] });
    expect(p.failed).to.deep.equal([{ task: 'f', containerInstance: 'a', reason: 'Daemon task failed on its instance: CannotCreateContainerError' }]);
    expect(p.start).to.deep.equal([]);
    const acked = { ...failed, desiredStatus: 'STOPPED' as const };
    expect(planDaemon({ taskDefinition: 'd:1', deleting: false, now: 500, instances: [inst('a', { backoffUntil: 1000 })], tasks: [acked] }).start).to.deep.equal([]);
    expect(planDaemon({ taskDefinition: 'd:1', deleting: false, now: 1500, instances: [inst('a', { backoffUntil: 1000 })], tasks: [acked] }).start).to.have.length(1);
    // deleting: the failed copy is acknowledged too, so none is left desired RUNNING once the daemon is gone
    const del = planDaemon({ taskDefinition: 'd:1', deleting: true, instances: [inst('a')], tasks: [failed] });
    expect(del.failed.map((f) => f.task)).to.deep.equal(['f']);
  });

  it('D13: a DAEMON service may have desired - ceil(desired * minimumHealthyPercent / 100) instances without a copy at once (at least 1)', () => {
    expect(daemonServiceMaxUnavailable(4, 50)).to.equal(2);
    expect(daemonServiceMaxUnavailable(4, 0)).to.equal(4);
    expect(daemonServiceMaxUnavailable(4, 100)).to.equal(1);
    expect(daemonServiceMaxUnavailable(3, 50)).to.equal(1);
    const instances = ['a', 'b', 'c', 'd'].map((i) => inst(i));
    const p = planDaemon({ taskDefinition: 'd:2', deleting: false, maxUnavailable: daemonServiceMaxUnavailable(4, 50), instances, tasks: instances.map((i) => task(`t${i.id}`, i.id)) });
    expect(p.stop).to.have.length(2);
  });
});
