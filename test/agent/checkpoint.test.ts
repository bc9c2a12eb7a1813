import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Checkpoint, CHECKPOINT_FILE, CheckpointData, CheckpointImage, CheckpointTask, createExclusive, LOCK_FILE, type CheckpointSchemas } from '../../pkg/agent/checkpoint.ts';
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
  describe('R2-5: a change costs the record it changes, not the whole checkpoint', () => {
    /** zod's schemas, counting what each change validates */
    const counting = () => {
      const n = { task: 0, image: 0, all: 0 };
      const schemas: CheckpointSchemas = {
        task: (t) => (n.task++, CheckpointTask.parse(t)),
        image: (i) => (n.image++, CheckpointImage.parse(i)),
        all: (d) => (n.all++, CheckpointData.parse(d)),
      };
      return { n, schemas };
    };
    const arn = (k: number) => `arn:aws:ecs:us-east-1:000000000000:task/default/${k.toString(16).padStart(32, '0')}`;

    it('R2-5: a change to one of 1,000 tasks validates that task alone, an image change that image alone', async () => {
      const { n, schemas } = counting();
      const c = new Checkpoint(dir, true, schemas);
      await c.update((d) => {
        d.cluster = 'prod';
        for (let k = 0; k < 1000; k++) d.tasks[arn(k)] = { taskArn: arn(k), containerNames: { app: `ecs-app-${k}` }, dockerIds: {}, known: 'RUNNING', knownAt: k };
      });
      n.all = 0;
      await c.recordTaskState(arn(7), { desiredStatus: 'STOPPED', known: 'STOPPED', knownAt: 99, containers: { app: { known: 'STOPPED', exitCode: 0 } } });
      await c.recordSent(arn(7), 'STOPPED', 100);
      await c.recordDockerId(arn(8), 'app', 'f'.repeat(64));
      await c.removeTask(arn(9));
      expect(n).to.deep.equal({ task: 3, image: 0, all: 0 });
      await c.recordImageUse('sha256:1', 'busybox:latest', 5);
      await c.forgetImage('sha256:1');
      expect(n).to.deep.equal({ task: 3, image: 1, all: 0 });
      // and what is on disk is the checkpoint in memory
      const again = await new Checkpoint(dir).load();
      expect(again).to.deep.equal(c.snapshot());
      expect(Object.keys(again.tasks)).to.have.length(999);
      expect(again.tasks[arn(7)]).to.include({ known: 'STOPPED', sentStatus: 'STOPPED', sentAt: 100 });
    });

    it('R2-5: the file joined from record texts loads as the checkpoint in memory after a burst of mixed changes', async () => {
      const c = new Checkpoint(dir);
      await c.update((d) => {
        d.containerInstanceArn = 'arn:ci/1';
        d.token = 'tok"en\\with\nquotes';
      });
      const burst: Promise<unknown>[] = [];
      for (let k = 0; k < 200; k++) {
        burst.push(c.recordContainerName(arn(k), 'app', `ecs-app-${k}`));
        burst.push(c.recordTaskState(arn(k), { desiredStatus: 'RUNNING', known: 'RUNNING', knownAt: k, containers: { app: { known: 'RUNNING', startedAt: k, restartCount: 0 } } }));
        if (k % 3 === 0) burst.push(c.removeTask(arn(k)));
        if (k % 10 === 0) burst.push(c.recordImageUse(`sha256:${k}`, `img:${k}`, k));
        if (k % 20 === 0) burst.push(c.forgetImage(`sha256:${k}`));
      }
      burst.push(c.recordSent('arn:never-recorded', 'RUNNING', 1)); // a report for a task the checkpoint no longer has: nothing recorded
      await Promise.all(burst);
      const text = fs.readFileSync(path.join(dir, CHECKPOINT_FILE), 'utf8');
      expect(() => JSON.parse(text)).not.to.throw();
      const again = await new Checkpoint(dir).load();
      expect(again).to.deep.equal(c.snapshot());
      expect(again.token).to.equal('tok"en\\with\nquotes');
      expect(again.tasks['arn:never-recorded']).to.equal(undefined);
      expect(Object.keys(again.tasks)).to.have.length(200 - 67);
      expect(Object.keys(again.images)).to.have.length(10);
      expect(fs.readdirSync(dir)).to.deep.equal([CHECKPOINT_FILE]);
    });

    it('R2-5: an invalid change is refused whole: neither memory nor the file changes', async () => {
      const c = new Checkpoint(dir);
      await c.recordContainerName(arn(1), 'app', 'n1');
      const before = fs.readFileSync(path.join(dir, CHECKPOINT_FILE), 'utf8');
      let err: unknown;
      try {
        await c.recordTaskState(arn(1), { known: 'BOGUS' as 'RUNNING', knownAt: 1 });
      } catch (e) {
        err = e;
      }
      expect(err, 'the invalid change was accepted').to.be.instanceOf(Error);
      expect(c.task(arn(1))).to.deep.equal({ taskArn: arn(1), containerNames: { app: 'n1' }, dockerIds: {} });
      await c.recordContainerName(arn(2), 'app', 'n2'); // the next write carries no trace of it either
      expect(fs.readFileSync(path.join(dir, CHECKPOINT_FILE), 'utf8')).not.to.equal(before);
      expect((await new Checkpoint(dir).load()).tasks[arn(1)]).to.deep.equal({ taskArn: arn(1), containerNames: { app: 'n1' }, dockerIds: {} });
    });
  });

  describe('R2-10: the lock is atomic', function () {
    this.timeout(180_000);
    const racers: ChildProcess[] = [];
    afterEach(async () => {
      for (const r of racers.splice(0)) {
        if (r.exitCode !== null || r.signalCode !== null) continue;
        const gone = new Promise((res) => r.once('exit', res));
        r.kill('SIGKILL');
        await gone;
      }
    });

    it('R2-10: of four agents starting at once on one data dir exactly one takes the lock, also when they all find a stale lock', async () => {
      const lines = racersOn(dir, 4);
      await Promise.all(lines.map((l) => l.next()).map(async (x) => expect((await x).value).to.equal('ready')));
      for (let round = 0; round < 24; round++) {
        // every other round starts from a lock a dead agent left: all four see it stale at once
        if (round % 2) fs.writeFileSync(path.join(dir, LOCK_FILE), '999999999\n');
        const at = performance.timeOrigin + performance.now() + 150;
        for (const r of racers) r.stdin!.write(`${at}\n`);
        const got = await Promise.all(lines.map(async (l) => (await l.next()).value as string));
        expect(got.filter((g) => g === 'locked'), `round ${round} (${round % 2 ? 'stale lock' : 'no lock'}): ${got.join(', ')}`).to.have.length(1);
        expect(got.filter((g) => g === 'refused')).to.have.length(3);
        const holder = racers[got.indexOf('locked')].pid;
        expect(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).to.equal(String(holder));
        for (const r of racers) r.stdin!.write('release\n');
        for (const l of lines) expect((await l.next()).value).to.equal('released');
        expect(fs.existsSync(path.join(dir, LOCK_FILE))).to.equal(false);
      }
      for (const r of racers) r.stdin!.end('end\n');
      expect(fs.readdirSync(dir), 'no temp file or takeover guard is left').to.deep.equal([]);
    });

    it('R2-10: a takeover guard left by an agent that died mid-takeover expires, so the stale lock is still taken over', () => {
      const guard = path.join(dir, `${LOCK_FILE}.takeover`);
      fs.writeFileSync(path.join(dir, LOCK_FILE), '999999999\n');
      fs.mkdirSync(guard);
      const old = new Date(Date.now() - 60_000);
      fs.utimesSync(guard, old, old);
      const c = new Checkpoint(dir);
      c.lock();
      expect(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).to.equal(String(process.pid));
      expect(fs.existsSync(guard)).to.equal(false);
      c.unlock();
      expect(fs.readdirSync(dir)).to.deep.equal([]);
    });

    it('R3-8: on a file system without hard links the lock is created with an exclusive open instead, still only where none exists', () => {
      const file = path.join(dir, LOCK_FILE);
      const fail = (code: string) => () => {
        throw Object.assign(new Error(`link: ${code}`), { code });
      };
      for (const code of ['EPERM', 'ENOTSUP', 'EXDEV']) {
        expect(createExclusive(file, '4242\n', fail(code)), `${code}: created`).to.equal(true);
        expect(fs.readFileSync(file, 'utf8')).to.equal('4242\n');
        expect(createExclusive(file, '4343\n', fail(code)), `${code}: exists already`).to.equal(false);
        expect(fs.readFileSync(file, 'utf8'), 'the first one is kept').to.equal('4242\n');
        fs.unlinkSync(file);
      }
      // any other failure is an error, not a lock
      let err: unknown;
      try {
        createExclusive(file, '4242\n', fail('EIO'));
      } catch (e) {
        err = e;
      }
      expect(isBerthError(err, 'InternalError'), String(err)).to.equal(true);
      expect(fs.readdirSync(dir), 'no temp file left, no lock made').to.deep.equal([]);
      // a lock file left empty (its writer died between the open and the write) is stale once it is not being written
      fs.writeFileSync(file, '');
      const old = new Date(Date.now() - 60_000);
      fs.utimesSync(file, old, old);
      const c = new Checkpoint(dir);
      c.lock();
      expect(fs.readFileSync(file, 'utf8').trim()).to.equal(String(process.pid));
      c.unlock();
      expect(fs.readdirSync(dir)).to.deep.equal([]);
    });

    /** n racer processes on `dir`; each one's stdout as an iterator of lines */
    function racersOn(d: string, n: number): AsyncIterator<string>[] {
      return Array.from({ length: n }, () => {
        const r = spawn(process.execPath, ['--import', 'tsx', 'test/agent/fixtures/lock-racer.ts', d], { stdio: ['pipe', 'pipe', 'inherit'] });
        racers.push(r);
        return createInterface({ input: r.stdout! })[Symbol.asyncIterator]();
      });
    }
  });
});
