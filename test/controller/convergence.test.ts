import { createServer, connect, type Server, type Socket } from 'node:net';
import { expect } from 'chai';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { Informer } from '../../pkg/client/informer.ts';
import { ControllerManager } from '../../pkg/controller/manager.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startFleet, type Fleet } from '../support/fleet.ts';

const td = (name: string, image = 'busybox') => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec: { containerDefinitions: [{ name: 'app', image, memory: 32, command: ['sleep', '1d'] }] } });
const live = (ts: Task[]) => ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');

for (const store of ['embedded', 'etcd'] as const) {
  describe(`controllers converge (${store} store)`, function () {
    this.timeout(120_000);
    let api: TestApiServer;
    let client: Client;
    let fleet: Fleet;
    const managers: ControllerManager[] = [];
    const newManager = async () => {
      const m = new ControllerManager({ client, log: silentLogger(), leaderElect: false, resyncMs: 3000, healthyAfterMs: 1000 });
      await m.start();
      managers.push(m);
      return m;
    };
    /** a changed spec applied to the family registers its next revision */
    const nextRevision = async (name: string, spec: unknown) => {
      const cur = await client.get('TaskDefinition', undefined, name);
      await client.request('PUT', client.path('TaskDefinition', undefined, name), { ...cur, spec });
    };
    const tasksOf = async (s: string) => (await client.list<Task>('Task', 'default', { fieldSelector: `spec.group=service:${s}` })).items;

    before(async () => {
      api = await startApiServer({ store });
      client = new Client({ server: api.url, token: api.adminToken });
      // the hollow runtime fails to start containers of the image "broken"
      fleet = await startFleet(api.url, api.bootstrapToken, 3, { memoryMiB: 2048, hollow: { rules: [{ image: 'broken', fail: 'start' }] } });
    });
    after(async () => {
      for (const m of managers) await m.stop();
      await fleet?.stop();
      client?.close();
      await api?.stop();
    });

    it('a controller-manager killed mid-rollout is replaced by another that converges with no duplicate task and no broken bound', async () => {
      const m1 = await newManager();
      await client.create(td('roll'));
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'roll', namespace: 'default' }, spec: { taskDefinition: 'roll', desiredCount: 6 } });
      await eventually(async () => live(await tasksOf('roll')).filter((t) => t.status?.lastStatus === 'RUNNING').length === 6, 30_000, '6 running');
      let peak = 0;
      let minRunning = Infinity;
      const sampler = setInterval(async () => {
        const ts = live(await tasksOf('roll').catch(() => []));
        peak = Math.max(peak, ts.length);
        minRunning = Math.min(minRunning, ts.filter((t) => t.status?.lastStatus === 'RUNNING').length);
      }, 100);
      await nextRevision('roll', { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 33, command: ['sleep', '2d'] }] });
      await client.patch('Service', 'default', 'roll', { spec: { taskDefinition: 'roll:2' } });
      await new Promise((r) => setTimeout(r, 150));
      await m1.stop(); // mid-rollout
      managers.splice(managers.indexOf(m1), 1);
      await newManager();
      await eventually(async () => {
        const ts = live(await tasksOf('roll'));
        return ts.length === 6 && ts.every((t) => t.spec.taskDefinition === 'roll:2' && t.status?.lastStatus === 'RUNNING');
      }, 60_000, 'converged on roll:2');
      await new Promise((r) => setTimeout(r, 1500)); // and stays converged
      clearInterval(sampler);
      const ts = live(await tasksOf('roll'));
      expect(ts).to.have.length(6);
      expect(peak, 'never above maximumPercent (200%)').to.be.at.most(12);
      expect(minRunning, 'never below minimumHealthyPercent (100%)').to.be.at.least(6);
      const s = await client.get<Service>('Service', 'default', 'roll');
      expect(s.status?.deployments?.map((d) => d.taskDefinition)).to.deep.equal(['roll:2']);
    });

    it('a failing image trips the circuit breaker and rolls back to the previous deployment', async () => {
      if (!managers.length) await newManager();
      await client.create(td('cb'));
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'cb', namespace: 'default' }, spec: { taskDefinition: 'cb', desiredCount: 2, deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } } } });
      await eventually(async () => (await client.get<Service>('Service', 'default', 'cb')).status?.deployments?.[0]?.rolloutState === 'COMPLETED', 30_000, 'cb:1 steady');
      await nextRevision('cb', td('cb', 'broken').spec);
      await client.patch('Service', 'default', 'cb', { spec: { taskDefinition: 'cb:2' } });
      const s = await eventually(async () => {
        const s = await client.get<Service>('Service', 'default', 'cb');
        const failedEvent = s.status?.events?.some((e) => /deployment failed: tasks failed to start/.test(e.message));
        const primary = s.status?.deployments?.find((d) => d.status === 'PRIMARY');
        return failedEvent && primary?.taskDefinition === 'cb:1' ? s : undefined;
      }, 60_000, 'circuit breaker');
      const primary = s.status!.deployments!.find((d) => d.status === 'PRIMARY')!;
      expect(primary.taskDefinition).to.equal('cb:1');
      expect(s.status!.events!.map((e) => e.message).join('\n')).to.match(/deployment failed: tasks failed to start/);
      const failedTasks = (await tasksOf('cb')).filter((t) => t.spec.taskDefinition === 'cb:2' && t.status?.lastStatus === 'STOPPED');
      expect(failedTasks.length).to.be.at.least(3);
      await eventually(async () => {
        const ts = live(await tasksOf('cb'));
        return ts.length === 2 && ts.every((t) => t.spec.taskDefinition === 'cb:1' && t.status?.lastStatus === 'RUNNING');
      }, 30_000, 'back on cb:1');
    });
  });
}

describe('informer: a watch cut past the watch cache relists and converges, deletes included', function () {
  this.timeout(60_000);
  it('emits the deletes it missed and ends with exactly the server state', async () => {
    const api = await startApiServer({ watchCacheCapacity: 50 });
    const target = Number(new URL(api.url).port);
    const sockets = new Set<Socket>();
    let proxy: Server;
    const listen = (port = 0) =>
      new Promise<number>((r) => {
        proxy = createServer((c) => {
          const u = connect(target, '127.0.0.1');
          sockets.add(c).add(u);
          c.pipe(u).pipe(c);
          const end = () => (c.destroy(), u.destroy());
          c.on('error', end).on('close', end);
          u.on('error', end).on('close', end);
        });
        proxy.listen(port, '127.0.0.1', () => r((proxy.address() as { port: number }).port));
      });
    const port = await listen();
    const admin = new Client({ server: api.url, token: api.adminToken });
    const viaProxy = new Client({ server: `http://127.0.0.1:${port}`, token: api.adminToken });
    await admin.create(td('inf'));
    for (let i = 0; i < 5; i++) await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: `t${i}`, namespace: 'default' }, spec: { taskDefinition: 'inf' } });
    const deleted: string[] = [];
    const inf = new Informer<Task>(viaProxy, 'Task', { namespace: 'default' }).on({ delete: (t) => void deleted.push(t.metadata.name) });
    inf.start();
    await inf.waitForSync();
    expect(inf.list()).to.have.length(5);
    // cut the informer off; meanwhile delete two tasks and push 100 events past the cache's 50
    const closed = new Promise<void>((r) => proxy.close(() => r()));
    for (const s of sockets) s.destroy();
    await closed;
    await admin.delete('Task', 'default', 't0');
    await admin.delete('Task', 'default', 't1');
    for (let i = 0; i < 100; i++) await admin.patch('Task', 'default', 't2', { metadata: { labels: { n: String(i) } } });
    await listen(port);
    await eventually(() => inf.list().length === 3 && deleted.length === 2 && inf.get('default/t2')?.metadata.labels?.n === '99', 20_000, 'relisted');
    expect(deleted.sort()).to.deep.equal(['t0', 't1']);
    expect(inf.relists).to.be.at.least(1);
    inf.stop();
    const closed2 = new Promise<void>((r) => proxy.close(() => r()));
    for (const s of sockets) s.destroy();
    await closed2;
    admin.close();
    viaProxy.close();
    await api.stop();
  });
});
