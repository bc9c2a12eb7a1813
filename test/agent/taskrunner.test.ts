import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainerDefinition } from '../../pkg/api/taskdefinition.ts';
import { Checkpoint } from '../../pkg/agent/checkpoint.ts';
import { TaskRunner, echoesAction } from '../../pkg/agent/engine/taskrunner.ts';
import { HollowRuntime } from '../../pkg/agent/runtime/hollow.ts';
import { LABELS, type CreateOptions, type RuntimeTask } from '../../pkg/agent/runtime/runtime.ts';
import { CONTAINER_VANISHED, ESSENTIAL_EXITED } from '../../pkg/agent/engine/engine.ts';

const task = (id: string, defs: unknown[]): RuntimeTask => ({
  taskArn: `arn:aws:ecs:local:0:task/c/${id}`, cluster: 'c', family: 'web', revision: 2, networkMode: 'bridge', containers: defs.map((d) => ContainerDefinition.parse(d)),
});

describe('task runner on the hollow runtime', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-runner-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs a task to RUNNING, records names before create, and stops it', async () => {
    const rt = new HollowRuntime({ startLatencyMs: 5 });
    const ck = new Checkpoint(dir);
    const t = task('1', [
      { name: 'db', image: 'db', healthCheck: { command: ['CMD', 'true'] } },
      { name: 'app', image: 'app', links: ['db'], dependsOn: [{ containerName: 'db', condition: 'HEALTHY' }] },
    ]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: ck, defaultStopTimeoutMs: 1000 });
    await r.start();
    const running = await r.waitFor((x) => x.known === 'RUNNING', 5000);
    expect(running.containers.map((c) => c.known)).to.deep.equal(['RUNNING', 'RUNNING']);
    // the name is on disk before the create; the docker id is written right after it, and the
    // container's own events may move the task on while that write is still in flight
    let saved = JSON.parse(fs.readFileSync(ck.file, 'utf8'));
    expect(saved.tasks[t.taskArn].containerNames.app).to.match(/^ecs-web-2-app-[0-9a-f]+$/);
    for (let i = 0; i < 50 && !saved.tasks[t.taskArn].dockerIds.app; i++) {
      await new Promise((res) => setTimeout(res, 20));
      saved = JSON.parse(fs.readFileSync(ck.file, 'utf8'));
    }
    expect(saved.tasks[t.taskArn].dockerIds.app).to.equal(running.containers[1].runtimeId);
    r.stop('Task stopped by user');
    const stopped = await r.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(stopped.stoppedReason).to.equal('Task stopped by user');
    expect(stopped.containers.every((c) => c.exitCode === 143)).to.equal(true);
    await r.cleanup();
    expect(await rt.list({ [LABELS.taskArn]: t.taskArn })).to.have.length(0);
    expect(ck.snapshot().tasks[t.taskArn]).to.equal(undefined);
    await r.close();
  });

  it('an essential container exit stops the task with the ECS reason', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'crash', exitAfterMs: 20, exitCode: 2 }] });
    const t = task('2', [{ name: 'app', image: 'crash' }, { name: 'side', image: 'ok' }]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 1000 });
    await r.start();
    const rep = await r.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(rep.stoppedReason).to.equal(ESSENTIAL_EXITED);
    expect(rep.containers.find((c) => c.name === 'app')?.exitCode).to.equal(2);
    await r.close();
  });

  it('a pull failure stops the task with CannotPullContainerError', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'missing', fail: 'pull' }] });
    const r = new TaskRunner(task('3', [{ name: 'app', image: 'missing' }]), { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 1000 });
    await r.start();
    const rep = await r.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(rep.containers[0].reason).to.contain('CannotPullContainerError');
    await r.close();
  });

  it('re-plans while waiting: a dependency that never turns healthy times out', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'sick', health: 'UNHEALTHY' }] });
    const t = task('6', [
      { name: 'db', image: 'sick', startTimeout: 2, healthCheck: { command: ['CMD', 'true'] } },
      { name: 'app', image: 'app', dependsOn: [{ containerName: 'db', condition: 'HEALTHY' }] },
    ]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100, recheckMs: 100 });
    await r.start();
    const waiting = await r.waitFor((x) => x.waiting.length > 0, 2000);
    expect(waiting.waiting[0]).to.deep.equal({ container: 'app', on: 'db', condition: 'HEALTHY' });
    const rep = await r.waitFor((x) => x.known === 'STOPPED', 6000);
    expect(rep.stoppedReason).to.match(/db.*HEALTHY/);
    expect(rep.containers.find((c) => c.name === 'app')?.runtimeId, 'app never created').to.equal(undefined);
    await r.close();
  });

  it('restart policy restarts an exited container in place; ignored exit codes end it', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'flaky', exitAfterMs: 20, exitCode: 1 }, { image: 'done', exitAfterMs: 20, exitCode: 0 }] });
    const policy = { enabled: true, ignoredExitCodes: [0], restartAttemptPeriod: 60 };
    const t = task('7', [{ name: 'flaky', image: 'flaky', restartPolicy: policy }, { name: 'done', image: 'done', essential: false, restartPolicy: policy }]);
    // the injected clock says every run lasted longer than the attempt period
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100, now: () => Date.now() + 120_000 });
    await r.start();
    const rep = await r.waitFor((x) => (x.containers[0].restartCount >= 2 && x.containers[1].known === 'STOPPED'), 5000);
    expect(rep.desired).to.equal('RUNNING');
    expect(rep.containers[1]).to.include({ restartCount: 0, exitCode: 0, desired: 'STOPPED' });
    expect(await rt.list({ [LABELS.taskArn]: t.taskArn }), 'restarted in place, no new containers').to.have.length(2);
    r.stop('done');
    await r.waitFor((x) => x.known === 'STOPPED', 5000);
    await r.close();
  });

  it('after an agent restart, adopts running containers and never creates a duplicate', async () => {
    const rt = new HollowRuntime();
    const t = task('4', [{ name: 'app', image: 'app' }, { name: 'side', image: 'side' }]);
    const r1 = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 1000 });
    await r1.start();
    const first = await r1.waitFor((x) => x.known === 'RUNNING', 5000);
    await r1.close();
    const ck2 = new Checkpoint(dir);
    await ck2.load();
    const r2 = new TaskRunner(t, { runtime: rt, checkpoint: ck2, defaultStopTimeoutMs: 1000 });
    await r2.start();
    const second = await r2.waitFor((x) => x.known === 'RUNNING', 5000);
    expect(second.containers.map((c) => c.runtimeId)).to.deep.equal(first.containers.map((c) => c.runtimeId));
    expect(await rt.list({ [LABELS.taskArn]: t.taskArn })).to.have.length(2);
    await r2.close();
  });

  it('a name recorded before a crash is reused, not duplicated', async () => {
    const rt = new HollowRuntime();
    const t = task('5', [{ name: 'app', image: 'app' }]);
    const ck = new Checkpoint(dir);
    // the crash happened after the checkpoint write, before docker create
    await ck.recordContainerName(t.taskArn, 'app', 'ecs-web-2-app-feedface');
    const r = new TaskRunner(t, { runtime: rt, checkpoint: ck, defaultStopTimeoutMs: 1000 });
    await r.start();
    const rep = await r.waitFor((x) => x.known === 'RUNNING', 5000);
    expect(rep.containers[0].runtimeName).to.equal('ecs-web-2-app-feedface');
    await r.close();
  });

  it('D1: a restart-policy task exits three times and its report never goes below RUNNING', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'flaky', exitAfterMs: 30, exitCode: 1 }] });
    const t = task('d1', [{ name: 'a', image: 'flaky', restartPolicy: { enabled: true, ignoredExitCodes: [], restartAttemptPeriod: 60 } }]);
    // the injected clock says every run lasted longer than the attempt period
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100, now: () => Date.now() + 120_000 });
    const seen: string[] = [];
    r.onChange((x) => seen.push(x.known));
    await r.start();
    const rep = await r.waitFor((x) => x.containers[0].restartCount >= 3 && x.containers[0].known === 'RUNNING', 5000);
    expect(rep.desired).to.equal('RUNNING');
    const after = seen.slice(seen.indexOf('RUNNING'));
    expect(after.every((k) => k === 'RUNNING'), `known after the first RUNNING: ${after.join(' ')}`).to.equal(true);
    expect(await rt.list({ [LABELS.taskArn]: t.taskArn }), 'restarted in place').to.have.length(1);
    r.stop('done');
    await r.waitFor((x) => x.known === 'STOPPED', 5000);
    await r.close();
  });

  it('D3: a container removed behind the runner\'s back (docker rm -f) stops the task and is not re-created', async () => {
    const rt = new HollowRuntime();
    const t = task('d3a', [{ name: 'app', image: 'app' }]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100 });
    await r.start();
    await r.waitFor((x) => x.known === 'RUNNING', 5000);
    const [c] = await rt.list({ [LABELS.taskArn]: t.taskArn });
    await rt.remove(c.id);
    const rep = await r.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(rep.stoppedReason).to.equal(ESSENTIAL_EXITED);
    expect(rep.containers[0].exitCode, 'the exit code of the die event').to.equal(137);
    await new Promise((res) => setTimeout(res, 300));
    expect(rt.calls.create, 'nothing re-created').to.equal(1);
    await r.close();
  });

  it('D3: after a restart, a container removed while the agent was away is ContainerVanishedError, not re-created', async () => {
    const rt = new HollowRuntime();
    const t = task('d3b', [{ name: 'app', image: 'app' }]);
    const r1 = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100 });
    await r1.start();
    await r1.waitFor((x) => x.known === 'RUNNING', 5000);
    await r1.close();
    const [c] = await rt.list({ [LABELS.taskArn]: t.taskArn });
    await rt.remove(c.id); // while no runner is listening
    const ck = new Checkpoint(dir);
    await ck.load();
    const r2 = new TaskRunner(t, { runtime: rt, checkpoint: ck, defaultStopTimeoutMs: 100 });
    await r2.start();
    const rep = await r2.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(rep.containers[0].reason).to.equal(CONTAINER_VANISHED);
    await new Promise((res) => setTimeout(res, 300));
    expect(rt.calls.create, 'nothing re-created').to.equal(1);
    expect(await rt.list({ [LABELS.taskArn]: t.taskArn })).to.have.length(0);
    await r2.close();
  });

  it('D4/D14: the task state and when it was reached survive a restart', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'job', exitAfterMs: 20, exitCode: 3 }] });
    const t = task('d4', [{ name: 'job', image: 'job' }]);
    const r1 = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100 });
    await r1.start();
    const first = await r1.waitFor((x) => x.known === 'STOPPED', 5000);
    await r1.close();
    const ck = new Checkpoint(dir);
    await ck.load();
    const r2 = new TaskRunner(t, { runtime: rt, checkpoint: ck, defaultStopTimeoutMs: 100 });
    await r2.start();
    const again = r2.report();
    expect(again).to.include({ known: 'STOPPED', knownAt: first.knownAt, stoppedReason: ESSENTIAL_EXITED });
    expect(again.containers[0].exitCode).to.equal(3);
    await r2.close();
  });

  it('D7: a stop Docker does not answer is retried with backoff, and taken as done once Docker answers', async () => {
    const rt = new HollowRuntime();
    const t = task('d7', [{ name: 'app', image: 'app' }]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100, stopBackoff: { minMs: 300, maxMs: 1000, multiplier: 2, jitter: 0 } });
    await r.start();
    await r.waitFor((x) => x.known === 'RUNNING', 5000);
    rt.inject({ op: 'stop' });
    rt.inject({ op: 'ping' });
    const before = rt.calls.stop;
    r.stop('scale in');
    await new Promise((res) => setTimeout(res, 1000));
    const calls = rt.calls.stop - before;
    // at once, then after 300 ms and 600 ms: a handful, not thousands
    expect(calls).to.be.within(2, 4);
    expect(r.report().known).to.equal('RUNNING');
    // Docker answers pings again; the stop still errors: assumed stopped (ECS)
    rt.clearFaults();
    rt.inject({ op: 'stop', error: () => new Error('Error response from daemon: cannot stop container: did not receive an exit event') });
    const rep = await r.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(rep.desired).to.equal('STOPPED');
    await r.close();
  });

  it('D2: a start that timed out but happened anyway is stopped, and the task is STOPPED', async () => {
    const rt = new HollowRuntime();
    rt.inject({ op: 'start', times: 1, startsAnywayAfterMs: 100 });
    const t = task('d2', [{ name: 'app', image: 'app' }]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100 });
    await r.start();
    await r.waitFor((x) => x.known === 'STOPPED', 5000);
    // the late start lands after the failure; the container must end up not running
    await new Promise((res) => setTimeout(res, 400));
    const [c] = await rt.list({ [LABELS.taskArn]: t.taskArn });
    expect(c.status, 'the late start was stopped').to.equal('STOPPED');
    expect(r.report()).to.include({ known: 'STOPPED', stopCode: 'TaskFailedToStart' });
    await r.close();
  });

  it('D8: the steady-state check notices what no event said', async () => {
    const rt = new HollowRuntime();
    const t = task('d8', [{ name: 'app', image: 'app' }]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: new Checkpoint(dir), defaultStopTimeoutMs: 100, steadyStateMs: 300, steadyStateJitterMs: 50 });
    await r.start();
    await r.waitFor((x) => x.known === 'RUNNING', 5000);
    rt.setEventsLost(true);
    const [c] = await rt.list({ [LABELS.taskArn]: t.taskArn });
    await rt.remove(c.id);
    const rep = await r.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(rep.containers[0].reason).to.equal(CONTAINER_VANISHED);
    await r.close();
  });
  it('the name is on disk when the create is issued, though its write began with the pull; a failed write creates nothing', async () => {
    // a slow checkpoint (an fsync behind dockerd's writes): the pull no longer waits for it, the create must
    class SlowCheckpoint extends Checkpoint {
      failNames = false;
      override async recordContainerName(arn: string, container: string, name: string): Promise<void> {
        await new Promise((res) => setTimeout(res, 150));
        if (this.failNames) throw new Error('disk full');
        return super.recordContainerName(arn, container, name);
      }
    }
    const ck = new SlowCheckpoint(dir);
    const seenAtCreate: Array<string | undefined> = [];
    const rt = new HollowRuntime();
    const create = rt.create.bind(rt);
    rt.create = async (t: RuntimeTask, container: string, o: CreateOptions) => {
      const onDisk = JSON.parse(fs.readFileSync(ck.file, 'utf8')) as { tasks: Record<string, { containerNames: Record<string, string> }> };
      seenAtCreate.push(onDisk.tasks[t.taskArn]?.containerNames[container] === o.name ? o.name : undefined);
      return create(t, container, o);
    };
    const t = task('early-name', [{ name: 'app', image: 'app' }, { name: 'side', image: 'side', essential: false }]);
    const r = new TaskRunner(t, { runtime: rt, checkpoint: ck, defaultStopTimeoutMs: 100 });
    await r.start();
    const running = await r.waitFor((x) => x.known === 'RUNNING', 5000);
    expect(seenAtCreate).to.have.length(2);
    expect(seenAtCreate).to.deep.equal(running.containers.map((c) => c.runtimeName));
    await r.close();

    ck.failNames = true;
    const t2 = task('no-name', [{ name: 'app', image: 'app' }]);
    const r2 = new TaskRunner(t2, { runtime: rt, checkpoint: ck, defaultStopTimeoutMs: 100 });
    await r2.start();
    const stopped = await r2.waitFor((x) => x.known === 'STOPPED', 5000);
    expect(stopped.containers[0].reason).to.contain('disk full');
    expect(await rt.list({ [LABELS.taskArn]: t2.taskArn })).to.have.length(0);
    await r2.close();
  });

  it('events that only echo the runner\'s own pending create or start are not inspected again; every other one is', () => {
    const ev = (action: string, id = 'c1') => ({ action, id });
    const rows: Array<[string, Parameters<typeof echoesAction>[0], ReturnType<typeof ev>, string | undefined, boolean]> = [
      ['create while creating', { pending: 'create', known: 'PULLED' }, ev('create'), undefined, true],
      ['create of the container made', { known: 'CREATED' }, ev('create'), 'c1', true],
      ['create of the container made, running since', { known: 'RUNNING' }, ev('create'), 'c1', true],
      ['create of another container of that name', { known: 'CREATED' }, ev('create', 'c2'), 'c1', false],
      ['create not asked for', { known: 'NONE' }, ev('create'), undefined, false],
      ['start while starting', { pending: 'start', known: 'CREATED' }, ev('start'), 'c1', true],
      ['start while restarting', { pending: 'restart', known: 'RUNNING' }, ev('start'), 'c1', true],
      ['start of another container', { pending: 'start', known: 'CREATED' }, ev('start', 'c2'), 'c1', false],
      ['start nobody asked for (came back)', { known: 'STOPPED' }, ev('start'), 'c1', false],
      ['start after the start', { known: 'RUNNING' }, ev('start'), 'c1', false],
      ['die while starting', { pending: 'start', known: 'CREATED' }, ev('die'), 'c1', false],
      ['stop while stopping', { pending: 'stop', known: 'RUNNING' }, ev('stop'), 'c1', false],
      ['health_status', { known: 'RUNNING' }, ev('health_status'), 'c1', false],
      ['destroy', { known: 'RUNNING' }, ev('destroy'), 'c1', false],
      ['unknown container', undefined, ev('create'), undefined, false],
    ];
    for (const [what, c, e, id, want] of rows) expect(echoesAction(c, e, id), what).to.equal(want);
  });
});
