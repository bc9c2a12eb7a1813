import { expect } from 'chai';
import { Kinds, type Endpoints, type Service } from '../../pkg/api/kinds.ts';
import { toTable } from '../../pkg/apiserver/table.ts';
import { Client } from '../../pkg/client/client.ts';
import { ControllerManager } from '../../pkg/controller/manager.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;
const merge = { contentType: 'application/merge-patch+json' };
const td = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec });
const instance = (name: string) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'ContainerInstance',
  metadata: { name },
  spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 4096 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 4096 }] },
});

/**
 * The endpoints controller on a real apiserver and store: the agent's status reports (made
 * here with the node's own credential) move tasks in and out of their service's Endpoints.
 */
describe('endpoints controller', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  let admin: Client;
  let mgr: ControllerManager;
  let node: string;
  let otherNode: string;
  const hostPorts: Record<string, number> = {};
  /** the instance's registered address: its bridge-mode tasks' address */
  let addr = '';

  const endpoints = () => admin.tryGet<Endpoints>('Endpoints', 'default', 'web');
  /** "task address:port,..." of the service's endpoints */
  const seen = async () => ((await endpoints())?.spec.subsets ?? []).map((x) => `${x.task} ${x.address}:${x.ports.map((p) => p.port).join(',')}`);
  const until = (want: string[], what: string) => eventually(async () => JSON.stringify(await seen()) === JSON.stringify(want), 10_000, `${what}: ${JSON.stringify(want)}`);
  const report = async (task: string, status: Record<string, unknown>) => {
    const r = await s.call('PATCH', `${NS}/tasks/${task}/status`, { status }, { token: node, ...merge });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
  };

  before(async () => {
    s = await startApiServer();
    admin = new Client({ server: s.url, token: s.adminToken });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'other' } });
    await admin.create(td('web', { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, portMappings: [{ containerPort: 80 }] }] }));
    await admin.create(td('checked', { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, portMappings: [{ containerPort: 80 }], healthCheck: { command: ['CMD-SHELL', 'true'] } }] }));
    await admin.create(td('vpc', { networkMode: 'awsvpc', containerDefinitions: [{ name: 'app', image: 'busybox', memory: 64, portMappings: [{ containerPort: 8080 }] }] }));
    const ci = await s.call('POST', `${NS}/containerinstances`, instance('i1'), { token: s.bootstrapToken });
    node = ci.body.metadata.annotations['berth.dev/node-token'];
    const other = await s.call('POST', `${V}/namespaces/other/containerinstances`, instance('o1'), { token: s.bootstrapToken });
    otherNode = other.body.metadata.annotations['berth.dev/node-token'];
    mgr = new ControllerManager({ client: admin, log: silentLogger(), controllers: ['endpoints'], leaderElect: false, resyncMs: 5000 });
    await mgr.start();
  });
  after(async () => {
    await mgr?.stop();
    admin?.close();
    await s?.stop();
  });

  it('lists the serving tasks of a service: RUNNING, and HEALTHY where they have health checks', async () => {
    const svc = await admin.create<Service>({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { taskDefinition: 'web', desiredCount: 0 } } as Service);
    const owner = [{ apiVersion: 'berth.dev/v1', kind: 'Service', name: 'web', uid: svc.metadata.uid!, controller: true }];
    for (const [name, def] of [['w1', 'web'], ['w2', 'web'], ['h1', 'checked'], ['v1', 'vpc']]) {
      await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name, namespace: 'default', ownerReferences: owner }, spec: { taskDefinition: def, group: 'service:web' } });
    }
    // someone else's task in the service's group is not the service's
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'x1', namespace: 'default' }, spec: { taskDefinition: 'web', group: 'service:web' } });
    const bound = await admin.bind('default', ['w1', 'w2', 'h1', 'v1', 'x1'].map((task) => ({ task, containerInstance: 'i1' })));
    expect(bound.results.every((r) => r.bound)).to.equal(true);
    for (const t of ['w1', 'w2', 'h1', 'x1']) {
      const task = await admin.get<{ spec: { hostPorts?: Array<{ hostPort: number }> } } & Endpoints>('Task', 'default', t);
      hostPorts[t] = task.spec.hostPorts![0].hostPort;
    }
    // an Endpoints object exists as soon as the service does, empty
    await eventually(async () => (await endpoints())?.spec.subsets.length === 0, 10_000, 'empty endpoints');
    addr = (await admin.get<{ status: { registeredAddress: string } } & Endpoints>('ContainerInstance', 'default', 'i1')).status.registeredAddress;
    expect(addr).to.be.a('string').that.is.not.empty;

    await report('w1', { lastStatus: 'RUNNING' });
    await report('x1', { lastStatus: 'RUNNING' });
    await until([`w1 ${addr}:${hostPorts.w1}`], 'a RUNNING task, on its dynamic host port');
    await report('w2', { lastStatus: 'PENDING' });
    await report('h1', { lastStatus: 'RUNNING', healthStatus: 'UNKNOWN' });
    await report('v1', { lastStatus: 'RUNNING', attachments: [{ id: 'eni', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: '10.9.0.4' }] }] });
    await until([`v1 10.9.0.4:8080`, `w1 ${addr}:${hostPorts.w1}`], 'an awsvpc task at its own address; a health-checked task not before it is HEALTHY');
    await report('h1', { lastStatus: 'RUNNING', healthStatus: 'HEALTHY' });
    await report('w2', { lastStatus: 'RUNNING' });
    await until([`h1 ${addr}:${hostPorts.h1}`, `v1 10.9.0.4:8080`, `w1 ${addr}:${hostPorts.w1}`, `w2 ${addr}:${hostPorts.w2}`], 'all serving');
    const e = (await endpoints())!;
    expect(e.spec.subsets.find((x) => x.task === 'w1')).to.deep.include({ containerInstance: 'i1', ports: [{ containerName: 'app', containerPort: 80, port: hostPorts.w1, protocol: 'tcp' }] });
    expect(e.metadata.ownerReferences?.[0]).to.include({ kind: 'Service', name: 'web', uid: svc.metadata.uid });
    // `berth get endpoints` and kubectl print the addresses
    const row = toTable(Kinds.Endpoints, [e as never]).rows[0].cells;
    expect(row[0]).to.equal('web');
    expect(String(row[1])).to.contain('10.9.0.4').and.contain(addr);
  });

  it('drops a task once it is asked to stop, and one that turns UNHEALTHY', async () => {
    const r = await s.call('PATCH', `${NS}/tasks/w1`, { spec: { desiredStatus: 'STOPPED', stopReason: 'test' } }, merge);
    expect(r.status).to.equal(200);
    await report('h1', { lastStatus: 'RUNNING', healthStatus: 'UNHEALTHY' });
    await until([`v1 10.9.0.4:8080`, `w2 ${addr}:${hostPorts.w2}`], 'w1 and h1 gone');
  });

  it('puts back an Endpoints object edited or deleted by someone else', async () => {
    const cur = (await endpoints())!;
    await admin.update({ ...cur, spec: { subsets: [] } });
    await until([`v1 10.9.0.4:8080`, `w2 ${addr}:${hostPorts.w2}`], 'restored after an edit');
    await admin.delete('Endpoints', 'default', 'web');
    await until([`v1 10.9.0.4:8080`, `w2 ${addr}:${hostPorts.w2}`], 'restored after a delete');
  });

  it('lets a node read its own cluster\'s endpoints only, and write none', async () => {
    expect((await s.call('GET', `${NS}/endpoints`, undefined, { token: node })).status).to.equal(200);
    expect((await s.call('GET', `${NS}/endpoints/web`, undefined, { token: node })).status).to.equal(200);
    expect((await s.call('GET', `${NS}/endpoints?watch=true&timeoutSeconds=1`, undefined, { token: node })).status).to.equal(200);
    // a node of another cluster, or a list across clusters, is refused
    expect((await s.call('GET', `${NS}/endpoints`, undefined, { token: otherNode })).status).to.equal(403);
    expect((await s.call('GET', `${NS}/endpoints/web`, undefined, { token: otherNode })).status).to.equal(403);
    expect((await s.call('GET', `${V}/endpoints`, undefined, { token: node })).status).to.equal(403);
    expect((await s.call('GET', `${V}/namespaces/other/endpoints`, undefined, { token: otherNode })).status).to.equal(200);
    const w = await s.call('PATCH', `${NS}/endpoints/web`, { spec: { subsets: [] } }, { token: node, ...merge });
    expect(w.status).to.equal(403);
    expect((await s.call('DELETE', `${NS}/endpoints/web`, undefined, { token: node })).status).to.equal(403);
    expect((await s.call('POST', `${NS}/endpoints`, { apiVersion: 'berth.dev/v1', kind: 'Endpoints', metadata: { name: 'evil' }, spec: { subsets: [] } }, { token: node })).status).to.equal(403);
    expect((await seen()).length).to.equal(2);
  });

  it('refuses a malformed Endpoints object naming the field, and writes nothing', async () => {
    const r = await s.call('POST', `${NS}/endpoints`, { apiVersion: 'berth.dev/v1', kind: 'Endpoints', metadata: { name: 'bad' }, spec: { subsets: [{ task: 't', address: '1.2.3.4', ports: [{ containerName: 'c', containerPort: 99999, port: 1, protocol: 'tcp' }] }] } });
    expect(r.status).to.equal(422);
    expect(JSON.stringify(r.body)).to.contain('containerPort');
    expect((await s.call('GET', `${NS}/endpoints/bad`)).status).to.equal(404);
  });

  it('removes the Endpoints of a service that is gone', async () => {
    await admin.delete('Service', 'default', 'web');
    // no service controller runs here: release its finalizer as it would
    await s.call('PATCH', `${NS}/services/web`, { metadata: { finalizers: null, resourceVersion: undefined } }, merge).catch(() => undefined);
    await eventually(async () => !(await endpoints()), 10_000, 'endpoints removed');
  });
});
