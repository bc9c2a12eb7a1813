/**
 * Invariants that span objects are compared inside the committing txn, so two
 * apiservers racing cannot both win: two apiservers in this process on one real 3-member
 * etcd cluster, each with its own etcd client and watch cache. Each cache sees the store
 * 150 ms late and every txn commits 3 ms late (haapi.ts), so each apiserver decides from a
 * cache that has not seen what the other just did -- the replication lag of the HA
 * deployment, made wide enough to be hit every time on a loaded machine.
 * Review findings C4, C5 (apiserver.md), C14, D12 (controllers.md).
 */
import { expect } from 'chai';
import { RegisterTaskDefinitionCommand, RunTaskCommand } from '@aws-sdk/client-ecs';
import { eventually, startHaApiServers, type HaApiServers, type HaServer } from '../support/haapi.ts';

const V = '/apis/berth.dev/v1';
const obj = (kind: string, name: string, spec: unknown, meta: Record<string, unknown> = {}) => ({ apiVersion: 'berth.dev/v1', kind, metadata: { name, ...meta }, spec });
const resources = (cpu: number, memory: number) => [
  { name: 'CPU', type: 'INTEGER', integerValue: cpu },
  { name: 'MEMORY', type: 'INTEGER', integerValue: memory },
  { name: 'PORTS', type: 'STRINGSET', stringSetValue: ['22'] },
  { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: [] },
];
const containers = (image = 'busybox', memory = 64) => ({ containerDefinitions: [{ name: 'app', image, memory }] });

describe('invariants in the committing txn, on two apiservers of one etcd cluster (C4, C5, C14, D12)', function () {
  this.timeout(120_000);
  let ha: HaApiServers;
  let a: HaServer;
  let b: HaServer;

  /** waits until server `s` sees the object (its cache caught up) */
  const sees = (s: HaServer, path: string) => eventually(async () => (await s.call('GET', path)).status === 200, `${path} on ${s.url}`);
  const created = (r: { status: number; body: any }) => {
    expect(r.status, JSON.stringify(r.body)).to.be.oneOf([200, 201]);
    return r.body;
  };
  async function cluster(name: string) {
    created(await a.call('POST', `${V}/clusters`, obj('Cluster', name, undefined)));
    await sees(b, `${V}/clusters/${name}`);
  }

  before(async () => {
    ha = await startHaApiServers({ n: 2, txnDelayMs: 3, lagMs: [150, 150], ecs: true });
    [a, b] = ha.servers;
    created(await a.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'idt', containers())));
    await sees(b, `${V}/taskdefinitions/idt:1`);
  });
  after(async () => {
    await ha?.stop();
  });

  describe('C4: daemon ports', () => {
    it('two daemons on one port admitted by two apiservers at once: exactly one is created, every time', async () => {
      const dtd = (n: string) => obj('DaemonTaskDefinition', n, { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 32 }] }, { annotations: { 'berth.dev/ports': 'udp/2000' } });
      created(await a.call('POST', `${V}/daemontaskdefinitions`, dtd('port-d1')));
      created(await a.call('POST', `${V}/daemontaskdefinitions`, dtd('port-d2')));
      await sees(b, `${V}/daemontaskdefinitions/port-d2:1`);
      for (let round = 0; round < 4; round++) {
        const ns = `ports${round}`;
        await cluster(ns);
        const [x, y] = await Promise.all([
          a.call('POST', `${V}/namespaces/${ns}/daemons`, obj('Daemon', 'x', { daemonTaskDefinition: 'port-d1' })),
          b.call('POST', `${V}/namespaces/${ns}/daemons`, obj('Daemon', 'y', { daemonTaskDefinition: 'port-d2' })),
        ]);
        expect([x.status, y.status].sort(), `round ${round}: ${JSON.stringify([x.body.message, y.body.message])}`).to.deep.equal([201, 422]);
        const loser = x.status === 422 ? x : y;
        expect(loser.body.message).to.match(/udp\/2000.*already uses/);
        // the store's own state: one daemon on the port
        expect((await ha.store.list(`/berth/daemons/${ns}/`)).items).to.have.length(1);
      }
    });
  });

  describe('C4: cluster emptiness', () => {
    it('a task created while its cluster is deleted on another apiserver: never both, never a task without its cluster', async () => {
      let deleted = 0;
      let tasks = 0;
      for (let i = 0; i < 5; i++) {
        const ns = `gone${i}`;
        await cluster(ns);
        const [t, d] = await Promise.all([
          b.call('POST', `${V}/namespaces/${ns}/tasks`, obj('Task', `t${i}`, { taskDefinition: 'idt:1' })),
          a.call('DELETE', `${V}/clusters/${ns}`),
        ]);
        expect(t.status === 201 && d.status === 200, `pair ${i}: task ${t.status} ${t.body.message ?? ''}, delete ${d.status} ${d.body.message ?? ''}`).to.equal(false);
        if (d.status === 200) {
          deleted++;
          expect(t.status).to.equal(404);
        } else {
          tasks++;
          expect(d.status).to.equal(409);
          expect(d.body.message).to.match(/tasks are running/);
        }
        const clusterLeft = await ha.store.get(`/berth/clusters/_/${ns}`);
        const tasksLeft = (await ha.store.list(`/berth/tasks/${ns}/`)).items;
        if (!clusterLeft) expect(tasksLeft, `tasks of the deleted cluster ${ns}`).to.deep.equal([]);
      }
      expect(deleted + tasks).to.equal(5);
    });

    it('a service or a container instance created while the cluster is deleted: the same', async () => {
      for (const [i, [plural, body]] of ([
        ['services', obj('Service', 's', { taskDefinition: 'idt:1', desiredCount: 1 })],
        ['containerinstances', obj('ContainerInstance', 'ci', { registeredResources: resources(1024, 1024) })],
      ] as const).entries()) {
        const ns = `gonekind${i}`;
        await cluster(ns);
        const [c, d] = await Promise.all([b.call('POST', `${V}/namespaces/${ns}/${plural}`, body), a.call('DELETE', `${V}/clusters/${ns}`)]);
        expect(c.status === 201 && d.status === 200, `${plural}: create ${c.status}, delete ${d.status}`).to.equal(false);
        if (!(await ha.store.get(`/berth/clusters/_/${ns}`))) expect((await ha.store.list(`/berth/${plural}/${ns}/`)).items).to.deep.equal([]);
      }
    });
  });

  describe('C4: RunTask clientToken', () => {
    before(async () => {
      await cluster('tok');
      created(await a.call('POST', `${V}/namespaces/tok/containerinstances`, obj('ContainerInstance', 'tok-i1', { registeredResources: resources(4096, 4096) })));
      await sees(b, `${V}/namespaces/tok/containerinstances/tok-i1`);
    });

    it('the same RunTask retried on another apiserver at once starts its tasks once, and both answers name them', async () => {
      const input = { cluster: 'tok', taskDefinition: 'idt:1', count: 2, clientToken: 'retry-after-timeout-1' };
      const [x, y] = await Promise.all([a.ecs().send(new RunTaskCommand(input)), b.ecs().send(new RunTaskCommand(input))]);
      const arns = (r: typeof x) => (r.tasks ?? []).map((t) => t.taskArn).sort();
      expect(arns(x)).to.have.length(2);
      expect(arns(y)).to.deep.equal(arns(x));
      const stored = (await ha.store.list('/berth/tasks/tok/')).items.map((kv) => JSON.parse(kv.value)).filter((t) => t.spec.clientToken === input.clientToken);
      expect(stored).to.have.length(2);
      // later: the same answer again; other parameters with the token are ECS's ConflictException
      expect(arns(await b.ecs().send(new RunTaskCommand(input)))).to.deep.equal(arns(x));
      const e = await a.ecs().send(new RunTaskCommand({ ...input, count: 3 })).then(() => undefined, (err: Error) => err);
      expect(e?.name).to.equal('ConflictException');
    });
  });

  describe('C5: task definition revisions', () => {
    it('concurrent registrations of one family on two apiservers all succeed, each with its own revision', async () => {
      const regs = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'race', containers(`busybox:${i}`)))),
      );
      expect(regs.map((r) => r.status), JSON.stringify(regs.filter((r) => r.status !== 201).map((r) => r.body.message))).to.deep.equal(Array(10).fill(201));
      expect(regs.map((r) => r.body.status.revision).sort((p, q) => p - q)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect((await ha.store.list('/berth/taskdefinitions/_/race:')).items).to.have.length(10);
    });

    it('identical content: applying it is a no-op on both apiservers; ECS RegisterTaskDefinition registers a new revision every time', async () => {
      const same = await Promise.all([a, b].map((s) => s.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'same', containers()))));
      expect(same.map((r) => r.status).sort()).to.deep.equal([200, 201]);
      expect(same.map((r) => r.body.metadata.name)).to.deep.equal(['same:1', 'same:1']);
      const regs = await Promise.all([a, b, a].map((s) => s.ecs().send(new RegisterTaskDefinitionCommand({ family: 'same', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64 }] }))));
      expect(regs.map((r) => r.taskDefinition?.revision).sort()).to.deep.equal([2, 3, 4]);
    });

    it('a family resolves to the revision just registered on another apiserver (a service updated right after)', async () => {
      await cluster('resolve');
      created(await a.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'fam', containers('busybox:1'))));
      const svc = created(await a.call('POST', `${V}/namespaces/resolve/services`, obj('Service', 'web', { taskDefinition: 'fam', desiredCount: 0 })));
      expect(svc.status.taskDefinition).to.equal('fam:1');
      created(await a.call('POST', `${V}/namespaces/resolve/containerinstances`, obj('ContainerInstance', 'r1', { registeredResources: resources(4096, 4096) })));
      await sees(b, `${V}/namespaces/resolve/services/web`);
      await sees(b, `${V}/namespaces/resolve/containerinstances/r1`);
      for (let rev = 2; rev <= 4; rev++) {
        expect(created(await a.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'fam', containers(`busybox:${rev}`)))).status.revision).to.equal(rev);
        const up = await b.call('PATCH', `${V}/namespaces/resolve/services/web`, { spec: { taskDefinition: rev % 2 ? 'fam' : 'arn:aws:ecs:us-east-1:000000000000:task-definition/fam' } }, 'application/merge-patch+json');
        expect(up.status, JSON.stringify(up.body)).to.equal(200);
        expect(up.body.status.taskDefinition).to.equal(`fam:${rev}`);
        // and a task started by family on the lagging apiserver runs the new revision too
        const t = created(await b.call('POST', `${V}/namespaces/resolve/tasks`, obj('Task', `byfamily${rev}`, { taskDefinition: 'fam' })));
        expect([t.spec.taskDefinition, t.status.taskDefinition]).to.deep.equal(['fam', `fam:${rev}`]);
      }
      // ECS RunTask by family, right after a registration through the other apiserver (raw
      // requests: the SDK's own overhead would give the lagging cache time to catch up)
      const ecsCall = async (s: HaServer, action: string, input: unknown): Promise<any> => {
        const res = await fetch(s.url + '/', { method: 'POST', headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': `AmazonEC2ContainerServiceV20141113.${action}` }, body: JSON.stringify(input) });
        const body = await res.json();
        expect(res.status, JSON.stringify(body)).to.equal(200);
        return body;
      };
      for (let image = 5; image <= 7; image++) {
        const reg = await ecsCall(a, 'RegisterTaskDefinition', { family: 'fam', containerDefinitions: [{ name: 'app', image: `busybox:${image}`, memory: 64 }] });
        const run = await ecsCall(b, 'RunTask', { cluster: 'resolve', taskDefinition: 'fam' });
        expect(run.tasks?.[0]?.taskDefinitionArn).to.equal(reg.taskDefinition.taskDefinitionArn);
      }
    });
  });

  describe('C14, D12: the binder checks the instance at commit', () => {
    let n = 0;
    /** an instance (1024 CPU, 1024 MiB) and a pending task, both seen by both apiservers */
    async function instanceAndTask(td = 'idt:1'): Promise<{ ci: string; task: string }> {
      n++;
      const ci = `g${n}`;
      created(await a.call('POST', `${V}/namespaces/gate/containerinstances`, obj('ContainerInstance', ci, { registeredResources: resources(1024, 1024) })));
      created(await a.call('POST', `${V}/namespaces/gate/tasks`, obj('Task', `t${n}`, { taskDefinition: td })));
      await sees(b, `${V}/namespaces/gate/containerinstances/${ci}`);
      await sees(b, `${V}/namespaces/gate/tasks/t${n}`);
      return { ci, task: `t${n}` };
    }
    const bind = (s: HaServer, task: string, ci: string) => s.call('POST', `${V}/namespaces/gate/bindings`, { bindings: [{ task, containerInstance: ci }] });
    before(async () => {
      await cluster('gate');
      created(await a.call('POST', `${V}/taskdefinitions`, obj('TaskDefinition', 'mem512', containers('busybox', 512))));
      created(await a.call('POST', `${V}/daemontaskdefinitions`, obj('DaemonTaskDefinition', 'gated', { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 32 }] })));
      await sees(b, `${V}/daemontaskdefinitions/gated:1`);
    });

    it('D12: an instance drained a moment ago on the other apiserver refuses the binding (DRAINING)', async () => {
      const { ci, task } = await instanceAndTask();
      expect((await a.call('PATCH', `${V}/namespaces/gate/containerinstances/${ci}`, { spec: { status: 'DRAINING' } }, 'application/merge-patch+json')).status).to.equal(200);
      const r = await bind(b, task, ci);
      expect(r.status).to.equal(200);
      expect(r.body.results[0]).to.include({ bound: false, reason: 'DRAINING' });
      expect(JSON.parse((await ha.store.get(`/berth/tasks/gate/${task}`))!.value).spec.containerInstance).to.equal(undefined);
    });

    it('D12: an instance whose agent was just marked disconnected refuses the binding (AGENT)', async () => {
      const { ci, task } = await instanceAndTask();
      const st = await a.call('PATCH', `${V}/namespaces/gate/containerinstances/${ci}/status`, { status: { agentConnected: false } }, 'application/merge-patch+json');
      expect(st.status).to.equal(200);
      const r = await bind(b, task, ci);
      expect(r.body.results[0]).to.include({ bound: false, reason: 'AGENT' });
    });

    it('D12: a daemon task (bound directly by the daemon controller) is refused on a DRAINING instance too, as ECS places nothing new there', async () => {
      n++;
      const ci = `g${n}`;
      created(await a.call('POST', `${V}/namespaces/gate/containerinstances`, obj('ContainerInstance', ci, { registeredResources: resources(1024, 1024) })));
      created(await a.call('POST', `${V}/namespaces/gate/tasks`, obj('Task', `d${n}`, { taskDefinition: 'gated:1', daemonTaskDefinition: 'gated:1', group: 'daemon:x' })));
      await sees(b, `${V}/namespaces/gate/tasks/d${n}`);
      expect((await a.call('PATCH', `${V}/namespaces/gate/containerinstances/${ci}`, { spec: { status: 'DRAINING' } }, 'application/merge-patch+json')).status).to.equal(200);
      expect((await bind(b, `d${n}`, ci)).body.results[0]).to.include({ bound: false, reason: 'DRAINING' });
    });

    it('C14: an instance re-registered smaller a moment ago refuses a task that no longer fits', async () => {
      const { ci, task } = await instanceAndTask('mem512:1');
      const up = await a.call('PATCH', `${V}/namespaces/gate/containerinstances/${ci}`, { spec: { registeredResources: resources(1024, 256) } }, 'application/merge-patch+json');
      expect(up.status, JSON.stringify(up.body)).to.equal(200);
      const r = await bind(b, task, ci);
      expect(r.body.results[0]).to.include({ bound: false, reason: 'RESOURCE:MEMORY' });
    });

    it('a task named twice in one binding call is bound once; the second binding says why (etcd refuses a key written twice in a txn)', async () => {
      const { ci, task } = await instanceAndTask();
      const r = await b.call('POST', `${V}/namespaces/gate/bindings`, { bindings: [{ task, containerInstance: ci }, { task, containerInstance: ci }] });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body.results.map((x: { bound: boolean; reason?: string }) => [x.bound, x.reason])).to.deep.equal([[true, undefined], [false, 'INVALID']]);
      expect(Object.keys(JSON.parse((await ha.store.get(`/berth/allocations/gate/${ci}`))!.value).tasks)).to.deep.equal([task]);
    });

    it('C13: a task nominated for an instance is bound there or nowhere', async () => {
      const { ci } = await instanceAndTask();
      n++;
      created(await a.call('POST', `${V}/namespaces/gate/tasks`, obj('Task', `nom${n}`, { taskDefinition: 'idt:1' }, { annotations: { 'berth.dev/nominated-instance': 'elsewhere' } })));
      await sees(b, `${V}/namespaces/gate/tasks/nom${n}`);
      expect((await bind(b, `nom${n}`, ci)).body.results[0]).to.include({ bound: false, reason: 'INVALID' });
    });

    it('C14: a heartbeat leaves the allocation record alone (it changes nothing a binding depends on), and the binding then commits', async () => {
      const { ci, task } = await instanceAndTask();
      const before = await ha.store.get(`/berth/allocations/gate/${ci}`);
      for (let i = 0; i < 3; i++) {
        expect((await a.call('PATCH', `${V}/namespaces/gate/containerinstances/${ci}/status`, { status: { agentConnected: true, lastHeartbeat: new Date(Date.now() + i).toISOString() } }, 'application/merge-patch+json')).status).to.equal(200);
      }
      expect((await ha.store.get(`/berth/allocations/gate/${ci}`))!.modRevision).to.equal(before!.modRevision);
      const r = await bind(b, task, ci);
      expect(r.body.results[0]).to.include({ bound: true });
      const alloc = JSON.parse((await ha.store.get(`/berth/allocations/gate/${ci}`))!.value);
      expect(alloc.tasks).to.have.property(task);
      expect(alloc.instance).to.include({ status: 'ACTIVE', agentConnected: true });
    });
  });
});
