import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Checkpoint, CHECKPOINT_FILE, LOCK_FILE } from '../../pkg/agent/checkpoint.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';

describe('agent checkpoint', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ckpt-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('persists identity and container names, survives a restart, leaves no temp file', async () => {
    const a = new Checkpoint(path.join(dir, 'data'));
    expect(await a.load()).to.deep.equal({ version: 2, tasks: {}, images: {} });
    await a.update((d) => {
      d.containerInstanceArn = 'arn:ci/1';
      d.cluster = 'prod';
    });
    await a.recordContainerName('arn:task/1', 'web', 'ecs-web-1-web-abc');
    await a.recordDockerId('arn:task/1', 'web', 'deadbeef');
    await Promise.all([a.recordContainerName('arn:task/2', 'x', 'n1'), a.recordContainerName('arn:task/2', 'y', 'n2')]);
    expect(fs.readdirSync(path.join(dir, 'data'))).to.deep.equal([CHECKPOINT_FILE]);
    const b = new Checkpoint(path.join(dir, 'data'));
    const d = await b.load();
    expect(d.containerInstanceArn).to.equal('arn:ci/1');
    expect(d.tasks['arn:task/1']).to.deep.equal({ taskArn: 'arn:task/1', containerNames: { web: 'ecs-web-1-web-abc' }, dockerIds: { web: 'deadbeef' } });
    expect(d.tasks['arn:task/2'].containerNames).to.deep.equal({ x: 'n1', y: 'n2' });
    await b.removeTask('arn:task/1');
    expect((await new Checkpoint(path.join(dir, 'data')).load()).tasks).to.have.keys(['arn:task/2']);
  });

  it('refuses a corrupt checkpoint with a clear error', async () => {
    fs.writeFileSync(path.join(dir, CHECKPOINT_FILE), '{"version": 1, "tasks": ');
    let err: unknown;
    try {
      await new Checkpoint(dir).load();
    } catch (e) {
      err = e;
    }
    expect(isBerthError(err, 'InternalError')).to.equal(true);
    expect((err as Error).message).to.contain(CHECKPOINT_FILE);
  });

  it('writes nothing when checkpointing is disabled', async () => {
    const c = new Checkpoint(path.join(dir, 'off'), false);
    await c.recordContainerName('t', 'c', 'n');
    expect(c.snapshot().tasks.t.containerNames.c).to.equal('n');
    expect(fs.existsSync(path.join(dir, 'off'))).to.equal(false);
  });

  it('D14: reads a version-1 checkpoint, removes temp files a crashed write left, keeps task state', async () => {
    fs.writeFileSync(path.join(dir, CHECKPOINT_FILE), JSON.stringify({ version: 1, instanceId: 'i1', tasks: { t: { taskArn: 't', containerNames: { a: 'n' }, dockerIds: {} } } }));
    fs.writeFileSync(path.join(dir, `${CHECKPOINT_FILE}.tmp-99999`), '{"half": ');
    const c = new Checkpoint(dir);
    const d = await c.load();
    expect(d.version).to.equal(2);
    expect(d.tasks.t.containerNames).to.deep.equal({ a: 'n' });
    expect(fs.readdirSync(dir)).to.deep.equal([CHECKPOINT_FILE]);
    await c.recordTaskState('t', { desiredStatus: 'STOPPED', known: 'STOPPED', knownAt: 1234, containers: { a: { known: 'STOPPED', exitCode: 3 } } });
    await c.recordSent('t', 'STOPPED', 1300);
    const again = await new Checkpoint(dir).load();
    expect(again.tasks.t).to.include({ known: 'STOPPED', knownAt: 1234, sentStatus: 'STOPPED', sentAt: 1300 });
    expect(again.tasks.t.containers?.a).to.deep.equal({ known: 'STOPPED', exitCode: 3 });
  });

  it('D14: a second agent on the same data dir is refused; a lock left by a dead process is taken over', async () => {
    const a = new Checkpoint(dir);
    a.lock();
    const b = new Checkpoint(dir);
    expect(() => b.lock()).to.throw(/in use by another agent/);
    a.unlock();
    b.lock();
    b.unlock();
    // a crashed agent's lock (a pid that is not running) does not block
    fs.writeFileSync(path.join(dir, LOCK_FILE), '999999999\n');
    const c = new Checkpoint(dir);
    c.lock();
    expect(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).to.equal(String(process.pid));
    c.unlock();
    // a live process of another pid holds it
    const child = (await import('node:child_process')).spawn('sleep', ['30']);
    try {
      fs.writeFileSync(path.join(dir, LOCK_FILE), `${child.pid}\n`);
      expect(() => new Checkpoint(dir).lock()).to.throw(new RegExp(`pid ${child.pid}`));
    } finally {
      child.kill();
    }
  });

  it('coalesces writes queued behind one in flight', async () => {
    const c = new Checkpoint(dir);
    await Promise.all(Array.from({ length: 50 }, (_, i) => c.recordContainerName('t', `c${i}`, `n${i}`)));
    expect(Object.keys((await new Checkpoint(dir).load()).tasks.t.containerNames)).to.have.length(50);
  });
});
