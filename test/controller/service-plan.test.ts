import { expect } from 'chai';
import { failureThreshold, orderForScaleDown, planService, type PlanInput, type PlanTask } from '../../pkg/controller/service/plan.ts';
import type { ServiceStatus } from '../../pkg/api/resources.ts';

let ids = 0;
const newId = () => `id${++ids}`;

/** A tiny world: started tasks become RUNNING after `startTicks`, stop orders take effect at once. */
class World {
  tasks: PlanTask[] = [];
  status: Partial<ServiceStatus> | undefined;
  generation = 1;
  taskDefinition = 'app:1';
  t = 0;
  failImage = new Set<string>();
  constructor(
    public spec: PlanInput['spec'],
    private startTicks = 2,
  ) {}
  tick(deleting = false) {
    this.t++;
    for (const t of this.tasks) {
      if (t.desiredStatus !== 'RUNNING' || t.lastStatus === 'STOPPED') continue;
      if (this.t - t.createdAt >= this.startTicks) {
        if (this.failImage.has(t.taskDefinition)) {
          t.lastStatus = 'STOPPED';
          t.failed = true;
        } else if (t.lastStatus !== 'RUNNING') {
          t.lastStatus = 'RUNNING';
          t.startedAt = this.t;
        }
      }
    }
    const plan = planService({ name: 'web', generation: this.generation, spec: this.spec, taskDefinition: this.taskDefinition, status: this.status, tasks: this.tasks, deleting, now: this.t, newId });
    for (const s of plan.stop) {
      const t = this.tasks.find((x) => x.name === s.task)!;
      t.desiredStatus = 'STOPPED';
      t.lastStatus = 'STOPPED';
    }
    for (const o of plan.start) {
      for (let i = 0; i < o.count; i++) this.tasks.push({ name: `t${this.tasks.length}`, deploymentId: o.deploymentId, taskDefinition: o.taskDefinition, desiredStatus: 'RUNNING', lastStatus: 'PENDING', createdAt: this.t, containerInstance: `i${this.tasks.length % 3}` });
    }
    this.status = plan.status;
    return plan;
  }
  live = () => this.tasks.filter((t) => t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED');
  running = () => this.live().filter((t) => t.lastStatus === 'RUNNING');
  settle(max = 50) {
    for (let i = 0; i < max; i++) {
      const p = this.tick();
      if (p.start.length === 0 && p.stop.length === 0 && p.status.deployments!.length === 1 && p.status.deployments![0].rolloutState !== 'IN_PROGRESS') return;
    }
  }
}

describe('service controller plan', () => {
  it('ECS circuit breaker threshold: min(max(ceil(desired/2), 3), 200)', () => {
    const table: Array<[number, number]> = [[1, 3], [4, 3], [6, 3], [7, 4], [10, 5], [100, 50], [400, 200], [1000, 200]];
    for (const [d, want] of table) expect(failureThreshold(d), `desired ${d}`).to.equal(want);
  });

  it('starts desiredCount tasks, reaches a steady state once, and reports it in ECS words', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 3, schedulingStrategy: 'REPLICA' });
    const first = w.tick();
    expect(first.start).to.deep.equal([{ deploymentId: first.status.deployments![0].id, taskDefinition: 'app:1', count: 3 }]);
    w.settle();
    expect(w.running()).to.have.length(3);
    const steady = w.status!.events!.filter((e) => e.message === '(service web) has reached a steady state.');
    expect(steady).to.have.length(1);
    w.tick();
    w.tick();
    expect(w.status!.events!.filter((e) => e.message === '(service web) has reached a steady state.')).to.have.length(1);
    expect(w.status!.deployments![0].rolloutState).to.equal('COMPLETED');
    expect(w.status!.runningCount).to.equal(3);
  });

  for (const [minPct, maxPct] of [[100, 200], [50, 100], [0, 100], [50, 150], [100, 125]] as const) {
    it(`rolls to a new task definition within minimumHealthyPercent ${minPct} and maximumPercent ${maxPct} at every step`, () => {
      const desired = 4;
      const w = new World({ taskDefinition: 'app', desiredCount: desired, schedulingStrategy: 'REPLICA', deploymentConfiguration: { minimumHealthyPercent: minPct, maximumPercent: maxPct } });
      w.settle();
      w.generation = 2;
      w.taskDefinition = 'app:2';
      const minHealthy = Math.ceil((desired * minPct) / 100);
      const maxTotal = Math.floor((desired * maxPct) / 100);
      for (let i = 0; i < 60; i++) {
        w.tick();
        expect(w.live().length, `live at step ${i}`).to.be.at.most(maxTotal);
        expect(w.running().length, `running at step ${i}`).to.be.at.least(minHealthy);
      }
      expect(w.running().map((t) => t.taskDefinition)).to.deep.equal(Array(desired).fill('app:2'));
      expect(w.status!.deployments).to.have.length(1);
      expect(w.status!.deployments![0].rolloutState).to.equal('COMPLETED');
    });
  }

  it('with the defaults (100/200) starts a replacement before stopping an old task', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA' });
    w.settle();
    w.generation = 2;
    w.taskDefinition = 'app:2';
    const p = w.tick();
    expect(p.stop).to.deep.equal([]);
    expect(p.start[0].count).to.equal(2);
    expect(p.status.deployments!.map((d) => d.status)).to.deep.equal(['PRIMARY', 'ACTIVE']);
  });

  it('trips the circuit breaker and rolls back to the previous deployment', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA', deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } } });
    w.settle();
    const good = w.status!.deployments![0].id;
    w.generation = 2;
    w.taskDefinition = 'app:bad';
    w.failImage.add('app:bad');
    for (let i = 0; i < 40; i++) w.tick();
    expect(w.status!.deployments!.map((d) => `${d.id === good ? 'good' : 'bad'}:${d.status}`)).to.deep.equal(['good:PRIMARY']);
    expect(w.running().map((t) => t.taskDefinition)).to.deep.equal(['app:1', 'app:1']);
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:bad' && t.failed).length).to.be.at.least(3);
    expect(w.status!.events!.some((e) => /deployment failed: tasks failed to start/.test(e.message))).to.equal(true);
    // no new deployment for the same (failed) spec until the spec changes again
    const before = w.tasks.length;
    for (let i = 0; i < 5; i++) w.tick();
    expect(w.tasks.length).to.equal(before);
  });

  it('without rollback a failed deployment stops trying, keeps what runs, and is Progressing=False/RolloutFailed', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA', deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: false } } });
    w.settle();
    w.generation = 2;
    w.taskDefinition = 'app:bad';
    w.failImage.add('app:bad');
    for (let i = 0; i < 40; i++) w.tick();
    const primary = w.status!.deployments!.find((d) => d.status === 'PRIMARY')!;
    expect(primary.rolloutState).to.equal('FAILED');
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:bad').length).to.be.lessThan(8);
    // and says so in its conditions
    const p = w.status!.conditions!.find((c) => c.type === 'Progressing')!;
    expect(p).to.include({ status: 'False', reason: 'RolloutFailed' });
    expect(p.message).to.match(/circuit breaker/);
    expect(w.status!.conditions!.find((c) => c.type === 'Steady')!.status).to.equal('False');
    expect(w.running().length).to.equal(2);
  });

  it('writes Steady and Progressing conditions through a service\'s life; lastTransitionTime moves only when a status flips', () => {
    const cond = (w: World) => Object.fromEntries((w.status!.conditions ?? []).map((c) => [c.type, `${c.status}/${c.reason}`]));
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA', deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } } });
    w.tick();
    expect(cond(w)).to.deep.equal({ Steady: 'False/TasksPending', Progressing: 'True/RolloutInProgress' });
    w.settle();
    expect(cond(w)).to.deep.equal({ Steady: 'True/SteadyState', Progressing: 'False/RolloutCompleted' });
    const steadySince = w.status!.conditions!.find((c) => c.type === 'Steady')!.lastTransitionTime;
    w.tick();
    w.tick();
    expect(w.status!.conditions!.find((c) => c.type === 'Steady')!.lastTransitionTime).to.equal(steadySince);
    // a new revision: deploying, then steady on it
    w.generation = 2;
    w.taskDefinition = 'app:2';
    w.tick();
    expect(cond(w)).to.deep.equal({ Steady: 'False/Deploying', Progressing: 'True/RolloutInProgress' });
    expect(w.status!.conditions!.every((c) => c.observedGeneration === 2)).to.equal(true);
    w.settle();
    expect(cond(w)).to.deep.equal({ Steady: 'True/SteadyState', Progressing: 'False/RolloutCompleted' });
    // a failing revision: the circuit breaker rolls back, and the condition says so
    w.generation = 3;
    w.taskDefinition = 'app:bad';
    w.failImage.add('app:bad');
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      w.tick();
      seen.add(cond(w).Progressing);
    }
    // (the previous deployment still runs at full count, so the roll back completes at once)
    expect([...seen]).to.deep.equal(['True/RolloutInProgress', 'False/RolledBack']);
    expect(cond(w)).to.deep.equal({ Steady: 'True/SteadyState', Progressing: 'False/RolledBack' });
    // deletion
    w.tick(true);
    expect(cond(w).Steady).to.equal('False/Draining');
    w.tick(true);
    expect(cond(w).Steady).to.equal('False/Inactive');
  });

  it('replaces tasks on a DRAINING instance before stopping them, within the bounds', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 3, schedulingStrategy: 'REPLICA' });
    w.settle();
    for (const t of w.live()) if (t.containerInstance === 'i0') t.onDrainingInstance = true;
    const drained = w.live().filter((t) => t.onDrainingInstance).map((t) => t.name);
    expect(drained.length).to.be.greaterThan(0);
    const p = w.tick();
    expect(p.stop.map((s) => s.task)).to.not.include.members(drained);
    for (let i = 0; i < 20; i++) {
      w.tick();
      expect(w.running().length).to.be.at.least(3 - 0);
    }
    expect(w.live().filter((t) => drained.includes(t.name))).to.deep.equal([]);
    expect(w.running()).to.have.length(3);
  });

  it('scales down pending tasks first, then from the most loaded instance', () => {
    const t = (name: string, ci: string, lastStatus: string, createdAt: number): PlanTask => ({ name, containerInstance: ci, lastStatus, createdAt, desiredStatus: 'RUNNING', taskDefinition: 'a:1' });
    const order = orderForScaleDown([t('a', 'i1', 'RUNNING', 1), t('b', 'i1', 'RUNNING', 2), t('c', 'i2', 'RUNNING', 3), t('d', 'i2', 'PENDING', 4), t('e', 'i1', 'RUNNING', 5)]);
    expect(order.map((x) => x.name)).to.deep.equal(['d', 'e', 'b', 'c', 'a']);
  });

  it('on delete stops everything, reports DRAINING, then INACTIVE and finished', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA' });
    w.settle();
    const p = w.tick(true);
    expect(p.stop).to.have.length(2);
    expect(p.status.status).to.equal('DRAINING');
    expect(p.finished).to.equal(false);
    const q = w.tick(true);
    expect(q.finished).to.equal(true);
    expect(q.status.status).to.equal('INACTIVE');
  });

  it('replaces a task that stopped', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA' });
    w.settle();
    w.live()[0].lastStatus = 'STOPPED';
    const p = w.tick();
    expect(p.start[0]?.count).to.equal(1);
  });
});
