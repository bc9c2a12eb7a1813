import { expect } from 'chai';
import type { ContainerInstance, InstanceLease, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { ControllerManager } from '../../pkg/controller/manager.ts';
import { LOST_REASON } from '../../pkg/controller/instancehealth/plan.ts';
import { newLogger, silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startFleet, type Fleet } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy } from '../support/holdproxy.ts';

/**
 * Heartbeats as instance leases (issue 22, lever 1), with a real apiserver and store, real
 * agents (hollow runtime) and the real controller-manager. The agents talk to the apiserver
 * through one proxy (to silence one agent's renewals without stopping it), the
 * controller-manager through another (to silence its lease watch).
 */
const HEARTBEAT_MS = 300;
const health = { heartbeatTimeoutMs: 3000, lostGraceMs: 2000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`instance leases: heartbeats that do not rewrite the instance (${store} store)`, function () {
    this.timeout(120_000);
    let api: TestApiServer;
    let agentsProxy: HttpProxy;
    let managerProxy: HttpProxy;
    let fleet: Fleet;
    let mgr: ControllerManager;
    let client: Client;
    const instance = (id: string) => client.get<ContainerInstance>('ContainerInstance', 'default', id);
    const lease = (id: string) => client.get<InstanceLease>('InstanceLease', 'default', id);
    const tasks = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=service:web' })).items;
    const running = (ts: Task[]) => ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING');

    before(async () => {
      api = await startApiServer({ store });
      agentsProxy = await startHttpProxy(api.url);
      managerProxy = await startHttpProxy(api.url);
      client = new Client({ server: api.url, token: api.adminToken });
      fleet = await startFleet(agentsProxy.url, api.bootstrapToken, 3, { memoryMiB: 1024, cpus: 2, heartbeatMs: HEARTBEAT_MS });
      mgr = new ControllerManager({ client: new Client({ server: managerProxy.url, token: api.adminToken }), log: process.env.BERTH_TEST_LOG ? newLogger({ level: 'info' }) : silentLogger(), leaderElect: false, resyncMs: 5000, healthyAfterMs: 1000, health });
      await mgr.start();
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, command: ['sleep', '3600'] }] } });
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { taskDefinition: 'web', desiredCount: 3 } });
      await eventually(async () => running(await tasks()).length === 3, 30_000, '3 running');
    });
    after(async () => {
      managerProxy?.resume();
      agentsProxy?.release();
      await mgr?.stop();
      await fleet?.stop();
      client?.close();
      await agentsProxy?.close();
      await managerProxy?.close();
      await api?.stop();
    });

    it('an agent renewing its lease stays connected while its ContainerInstance is not written at all (same resourceVersion across heartbeats past the timeout)', async () => {
      const ids = fleet.agents.map((a) => a.agent.instanceId);
      const before = await Promise.all(ids.map(async (id) => ({ ci: await instance(id), lease: await lease(id) })));
      const writes = fleet.agents.map((a) => a.agent.instanceStatusWrites);
      const renewals = fleet.agents.map((a) => a.agent.leaseRenewals);
      await sleep(health.heartbeatTimeoutMs + 1500);
      for (const [k, id] of ids.entries()) {
        const ci = await instance(id);
        const l = await lease(id);
        expect(ci.metadata.resourceVersion, `instance ${id} rewritten`).to.equal(before[k].ci.metadata.resourceVersion);
        expect(ci.status?.agentConnected).to.equal(true);
        expect(Number(l.metadata.resourceVersion)).to.be.greaterThan(Number(before[k].lease.metadata.resourceVersion));
        expect(l.spec).to.include({ holderIdentity: id });
        expect(l.status?.agentConnected).to.equal(true);
        // the instance's lastHeartbeat, as read, is its lease's renewal (renewed every 300 ms: fresh)
        expect(Date.parse(ci.status!.lastHeartbeat!)).to.be.at.least(Date.parse(before[k].lease.spec.renewTime));
        expect(Date.now() - Date.parse(ci.status!.lastHeartbeat!)).to.be.below(3000);
      }
      expect(fleet.agents.map((a) => a.agent.instanceStatusWrites)).to.deep.equal(writes);
      expect(fleet.agents.every((a, k) => a.agent.leaseRenewals - renewals[k] >= 5), 'renewals made').to.equal(true);
      const ls = (await client.list<InstanceLease>('InstanceLease', 'default')).items.map((l) => l.metadata.name).sort();
      expect(ls).to.deep.equal([...ids].sort());
    });

    it('a controller whose lease watch goes silent (the agents keep renewing) marks no instance disconnected: the disconnect compares the lease it judged', async () => {
      const rvs = async () => (await client.list<ContainerInstance>('ContainerInstance', 'default')).items.map((i) => [i.metadata.name, i.metadata.resourceVersion]);
      const before = await rvs();
      // the watch stops delivering (a half-open connection): no renewal is heard for 8 s, past timeout + grace
      managerProxy.pause((m, p) => m === 'GET' && p.endsWith('/instanceleases'));
      try {
        await sleep(8000);
      } finally {
        managerProxy.resume();
      }
      const instances = (await client.list<ContainerInstance>('ContainerInstance', 'default')).items;
      expect(instances.map((i) => [i.metadata.name, i.status?.agentConnected]), 'no instance marked disconnected').to.deep.equal(instances.map((i) => [i.metadata.name, true]));
      // not even for a moment (the agent would write it connected again at its next renewal): no instance was written
      expect(instances.filter((i) => i.status?.conditions?.some((c) => c.type === 'AgentConnected')).map((i) => i.metadata.name), 'instances once recorded disconnected').to.deep.equal([]);
      expect(await rvs()).to.deep.equal(before);
      expect((await tasks()).filter((t) => t.spec.stopReason === LOST_REASON)).to.deep.equal([]);
      expect(running(await tasks())).to.have.length(3);
    });

    it('an agent whose renewals stop is marked disconnected and its tasks replaced; when a renewal lands again, its answer brings the instance back to connected', async () => {
      const victimId = running(await tasks())[0].spec.containerInstance!;
      const victim = fleet.agents.find((a) => a.agent.instanceId === victimId)!;
      const writes = victim.agent.instanceStatusWrites;
      // its renewals are held (never answered): the agent itself runs on and watches its tasks
      agentsProxy.hold((m, p) => p.endsWith(`/instanceleases/${victimId}`));
      await eventually(async () => (await instance(victimId)).status?.agentConnected === false, 20_000, 'disconnected');
      const cond = (await instance(victimId)).status?.conditions?.find((c) => c.type === 'AgentConnected');
      expect(cond).to.include({ status: 'False', reason: 'HeartbeatTimeout' });
      await eventually(async () => {
        const r = running(await tasks());
        return r.length === 3 && r.every((t) => t.spec.containerInstance !== victimId);
      }, 30_000, 'replaced elsewhere');
      const lost = (await tasks()).filter((t) => t.spec.containerInstance === victimId && t.spec.stopReason === LOST_REASON);
      expect(lost.length).to.be.greaterThan(0);
      // its lost tasks are stopped by the agent (it watched the stop arrive)
      await eventually(async () => (await tasks()).filter((t) => lost.some((l) => l.metadata.name === t.metadata.name)).every((t) => t.status?.lastStatus === 'STOPPED'), 20_000, 'lost tasks STOPPED');
      // the held renewal goes through: it says the instance is disconnected, and the agent writes it connected
      agentsProxy.release();
      await eventually(async () => (await instance(victimId)).status?.agentConnected === true, 20_000, 'reconnected');
      expect(victim.agent.instanceStatusWrites).to.be.greaterThan(writes);
      await eventually(async () => (await instance(victimId)).status?.conditions?.find((c) => c.type === 'AgentConnected')?.status === 'True', 20_000, 'AgentConnected=True again');
      // and it stays connected, its instance no longer written
      const rv = (await instance(victimId)).metadata.resourceVersion;
      await sleep(health.heartbeatTimeoutMs + 500);
      const ci = await instance(victimId);
      expect(ci.status?.agentConnected).to.equal(true);
      expect(ci.metadata.resourceVersion).to.equal(rv);
    });

    it('the disconnect\'s own write is no heartbeat: the tasks of an instance whose renewals stopped are lost the grace after its disconnect, not a heartbeat timeout later', async () => {
      // (bench:scale's failover took 30 s longer with leases: the instance as served carries its
      // lease's latest renewTime as lastHeartbeat, so the disconnect's event showed a "new"
      // lastHeartbeat and instance health counted it as heard from then)
      const victimId = running(await tasks())[0].spec.containerInstance!;
      agentsProxy.hold((m, p) => p.endsWith(`/instanceleases/${victimId}`));
      try {
        let disconnectedAt = 0;
        let lostAt = 0;
        await eventually(async () => {
          const now = Date.now();
          if (!disconnectedAt && (await instance(victimId)).status?.agentConnected === false) disconnectedAt = now;
          if (disconnectedAt && !lostAt && (await tasks()).some((t) => t.spec.containerInstance === victimId && t.spec.stopReason === LOST_REASON)) lostAt = now;
          return lostAt > 0;
        }, 30_000, 'disconnected, then lost');
        // the rule: disconnected after the timeout of silence, lost after the grace more (one reconcile period of 750 ms each)
        expect(lostAt - disconnectedAt, 'from the disconnect to the lost tasks\' stop (ms)').to.be.below(health.heartbeatTimeoutMs + health.lostGraceMs - 500);
      } finally {
        agentsProxy.release();
      }
      await eventually(async () => (await instance(victimId)).status?.agentConnected === true, 20_000, 'reconnected');
      await eventually(async () => running(await tasks()).length === 3, 30_000, '3 running again');
    });

    it('deregistering an instance deletes its lease in the same write', async () => {
      const a = fleet.agents[2];
      const id = a.agent.instanceId;
      await client.patch('Service', 'default', 'web', { spec: { desiredCount: 0 } });
      await eventually(async () => (await client.list<Task>('Task', 'default', { fieldSelector: `spec.containerInstance=${id}` })).items.every((t) => t.status?.lastStatus === 'STOPPED'), 30_000, 'its tasks stopped');
      await a.agent.stop();
      await client.delete('ContainerInstance', 'default', id);
      expect(await client.tryGet('InstanceLease', 'default', id)).to.equal(undefined);
    });
  });
}
