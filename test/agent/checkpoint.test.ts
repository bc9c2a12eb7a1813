import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Checkpoint, CHECKPOINT_FILE } from '../../pkg/agent/checkpoint.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';

describe('agent checkpoint', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ckpt-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('persists identity and container names, survives a restart, leaves no temp file', async () => {
    const a = new Checkpoint(path.join(dir, 'data'));
    expect(await a.load()).to.deep.equal({ version: 1, tasks: {} });
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
});
