// berth keeps every txn within etcd's DEFAULT limits (128 compares and ops): on an etcd
// started without --max-txn-ops (the other suites' etcd allows 10000, so they cannot see a
// txn that is too big), what can grow with the data is split (R1-4).
import { expect } from 'chai';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startEtcd, type EtcdProcess } from '../support/etcd.ts';

const V = '/apis/berth.dev/v1';
const td = (image: string) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: { containerDefinitions: [{ name: 'c', image, memory: 64 }] } });

describe("txns within etcd's default limits (R1-4)", function () {
  this.timeout(180_000);
  let etcd: EtcdProcess;
  let s: TestApiServer;
  before(async () => {
    etcd = await startEtcd({ maxTxnOps: 'default' });
    s = await startApiServer({ etcdEndpoints: [etcd.endpoint], server: { compactionIntervalMs: 0 } });
  });
  after(async () => {
    await s?.stop();
    await etcd?.stop();
  });

  it("R1-4: etcd refuses a txn beyond its default (the premise), and berth's error names the limit", async () => {
    const ops = Array.from({ length: 129 }, (_, i) => ({ type: 'put' as const, key: `/berth-test/r14/${i}`, value: 'x' }));
    const err = await s.store.txn([], ops).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isBerthError(err, 'InternalError'), String(err)).to.equal(true);
    expect((err as Error).message).to.contain('129 operations').and.contain("etcd's --max-txn-ops (default 128)");
  });

  it('R1-4: deregistering a family of 130 revisions (kubectl delete taskdefinition web) deregisters every one', async () => {
    const N = 130;
    for (let i = 1; i <= N; i++) {
      const r = await s.call('POST', `${V}/taskdefinitions`, td(`busybox:${i}`));
      expect(r.status, `revision ${i}: ${JSON.stringify(r.body)}`).to.equal(201);
    }
    const d = await s.call('DELETE', `${V}/taskdefinitions/web`);
    expect(d.status, JSON.stringify(d.body)).to.equal(200);
    expect([d.body.metadata.name, d.body.status.revision, d.body.status.status]).to.deep.equal(['web', N, 'INACTIVE']);
    const all = (await s.call('GET', `${V}/taskdefinitions?fieldSelector=status.family%3Dweb`)).body.items;
    expect(all).to.have.length(N);
    expect(all.filter((t: { status: { status: string } }) => t.status.status !== 'INACTIVE').map((t: { metadata: { name: string } }) => t.metadata.name)).to.deep.equal([]);
    // the family resolves to nothing now
    expect((await s.call('GET', `${V}/taskdefinitions/web`)).status).to.equal(404);
    // and a revision of it is still deregistered one at a time
    expect((await s.call('DELETE', `${V}/taskdefinitions/web:1`)).status).to.equal(200);
  });
});
