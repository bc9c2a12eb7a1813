import { expect } from 'chai';
import { Kinds, type ContainerInstance, type Daemon, type Service, type Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Fleet, type Running } from '../support/fleet.ts';
import { kubectl } from '../support/kubectl.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';

const td = (name: string, memory = 128, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'TaskDefinition',
  metadata: { name },
  spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory, command: ['sleep', '3600'], ...extra }] },
});
const svc = (name: string, taskDefinition: string, desiredCount: number, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'Service',
  metadata: { name, namespace: 'default' },
  spec: { taskDefinition, desiredCount, ...extra },
});

for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`controllers with real agents on a hollow fleet (${store} store)`, function () {
    this.timeout(120_000);
    let api: TestApiServer;
    let client: Client;
    let fleet: Fleet;
    let cp: Running;

    const tasksOf = async (service: string) => (await client.list<Task>('Task', 'default', { fieldSelector: `spec.group=service:${service}` })).items;
    const live = (ts: Task[]) => ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');
    const running = (ts: Task[]) => ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING');

    before(async () => {
      api = await startApiServer({ store });
      cp = await startControlPlane(api, 3, { fleet: { memoryMiB: 1024, cpus: 2 }, manager: { health: { heartbeatTimeoutMs: 3000, lostGraceMs: 2000 } } });
      ({ client, fleet } = cp);
    });
    after(async () => {
      await cp?.stop();
      await api?.stop();
    });

    it('holds a service at its desired count, spread across instances, and reports a steady state', async () => {
      await client.create(td('web'));
      await client.create(svc('web', 'web', 6));
      const ts = await eventually(async () => {
        const r = running(await tasksOf('web'));
        return r.length === 6 && r;
      }, 30_000, '6 running tasks');
      const per = new Map<string, number>();
      for (const t of ts) per.set(t.spec.containerInstance!, (per.get(t.spec.containerInstance!) ?? 0) + 1);
      expect([...per.values()].sort()).to.deep.equal([2, 2, 2]);
      // the containers really exist on the hollow runtimes, one per task
      const containers = fleet.agents.reduce((s, a) => s + (a.runtime as unknown as { containers: Map<string, unknown> }).containers.size, 0);
      expect(containers).to.equal(6);
      const s = await eventually(async () => {
        const s = await client.get<Service>('Service', 'default', 'web');
        return s.status?.runningCount === 6 && s.status.events?.some((e) => e.message === '(service web) has reached a steady state.') && s;
      }, 20_000, 'steady state');
      expect(s.status!.deployments).to.have.length(1);
      expect(s.status!.deployments![0].rolloutState).to.equal('COMPLETED');
      // conditions a Kubernetes user can wait on, with the real kubectl
      const steady = s.status!.conditions?.find((c) => c.type === 'Steady');
      expect(steady).to.include({ status: 'True', reason: 'SteadyState', observedGeneration: 1 });
      const w = await kubectl(api.kubeconfigPath, ['wait', '--for=condition=Steady', 'services.berth.dev/web', '-n', 'default', '--timeout=30s']);
      expect(w.code, w.stderr).to.equal(0);
      expect(w.stdout).to.match(/condition met/);
    });

    it('rolls a service to a new revision within maximumPercent, ending with only new tasks', async () => {
      await client.request('PUT', client.path('TaskDefinition', undefined, 'web'), td('web', 129)).catch(async () => client.create(td('web', 129)));
      const rev2 = (await client.list('TaskDefinition', undefined, { fieldSelector: 'status.family=web' })).items.map((t) => t.metadata.name).sort().pop()!;
      expect(rev2).to.equal('web:2');
      let peak = 0;
      const stopWatch = setInterval(async () => {
        try {
          peak = Math.max(peak, live(await tasksOf('web')).length);
        } catch {
          /* ignore */
        }
      }, 50);
      await client.patch('Service', 'default', 'web', { spec: { taskDefinition: 'web:2' } });
      await eventually(async () => {
        const r = running(await tasksOf('web'));
        return r.length === 6 && r.every((t) => t.spec.taskDefinition === 'web:2') && live(await tasksOf('web')).length === 6;
      }, 60_000, 'rollout to web:2');
      clearInterval(stopWatch);
      expect(peak).to.be.at.most(12);
      const s = await eventually(async () => {
        const s = await client.get<Service>('Service', 'default', 'web');
        return s.status?.deployments?.length === 1 && s;
      }, 20_000, 'old deployment gone');
      expect(s.status!.deployments![0].taskDefinition).to.equal('web:2');
    });

    it('scales down, stopping tasks through the agents', async () => {
      await client.patch('Service', 'default', 'web', { spec: { desiredCount: 2 } });
      await eventually(async () => {
        const ts = await tasksOf('web');
        return live(ts).length === 2 && ts.filter((t) => t.spec.desiredStatus === 'STOPPED').every((t) => t.status?.lastStatus === 'STOPPED');
      }, 30_000, 'scaled to 2');
      const stopped = (await tasksOf('web')).filter((t) => t.spec.desiredStatus === 'STOPPED');
      expect(stopped.length).to.be.greaterThan(0);
      expect(stopped[0].spec.stopCode).to.equal('ServiceSchedulerInitiated');
    });

    it('says in a service event why a task cannot be placed', async () => {
      await client.create(td('huge', 4000));
      await client.create(svc('huge', 'huge', 1));
      const s = await eventually(async () => {
        const s = await client.get<Service>('Service', 'default', 'huge');
        return s.status?.events?.find((e) => e.message.includes('unable to place a task')) && s;
      }, 20_000, 'placement failure event').catch(async (e) => {
        console.log(JSON.stringify(await client.get('Service', 'default', 'huge'), null, 1), JSON.stringify((await tasksOf('huge')).map((t) => [t.spec, t.status?.lastStatus])));
        throw e;
      });
      const msg = s.status!.events!.find((e) => e.message.includes('unable to place'))!.message;
      // D16: ECS names the closest instance (not the word "ID")
      const ids = fleet.agents.map((a) => a.agent.instanceId);
      const closest = /The closest matching container-instance (\S+) has insufficient memory available\./.exec(msg)?.[1];
      expect(msg).to.match(/^\(service huge\) was unable to place a task because no container instance met all of its requirements\. The closest matching container-instance \S+ has insufficient memory available\./);
      expect(ids).to.include(closest);
      expect(msg).to.include('RESOURCE:MEMORY on 3 instances');
      await client.delete('Service', 'default', 'huge');
    });

    it('moves tasks off a DRAINING instance', async () => {
      const before = live(await tasksOf('web'));
      const victim = before[0].spec.containerInstance!;
      await client.patch('ContainerInstance', 'default', victim, { spec: { status: 'DRAINING' } });
      await eventually(async () => {
        const r = running(await tasksOf('web'));
        return r.length === 2 && r.every((t) => t.spec.containerInstance !== victim) && live(await tasksOf('web')).length === 2;
      }, 30_000, 'tasks moved off the draining instance');
      await client.patch('ContainerInstance', 'default', victim, { spec: { status: 'ACTIVE' } });
    });

    it('runs one daemon task on every instance, including one that joins later', async () => {
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'agentd' }, spec: { containerDefinitions: [{ name: 'd', image: 'busybox', memory: 32, command: ['sleep', '3600'] }] } });
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'agentd', namespace: 'default' }, spec: { daemonTaskDefinition: 'agentd' } });
      const daemonTasks = async () => (await client.list<Task>('Task', 'default', { fieldSelector: 'spec.group=daemon:agentd' })).items;
      await eventually(async () => {
        const r = running(await daemonTasks());
        return r.length === 3 && new Set(r.map((t) => t.spec.containerInstance)).size === 3;
      }, 30_000, 'a daemon task per instance');
      // a service that wants one task per instance and one more than there are instances:
      // its last task waits for a new instance, which must take the daemon first
      await client.create(td('spread1', 16));
      await client.create(svc('spread1', 'spread1', 4, { placementConstraints: [{ type: 'distinctInstance' }] }));
      await eventually(async () => running(await tasksOf('spread1')).length === 3, 30_000, '3 of 4 placed');
      const bindOrder: Array<{ instance: string; group: string }> = [];
      const seen = new Set<string>();
      const ac = new AbortController();
      const from = (await client.list('Task', 'default', { limit: 1 })).resourceVersion;
      void (async () => {
        try {
          for await (const ev of client.watch<Task>('Task', 'default', { resourceVersion: from, signal: ac.signal })) {
            const t = ev.object;
            if (ev.type === 'BOOKMARK' || !t.spec?.containerInstance || seen.has(t.metadata.name)) continue;
            seen.add(t.metadata.name);
            bindOrder.push({ instance: t.spec.containerInstance, group: t.spec.group ?? '' });
          }
        } catch {
          /* aborted */
        }
      })();
      const [added] = await fleet.add(1);
      await eventually(async () => running(await daemonTasks()).some((t) => t.spec.containerInstance === added.agent.instanceId), 30_000, 'daemon on the new instance');
      await eventually(async () => running(await tasksOf('spread1')).length === 4, 30_000, 'the 4th spread1 task on the new instance');
      ac.abort();
      const onNew = bindOrder.filter((b) => b.instance === added.agent.instanceId).map((b) => b.group);
      expect(onNew.slice(0, 2)).to.deep.equal(['daemon:agentd', 'service:spread1']);
      await client.delete('Service', 'default', 'spread1');
      const d = await eventually(async () => {
        const d = await client.get<Daemon>('Daemon', 'default', 'agentd');
        return d.status?.runningCount === 4 && d;
      }, 20_000, 'daemon status');
      expect(d.status!.desiredCount).to.equal(4);
    });

    it('runs a DAEMON-strategy service as one task of its task definition per instance', async () => {
      await client.create(td('node-exporter', 16));
      await client.create(svc('node-exporter', 'node-exporter', 0, { schedulingStrategy: 'DAEMON' }));
      const ts = await eventually(async () => {
        const r = running(await tasksOf('node-exporter'));
        return r.length === fleet.agents.length && new Set(r.map((t) => t.spec.containerInstance)).size === fleet.agents.length && r;
      }, 30_000, 'one per instance');
      expect(ts.every((t) => t.spec.taskDefinition === 'node-exporter:1')).to.equal(true);
      const s = await eventually(async () => {
        const s = await client.get<Service>('Service', 'default', 'node-exporter');
        return s.status?.runningCount === fleet.agents.length && s.status.deployments?.[0]?.rolloutState === 'COMPLETED' && s;
      }, 20_000, 'daemon service status');
      expect(s.status!.desiredCount).to.equal(fleet.agents.length);
      await client.delete('Service', 'default', 'node-exporter');
      await eventually(async () => (await client.tryGet('Service', 'default', 'node-exporter')) === undefined, 30_000, 'daemon service deleted');
      expect(live(await tasksOf('node-exporter'))).to.deep.equal([]);
    });

    it('reserves the daemons\' room on a joining instance before a pending application task can take it', async () => {
      await client.create(td('collector', 16));
      await client.create(svc('collector', 'collector', 0, { schedulingStrategy: 'DAEMON' }));
      const n = fleet.agents.length;
      await eventually(async () => running(await tasksOf('collector')).length === n, 30_000, 'collector on every instance');
      // 1,000 MiB fits an empty instance (1,024 MiB) but none that runs the daemons (32 + 16 MiB)
      await client.create(td('hog', 1000));
      await client.create(svc('hog', 'hog', 1));
      await eventually(async () => (await client.get<Service>('Service', 'default', 'hog')).status?.events?.some((e) => /unable to place a task/.test(e.message)), 20_000, 'hog unplaceable');
      const [added] = await fleet.add(1);
      const id = added.agent.instanceId;
      const onNew = async () => (await client.list<Task>('Task', 'default', { fieldSelector: `spec.containerInstance=${id}` })).items.filter((t) => t.spec.desiredStatus === 'RUNNING');
      await eventually(async () => (await onNew()).filter((t) => t.status?.lastStatus === 'RUNNING').length === 2, 30_000, 'both daemons on the new instance');
      await new Promise((r) => setTimeout(r, 1000)); // the placement controller had every chance to bind hog there
      expect((await onNew()).map((t) => t.spec.group).sort()).to.deep.equal(['daemon:agentd', 'service:collector']);
      expect(live(await tasksOf('hog')).every((t) => !t.spec.containerInstance)).to.equal(true);
      await client.delete('Service', 'default', 'hog').catch(() => undefined);
      await client.patch('Service', 'default', 'hog', { spec: { desiredCount: 0 } }).catch(() => undefined);
      await client.delete('Service', 'default', 'collector');
      await eventually(async () => (await client.tryGet('Service', 'default', 'hog')) === undefined && (await client.tryGet('Service', 'default', 'collector')) === undefined, 30_000, 'cleaned up');
    });

    it('marks a silent agent disconnected and replaces its service tasks elsewhere', async () => {
      const ts = live(await tasksOf('web'));
      const victimId = ts[0].spec.containerInstance!;
      const victim = fleet.agents.find((a) => a.agent.instanceId === victimId)!;
      await victim.agent.stop(); // heartbeats stop; containers (hollow) stay
      await eventually(async () => (await client.get('ContainerInstance', 'default', victimId)).status?.agentConnected === false, 20_000, 'disconnected');
      // R2-4: the disconnect is recorded with its time (what tells a loss happening now from one long over, across restarts)
      const cond = (await client.get<ContainerInstance>('ContainerInstance', 'default', victimId)).status?.conditions?.find((c) => c.type === 'AgentConnected');
      expect(cond).to.include({ status: 'False', reason: 'HeartbeatTimeout' });
      expect(Date.now() - Date.parse(cond!.lastTransitionTime!)).to.be.within(0, 60_000);
      await eventually(async () => {
        const r = running(await tasksOf('web'));
        return r.length === 2 && r.every((t) => t.spec.containerInstance !== victimId);
      }, 30_000, 'replaced elsewhere');
      const lost = (await tasksOf('web')).filter((t) => t.spec.containerInstance === victimId && /no longer reachable/.test(t.spec.stopReason ?? ''));
      expect(lost.length).to.be.greaterThan(0);
      // the agent comes back (same data dir, same containers): it resumes its instance and
      // stops the containers of the tasks that were replaced meanwhile
      const lostArns = new Set(lost.map((t) => t.status?.taskArn ?? t.metadata.name));
      const lostContainers = async () => (await victim.runtime.list({})).filter((c) => lostArns.has(c.labels[LABELS.taskArn]) || lost.some((t) => c.labels[LABELS.taskArn]?.endsWith(`/${t.metadata.name}`)));
      expect((await lostContainers()).some((c) => c.status === 'RUNNING')).to.equal(true);
      await fleet.restart(victim);
      expect(victim.agent.instanceId).to.equal(victimId);
      await eventually(async () => (await client.get('ContainerInstance', 'default', victimId)).status?.agentConnected === true, 20_000, 'reconnected');
      await eventually(async () => (await client.get<ContainerInstance>('ContainerInstance', 'default', victimId)).status?.conditions?.find((c) => c.type === 'AgentConnected')?.status === 'True', 20_000, 'AgentConnected=True again');
      await eventually(async () => (await lostContainers()).every((c) => c.status !== 'RUNNING'), 20_000, 'lost tasks\' containers stopped');
      await eventually(async () => (await tasksOf('web')).filter((t) => lost.some((l) => l.metadata.name === t.metadata.name)).every((t) => t.status?.lastStatus === 'STOPPED'), 20_000, 'lost tasks recorded STOPPED');
      expect(running(await tasksOf('web'))).to.have.length(2);
    });

    it('deletes a service: its tasks stop, then the service is gone (its INACTIVE record stays); the name can be used again', async () => {
      const uid = (await client.get<Service>('Service', 'default', 'web')).metadata.uid;
      await client.delete('Service', 'default', 'web');
      await eventually(async () => (await client.tryGet('Service', 'default', 'web')) === undefined, 30_000, 'service gone');
      const left = (await tasksOf('web')).filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');
      expect(left).to.deep.equal([]);
      const record = (await api.api.registry.inactive(Kinds.Service, 'default', 'web')) as Service | undefined;
      expect(record?.metadata.uid).to.equal(uid);
      expect(record?.status?.status).to.equal('INACTIVE');
      expect(record?.status?.conditions?.find((c) => c.type === 'Steady')).to.include({ status: 'False', reason: 'Inactive' });
      // a new service under the same name owns none of the old (stopped) tasks
      const old = new Set((await tasksOf('web')).map((t) => t.metadata.name));
      await client.create(svc('web', 'web', 1));
      const mine = await eventually(async () => {
        const r = running(await tasksOf('web')).filter((t) => !old.has(t.metadata.name));
        return r.length === 1 && r;
      }, 30_000, 'one new task');
      expect(mine[0].metadata.ownerReferences?.[0].uid).to.not.equal(uid);
      const again = await eventually(async () => {
        const s = await client.get<Service>('Service', 'default', 'web');
        return s.status?.runningCount === 1 && s.status.deployments?.length === 1 && s;
      }, 20_000, 'new service steady');
      expect(again.status!.deployments![0].failedTasks).to.equal(0);
      await client.delete('Service', 'default', 'web');
      await eventually(async () => (await client.tryGet('Service', 'default', 'web')) === undefined, 30_000, 'service gone again');
    });
  });
}
