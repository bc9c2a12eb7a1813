import { StopTaskCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { expect } from 'chai';
import type { ContainerInstance, Task } from '../../pkg/api/kinds.ts';
import { eventually } from '../support/fleet.ts';
import { berth, ecsClient, hostIpOf, liveTasks, registerTaskDefinition, startTaskOn, waitTask } from '../support/hostsapi.ts';
import { startTopology, type Topology } from '../support/topology.ts';

/**
 * Cross-host behaviour on the namespace topology: three hosts, each its own dockerd and
 * agent, two apiservers behind HAProxy, two controller-managers, TLS etcd. Nothing here runs
 * in the test's process except the clients.
 */
describe('many hosts: cross-host behaviour on the namespace topology (3 hosts, 2 apiservers behind HAProxy, 2 controller-managers, TLS etcd)', function () {
  this.timeout(300_000);
  let t: Topology;
  let ecs: ECSClient;

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({ hosts: 3 });
    ecs = ecsClient(t);
    await registerTaskDefinition(t, 'hello', {
      containerDefinitions: [{
        name: 'web', image: 'busybox', memory: 32, essential: true,
        portMappings: [{ containerPort: 8080, hostPort: 0, protocol: 'tcp' }],
        command: ['sh', '-c', 'echo "hello-across-hosts from $(hostname)" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp'],
      }],
    });
    await registerTaskDefinition(t, 'hello-vpc', {
      networkMode: 'awsvpc',
      containerDefinitions: [{
        name: 'web', image: 'busybox', memory: 32, essential: true,
        portMappings: [{ containerPort: 8080, protocol: 'tcp' }],
        command: ['sh', '-c', 'echo "hello-awsvpc" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp'],
      }],
    });
    await registerTaskDefinition(t, 'probe', {
      containerDefinitions: [{
        name: 'probe', image: 'busybox', memory: 16, essential: true,
        // busybox-static's wget segfaults here; an HTTP/1.0 request through nc does the same
        command: ['sh', '-c', 'for i in 1 2 3 4 5; do if printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 "${TARGET%:*}" "${TARGET##*:}" > /tmp/out && grep -q "200 OK" /tmp/out; then cat /tmp/out; echo PROBE-OK; exit 0; fi; sleep 2; done; echo PROBE-FAILED; exit 1'],
      }],
    });
  });
  after(async function () {
    this.timeout(120_000);
    ecs?.destroy();
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(1200));
  });

  const instance = async (id: string) => t.client.get<ContainerInstance>('ContainerInstance', 'default', id);

  it('every agent advertises the address other hosts reach it at, not loopback (instance attribute and logs endpoint)', async () => {
    for (const h of t.hosts) {
      const ci = await instance(h.instanceId);
      expect(hostIpOf(ci), h.name).to.equal(h.ip);
      expect(ci.status?.agentConnected, h.name).to.equal(true);
    }
    // the logs endpoint is inside the apiserver's view only; its reachability is proven by `berth logs` below
  });

  it('bridge mode: a task on h1 reaches a task on h2 through its host port at h2\'s advertised address; `berth logs` reads the h1 task from the control plane', async () => {
    const [h1, h2] = t.hosts;
    const server = await startTaskOn(t, ecs, h2, 'hello');
    const running = await waitTask(ecs, server, 'RUNNING');
    const binding = running.containers![0].networkBindings![0];
    expect(binding.containerPort).to.equal(8080);
    expect(binding.hostPort).to.be.greaterThan(0);
    const addr = hostIpOf(await instance(h2.instanceId))!;
    const probe = await startTaskOn(t, ecs, h1, 'probe', { TARGET: `${addr}:${binding.hostPort}` }, 'probe');
    const done = await waitTask(ecs, probe, 'STOPPED');
    expect(done.containers![0].exitCode, JSON.stringify(done.containers)).to.equal(0);
    // the probe's output, through the apiserver, from h1's agent over the topology network
    const logs = await eventually(async () => {
      const r = await berth(t, 'logs', probe);
      return r.code === 0 && r.out.includes('PROBE-OK') ? r : undefined;
    }, 30_000, 'berth logs of the probe');
    expect(logs.out).to.contain('hello-across-hosts');
    const srvLogs = await berth(t, 'logs', server);
    expect(srvLogs.code, srvLogs.err).to.equal(0);
    await ecs.send(new StopTaskCommand({ cluster: 'default', task: server }));
    await waitTask(ecs, server, 'STOPPED');
  });

  it('awsvpc: a task on h1 reaches a task on h3 at the task\'s own address (its ENI attachment)', async () => {
    const [h1, , h3] = t.hosts;
    const server = await startTaskOn(t, ecs, h3, 'hello-vpc');
    const running = await waitTask(ecs, server, 'RUNNING');
    const ipAddr = running.attachments?.[0]?.details?.find((d) => d.name === 'privateIPv4Address')?.value;
    expect(ipAddr, JSON.stringify(running.attachments)).to.be.a('string');
    // the address is on h3's Docker bridge, not on h1's
    expect(ipAddr!.startsWith(h3.bridgeCidr.split('.').slice(0, 3).join('.'))).to.equal(true);
    const probe = await startTaskOn(t, ecs, h1, 'probe', { TARGET: `${ipAddr}:8080` }, 'probe');
    const done = await waitTask(ecs, probe, 'STOPPED');
    expect(done.containers![0].exitCode, JSON.stringify(done.containers)).to.equal(0);
    const logs = await berth(t, 'logs', probe);
    expect(logs.out).to.contain('hello-awsvpc');
    await ecs.send(new StopTaskCommand({ cluster: 'default', task: server }));
    await waitTask(ecs, server, 'STOPPED');
  });

  it('a daemon runs one copy on every host', async () => {
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'agentd' }, spec: { containerDefinitions: [{ name: 'agentd', image: 'busybox', memoryReservation: 8, command: ['sleep', '3600'] }] } });
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'agentd', namespace: 'default' }, spec: { daemonTaskDefinition: 'agentd' } });
    const byHost = await eventually(async () => {
      const running = (await t.client.list<Task>('Task', 'default')).items.filter((x) => x.spec.daemonTaskDefinition && x.status?.lastStatus === 'RUNNING');
      const m = new Map<string, number>();
      for (const x of running) m.set(x.spec.containerInstance!, (m.get(x.spec.containerInstance!) ?? 0) + 1);
      return t.hosts.every((h) => m.get(h.instanceId) === 1) ? m : undefined;
    }, 120_000, 'one daemon task RUNNING per host');
    expect([...byHost.values()]).to.deep.equal([1, 1, 1]);
    // and Docker on each host runs exactly one of its containers
    for (const h of t.hosts) {
      const cs = await h.docker.listContainers({ filters: { label: ['com.amazonaws.ecs.task-definition-family=agentd'] } });
      expect(cs.length, h.name).to.equal(1);
    }
    await t.client.delete('Daemon', 'default', 'agentd');
    await eventually(async () => (await liveTasks(t)).every((x) => !x.spec.daemonTaskDefinition), 120_000, 'daemon tasks stopped');
  });

  it('a drained host\'s service tasks move to the other hosts', async () => {
    await t.client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'spread', namespace: 'default' }, spec: { taskDefinition: 'hello', desiredCount: 3, placementStrategy: [{ type: 'spread', field: 'instanceId' }] } });
    const onHost = (tasks: Task[], id: string) => tasks.filter((x) => x.spec.containerInstance === id && x.spec.group === 'service:spread');
    await eventually(async () => {
      const live = (await liveTasks(t)).filter((x) => x.status?.lastStatus === 'RUNNING');
      return t.hosts.every((h) => onHost(live, h.instanceId).length === 1);
    }, 180_000, 'one service task RUNNING on each host');
    const h3 = t.hosts[2];
    const r = await berth(t, 'drain', h3.instanceId);
    expect(r.code, r.err).to.equal(0);
    await eventually(async () => {
      const live = await liveTasks(t);
      const running = live.filter((x) => x.status?.lastStatus === 'RUNNING' && x.spec.group === 'service:spread');
      return onHost(live, h3.instanceId).length === 0 && running.length === 3 ? running : undefined;
    }, 180_000, 'the service back at 3 RUNNING tasks, none on the drained host');
    // and Docker on the drained host stops their containers (after the stop timeout)
    await eventually(async () => (await h3.docker.listContainers({ filters: { label: ['com.amazonaws.ecs.task-definition-family=hello'] } })).length === 0, 60_000, 'no service container running on the drained host');
    await berth(t, 'drain', '--undo', h3.instanceId);
    await t.client.patch('Service', 'default', 'spread', { spec: { desiredCount: 0 } });
  });
});
