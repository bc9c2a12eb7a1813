import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import type { Endpoints, Service, Task } from '../../pkg/api/kinds.ts';
import { Agent } from '../../pkg/agent/agent.ts';
import { loadAgentConfig } from '../../pkg/agent/config.ts';
import { DockerRuntime } from '../../pkg/agent/runtime/docker.ts';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { Client } from '../../pkg/client/client.ts';
import { ControllerManager } from '../../pkg/controller/manager.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { ensureBusyboxImage, ensureDocker, execIn, type DockerHandle } from '../support/docker.ts';
import { eventually } from '../support/fleet.ts';

const td = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec });
const httpd = { name: 'app', image: 'busybox:latest', memory: 32, command: ['httpd', '-f', '-p', '80', '-h', '/etc'], portMappings: [{ containerPort: 80 }] };

/**
 * Service discovery end to end: a real dockerd, apiserver, controllers and agent. A task's
 * container asks the agent's DNS server (its resolver, given by the agent) with busybox
 * nslookup and nc, as an application would.
 */
describe('service discovery DNS on real Docker', function () {
  this.timeout(180_000);
  let h: DockerHandle;
  let api: TestApiServer;
  let admin: Client;
  let mgr: ControllerManager;
  let agent: Agent;
  let runtime: DockerRuntime;
  let dir: string;
  let upstream: dgram.Socket;
  let client: string; // the asking container's id

  before(async () => {
    h = await ensureDocker();
    await ensureBusyboxImage(h.docker);
    api = await startApiServer();
    admin = new Client({ server: api.url, token: api.adminToken });
    dir = await mkdtemp(join(tmpdir(), 'berth-dns-'));
    // the host's resolver, as the agent reads it from a resolv.conf: answers every A question with 192.0.2.1
    const up = `127.53.${process.pid % 250}.1`;
    upstream = dgram.createSocket('udp4');
    upstream.on('message', (m, r) => {
      const q = dnsPacket.decode(m);
      upstream.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: q.questions?.[0].type === 'A' ? [{ name: q.questions[0].name, type: 'A', ttl: 60, data: '192.0.2.1' }] : [] }), r.port, r.address);
    });
    await new Promise<void>((r) => upstream.bind(53, up, () => r()));
    await writeFile(join(dir, 'resolv.conf'), `nameserver ${up}\n`);
    const cfg = loadAgentConfig({
      env: {
        ECS_CLUSTER: 'default',
        ECS_DATADIR: join(dir, 'data'),
        BERTH_BOOTSTRAP_TOKEN: api.bootstrapToken,
        ECS_BACKEND_HOST: api.url,
        ECS_INTROSPECTION_PORT: '0',
        ECS_CONTAINER_STOP_TIMEOUT: '1s',
        ECS_IMAGE_PULL_BEHAVIOR: 'prefer-cached',
        DOCKER_HOST: h.dockerHost,
        ECS_SERVICE_DISCOVERY_DNS_RESOLV_CONF: join(dir, 'resolv.conf'),
        // dynamic host ports away from the ephemeral range other processes on a shared machine bind
        ECS_DYNAMIC_HOST_PORT_RANGE: `${21000 + (process.pid % 200) * 40}-${21039 + (process.pid % 200) * 40}`,
      },
    });
    runtime = new DockerRuntime({ config: cfg, reconnectDelayMs: 100 });
    agent = new Agent({ config: cfg, client: new Client({ server: api.url, token: api.bootstrapToken }), runtime, log: silentLogger(), fingerprint: `dns-${dir}`, heartbeatMs: 2000 });
    await agent.start();
    expect(agent.discovery?.address, 'the DNS server listens on the bridge gateway').to.match(/^\d+\.\d+\.\d+\.\d+$/);
    mgr = new ControllerManager({ client: admin, log: silentLogger(), controllers: ['service', 'placement', 'endpoints'], leaderElect: false, resyncMs: 5000, healthyAfterMs: 1000 });
    await mgr.start();
  });

  after(async () => {
    await mgr?.stop();
    await agent?.stop().catch(() => undefined);
    for (const c of await h.docker.listContainers({ all: true, filters: { label: [`${LABELS.cluster}=default`] } }).catch(() => [])) {
      const ours = c.Labels[LABELS.instance] === undefined || c.Labels[LABELS.instance] === agent?.instanceId;
      if (ours) await h.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    }
    await runtime?.close().catch(() => undefined);
    upstream?.close();
    admin?.close();
    await api?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const running = async (service: string) =>
    (await admin.list<Task>('Task', 'default', { fieldSelector: `spec.group=service:${service}` })).items.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING');
  const lookup = async (name: string, type = 'A') => execIn(h.docker, client, ['nslookup', `-type=${type}`, name]);
  /** "port target" of each SRV record nslookup prints */
  const srv = (out: string) => [...out.matchAll(/service = \d+ \d+ (\d+) (\S+?)\.?$/gm)].map((m) => `${m[1]} ${m[2]}`).sort();

  it('gives a task the agent as its resolver, which answers a service\'s healthy tasks: A, SRV with their dynamic ports, task names', async () => {
    // a service of two on dynamic host ports, with a container health check: served only once HEALTHY
    await admin.create(td('web', { containerDefinitions: [{ ...httpd, healthCheck: { command: ['CMD-SHELL', 'true'], interval: 5, timeout: 10, retries: 3 } }] }));
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { taskDefinition: 'web', desiredCount: 2 } });
    // the asking task
    await admin.create(td('client', { containerDefinitions: [{ name: 'c', image: 'busybox:latest', memory: 16, command: ['sleep', '3600'] }] }));
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'asker', namespace: 'default' }, spec: { taskDefinition: 'client' } });
    const asker = await eventually(async () => {
      const t = await admin.get<Task>('Task', 'default', 'asker');
      return t.status?.lastStatus === 'RUNNING' && t;
    }, 60_000, 'the asking task RUNNING');
    client = asker.status!.containers![0].dockerId!;
    const resolv = await execIn(h.docker, client, ['cat', '/etc/resolv.conf']);
    expect(resolv).to.contain(`nameserver ${agent.discovery!.address}`);

    const tasks = await eventually(async () => {
      const r = await running('web');
      return r.length === 2 && r.every((t) => t.status?.healthStatus === 'HEALTHY') && r;
    }, 90_000, 'two HEALTHY web tasks').catch(async (e) => {
      const all = (await admin.list<Task>('Task', 'default')).items.map((t) => [t.metadata.name, t.spec.desiredStatus, t.status?.lastStatus, t.status?.healthStatus, t.status?.stoppedReason, t.spec.containerInstance]);
      throw new Error(`${(e as Error).message}: ${JSON.stringify(all)}`);
    });
    const ports = tasks.map((t) => t.spec.hostPorts![0].hostPort);
    const address = (await admin.get<{ status: { registeredAddress: string } } & Endpoints>('ContainerInstance', 'default', agent.instanceId)).status.registeredAddress;
    const want = tasks.map((t, i) => `${ports[i]} ${t.metadata.name}.web.default.berth.internal`).sort();
    const out = await eventually(async () => {
      const o = await lookup('web.default.berth.internal', 'SRV');
      return JSON.stringify(srv(o)) === JSON.stringify(want) && o;
    }, 30_000, `SRV ${want.join(', ')}`);
    expect(out).not.to.contain('NXDOMAIN');
    expect(srv(await lookup('_web._tcp.default.berth.internal', 'SRV'))).to.deep.equal(want);
    const a = await lookup('web.default.berth.internal');
    expect(a).to.match(new RegExp(`Address: ${address.replace(/\./g, '\\.')}$`, 'm'));
    expect(await lookup(`${tasks[0].metadata.name}.web.default.berth.internal`)).to.match(new RegExp(`Name:\\s+${tasks[0].metadata.name}\\.web\\.default\\.berth\\.internal`));
    expect(await lookup('nothere.default.berth.internal')).to.match(/NXDOMAIN/);
    // the rest of the world through the host's resolvers
    expect(await lookup('example.test')).to.match(/Address: 192\.0\.2\.1$/m);
  });

  it('stops resolving a stopped task within the TTL', async () => {
    const before = await running('web');
    await admin.patch<Service>('Service', 'default', 'web', { spec: { desiredCount: 1 } });
    const stopped = await eventually(async () => (await admin.list<Task>('Task', 'default', { fieldSelector: 'spec.group=service:web' })).items.find((t) => t.spec.desiredStatus === 'STOPPED'), 60_000, 'a task asked to stop');
    const t0 = Date.now();
    const name = `${stopped.metadata.name}.web.default.berth.internal`;
    // when the lookup that first got NXDOMAIN was asked (an exec into a container takes a while on a loaded host)
    let askedAt = 0;
    await eventually(async () => {
      askedAt = Date.now();
      return /NXDOMAIN/.test(await lookup(name));
    }, 15_000, `${name} NXDOMAIN`);
    expect(askedAt - t0, 'ms from the stop to the first NXDOMAIN').to.be.lessThan(5_000);
    const left = before.find((t) => t.metadata.name !== stopped.metadata.name)!;
    expect(srv(await lookup('web.default.berth.internal', 'SRV'))).to.deep.equal([`${left.spec.hostPorts![0].hostPort} ${left.metadata.name}.web.default.berth.internal`]);
  });

  it('answers awsvpc tasks at their own address, which a client reaches by the name', async () => {
    await admin.create(td('api', { networkMode: 'awsvpc', containerDefinitions: [{ ...httpd, portMappings: [{ containerPort: 80 }] }] }));
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'api', namespace: 'default' }, spec: { taskDefinition: 'api', desiredCount: 1 } });
    const [t] = await eventually(async () => {
      const r = await running('api');
      return r.length === 1 && r;
    }, 60_000, 'an api task RUNNING');
    const ip = t.status!.attachments![0].details!.find((d) => d.name === 'privateIPv4Address')!.value;
    let last = '';
    await eventually(async () => new RegExp(`Address: ${ip.replace(/\./g, '\\.')}$`, 'm').test((last = await lookup('api.default.berth.internal'))), 30_000, `api -> ${ip}`).catch(async (e) => {
      throw new Error(`${(e as Error).message}; nslookup said ${last}; endpoints ${JSON.stringify((await admin.tryGet('Endpoints', 'default', 'api'))?.spec)}; server ${JSON.stringify(agent.discovery?.counts)}`);
    });
    // busybox nc resolves the name through the agent, and busybox httpd answers
    const got = await execIn(h.docker, client, ['sh', '-c', 'printf "GET /hostname HTTP/1.0\\r\\n\\r\\n" | timeout 5 nc api.default.berth.internal 80']);
    expect(got).to.match(/HTTP\/1\.[01] 200/);
  });

  it('gives a host-mode container the same resolver, and it resolves through it', async () => {
    await admin.create(td('hostclient', { networkMode: 'host', containerDefinitions: [{ name: 'c', image: 'busybox:latest', memory: 16, command: ['sleep', '3600'] }] }));
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'hostasker', namespace: 'default' }, spec: { taskDefinition: 'hostclient' } });
    const t = await eventually(async () => {
      const t = await admin.get<Task>('Task', 'default', 'hostasker');
      return t.status?.lastStatus === 'RUNNING' && t;
    }, 60_000, 'the host-mode task RUNNING');
    const id = t.status!.containers![0].dockerId!;
    expect(await execIn(h.docker, id, ['cat', '/etc/resolv.conf'])).to.contain(`nameserver ${agent.discovery!.address}`);
    expect(await execIn(h.docker, id, ['nslookup', 'api.default.berth.internal'])).to.match(/Name:\s+api\.default\.berth\.internal/);
  });
});
