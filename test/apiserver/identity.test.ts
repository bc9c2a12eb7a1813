import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;
const merge = { contentType: 'application/merge-patch+json' };
const instance = (name: string) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'ContainerInstance',
  metadata: { name },
  spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 2048 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 2048 }] },
});

describe('apiserver identity and authorization', function () {
  this.timeout(30_000);
  let s: TestApiServer;
  let nodeA: string;
  let nodeB: string;
  before(async () => {
    s = await startApiServer();
    await s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'idt' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } });
    for (const [n, t] of [['na', 'ta'], ['nb', 'tb'], ['nb', 'tb2']]) {
      const r = await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: t }, spec: { taskDefinition: 'idt' } });
      expect(r.status).to.equal(201);
      void n;
    }
  });
  after(async () => s?.stop());

  it('answers 401 without a token or with a wrong one, and serves health and version to anyone', async () => {
    expect((await s.call('GET', `${V}/clusters`, undefined, { token: '' })).status).to.equal(401);
    const bad = await s.call('GET', `${V}/clusters`, undefined, { token: 'nope' });
    expect(bad.status).to.equal(401);
    expect(bad.body.kind).to.equal('Status');
    expect(bad.body.reason).to.equal('Unauthorized');
    for (const p of ['/healthz', '/readyz', '/version']) expect((await s.call('GET', p, undefined, { token: '' })).status, p).to.equal(200);
  });

  it('lets viewers read and nothing else', async () => {
    expect((await s.call('GET', `${NS}/tasks`, undefined, { token: s.viewerToken })).status).to.equal(200);
    const w = await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'v' } }, { token: s.viewerToken });
    expect(w.status).to.equal(403);
    expect(w.body.reason).to.equal('Forbidden');
    expect((await s.call('GET', `${V}/clusters/v`)).status).to.equal(404);
  });

  it('gives a bootstrapping agent a node credential bound to its instance', async () => {
    const denied = await s.call('GET', `${NS}/tasks`, undefined, { token: s.bootstrapToken });
    expect(denied.status).to.equal(403);
    const a = await s.call('POST', `${NS}/containerinstances`, instance('na'), { token: s.bootstrapToken });
    expect(a.status).to.equal(201);
    nodeA = a.body.metadata.annotations['berth.dev/node-token'];
    expect(nodeA).to.be.a('string').with.length.greaterThan(20);
    const b = await s.call('POST', `${NS}/containerinstances`, instance('nb'), { token: s.bootstrapToken });
    nodeB = b.body.metadata.annotations['berth.dev/node-token'];
    // the credential is not readable back from the stored object
    const stored = await s.call('GET', `${NS}/containerinstances/na`);
    expect(JSON.stringify(stored.body)).not.to.contain(nodeA);
    // bind ta to na, tb/tb2 to nb
    const bind = await s.call('POST', `${NS}/bindings`, { bindings: [{ task: 'ta', containerInstance: 'na' }, { task: 'tb', containerInstance: 'nb' }, { task: 'tb2', containerInstance: 'nb' }] });
    expect(bind.body.results.every((r: any) => r.bound)).to.equal(true);
  });

  it('lets a node read only its own tasks and what they reference, and write only their status', async () => {
    const mine = await s.call('GET', `${NS}/tasks?fieldSelector=spec.containerInstance%3Dna`, undefined, { token: nodeA });
    expect(mine.status).to.equal(200);
    expect(mine.body.items.map((t: any) => t.metadata.name)).to.deep.equal(['ta']);
    expect((await s.call('GET', `${NS}/tasks`, undefined, { token: nodeA })).status).to.equal(403);
    expect((await s.call('GET', `${NS}/tasks?fieldSelector=spec.containerInstance%3Dnb`, undefined, { token: nodeA })).status).to.equal(403);
    expect((await s.call('GET', `${NS}/tasks/ta`, undefined, { token: nodeA })).status).to.equal(200);
    expect((await s.call('GET', `${NS}/tasks/tb`, undefined, { token: nodeA })).status).to.equal(403);
    expect((await s.call('GET', `${V}/taskdefinitions/idt:1`, undefined, { token: nodeA })).status).to.equal(200);
    const st = await s.call('PATCH', `${NS}/tasks/ta/status`, { status: { lastStatus: 'RUNNING' } }, { token: nodeA, ...merge });
    expect(st.status).to.equal(200);
    expect(st.body.status.lastStatus).to.equal('RUNNING');
    expect((await s.call('PATCH', `${NS}/tasks/tb/status`, { status: { lastStatus: 'RUNNING' } }, { token: nodeA, ...merge })).status).to.equal(403);
    expect((await s.call('PATCH', `${NS}/tasks/ta`, { spec: { desiredStatus: 'STOPPED' } }, { token: nodeA, ...merge })).status).to.equal(403);
    expect((await s.call('PATCH', `${NS}/containerinstances/na/status`, { status: { agentConnected: true } }, { token: nodeA, ...merge })).status).to.equal(200);
    expect((await s.call('PATCH', `${NS}/containerinstances/nb/status`, { status: { agentConnected: false } }, { token: nodeA, ...merge })).status).to.equal(403);
    expect((await s.call('PATCH', `${NS}/containerinstances/na`, { spec: { status: 'DRAINING' } }, { token: nodeA, ...merge })).status).to.equal(403);
    expect((await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'evil' } }, { token: nodeA })).status).to.equal(403);
    expect((await s.call('GET', `${NS}/tasks/tb`, undefined, { token: nodeB })).status).to.equal(200);
    // nb is unchanged by na's attempts
    expect((await s.call('GET', `${NS}/tasks/tb`)).body.status.lastStatus).to.equal('PENDING');
  });
});

describe('apiserver daemon admission', function () {
  this.timeout(30_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer();
  });
  after(async () => s?.stop());

  it('refuses a second daemon whose container port clashes on the shared daemon_bridge namespace', async () => {
    // daemon task definitions take no portMappings (ECS's managed daemons documentation): ports
    // are declared in an annotation
    const dtd = (name: string, port: number) => ({ apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name, annotations: { 'berth.dev/ports': `udp/${port}` } }, spec: { containerDefinitions: [{ name: 'agent', image: 'busybox', memory: 32 }] } });
    const daemon = (name: string, td: string) => ({ apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name }, spec: { daemonTaskDefinition: td } });
    for (const [n, p] of [['xray', 2000], ['statsd', 2000], ['logs', 2001]] as const) expect((await s.call('POST', `${V}/daemontaskdefinitions`, dtd(n, p))).status).to.equal(201);
    expect((await s.call('POST', `${NS}/daemons`, daemon('xray', 'xray'))).status).to.equal(201);
    const clash = await s.call('POST', `${NS}/daemons`, daemon('statsd', 'statsd'));
    expect(clash.status).to.equal(422);
    expect(clash.body.message).to.contain('udp/2000');
    expect(clash.body.message).to.contain('xray');
    expect((await s.call('POST', `${NS}/daemons`, daemon('logs', 'logs'))).status).to.equal(201);
  });
});
