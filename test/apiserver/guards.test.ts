// What the guard keys protect cannot be changed around them: a daemon task definition's ports
// are part of its revision (R1-6), and an instance is INACTIVE only by being deregistered, so
// DeleteCluster sees every registered instance (R1-7). A real apiserver on the embedded store.
import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const V = '/apis/berth.dev/v1';
const merge = { contentType: 'application/merge-patch+json' };
const obj = (kind: string, name: string, spec?: unknown, meta: Record<string, unknown> = {}) => ({ apiVersion: 'berth.dev/v1', kind, metadata: { name, ...meta }, ...(spec ? { spec } : {}) });
const PORTS = 'berth.dev/ports';
const dtd = (n: string, ports?: string, image = 'busybox') =>
  obj('DaemonTaskDefinition', n, { containerDefinitions: [{ name: 'a', image, memory: 32 }] }, ports ? { annotations: { [PORTS]: ports } } : {});
const causes = (r: { body: any }) => (r.body.details?.causes ?? []).map((c: { field: string }) => c.field);

describe('guards: what they protect changes only through the writes that compare them (R1-6, R1-7)', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer({});
  });
  after(async () => s?.stop());

  it("R1-6: a daemon task definition revision's ports cannot be PATCHed; the family registers a new revision, which a daemon takes only through the port check", async () => {
    const D = `${V}/namespaces/default/daemons`;
    expect((await s.call('POST', `${V}/daemontaskdefinitions`, dtd('statsd', 'udp/8125'))).status).to.equal(201);
    expect((await s.call('POST', `${V}/daemontaskdefinitions`, dtd('other'))).status).to.equal(201);
    expect((await s.call('POST', D, obj('Daemon', 'a', { daemonTaskDefinition: 'statsd' }))).status).to.equal(201);
    expect((await s.call('POST', D, obj('Daemon', 'b', { daemonTaskDefinition: 'other' }))).status).to.equal(201);
    // the port check itself
    const third = await s.call('POST', D, obj('Daemon', 'c', { daemonTaskDefinition: 'statsd' }));
    expect(third.status).to.equal(422);
    // the bypass: give other:1, which daemon b already runs, statsd's port
    const p = await s.call('PATCH', `${V}/daemontaskdefinitions/other:1`, { metadata: { annotations: { [PORTS]: 'udp/8125' } } }, merge);
    expect(p.status, JSON.stringify(p.body)).to.equal(422);
    expect(causes(p)).to.deep.equal([`metadata.annotations[${PORTS}]`]);
    expect((await s.call('GET', `${V}/daemontaskdefinitions/other:1`)).body.metadata.annotations?.[PORTS]).to.equal(undefined);
    // other annotations of a revision stay writable (tags live there)
    expect((await s.call('PATCH', `${V}/daemontaskdefinitions/other:1`, { metadata: { annotations: { note: 'x' } } }, merge)).status).to.equal(200);
    // new ports are a new revision: applied through the family, the spec unchanged
    const fam = await s.call('PATCH', `${V}/daemontaskdefinitions/other`, { metadata: { annotations: { [PORTS]: 'udp/8125' } } }, merge);
    expect(fam.status, JSON.stringify(fam.body)).to.equal(200);
    expect(fam.body.status.revision).to.equal(2);
    expect(fam.body.metadata.annotations[PORTS]).to.equal('udp/8125');
    // applying it again is no new revision (its content, ports included, is registered), nor is the same port list written otherwise
    const again = await s.call('POST', `${V}/daemontaskdefinitions`, dtd('other', 'UDP/8125'));
    expect([again.status, again.body.metadata.name]).to.deep.equal([200, 'other:2']);
    // and a daemon takes it only through the port check
    const take = await s.call('PATCH', `${D}/b`, { spec: { daemonTaskDefinition: 'other:2' } }, merge);
    expect(take.status, JSON.stringify(take.body)).to.equal(422);
    expect(take.body.message).to.contain('udp/8125');
    // the revision each daemon runs (its spec keeps what was written)
    const ds = (await s.call('GET', D)).body.items.map((d: any) => `${d.metadata.name}=${d.spec.daemonTaskDefinition}->${d.status.taskDefinition}`);
    expect(ds).to.deep.equal(['a=statsd->statsd:1', 'b=other->other:1']);
  });

  it('R1-7: INACTIVE is what deregistration makes of an instance: a client may not set it (nor leave it), and DeleteCluster counts every registered instance', async () => {
    expect((await s.call('POST', `${V}/clusters`, obj('Cluster', 'gone'))).status).to.equal(201);
    const NS = `${V}/namespaces/gone/containerinstances`;
    const res = [
      { name: 'CPU', type: 'INTEGER', integerValue: 1024 },
      { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 },
    ];
    const reg = await s.call('POST', NS, obj('ContainerInstance', 'ci-1', { registeredResources: res }), { token: s.bootstrapToken });
    expect(reg.status).to.equal(201);
    const nodeToken = reg.body.metadata.annotations['berth.dev/node-token'];
    const set = await s.call('PATCH', `${NS}/ci-1`, { spec: { status: 'INACTIVE' } }, merge);
    expect([set.status, causes(set)], JSON.stringify(set.body)).to.deep.equal([422, ['spec.status']]);
    expect(set.body.message).to.contain('deregister');
    const created = await s.call('POST', NS, obj('ContainerInstance', 'ci-2', { registeredResources: res, status: 'INACTIVE' }));
    expect([created.status, causes(created)]).to.deep.equal([422, ['spec.status']]);
    // DRAINING and back is what a client sets
    expect((await s.call('PATCH', `${NS}/ci-1`, { spec: { status: 'DRAINING' } }, merge)).status).to.equal(200);
    expect((await s.call('PATCH', `${NS}/ci-1`, { spec: { status: 'ACTIVE' } }, merge)).status).to.equal(200);
    const del = await s.call('DELETE', `${V}/clusters/gone`);
    expect([del.status, del.body.reason]).to.deep.equal([409, 'Conflict']);
    expect(del.body.message).to.contain('container instances are registered (1)');
    // an instance stored INACTIVE before this rule (written as an older berth let it be) still
    // counts, and stays INACTIVE until it is deregistered
    const key = '/berth/containerinstances/gone/ci-1';
    const kv = (await s.store.get(key))!;
    const legacy = JSON.parse(kv.value);
    legacy.spec.status = 'INACTIVE';
    expect((await s.store.txn([{ key, modRevision: kv.modRevision }], [{ type: 'put', key, value: JSON.stringify(legacy) }])).succeeded).to.equal(true);
    await s.api.registry.fresh();
    expect((await s.call('DELETE', `${V}/clusters/gone`)).status).to.equal(409);
    const wake = await s.call('PATCH', `${NS}/ci-1`, { spec: { status: 'ACTIVE' } }, merge);
    expect([wake.status, causes(wake)]).to.deep.equal([422, ['spec.status']]);
    // deregistered, it goes with its allocation and its credential; then the cluster may go, leaving nothing of it
    expect((await s.call('DELETE', `${NS}/ci-1`)).status).to.equal(200);
    expect((await s.call('DELETE', `${V}/clusters/gone`)).status).to.equal(200);
    const left = (await s.store.list('/berth/')).items.map((k) => k.key).filter((k) => /\/(allocations|containerinstances|nodecredentials\.byinstance)\/gone\//.test(k));
    expect(left).to.deep.equal([]);
    expect((await s.call('POST', `${V}/clusters`, obj('Cluster', 'gone'))).status).to.equal(201);
    expect((await s.call('GET', `${NS}/ci-1`, undefined, { token: nodeToken })).status, "the old node credential is revoked").to.equal(401);
  });
});
