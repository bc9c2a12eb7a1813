import { expect } from 'chai';
import { failureThreshold, orderForScaleDown, planService, type PlanInput, type PlanTask } from '../../pkg/controller/service/plan.ts';
import type { ServiceStatus } from '../../pkg/api/resources.ts';

let ids = 0;
const newId = () => `id${++ids}`;

/** One tick of the world: 10 s (so ECS's 40 s healthy rule is 4 ticks). */
const TICK = 10_000;

/**
 * A tiny world: started tasks become RUNNING after `startTicks`, stop orders take effect at
 * once (unless `stopTicks`: then a task asked to stop stays RUNNING that many ticks). Tasks of an image
 * in `failImage` stop without reaching RUNNING; of one in `crashImage` reach RUNNING and
 * then stop; of one in `unhealthyImage` run but report UNHEALTHY.
 */
class World {
  tasks: PlanTask[] = [];
  status: Partial<ServiceStatus> | undefined;
  generation = 1;
  taskDefinition = 'app:1';
  t = 0;
  failImage = new Set<string>();
  unhealthyImage = new Set<string>();
  stopTicks = 0;
  private stopAt = new Map<string, number>();
  healthyAfterMs: number | undefined;
  restart: { restartedAt?: string; annotation?: string } | undefined;
  constructor(
    public spec: PlanInput['spec'],
    private startTicks = 2,
  ) {}
  get now() {
    return this.t * TICK;
  }
  tick(deleting = false) {
    this.t++;
    for (const t of this.tasks) {
      // a slow stop lands after stopTicks
      if (t.desiredStatus === 'STOPPED' && t.lastStatus !== 'STOPPED' && this.t - (this.stopAt.get(t.name) ?? 0) >= this.stopTicks) t.lastStatus = 'STOPPED';
      if (t.desiredStatus !== 'RUNNING' || t.lastStatus === 'STOPPED') continue;
      if (this.now - t.createdAt >= this.startTicks * TICK) {
        if (this.failImage.has(t.taskDefinition)) {
          t.lastStatus = 'STOPPED';
        } else if (t.lastStatus !== 'RUNNING') {
          t.lastStatus = 'RUNNING';
          t.startedAt = this.now;
          if (this.unhealthyImage.has(t.taskDefinition)) {
            t.hasHealthCheck = true;
            t.healthStatus = 'UNHEALTHY';
          }
        }
      }
    }
    const plan = planService({ name: 'web', generation: this.generation, spec: this.spec, taskDefinition: this.taskDefinition, status: this.status, tasks: this.tasks, deleting, now: this.now, newId, healthyAfterMs: this.healthyAfterMs, restart: this.restart });
    for (const s of plan.stop) {
      const t = this.tasks.find((x) => x.name === s.task)!;
      t.desiredStatus = 'STOPPED';
      t.stopReason = s.reason;
      this.stopAt.set(t.name, this.t);
      if (!this.stopTicks) t.lastStatus = 'STOPPED';
    }
    for (const o of plan.start) {
      for (let i = 0; i < o.count; i++) this.tasks.push({ name: `t${this.tasks.length}`, deploymentId: o.deploymentId, taskDefinition: o.taskDefinition, desiredStatus: 'RUNNING', lastStatus: 'PENDING', createdAt: this.now, containerInstance: `i${this.tasks.length % 3}` });
    }
    this.status = plan.status;
    // what the controller does with a rollback: the target's task definition becomes the service's (a spec write, a new generation)
    if (plan.rollbackTo !== undefined && plan.rollbackTo !== this.taskDefinition) {
      this.taskDefinition = plan.rollbackTo;
      this.generation++;
      this.status = { ...plan.status, observedGeneration: this.generation };
    }
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
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:bad' && t.lastStatus === 'STOPPED' && t.startedAt === undefined).length).to.be.at.least(3);
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

// ---------------------------------------------------------------- the review's findings

const NOW = Date.parse('2026-01-01T00:00:00Z');
const pt = (name: string, dep: string, o: Partial<PlanTask> = {}): PlanTask => ({ name, deploymentId: dep, taskDefinition: 'x', desiredStatus: 'RUNNING', lastStatus: 'RUNNING', containerInstance: 'i1', createdAt: NOW - 120_000, startedAt: NOW - 100_000, ...o });
const cbSpec = (o: Record<string, unknown> = {}) => ({ taskDefinition: 'web', desiredCount: 4, schedulingStrategy: 'REPLICA' as const, deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true } }, ...o });
const dep = (id: string, status: 'PRIMARY' | 'ACTIVE', rolloutState: 'IN_PROGRESS' | 'COMPLETED' | 'FAILED', createdAt: number, extra: Record<string, unknown> = {}) => ({ id, status, taskDefinition: `web:${id}`, desiredCount: 4, pendingCount: 0, runningCount: 0, failedTasks: 0, rolloutState, createdAt: new Date(createdAt).toISOString(), updatedAt: new Date(createdAt).toISOString(), ...extra });

describe('service plan: ECS deployment model (review findings)', () => {
  it('D4: the circuit breaker rolls back to the most recent COMPLETED deployment, never to a FAILED one', () => {
    const r = planService({
      name: 'web', generation: 3, spec: cbSpec(), taskDefinition: 'web:C', now: NOW, newId, deleting: false,
      status: { observedGeneration: 3, deployments: [dep('C', 'PRIMARY', 'IN_PROGRESS', NOW - 10_000), dep('B', 'ACTIVE', 'FAILED', NOW - 20_000), dep('A', 'ACTIVE', 'COMPLETED', NOW - 30_000)] },
      tasks: [pt('c1', 'C', { lastStatus: 'STOPPED', startedAt: undefined }), pt('c2', 'C', { lastStatus: 'STOPPED', startedAt: undefined }), pt('c3', 'C', { lastStatus: 'STOPPED', startedAt: undefined }), pt('b1', 'B'), pt('a1', 'A'), pt('a2', 'A'), pt('a3', 'A')],
    });
    const byId = Object.fromEntries(r.status.deployments!.map((d) => [d.id, [d.status, d.rolloutState]]));
    expect(byId.A).to.deep.equal(['PRIMARY', 'IN_PROGRESS']);
    // C failed (and has no task left, so it is no longer listed); B, which had FAILED before, is not brought back
    expect(byId.C).to.equal(undefined);
    expect(byId.B?.[0]).to.not.equal('PRIMARY');
    expect(byId.B?.[1]).to.equal('FAILED');
    expect(r.start).to.deep.equal([{ deploymentId: 'A', taskDefinition: 'web:A', count: 1 }]);
  });

  it('D4: with minimumHealthyPercent 0 the COMPLETED deployment outlives its tasks, so a failing revision rolls back to it instead of leaving 0 tasks', () => {
    const spec = cbSpec({ desiredCount: 2, deploymentConfiguration: { minimumHealthyPercent: 0, maximumPercent: 100, deploymentCircuitBreaker: { enable: true, rollback: true } } });
    const w = new World(spec);
    w.settle();
    const good = w.status!.deployments![0].id;
    w.generation = 2;
    w.taskDefinition = 'app:bad';
    w.failImage.add('app:bad');
    let sawHistory = false;
    for (let i = 0; i < 60; i++) {
      w.tick();
      const ds = w.status!.deployments!;
      // once its tasks are stopped, the completed deployment is still listed (with none) while the new one runs
      if (ds.some((d) => d.id === good && d.status === 'ACTIVE' && d.runningCount === 0)) sawHistory = true;
    }
    expect(sawHistory, 'the COMPLETED deployment stays listed while the new one is in progress').to.equal(true);
    const primary = w.status!.deployments!.find((d) => d.status === 'PRIMARY')!;
    expect(primary.id).to.equal(good);
    expect(w.running().map((t) => t.taskDefinition)).to.deep.equal(['app:1', 'app:1']);
    expect(w.status!.runningCount).to.equal(2);
  });

  it('R2-2: after a rollback, a scale-out does not deploy the failed task definition again; naming it again in an update does', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA', deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } } });
    w.settle();
    const good = w.status!.deployments![0].id;
    // UpdateService --task-definition app:2, whose tasks fail to start
    w.generation++;
    w.taskDefinition = 'app:2';
    w.failImage.add('app:2');
    let rollbackTo: string | undefined;
    for (let i = 0; i < 40; i++) rollbackTo ??= w.tick().rollbackTo;
    expect(rollbackTo, 'the plan names the rollback target').to.equal('app:1');
    expect(w.status!.deployments!.find((d) => d.status === 'PRIMARY')!.id).to.equal(good);
    // the service's task definition is the rollback target (ECS's DescribeServices shows app:1)
    expect(w.taskDefinition).to.equal('app:1');
    expect(w.status!.observedGeneration).to.equal(w.generation);
    const app2Before = w.tasks.filter((t) => t.taskDefinition === 'app:2').length;
    // a scale-out (the user, or an autoscaler): nothing else changes in the spec
    w.generation++;
    w.spec = { ...w.spec, desiredCount: 3 };
    for (let i = 0; i < 40; i++) expect(w.tick().rollbackTo).to.equal(undefined);
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:2').length, 'app:2 tasks started after the scale-out').to.equal(app2Before);
    expect(w.running().map((t) => t.taskDefinition)).to.deep.equal(['app:1', 'app:1', 'app:1']);
    expect(w.status!.deployments!.map((d) => [d.id, d.status, d.rolloutState])).to.deep.equal([[good, 'PRIMARY', 'COMPLETED']]);
    // the user names app:2 again: that is their choice, and it is deployed (and fails, and rolls back, again)
    w.generation++;
    w.taskDefinition = 'app:2';
    w.tick();
    expect(w.status!.deployments![0]).to.include({ status: 'PRIMARY', taskDefinition: 'app:2' });
    for (let i = 0; i < 40; i++) w.tick();
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:2').length).to.be.greaterThan(app2Before);
    expect(w.taskDefinition).to.equal('app:1');
  });

  it('R3-2: a rollback whose status write was lost (its spec write landed) resumes the target deployment: no new deployment drains its healthy tasks', () => {
    // the probe's service: web:C PRIMARY and failing (3 tasks stopped before RUNNING), web:A COMPLETED with 4 healthy tasks
    const NOW = 1_000_000_000;
    const dep = (id: string, status: 'PRIMARY' | 'ACTIVE', rolloutState: 'IN_PROGRESS' | 'COMPLETED', createdAt: number) => ({
      id, status, taskDefinition: `web:${id}`, desiredCount: 4, pendingCount: 0, runningCount: 0, failedTasks: 0, rolloutState, createdAt: new Date(createdAt).toISOString(), updatedAt: new Date(createdAt).toISOString(),
    });
    const pt = (name: string, d: string, o: Partial<PlanTask> = {}): PlanTask => ({ name, deploymentId: d, taskDefinition: `web:${d}`, desiredStatus: 'RUNNING', lastStatus: 'RUNNING', containerInstance: 'i1', createdAt: NOW - 120_000, startedAt: NOW - 100_000, ...o });
    const spec = { taskDefinition: 'web:C', desiredCount: 4, schedulingStrategy: 'REPLICA' as const, deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true } } };
    const status = { observedGeneration: 3, deployments: [dep('C', 'PRIMARY', 'IN_PROGRESS', NOW - 10_000), dep('A', 'ACTIVE', 'COMPLETED', NOW - 30_000)] };
    const failed = ['c1', 'c2', 'c3'].map((n) => pt(n, 'C', { lastStatus: 'STOPPED', startedAt: undefined }));
    const healthyA = ['a1', 'a2', 'a3', 'a4'].map((n) => pt(n, 'A'));
    const first = planService({ name: 'web', generation: 3, spec, taskDefinition: 'web:C', status, tasks: [...failed, ...healthyA], now: NOW, newId, deleting: false });
    expect(first.rollbackTo, 'the breaker trips and rolls back to web:A').to.equal('web:A');
    // the spec write landed (generation 4 names web:A); the status write did not: the next pass has the old status
    const w = new World({ ...spec, taskDefinition: 'web:A' });
    w.t = NOW / TICK;
    w.generation = 4;
    w.taskDefinition = 'web:A';
    w.tasks = [...failed, ...healthyA].map((t) => ({ ...t }));
    w.status = structuredClone(status);
    const next = w.tick();
    expect(next.status.deployments!.find((d) => d.status === 'PRIMARY')!.id, 'the rollback target is PRIMARY again, not a new deployment').to.equal('A');
    expect(next.start, 'no copies of web:A started').to.deep.equal([]);
    for (let i = 0; i < 20; i++) w.tick();
    expect(w.tasks.filter((t) => t.name.startsWith('a')).every((t) => t.desiredStatus === 'RUNNING'), 'web:A\'s healthy tasks kept').to.equal(true);
    expect(w.tasks.length, 'nothing started').to.equal(7);
    expect(w.status!.deployments!.map((d) => [d.id, d.status, d.rolloutState])).to.deep.equal([['A', 'PRIMARY', 'COMPLETED']]);
  });

  it('R3-2: naming the task definition of a still-running deployment again resumes it instead of replacing its tasks', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA', deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200 } });
    w.settle();
    const first = w.status!.deployments![0].id;
    const started = w.tasks.length;
    // app:2, then straight back to app:1 while app:1's tasks still run
    w.generation++;
    w.taskDefinition = 'app:2';
    w.tick();
    w.generation++;
    w.taskDefinition = 'app:1';
    w.tick();
    expect(w.status!.deployments!.find((d) => d.status === 'PRIMARY')!.id).to.equal(first);
    w.settle();
    expect(w.running().map((t) => t.taskDefinition)).to.deep.equal(['app:1', 'app:1']);
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:1').length, 'no new app:1 task').to.equal(started);
  });

  it('D4: no COMPLETED deployment to go back to: the failed deployment stalls (launches nothing), as ECS does', () => {
    const r = planService({
      name: 'web', generation: 1, spec: cbSpec({ desiredCount: 2 }), taskDefinition: 'web:C', now: NOW, newId, deleting: false,
      status: { observedGeneration: 1, deployments: [dep('C', 'PRIMARY', 'IN_PROGRESS', NOW - 10_000)] },
      tasks: ['c1', 'c2', 'c3'].map((n) => pt(n, 'C', { lastStatus: 'STOPPED', startedAt: undefined })),
    });
    expect(r.status.deployments!.map((d) => [d.id, d.status, d.rolloutState])).to.deep.equal([['C', 'PRIMARY', 'FAILED']]);
    expect(r.start).to.deep.equal([]);
    expect(r.status.deployments![0].rolloutStateReason).to.match(/stalled/);
  });

  it('D4: a deployment being rolled back to is IN_PROGRESS and not itself a rollback target until it completes', () => {
    // A (rolled back to, IN_PROGRESS) fails too: there is nothing COMPLETED left, so nothing is rolled back to
    const r = planService({
      name: 'web', generation: 3, spec: cbSpec({ desiredCount: 2 }), taskDefinition: 'web:C', now: NOW, newId, deleting: false,
      status: { observedGeneration: 3, deployments: [dep('A', 'PRIMARY', 'IN_PROGRESS', NOW - 30_000), dep('C', 'ACTIVE', 'FAILED', NOW - 10_000)] },
      tasks: ['a1', 'a2', 'a3'].map((n) => pt(n, 'A', { lastStatus: 'STOPPED', startedAt: undefined })),
    });
    expect(r.status.deployments!.find((d) => d.status === 'PRIMARY')!.id).to.equal('A');
    expect(r.status.deployments!.find((d) => d.id === 'A')!.rolloutState).to.equal('FAILED');
    expect(r.start).to.deep.equal([]);
  });

  it('D9 (a): tasks replaced for failing their health checks trip the breaker (stage 2)', () => {
    const w = new World(cbSpec());
    w.healthyAfterMs = 0;
    w.settle();
    const good = w.status!.deployments![0].id;
    w.generation = 2;
    w.taskDefinition = 'app:sick';
    w.unhealthyImage.add('app:sick');
    for (let i = 0; i < 60; i++) w.tick();
    const failedDep = w.status!.deployments!.find((d) => d.id !== good);
    expect(w.status!.deployments!.find((d) => d.status === 'PRIMARY')!.id, 'rolled back').to.equal(good);
    expect(w.status!.events!.some((e) => /deployment failed: tasks failed container health checks/.test(e.message))).to.equal(true);
    // it stopped replacing: a bounded number of sick tasks was ever started
    expect(w.tasks.filter((t) => t.taskDefinition === 'app:sick').length).to.be.lessThan(12);
    if (failedDep) expect(failedDep.rolloutState).to.equal('FAILED');
  });

  it('D9 (b): a task that ran and later exited is not a failure; stage 1 ends once a task reaches RUNNING', () => {
    const r = planService({
      name: 'web', generation: 2, spec: cbSpec(), taskDefinition: 'web:N', now: NOW, newId, deleting: false,
      status: { observedGeneration: 2, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 10_000), dep('O', 'ACTIVE', 'COMPLETED', NOW - 30_000)] },
      // three tasks of N ran, then exited: not failures to start
      tasks: [...['n1', 'n2', 'n3'].map((n) => pt(n, 'N', { lastStatus: 'STOPPED' })), ...['o1', 'o2', 'o3', 'o4'].map((n) => pt(n, 'O'))],
    });
    const n = r.status.deployments!.find((d) => d.id === 'N')!;
    expect(n.rolloutState).to.equal('IN_PROGRESS');
    expect(n.failedTasks).to.equal(0);
    expect(n.circuitBreaker?.stage).to.equal(2);
  });

  it('D9 (c): the count is kept in the status, counts each task once, and resets when a task becomes healthy (resetOnHealthyTask)', () => {
    const base = { name: 'web', generation: 2, spec: cbSpec({ desiredCount: 10 }), taskDefinition: 'web:N', newId, deleting: false };
    const old = ['o1', 'o2'].map((n) => pt(n, 'O'));
    let status: Partial<ServiceStatus> = { observedGeneration: 2, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 10_000), dep('O', 'ACTIVE', 'COMPLETED', NOW - 30_000)] };
    const f = (n: string) => pt(n, 'N', { lastStatus: 'STOPPED', startedAt: undefined, createdAt: NOW - 60_000 });
    // two failures to start
    let r = planService({ ...base, now: NOW, status, tasks: [...old, f('f1'), f('f2')] });
    expect(r.status.deployments![0].failedTasks).to.equal(2);
    status = r.status;
    // seen again (and f1 collected meanwhile): still 2, not 3 or 1
    r = planService({ ...base, now: NOW + 1000, status, tasks: [...old, f('f2')] });
    expect(r.status.deployments![0].failedTasks).to.equal(2);
    status = r.status;
    // a task of N becomes healthy: the count resets; a failure after it counts from 0
    const healthy = pt('h1', 'N', { startedAt: NOW - 50_000, createdAt: NOW - 55_000 });
    r = planService({ ...base, now: NOW + 2000, status, tasks: [...old, f('f2'), healthy] });
    expect(r.status.deployments![0].failedTasks).to.equal(0);
    status = r.status;
    // (a task replaced for failing its health checks is a failure in stage 2)
    r = planService({ ...base, now: NOW + 3000, status, tasks: [...old, f('f2'), healthy, pt('s1', 'N', { desiredStatus: 'STOPPED', lastStatus: 'STOPPED', stopReason: 'Task failed container health checks' })] });
    expect(r.status.deployments![0].failedTasks).to.equal(1);
    // with resetOnHealthyTask false the healthy task resets nothing
    const noReset = { ...base, spec: cbSpec({ desiredCount: 10, deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true, resetOnHealthyTask: false } } }) };
    let s2: Partial<ServiceStatus> = { observedGeneration: 2, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 10_000), dep('O', 'ACTIVE', 'COMPLETED', NOW - 30_000)] };
    r = planService({ ...noReset, now: NOW, status: s2, tasks: [...old, f('f1'), f('f2')] });
    s2 = r.status;
    r = planService({ ...noReset, now: NOW + 1000, status: s2, tasks: [...old, f('f1'), f('f2'), healthy] });
    expect(r.status.deployments![0].failedTasks).to.equal(2);
  });

  it('D14: a task without health checks counts as healthy 40 s after it reached RUNNING, not at once', () => {
    const mk = (startedAgo: number) =>
      planService({
        name: 'web', generation: 2, spec: cbSpec(), taskDefinition: 'web:N', now: NOW, newId, deleting: false,
        status: { observedGeneration: 2, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 60_000), dep('O', 'ACTIVE', 'COMPLETED', NOW - 120_000)] },
        tasks: [...['n1', 'n2', 'n3', 'n4'].map((n) => pt(n, 'N', { startedAt: NOW - startedAgo })), ...['o1', 'o2', 'o3', 'o4'].map((n) => pt(n, 'O'))],
      });
    expect(mk(1000).stop, '1 s after RUNNING: no old task stopped').to.deep.equal([]);
    expect(mk(39_000).stop).to.deep.equal([]);
    expect(mk(40_000).stop.map((s) => s.task).sort()).to.deep.equal(['o1', 'o2', 'o3', 'o4']);
    // a task with a health check counts when HEALTHY, at once
    const hc = planService({
      name: 'web', generation: 2, spec: cbSpec(), taskDefinition: 'web:N', now: NOW, newId, deleting: false,
      status: { observedGeneration: 2, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 60_000), dep('O', 'ACTIVE', 'COMPLETED', NOW - 120_000)] },
      tasks: [...['n1', 'n2', 'n3', 'n4'].map((n) => pt(n, 'N', { startedAt: NOW - 1000, hasHealthCheck: true, healthStatus: 'HEALTHY' })), ...['o1', 'o2', 'o3', 'o4'].map((n) => pt(n, 'O'))],
    });
    expect(hc.stop).to.have.length(4);
  });

  it('D14: old tasks still in their first 40 s are not stopped as if unhealthy: a rollout right after a start keeps minimumHealthyPercent', () => {
    const r = planService({
      name: 'web', generation: 2, spec: cbSpec(), taskDefinition: 'web:N', now: NOW, newId, deleting: false,
      status: { observedGeneration: 2, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 1000), dep('O', 'ACTIVE', 'COMPLETED', NOW - 5000)] },
      // the old tasks reached RUNNING 2 s ago; the new ones are pending
      tasks: [...['o1', 'o2', 'o3', 'o4'].map((n) => pt(n, 'O', { startedAt: NOW - 2000 })), ...['n1', 'n2', 'n3', 'n4'].map((n) => pt(n, 'N', { lastStatus: 'PENDING', startedAt: undefined }))],
    });
    expect(r.stop).to.deep.equal([]);
  });

  it('D7: the scale-down order is O(n log n): picking from 2,000 tasks reads each task a bounded number of times', () => {
    let reads = 0;
    const counted = (i: number): PlanTask => {
      const t = { name: `s${i}`, deploymentId: 'N', taskDefinition: 'x', desiredStatus: 'RUNNING' as const, lastStatus: 'RUNNING' };
      return Object.defineProperties(t, {
        createdAt: { get: () => (reads++, NOW - i), enumerable: true },
        containerInstance: { get: () => (reads++, `i${i % 50}`), enumerable: true },
      }) as PlanTask;
    };
    const n = 2000;
    const tasks = Array.from({ length: n }, (_, i) => counted(i));
    const order = orderForScaleDown(tasks);
    expect(order).to.have.length(n);
    expect(new Set(order.map((t) => t.name)).size).to.equal(n);
    // the review's O(n^2 log n) sort per pick read them ~10^8 times; O(n log n) is ~10^5
    expect(reads).to.be.below(40 * n * Math.log2(n));
    // and a planService deleting all of them picks with the same bound
    reads = 0;
    const plan = planService({ name: 'web', generation: 1, spec: { taskDefinition: 'x', desiredCount: 1, schedulingStrategy: 'REPLICA' }, taskDefinition: 'x', now: NOW, newId, deleting: false, status: { observedGeneration: 1, deployments: [dep('N', 'PRIMARY', 'COMPLETED', NOW - 1000)] }, tasks });
    expect(plan.stop).to.have.length(n - 1);
    expect(reads).to.be.below(60 * n * Math.log2(n));
  });

  it('D16: tasks asked to stop but still RUNNING count towards maximumPercent (back-to-back deployments never exceed it)', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 4, schedulingStrategy: 'REPLICA', deploymentConfiguration: { minimumHealthyPercent: 50, maximumPercent: 100 } });
    w.stopTicks = 3;
    w.healthyAfterMs = 0;
    w.settle();
    for (const td of ['app:2', 'app:3']) {
      w.generation++;
      w.taskDefinition = td;
      for (let i = 0; i < 12; i++) {
        w.tick();
        const runningOrPending = w.tasks.filter((t) => t.lastStatus !== 'STOPPED').length;
        expect(runningOrPending, `${td} step ${i}`).to.be.at.most(4);
      }
    }
  });

  it('D16: while launches are throttled, pendingCount does not count the tasks it did not start', () => {
    const r = planService({
      name: 'web', generation: 1, spec: { taskDefinition: 'x', desiredCount: 3, schedulingStrategy: 'REPLICA' }, taskDefinition: 'x', now: NOW, newId, deleting: false,
      status: { observedGeneration: 1, deployments: [dep('N', 'PRIMARY', 'IN_PROGRESS', NOW - 60_000)] },
      tasks: ['f1', 'f2', 'f3'].map((n) => pt(n, 'N', { lastStatus: 'STOPPED', startedAt: undefined, createdAt: NOW - 1000 })),
    });
    expect(r.start).to.deep.equal([]);
    expect(r.throttledForMs).to.be.greaterThan(0);
    expect(r.status.pendingCount).to.equal(0);
    expect(r.status.deployments![0].pendingCount).to.equal(0);
    expect(r.status.events![0].message).to.equal('(service web) is unable to consistently start tasks successfully.');
  });
});

describe('service plan: forced deployments', () => {
  for (const [minPct, maxPct] of [[100, 200], [50, 100], [0, 100]] as const) {
    it(`a new restart request replaces every task with one of the same task definition, within ${minPct}/${maxPct}`, () => {
      const desired = 4;
      const w = new World({ taskDefinition: 'app', desiredCount: desired, schedulingStrategy: 'REPLICA', deploymentConfiguration: { minimumHealthyPercent: minPct, maximumPercent: maxPct } });
      w.settle();
      const before = new Set(w.running().map((t) => t.name));
      const old = w.status!.deployments![0].id;
      w.restart = { restartedAt: '2026-01-01T00:00:00.000Z' };
      w.generation++;
      const first = w.tick();
      expect(first.status.deployments!.map((d) => [d.status, d.taskDefinition])).to.deep.equal([['PRIMARY', 'app:1'], ['ACTIVE', 'app:1']]);
      expect(first.status.deployments![0].id).to.not.equal(old);
      expect(first.status.restart).to.deep.equal(w.restart);
      expect(first.status.events!.map((e) => e.message)).to.include(`(service web) (deployment ${first.status.deployments![0].id}) is a forced new deployment of app:1.`);
      for (let i = 0; i < 60; i++) {
        w.tick();
        expect(w.live().length, `live at step ${i}`).to.be.at.most(Math.floor((desired * maxPct) / 100));
        expect(w.running().length, `running at step ${i}`).to.be.at.least(Math.ceil((desired * minPct) / 100));
      }
      expect(w.running()).to.have.length(desired);
      expect(w.running().filter((t) => before.has(t.name)), 'old tasks left').to.deep.equal([]);
      expect(w.running().map((t) => t.taskDefinition)).to.deep.equal(Array(desired).fill('app:1'));
      expect(w.status!.deployments!.map((d) => [d.status, d.rolloutState])).to.deep.equal([['PRIMARY', 'COMPLETED']]);
      expect(w.status!.deployments![0].id).to.not.equal(old);
    });
  }

  it('the same restart request again, a scale or a new generation without one, starts no deployment', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA' });
    w.restart = { restartedAt: 'r1' }; // created with a restart request already: one deployment, not two
    w.settle();
    expect(w.status!.deployments).to.have.length(1);
    const dep = w.status!.deployments![0].id;
    w.generation++;
    w.spec = { ...w.spec, desiredCount: 3 };
    for (let i = 0; i < 10; i++) w.tick();
    expect(w.status!.deployments!.map((d) => d.id)).to.deep.equal([dep]);
    expect(w.running()).to.have.length(3);
    // a manifest re-applied without the field (it is removed), then with the same value again: still nothing
    w.restart = undefined;
    w.generation++;
    for (let i = 0; i < 3; i++) w.tick();
    w.restart = { restartedAt: 'r1' };
    w.generation++;
    for (let i = 0; i < 3; i++) w.tick();
    expect(w.status!.deployments!.map((d) => d.id)).to.deep.equal([dep]);
    // the kubectl annotation is a request of its own: a new one forces a deployment
    w.restart = { restartedAt: 'r1', annotation: 'a1' };
    w.tick();
    expect(w.status!.deployments![0].id).to.not.equal(dep);
    expect(w.status!.restart).to.deep.equal({ restartedAt: 'r1', annotation: 'a1' });
  });

  it('a forced deployment whose tasks fail rolls back to the previous one, and the request is not forced again', () => {
    const w = new World({ taskDefinition: 'app', desiredCount: 2, schedulingStrategy: 'REPLICA', deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } } });
    w.settle();
    const good = w.status!.deployments![0].id;
    const goodTasks = w.running().map((t) => t.name).sort();
    // the image changed under the same tag: the forced deployment's tasks fail to start
    const origTick = w.tick.bind(w);
    const failing = new Set<string>();
    w.restart = { restartedAt: 'r1' };
    const p = origTick();
    const forcedId = p.status.deployments![0].id;
    for (let i = 0; i < 40; i++) {
      for (const t of w.tasks) if (t.deploymentId === forcedId && t.lastStatus !== 'STOPPED' && t.desiredStatus === 'RUNNING') {
        t.lastStatus = 'STOPPED';
        failing.add(t.name);
      }
      origTick();
    }
    expect(failing.size).to.be.at.least(3);
    expect(w.status!.deployments!.find((d) => d.status === 'PRIMARY')!.id).to.equal(good);
    expect(w.running().map((t) => t.name).sort()).to.deep.equal(goodTasks);
    expect(w.status!.restart).to.deep.equal({ restartedAt: 'r1' });
  });
});
