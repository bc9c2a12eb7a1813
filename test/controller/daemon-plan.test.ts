import { expect } from 'chai';
import { planDaemon, shouldContinueRunning, shouldRun, type DaemonInstance, type DaemonTask } from '../../pkg/controller/daemon/plan.ts';

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
