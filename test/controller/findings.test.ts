import { expect } from 'chai';
import type { Daemon, Service, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { LOST_REASON } from '../../pkg/controller/instancehealth/plan.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Running } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy } from '../support/holdproxy.ts';
import { kubectl } from '../support/kubectl.ts';

/**
 * The controllers review's findings, each shown on a real apiserver and store with hollow
 * agents and the real controllers (test titles name the finding).
 */
const td = (name: string, memory = 32, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'TaskDefinition',
  metadata: { name },
  spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory, command: ['sleep', '3600'], ...extra }] },
});
const dtd = (name: string, memory: number, image = 'busybox') => ({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name }, spec: { containerDefinitions: [{ name: 'd', image, memory, command: ['sleep', '3600'] }] } });
const svc = (name: string, taskDefinition: string, desiredCount: number, extra: Record<string, unknown> = {}) => ({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { taskDefinition, desiredCount, ...extra } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const live = (ts: Task[]) => ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');
const running = (ts: Task[]) => live(ts).filter((t) => t.status?.lastStatus === 'RUNNING');

for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`controllers review findings on a hollow fleet (${store} store)`, function () {
    this.timeout(180_000);

    describe('a daemon added to a full cluster (D1)', () => {
      let api: TestApiServer;
      let cp: Running;
      let client: Client;
      before(async () => {
        api = await startApiServer({ store });
        cp = await startControlPlane(api, 2, { fleet: { memoryMiB: 1024, cpus: 2 } });
        client = cp.client;
      });
      after(async () => {
        await cp?.stop();
        await api?.stop();
      });

      it('D1: no create/stop loop: at most one pending copy per instance and one "unable to place" event; the copies start once room is freed', async () => {
        await client.create(td('fill', 1000));
        await client.create(svc('fill', 'fill', 2));
        const fill = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=service:fill' })).items;
        await eventually(async () => running(await fill()).length === 2, 30_000, 'the instances are full');
        await client.create(dtd('logd', 512));
        await client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'logd', namespace: 'default' }, spec: { daemonTaskDefinition: 'logd' } });
        const copies = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=daemon:logd' })).items;
        const events = async () => ((await client.get<Daemon>('Daemon', 'default', 'logd')).status?.events ?? []).filter((e) => /unable to place/.test(e.message));
        await eventually(async () => (await events()).length > 0, 20_000, 'the unable-to-place event');
        await sleep(10_000);
        const ts = await copies();
        const perInstance = new Map<string, number>();
        for (const t of ts) {
          const where = t.spec.containerInstance ?? t.metadata.annotations?.['berth.dev/nominated-instance'] ?? '';
          perInstance.set(where, (perInstance.get(where) ?? 0) + 1);
        }
        expect(ts.length, `tasks of the daemon after 10 s: ${ts.length}`).to.be.at.most(2);
        expect(Math.max(0, ...perInstance.values())).to.be.at.most(1);
        expect(ts.filter((t) => t.status?.lastStatus === 'STOPPED'), 'no copy created and stopped again').to.deep.equal([]);
        const ev = await events();
        expect(ev, JSON.stringify(ev)).to.have.length(1);
        expect(ev[0].message).to.match(/^\(daemon logd\) was unable to place a task on 2 instance\(s\): \S+: RESOURCE:MEMORY; \S+: RESOURCE:MEMORY$/);
        // room is freed: the copies start, one per instance
        await client.patch('Service', 'default', 'fill', { spec: { desiredCount: 0 } });
        await eventually(async () => {
          const r = running(await copies());
          return r.length === 2 && new Set(r.map((t) => t.spec.containerInstance)).size === 2;
        }, 60_000, 'a copy on each instance');
        expect(await events()).to.have.length(1);
      });
    });

    describe('instance health, daemons and placement on a fleet whose controllers are behind a proxy (D8, D6, D5)', () => {
      let api: TestApiServer;
      let proxy: HttpProxy;
      let cp: Running;
      let client: Client;
      before(async () => {
        api = await startApiServer({ store });
        proxy = await startHttpProxy(api.url);
        // the agents talk to the apiserver directly; the controller-manager through the proxy
        cp = await startControlPlane(api, 3, {
          fleet: { memoryMiB: 2048, cpus: 2, heartbeatMs: 500 },
          manager: { client: new Client({ server: proxy.url, token: api.adminToken }), health: { heartbeatTimeoutMs: 3000, lostGraceMs: 2000 } },
        });
        client = new Client({ server: api.url, token: api.adminToken });
      });
      after(async () => {
        proxy?.resume();
        await cp?.stop();
        client?.close();
        await proxy?.close();
        await api?.stop();
      });

      it('D8: a controller whose instance watch goes silent (the agents keep heartbeating) stops no task', async () => {
        await client.create(td('web'));
        await client.create(svc('web', 'web', 3));
        const tasks = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=service:web' })).items;
        await eventually(async () => running(await tasks()).length === 3, 30_000, '3 running');
        // the watch stops delivering (a half-open connection): the controller hears no heartbeat for 12 s,
        // well past its heartbeat timeout (3 s) and lost grace (2 s)
        proxy.pause((m, p) => m === 'GET' && p.endsWith('/containerinstances'));
        let after: Task[];
        try {
          await sleep(12_000);
          after = await tasks();
        } finally {
          proxy.resume();
        }
        expect(after.filter((t) => t.spec.stopReason === LOST_REASON), 'tasks stopped as lost').to.deep.equal([]);
        expect(running(after)).to.have.length(3);
        const instances = (await client.list('ContainerInstance', 'default')).items;
        expect(instances.every((i) => i.status?.agentConnected === true), 'no instance was marked disconnected').to.equal(true);
        await sleep(3000);
        expect((await tasks()).filter((t) => t.spec.stopReason === LOST_REASON)).to.deep.equal([]);
      });

      it('D6: agent heartbeats do not start placement passes (one unplaceable task, 6 s of heartbeats)', async () => {
        await client.create(td('huge', 4000));
        await client.create(svc('huge', 'huge', 1));
        await eventually(async () => (await client.get<Service>('Service', 'default', 'huge')).status?.events?.some((e) => /unable to place/.test(e.message)), 20_000, 'unplaceable');
        const before = cp.mgr.metrics.count('placement', 'success');
        await sleep(6000);
        const passes = cp.mgr.metrics.count('placement', 'success') - before;
        // 3 agents heartbeat twice a second (36 heartbeats); the retry of what cannot be placed is every 2 s
        expect(passes, `placement passes in 6 s: ${passes}`).to.be.at.most(8);
        await client.delete('Service', 'default', 'huge');
        await client.patch('Service', 'default', 'huge', { spec: { desiredCount: 0 } }).catch(() => undefined);
      });

      it('D5: one lost instance does not freeze a daemon rollout: the live instances roll', async () => {
        await client.create(dtd('agentd', 16));
        await client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'agentd', namespace: 'default' }, spec: { daemonTaskDefinition: 'agentd' } });
        const copies = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=daemon:agentd' })).items;
        await eventually(async () => running(await copies()).length === 3, 30_000, 'a copy per instance');
        const victim = cp.fleet.agents[0];
        const victimId = victim.agent.instanceId;
        await victim.agent.stop();
        await eventually(async () => (await copies()).some((t) => t.spec.containerInstance === victimId && t.spec.stopReason === LOST_REASON), 30_000, 'its copy marked lost');
        // a new revision of the daemon
        const cur = await client.get('DaemonTaskDefinition', undefined, 'agentd');
        await client.request('PUT', client.path('DaemonTaskDefinition', undefined, 'agentd'), { ...cur, spec: { containerDefinitions: [{ name: 'd', image: 'busybox', memory: 17, command: ['sleep', '3600'] }] } });
        await client.patch('Daemon', 'default', 'agentd', { spec: { daemonTaskDefinition: 'agentd:2' } });
        await eventually(async () => {
          const r = running(await copies()).filter((t) => t.spec.containerInstance !== victimId);
          return r.length === 2 && r.every((t) => t.spec.daemonTaskDefinition === 'agentd:2');
        }, 60_000, 'the two live instances rolled');
      });
    });

    describe('ownership, finalizers, garbage collection and the deployment model (D10, D11, GC, D4, D13)', () => {
      let api: TestApiServer;
      let proxy: HttpProxy;
      let cp: Running;
      let client: Client;
      before(async () => {
        api = await startApiServer({ store });
        proxy = await startHttpProxy(api.url);
        cp = await startControlPlane(api, 4, {
          fleet: { memoryMiB: 2048, cpus: 2, hollow: { rules: [{ image: 'broken', fail: 'start' }, { image: 'slowstop', ignoreSigterm: true }] } },
          manager: { client: new Client({ server: proxy.url, token: api.adminToken }) },
        });
        client = new Client({ server: api.url, token: api.adminToken });
        await client.create(td('app'));
      });
      after(async () => {
        proxy?.resume();
        await cp?.stop();
        client?.close();
        await proxy?.close();
        await api?.stop();
      });
      const tasksOf = async (s: string) => (await client.list<Task>('Task', 'default', { fieldSelector: `spec.group=service:${s}` })).items;
      const owned = (ts: Task[], uid: string) => ts.filter((t) => t.metadata.ownerReferences?.some((r) => r.controller && r.uid === uid));

      it('D10: a task someone started with the group "service:NAME" is not the service\'s: it keeps running, the service keeps its own', async () => {
        await client.create(svc('own', 'app', 2));
        const s = await client.get<Service>('Service', 'default', 'own');
        await eventually(async () => running(owned(await tasksOf('own'), s.metadata.uid!)).length === 2, 30_000, '2 running');
        // a RunTask-style task in the service's group
        await client.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'intruder', namespace: 'default' }, spec: { taskDefinition: 'app', group: 'service:own', startedBy: 'someone' } });
        await eventually(async () => (await client.get<Task>('Task', 'default', 'intruder')).status?.lastStatus === 'RUNNING', 30_000, 'the intruder runs');
        await sleep(8000);
        const t = await client.get<Task>('Task', 'default', 'intruder');
        expect(t.spec.desiredStatus, t.spec.stopReason).to.equal('RUNNING');
        expect(t.status?.lastStatus).to.equal('RUNNING');
        expect(running(owned(await tasksOf('own'), s.metadata.uid!))).to.have.length(2);
        expect((await client.get<Service>('Service', 'default', 'own')).status?.runningCount).to.equal(2);
      });

      it('D10: an orphan that one of the service\'s deployments started is adopted explicitly (it gets the controller reference)', async () => {
        const s = await client.get<Service>('Service', 'default', 'own');
        const dep = s.status!.deployments!.find((d) => d.status === 'PRIMARY')!;
        await client.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'stray', namespace: 'default' }, spec: { taskDefinition: 'app', group: 'service:own', startedBy: dep.id, deploymentId: dep.id } });
        const adopted = await eventually(async () => {
          const t = await client.get<Task>('Task', 'default', 'stray');
          return t.metadata.ownerReferences?.find((r) => r.controller)?.uid === s.metadata.uid && t;
        }, 20_000, 'adopted');
        expect(adopted.metadata.ownerReferences).to.have.length(1);
        // and, being the service's now, it counts: the service is back at 2 of its own
        await eventually(async () => running(owned(await tasksOf('own'), s.metadata.uid!)).length === 2 && live(owned(await tasksOf('own'), s.metadata.uid!)).length === 2, 30_000, 'scaled back to 2');
      });

      it('D11: removing the controller\'s finalizer keeps one another actor added meanwhile (a write at the version read)', async () => {
        await client.create(svc('fin', 'app', 1));
        await eventually(async () => running(await tasksOf('fin')).length === 1, 30_000, '1 running');
        // the controller's write of the finalizers (not of the status) is held on its way to the apiserver
        const finWrite = (m: string, p: string) => (m === 'PUT' || m === 'PATCH') && p === '/apis/berth.dev/v1/namespaces/default/services/fin';
        proxy.hold(finWrite);
        await client.delete('Service', 'default', 'fin');
        await eventually(() => proxy.requests.some((r) => r.held && finWrite(r.method, r.path)), 60_000, 'the controller removing its finalizer');
        // meanwhile another actor adds its finalizer
        const cur = await client.get<Service>('Service', 'default', 'fin');
        await client.update({ ...cur, metadata: { ...cur.metadata, finalizers: [...(cur.metadata.finalizers ?? []), 'example.com/x'] } });
        proxy.release();
        await eventually(async () => !(await client.get<Service>('Service', 'default', 'fin')).metadata.finalizers?.includes('berth.dev/controller'), 30_000, 'the controller dropped its finalizer');
        const s = await client.get<Service>('Service', 'default', 'fin');
        expect(s.metadata.finalizers).to.deep.equal(['example.com/x']);
        await client.update({ ...s, metadata: { ...s.metadata, finalizers: [] } });
        await eventually(async () => (await client.tryGet('Service', 'default', 'fin')) === undefined, 20_000, 'gone once the other actor is done');
      });

      it('`kubectl replace` without the finalizer keeps it, and a service whose finalizer is forced off has its tasks stopped by owner (GC)', async () => {
        await client.create(svc('gc', 'app', 2));
        await eventually(async () => running(await tasksOf('gc')).length === 2, 30_000, '2 running');
        // get, drop the finalizer, replace (again if the controller wrote the status in between: 409)
        await eventually(async () => {
          const got = await kubectl(api.kubeconfigPath, ['get', 'services.berth.dev', 'gc', '-n', 'default', '-o', 'json']);
          expect(got.code, got.stderr).to.equal(0);
          const obj = JSON.parse(got.stdout);
          delete obj.metadata.finalizers;
          const rep = await kubectl(api.kubeconfigPath, ['replace', '-f', '-'], JSON.stringify(obj));
          if (rep.code !== 0 && !/Conflict/.test(rep.stderr)) throw new Error(rep.stderr);
          return rep.code === 0;
        }, 30_000, 'kubectl replace');
        // the controller's finalizer is the system's: a replace that omits it keeps it
        expect((await client.get<Service>('Service', 'default', 'gc')).metadata.finalizers).to.deep.equal(['berth.dev/controller']);
        // once deleting, it can be forced off (the service goes before the controller drains it): the
        // tasks are then stopped by the garbage collector, as dependents of an owner that is gone; either
        // way none is left running
        const del = await kubectl(api.kubeconfigPath, ['delete', 'services.berth.dev', 'gc', '-n', 'default', '--wait=false']);
        expect(del.code, del.stderr).to.equal(0);
        const forced = await kubectl(api.kubeconfigPath, ['patch', 'services.berth.dev', 'gc', '-n', 'default', '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
        // (unless the controller, quick on a hollow fleet, drained it and let go first)
        if (forced.code !== 0) expect(forced.stderr).to.contain('services.berth.dev "gc" not found');
        expect(await client.tryGet('Service', 'default', 'gc')).to.equal(undefined);
        await eventually(async () => live(await tasksOf('gc')).length === 0, 30_000, 'its tasks stopped');
        const ts = await tasksOf('gc');
        expect(ts.every((t) => /service gc no longer exists|Service is being deleted/.test(t.spec.stopReason ?? '')), JSON.stringify(ts.map((t) => t.spec.stopReason))).to.equal(true);
      });

      it('D4: a failed revision with minimumHealthyPercent 0 rolls back to the last completed deployment (not to 0 tasks)', async () => {
        await client.create(svc('rb', 'app', 2, { deploymentConfiguration: { minimumHealthyPercent: 0, maximumPercent: 100, deploymentCircuitBreaker: { enable: true, rollback: true } } }));
        const completed = await eventually(async () => {
          const s = await client.get<Service>('Service', 'default', 'rb');
          const d = s.status?.deployments?.[0];
          return d?.rolloutState === 'COMPLETED' && d;
        }, 30_000, 'rb:1 completed');
        await client.create(td('rbbad', 32, { image: 'broken' }));
        await client.patch('Service', 'default', 'rb', { spec: { taskDefinition: 'rbbad' } });
        let minRunningAfterRollback = Infinity;
        const s = await eventually(async () => {
          const s = await client.get<Service>('Service', 'default', 'rb');
          const primary = s.status?.deployments?.find((d) => d.status === 'PRIMARY');
          return primary?.id === completed.id && s.status?.events?.some((e) => /deployment failed: tasks failed to start/.test(e.message)) && s;
        }, 90_000, 'rolled back');
        expect(s.status!.deployments!.find((d) => d.status === 'PRIMARY')!.taskDefinition).to.equal('app:1');
        await eventually(async () => {
          const r = running(await tasksOf('rb'));
          minRunningAfterRollback = Math.min(minRunningAfterRollback, r.length);
          return r.length === 2 && r.every((t) => t.spec.taskDefinition === 'app:1');
        }, 60_000, 'back on app:1 with 2 running');
        await eventually(async () => (await client.get<Service>('Service', 'default', 'rb')).status?.deployments?.[0]?.rolloutState === 'COMPLETED', 30_000, 'the rollback completes');
      });

      it('R2-2: after a circuit-breaker rollback the service names the rollback target; a scale-out does not deploy the failed revision again, naming it does', async () => {
        const breaker = { deploymentConfiguration: { minimumHealthyPercent: 0, maximumPercent: 100, deploymentCircuitBreaker: { enable: true, rollback: true } } };
        await client.create(svc('rb2', 'app', 2, breaker));
        const completed = await eventually(async () => {
          const d = (await client.get<Service>('Service', 'default', 'rb2')).status?.deployments?.[0];
          return d?.rolloutState === 'COMPLETED' && d;
        }, 30_000, 'rb2 on app:1 completed');
        await client.create(td('rb2bad', 32, { image: 'broken' }));
        const updated = await client.patch<Service>('Service', 'default', 'rb2', { spec: { taskDefinition: 'rb2bad' } });
        const rolledBack = await eventually(async () => {
          const s = await client.get<Service>('Service', 'default', 'rb2');
          const primary = s.status?.deployments?.find((d) => d.status === 'PRIMARY');
          const failed = s.status?.events?.some((e) => /deployment failed: tasks failed to start/.test(e.message));
          return (s.status?.observedGeneration ?? 0) >= updated.metadata.generation! && failed && primary?.id === completed.id && primary.rolloutState === 'COMPLETED' && s;
        }, 90_000, 'rolled back to app:1, and completed');
        // ECS: the rollback target becomes the service's task definition (what DescribeServices reports; berth records it in status, the spec keeps what the user wrote), observed
        expect(rolledBack.status!.taskDefinition).to.equal('app:1');
        expect(rolledBack.status!.observedGeneration).to.equal(rolledBack.metadata.generation);
        const badBefore = (await tasksOf('rb2')).filter((t) => t.spec.taskDefinition === 'rb2bad:1').length;
        expect(badBefore).to.be.at.least(3);
        // a scale-out: the service stays on app:1, no task of the failed revision is started
        await client.patch('Service', 'default', 'rb2', { spec: { desiredCount: 3 } });
        await eventually(async () => running(await tasksOf('rb2')).length === 3, 30_000, '3 running');
        await sleep(3000);
        const after = await tasksOf('rb2');
        expect(after.filter((t) => t.spec.taskDefinition === 'rb2bad:1').length, 'tasks of the failed revision after the scale-out').to.equal(badBefore);
        expect(running(after).every((t) => t.spec.taskDefinition === 'app:1')).to.equal(true);
        const s = await client.get<Service>('Service', 'default', 'rb2');
        expect(s.status!.deployments!.map((d) => [d.id, d.status])).to.deep.equal([[completed.id, 'PRIMARY']]);
        // naming the failed revision again is the user's choice: it is deployed again (the spec names the
        // family still, so the user names the revision: a write of the same value is no change)
        await client.patch('Service', 'default', 'rb2', { spec: { taskDefinition: 'rb2bad:1' } });
        await eventually(async () => (await tasksOf('rb2')).filter((t) => t.spec.taskDefinition === 'rb2bad:1').length > badBefore, 30_000, 'rb2bad deployed again');
      });

      it('D13: a DAEMON service rolls with its minimumHealthyPercent: 50% of 4 instances means 2 copies replaced at once', async () => {
        await client.create(td('node', 16, { image: 'slowstop' }));
        await client.create(svc('node', 'node', 0, { schedulingStrategy: 'DAEMON', deploymentConfiguration: { minimumHealthyPercent: 50, maximumPercent: 100 } }));
        await eventually(async () => running(await tasksOf('node')).length === 4, 30_000, 'a copy on each of 4 instances');
        const cur = await client.get('TaskDefinition', undefined, 'node');
        await client.request('PUT', client.path('TaskDefinition', undefined, 'node'), { ...cur, spec: { containerDefinitions: [{ name: 'app', image: 'slowstop', memory: 17, command: ['sleep', '3600'] }] } });
        let peakStopping = 0;
        let peakMissing = 0;
        const sampler = setInterval(async () => {
          try {
            const ts = await tasksOf('node');
            peakStopping = Math.max(peakStopping, ts.filter((t) => t.spec.desiredStatus === 'STOPPED' && t.status?.lastStatus !== 'STOPPED').length);
            peakMissing = Math.max(peakMissing, 4 - new Set(running(ts).map((t) => t.spec.containerInstance)).size);
          } catch {
            /* next sample */
          }
        }, 100);
        await client.patch('Service', 'default', 'node', { spec: { taskDefinition: 'node:2' } });
        await eventually(async () => {
          const r = running(await tasksOf('node'));
          return r.length === 4 && r.every((t) => t.spec.taskDefinition === 'node:2');
        }, 90_000, 'rolled to node:2');
        clearInterval(sampler);
        expect(peakStopping, 'copies stopping at once').to.equal(2);
        expect(peakMissing, 'instances without a running copy at once').to.be.at.most(2);
      });
    });
  });
}
