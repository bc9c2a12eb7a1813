import { expect } from 'chai';
import { discoveryDocuments } from '../../pkg/apiserver/discovery.ts';
import { KINDS } from '../../pkg/api/kinds.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const V = '/apis/berth.dev/v1';
const BT = `${V}/bootstraptokens`;
const instance = (name: string) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'ContainerInstance',
  metadata: { name },
  spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 }] },
});

for (const store of ['embedded', 'etcd'] as const) {
  describe(`S7: bootstrap tokens, scoped to a cluster, expiring, listed and deleted (${store} store)`, function () {
    this.timeout(60_000);
    let s: TestApiServer;
    let clock = Date.parse('2026-06-01T00:00:00Z');
    before(async () => {
      s = await startApiServer({ store, build: { now: () => clock } });
      expect((await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'prod' } })).status).to.equal(201);
    });
    after(async () => s?.stop());

    const registerWith = (token: string, cluster: string, name: string) => s.call('POST', `${V}/namespaces/${cluster}/containerinstances`, instance(name), { token });

    it('create -> registers in its cluster only; expired -> 401; deleted -> 401; the list never shows a secret', async () => {
      const created = await s.call('POST', BT, { cluster: 'prod', ttlSeconds: 3600, description: 'rack 7' });
      expect(created.status).to.equal(201);
      const token: string = created.body.status.token;
      expect(token).to.match(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
      const id = token.split('.')[0];
      expect(created.body.metadata.name).to.equal(id);
      expect(created.body.spec).to.deep.equal({ cluster: 'prod', description: 'rack 7', expiration: '2026-06-01T01:00:00.000Z' });
      // only the hash is stored
      const rec = await s.store.get(`/berth/bootstraptokens/_/${id}`);
      expect(rec?.value).to.be.a('string').and.not.contain(token.split('.')[1]);

      await eventually(async () => (await registerWith(token, 'prod', 'p1')).status === 201, 10_000, 'registration with the new token');
      const p1 = await s.call('GET', `${V}/namespaces/prod/containerinstances/p1`);
      expect(p1.body.metadata.annotations?.['berth.dev/node-token']).to.equal(undefined);
      const other = await registerWith(token, 'default', 'd1');
      expect(other.status).to.equal(403);
      expect(other.body.message).to.contain(`bootstrap token "${id}" registers instances only in cluster "prod"`);
      // it may read only its own cluster, and nothing else
      expect((await s.call('GET', `${V}/clusters/prod`, undefined, { token })).status).to.equal(200);
      expect((await s.call('GET', `${V}/clusters/default`, undefined, { token })).status).to.equal(403);
      expect((await s.call('GET', `${V}/namespaces/prod/tasks`, undefined, { token })).status).to.equal(403);
      // a wrong secret for a known id is no identity
      expect((await registerWith(`${id}.0000000000000000`, 'prod', 'p2')).status).to.equal(401);

      const listed = await s.call('GET', BT);
      expect(listed.status).to.equal(200);
      expect(listed.body.items.map((t: { metadata: { name: string } }) => t.metadata.name)).to.deep.equal([id]);
      expect(JSON.stringify(listed.body)).not.to.contain(token.split('.')[1]);
      expect(JSON.stringify(listed.body)).not.to.contain('secretHash');
      expect(listed.body.items[0].status).to.deep.equal({ expired: false });
      for (const who of [s.viewerToken, s.bootstrapToken, token]) expect((await s.call('GET', BT, undefined, { token: who })).status).to.equal(403);

      clock += 3601 * 1000;
      const late = await registerWith(token, 'prod', 'p3');
      expect(late.status).to.equal(401);
      expect(late.body.message).to.contain(`bootstrap token "${id}" expired at 2026-06-01T01:00:00.000Z`);
      expect((await s.call('GET', `${BT}/${id}`)).body.status).to.deep.equal({ expired: true });

      const forever = (await s.call('POST', BT, { cluster: 'prod' })).body;
      expect(forever.spec.expiration).to.equal(undefined);
      const ft: string = forever.status.token;
      await eventually(async () => (await registerWith(ft, 'prod', 'p4')).status === 201, 10_000, 'registration with the second token');
      expect((await s.call('DELETE', `${BT}/${forever.metadata.name}`)).status).to.equal(200);
      await eventually(async () => (await registerWith(ft, 'prod', 'p5')).status === 401, 10_000, 'the deleted token to be refused');
      expect((await s.call('DELETE', `${BT}/${forever.metadata.name}`)).status).to.equal(404);
      // the instances it registered keep their own credentials
      expect((await s.call('GET', `${V}/namespaces/prod/containerinstances/p4`)).status).to.equal(200);
    });

    it('refuses bad requests with a 4xx naming the field, and tokens for clusters that do not exist', async () => {
      const cases: Array<[unknown, number, string]> = [
        [{}, 422, 'cluster'],
        [{ cluster: 'prod', ttlSeconds: 0 }, 422, 'ttlSeconds'],
        [{ cluster: 'prod', ttlSeconds: 10 ** 9 }, 422, 'ttlSeconds'],
        [{ cluster: 'prod', extra: 1 }, 422, 'extra'],
        [{ cluster: 'a/b' }, 422, 'cluster'],
        [{ cluster: 'nope' }, 404, 'cluster "nope" not found'],
      ];
      for (const [body, code, says] of cases) {
        const r = await s.call('POST', BT, body);
        expect(r.status, JSON.stringify(body)).to.equal(code);
        expect(`${r.body.message} ${JSON.stringify(r.body.details ?? {})}`, JSON.stringify(body)).to.contain(says);
      }
      expect((await s.call('GET', `${BT}/NOT-AN-ID`)).status).to.equal(404);
      expect((await s.call('POST', BT, { cluster: 'prod' }, { token: s.viewerToken })).status).to.equal(403);
    });

    it('R1-9: a token with maxInstances registers that many instances and no more, however many register at once', async () => {
      const created = await s.call('POST', BT, { cluster: 'prod', maxInstances: 2, description: 'two hosts' });
      expect(created.status, JSON.stringify(created.body)).to.equal(201);
      expect([created.body.spec.maxInstances, created.body.status.registrations]).to.deep.equal([2, 0]);
      const token: string = created.body.status.token;
      const id = token.split('.')[0];
      // five hosts join at once: two get in, each a node identity of its own; the others are refused
      const rs = await Promise.all(Array.from({ length: 5 }, (_, i) => registerWith(token, 'prod', `r19-${i}`)));
      const codes = rs.map((r) => r.status).sort();
      expect(codes, JSON.stringify(rs.map((r) => r.body.message))).to.deep.equal([201, 201, 403, 403, 403]);
      for (const r of rs.filter((x) => x.status === 403)) {
        expect(r.body.reason).to.equal('Forbidden');
        expect(r.body.message).to.contain(`bootstrap token "${id}" has registered the 2 instance(s) it may (maxInstances)`);
      }
      const joined = rs.filter((r) => r.status === 201).map((r) => r.body.metadata.name);
      const live = (await s.call('GET', `${V}/namespaces/prod/containerinstances`)).body.items.map((i: { metadata: { name: string } }) => i.metadata.name);
      expect(live.filter((n: string) => n.startsWith('r19-')).sort()).to.deep.equal(joined.sort());
      expect((await s.call('GET', `${BT}/${id}`)).body.status.registrations).to.equal(2);
      // deregistering gives no place back: the budget counts registrations
      expect((await s.call('DELETE', `${V}/namespaces/prod/containerinstances/${joined[0]}`)).status).to.equal(200);
      expect((await registerWith(token, 'prod', 'r19-again')).status).to.equal(403);
      // a token without a budget registers without limit, as before (and counts nothing)
      const open = (await s.call('POST', BT, { cluster: 'prod' })).body;
      expect(open.spec.maxInstances).to.equal(undefined);
      for (let i = 0; i < 4; i++) expect((await registerWith(open.status.token, 'prod', `r19-open-${i}`)).status).to.equal(201);
      expect((await s.call('GET', `${BT}/${open.metadata.name}`)).body.status.registrations).to.equal(undefined);
      for (const [maxInstances, says] of [
        [0, 'at least 1'],
        [1.5, 'whole number'],
        ['2', 'maxInstances'],
      ] as const) {
        const r = await s.call('POST', BT, { cluster: 'prod', maxInstances });
        expect(r.status, String(maxInstances)).to.equal(422);
        expect(JSON.stringify(r.body.details), String(maxInstances)).to.contain('maxInstances');
        expect(r.body.message, String(maxInstances)).to.contain(says);
      }
    });

    it('the static bootstrap group of the token file keeps registering anywhere (what `berth up` uses)', async () => {
      expect((await registerWith(s.bootstrapToken, 'prod', 's1')).status).to.equal(201);
      expect((await registerWith(s.bootstrapToken, 'default', 's2')).status).to.equal(201);
    });
  });
}

describe('S6: discovery and OpenAPI are built once and carry an ETag', function () {
  this.timeout(30_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer();
  });
  after(async () => s?.stop());

  it('serves the same built document (one object per path), and 304 to a client that has it', async () => {
    const docs = discoveryDocuments(KINDS);
    const a = docs('/openapi/v3/apis/berth.dev/v1');
    expect(a).to.not.equal(undefined);
    expect(docs('/openapi/v3/apis/berth.dev/v1')).to.equal(a);
    expect(docs('/openapi/v2')).to.equal(docs('/openapi/v2'));
    expect(docs('/not/a/document')).to.equal(undefined);
    for (const path of ['/openapi/v3/apis/berth.dev/v1', '/openapi/v2', '/apis/berth.dev/v1', '/api']) {
      const first = await fetch(`${s.url}${path}`, { headers: { Authorization: `Bearer ${s.viewerToken}` } });
      expect(first.status, path).to.equal(200);
      const etag = first.headers.get('etag');
      expect(etag, path).to.match(/^"[0-9a-f]{32}"$/);
      const body = await first.text();
      const again = await fetch(`${s.url}${path}`, { headers: { Authorization: `Bearer ${s.viewerToken}`, 'If-None-Match': etag! } });
      expect(again.status, path).to.equal(304);
      const changed = await fetch(`${s.url}${path}`, { headers: { Authorization: `Bearer ${s.viewerToken}`, 'If-None-Match': '"other"' } });
      expect(changed.status).to.equal(200);
      expect(await changed.text()).to.equal(body);
    }
  });
});
