import { expect } from 'chai';
import { ContainerDefinition } from '../../pkg/api/taskdefinition.ts';
import { HollowRuntime } from '../../pkg/agent/runtime/hollow.ts';
import { LABELS, type RuntimeEvent, type RuntimeTask } from '../../pkg/agent/runtime/runtime.ts';

const task = (id: string, defs: unknown[], networkMode: RuntimeTask['networkMode'] = 'bridge'): RuntimeTask => ({
  taskArn: `arn:task/${id}`, cluster: 'c', family: 'fam', revision: 1, networkMode, containers: defs.map((d) => ContainerDefinition.parse(d)),
});

describe('hollow runtime', () => {
  it('runs a container through created -> running -> stopped with events and labels', async () => {
    const rt = new HollowRuntime({ startLatencyMs: 20 });
    const events: RuntimeEvent[] = [];
    rt.onEvent((e) => events.push(e));
    const t = task('1', [{ name: 'web', image: 'nginx', portMappings: [{ containerPort: 80 }] }]);
    const res = await rt.prepareTask(t);
    const c = await rt.create(t, 'web', { name: 'ecs-fam-1-web-aa', resources: res, peers: {} });
    expect(c.status).to.equal('CREATED');
    expect(c.labels[LABELS.taskArn]).to.equal('arn:task/1');
    const t0 = Date.now();
    const running = await rt.start(c.id);
    expect(Date.now() - t0).to.be.at.least(15);
    expect(running.status).to.equal('RUNNING');
    expect(running.networkBindings[0].hostPort).to.be.greaterThan(0);
    expect((await rt.create(t, 'web', { name: 'ecs-fam-1-web-aa', resources: res, peers: {} })).id, 'idempotent by name').to.equal(c.id);
    await rt.stop(c.id, 1000);
    const stopped = await rt.inspect('ecs-fam-1-web-aa');
    expect(stopped?.status).to.equal('STOPPED');
    expect(stopped?.exitCode).to.equal(143);
    expect(events.map((e) => e.action)).to.deep.equal(['create', 'start', 'die']);
    expect((await rt.list({ [LABELS.taskArn]: 'arn:task/1' })).length).to.equal(1);
    await rt.remove(c.id);
    expect(await rt.inspect(c.id)).to.equal(undefined);
    await rt.close();
  });

  it('applies rules: exit codes, failures per image, ignored SIGTERM, health', async () => {
    const rt = new HollowRuntime({
      rules: [
        { image: 'batch', exitAfterMs: 10, exitCode: 3 },
        { image: /^broken/, fail: 'pull' },
        { image: 'nostart', fail: 'start' },
        { image: 'stubborn', ignoreSigterm: true },
        { image: 'sick', health: 'UNHEALTHY' },
      ],
    });
    const t = task('2', [
      { name: 'batch', image: 'batch' },
      { name: 'nostart', image: 'nostart' },
      { name: 'stubborn', image: 'stubborn' },
      { name: 'sick', image: 'sick', healthCheck: { command: ['CMD', 'true'] } },
    ]);
    const res = await rt.prepareTask(t);
    let err: unknown;
    try {
      await rt.pull('broken:1');
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.contain('CannotPullContainerError');
    expect((await rt.pull('ok:1')).fromCache).to.equal(false);
    const ids: Record<string, string> = {};
    for (const c of t.containers) ids[c.name] = (await rt.create(t, c.name, { name: `n-${c.name}`, resources: res, peers: {} })).id;
    await rt.start(ids.batch);
    await new Promise((r) => setTimeout(r, 40));
    expect(await rt.inspect(ids.batch)).to.include({ status: 'STOPPED', exitCode: 3 });
    err = undefined;
    try {
      await rt.start(ids.nostart);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.contain('CannotStartContainerError');
    await rt.start(ids.stubborn);
    const t0 = Date.now();
    await rt.stop(ids.stubborn, 50);
    expect(Date.now() - t0).to.be.at.least(45);
    expect((await rt.inspect(ids.stubborn))?.exitCode).to.equal(137);
    await rt.start(ids.sick);
    expect((await rt.inspect(ids.sick))?.health).to.equal('UNHEALTHY');
    await rt.close();
  });

  it('logs: a tail, and a followed log that gets each appended line until the container is removed', async () => {
    const rt = new HollowRuntime({ rules: [{ image: 'web', logs: ['one', 'two', 'three'] }] });
    const t = task('logs', [{ name: 'web', image: 'web' }]);
    const c = await rt.create(t, 'web', { name: 'ecs-fam-1-web-logs', resources: await rt.prepareTask(t), peers: {} });
    await rt.start(c.id);
    const read = async (r: NodeJS.ReadableStream) => {
      let out = '';
      for await (const chunk of r) out += chunk;
      return out;
    };
    expect(await read(await rt.logs(c.id, { tail: 2 }))).to.equal('two\nthree\n');
    const followed = await rt.logs(c.id, { follow: true, tail: 1 });
    const all = read(followed);
    rt.appendLog(c.id, 'four');
    await rt.remove(c.id);
    expect(await all, 'ends when the container goes').to.equal('three\nfour\n');
    const again = await rt.create(t, 'web', { name: 'ecs-fam-1-web-logs', resources: await rt.prepareTask(t), peers: {} });
    expect(await read(await rt.logs(again.id)), "another container of the rule does not get the first one's lines").to.equal('one\ntwo\nthree\n');
    await rt.close();
  });

  it('awsvpc gives the task one IP and its containers share it', async () => {
    const rt = new HollowRuntime();
    const t = task('3', [{ name: 'a', image: 'x' }, { name: 'b', image: 'y' }], 'awsvpc');
    const res = await rt.prepareTask(t);
    const a = await rt.create(t, 'a', { name: 'a3', resources: res, peers: {} });
    const b = await rt.create(t, 'b', { name: 'b3', resources: res, peers: { a: 'a3' } });
    expect(a.ipAddress).to.equal(res.ipAddress).and.equal(b.ipAddress);
  });

  it('is cheap: 2,000 agents x 5 running containers in one process', async () => {
    const before = process.memoryUsage().heapUsed;
    const t0 = Date.now();
    const runtimes: HollowRuntime[] = [];
    for (let i = 0; i < 2000; i++) {
      const rt = new HollowRuntime();
      runtimes.push(rt);
      for (let j = 0; j < 5; j++) {
        const t = task(`${i}-${j}`, [{ name: 'c', image: 'img' }]);
        const res = await rt.prepareTask(t);
        const c = await rt.create(t, 'c', { name: `n${j}`, resources: res, peers: {} });
        await rt.start(c.id);
      }
    }
    const ms = Date.now() - t0;
    const mb = (process.memoryUsage().heapUsed - before) / 1e6;
    expect(runtimes.reduce((n, r) => n + r.size, 0)).to.equal(10_000);
    expect(ms, `took ${ms}ms`).to.be.below(15_000);
    expect(mb, `${mb} MB`).to.be.below(300);
    for (const r of runtimes) await r.close();
  });
});
