import { expect } from 'chai';
import type { Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { ControllerManager, type ControllerName } from '../../pkg/controller/manager.ts';
import { NOMINATED_ANNOTATION } from '../../pkg/api/meta.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startFleet, type Fleet } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy } from '../support/holdproxy.ts';

/**
 * R2-1: a warm standby takes over with a cache that trails the store. Two in-process
 * controller-managers on a real apiserver; the standby (B) talks through a proxy that
 * pauses only its task WATCH stream (what a watch through a lagging apiserver, or one that
 * is relisting, looks like): its lease requests, lists and writes go through. The leader
 * (A) does the work, then stops; B must not plan until its caches reach the acquisition
 * revision, so it never re-creates what A made.
 */
const LEASE = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 };
const live = (t: Task) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED';

for (const store of ['embedded', 'etcd'] as const) {
  describe(`R2-1: a standby whose task watch trails does not plan until its caches reach the acquisition revision (${store} store)`, function () {
    this.timeout(120_000);
    let api: TestApiServer;
    let admin: Client;
    let proxy: HttpProxy;
    const managers: ControllerManager[] = [];
    const clients: Client[] = [];

    const manager = (server: string, identity: string, controllers: ControllerName[]) => {
      const client = new Client({ server, token: api.adminToken });
      clients.push(client);
      const m = new ControllerManager({ client, log: silentLogger(), controllers, identity, ...LEASE });
      managers.push(m);
      return m;
    };

    /** Samples `fn` every 100 ms for `ms`, returning the largest value seen. */
    const sampleMax = async (ms: number, fn: () => Promise<number>) => {
      let max = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < ms) {
        max = Math.max(max, await fn());
        await new Promise((r) => setTimeout(r, 100));
      }
      return max;
    };

    beforeEach(async () => {
      api = await startApiServer({ store });
      admin = new Client({ server: api.url, token: api.adminToken });
      proxy = await startHttpProxy(api.url);
    });
    afterEach(async () => {
      proxy.resume();
      for (const m of managers.splice(0)) await m.stop().catch(() => undefined);
      for (const c of clients.splice(0)) c.close();
      admin?.close();
      await proxy?.close();
      await api?.stop();
    });

    it('service: live tasks never exceed maximumPercent across the takeover, and the new leader converges once its watch flows', async () => {
      await admin.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 8 }] } });
      const a = manager(api.url, 'A', ['service']);
      await a.start();
      await eventually(() => a.leading().includes('service'), 20_000, 'A leads');
      const b = manager(proxy.url, 'B', ['service']);
      await b.start(); // a warm standby: its caches synced
      proxy.pause((m, p) => m === 'GET' && p.endsWith('/tasks'));
      await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { taskDefinition: 'web', desiredCount: 3, deploymentConfiguration: { maximumPercent: 100, minimumHealthyPercent: 0 } } });
      const liveTasks = async () => (await admin.list<Task>('Task', 'default')).items.filter(live);
      await eventually(async () => (await liveTasks()).length === 3, 20_000, 'A created 3 tasks');
      expect(b.informers.tasks.list().length, "B's task watch is paused: its cache must trail").to.equal(0);
      await a.stop(); // releases the lease: B takes over at once
      await eventually(() => b.leading().includes('service'), 20_000, 'B leads');
      // desiredCount 3, maximumPercent 100: at most 3 RUNNING or PENDING at any sample
      const max = await sampleMax(3000, async () => (await liveTasks()).length);
      expect(max, 'live tasks after the takeover').to.be.at.most(3);
      proxy.resume();
      await eventually(async () => b.informers.tasks.list().filter(live).length === 3, 20_000, "B's cache shows the 3 tasks");
      expect(await sampleMax(1500, async () => (await liveTasks()).length)).to.equal(3);
    });

    it('daemon: no instance gets a second copy across the takeover', async () => {
      let fleet: Fleet | undefined;
      try {
        fleet = await startFleet(api.url, api.bootstrapToken, 3, { memoryMiB: 2048, cpus: 2 });
        await admin.create({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'logd' }, spec: { containerDefinitions: [{ name: 'd', image: 'busybox', memory: 16, command: ['sleep', '3600'] }] } });
        const a = manager(api.url, 'A', ['daemon']);
        await a.start();
        await eventually(() => a.leading().includes('daemon'), 20_000, 'A leads');
        const b = manager(proxy.url, 'B', ['daemon']);
        await b.start();
        await eventually(() => b.informers.instances.list().length === 3, 20_000, 'B sees the 3 instances');
        proxy.pause((m, p) => m === 'GET' && p.endsWith('/tasks'));
        await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'logd', namespace: 'default' }, spec: { daemonTaskDefinition: 'logd' } });
        const copies = async () => (await admin.list<Task>('Task', 'default', { fieldSelector: 'spec.group=daemon:logd' })).items.filter(live);
        /** the most live copies any one instance holds (unbound copies count against the instance they were made for) */
        const worst = async () => {
          const per = new Map<string, number>();
          for (const t of await copies()) {
            const i = t.spec.containerInstance ?? t.metadata.annotations?.[NOMINATED_ANNOTATION] ?? '?';
            per.set(i, (per.get(i) ?? 0) + 1);
          }
          return Math.max(0, ...per.values());
        };
        await eventually(async () => {
          const cs = await copies();
          return cs.length === 3 && new Set(cs.map((t) => t.spec.containerInstance)).size === 3;
        }, 30_000, 'A placed one copy per instance');
        expect(b.informers.tasks.list().length, "B's task watch is paused: its cache must trail").to.equal(0);
        await a.stop();
        await eventually(() => b.leading().includes('daemon'), 20_000, 'B leads');
        expect(await sampleMax(3000, worst), 'copies of the daemon on one instance after the takeover').to.equal(1);
        expect((await copies()).length).to.equal(3);
        proxy.resume();
        await eventually(async () => b.informers.tasks.list().filter(live).length === 3, 20_000, "B's cache shows the 3 copies");
        expect(await sampleMax(1500, worst)).to.equal(1);
      } finally {
        await fleet?.stop();
      }
    });
  });
}
