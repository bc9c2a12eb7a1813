// C5 (the multi-apiserver workload's seeded flake, seeds 941723666 and 2095984362): a write to
// a service that follows its family resolves the family against the store's latest state. When
// that freshness cannot be established (the store's revision read fails, or this apiserver's
// watch lags behind the store for longer than the wait), the write is refused with 503, which a
// client retries, and never acknowledged with the revision the lagging cache still has.
// On the real embedded store; the lag and the failed read come from test/support/faultstore.ts.
import { expect } from 'chai';
import { storeKey } from '../../pkg/api/meta.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { FaultStore } from '../support/faultstore.ts';

const V = '/apis/berth.dev/v1';
const SVC = `${V}/namespaces/default/services`;
const td = { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'ff' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } };

describe('a service following its family: a write never resolves it from a lagging cache (C5)', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  let fault: FaultStore;
  let next = 2;

  before(async () => {
    s = await startApiServer({ wrapStore: (st) => (fault = new FaultStore(st)) });
    expect((await s.call('POST', `${V}/taskdefinitions`, td)).status).to.equal(201);
  });
  after(async () => {
    fault?.releaseEvents();
    fault && (fault.failRevisionReads = false);
    await s?.stop();
  });

  /** registers the family's next revision in the store the way another apiserver would: this one's cache does not see it while events are held */
  async function registerElsewhere(): Promise<string> {
    const name = `ff:${next++}`;
    const first = (await fault.inner.get(storeKey('taskdefinitions', undefined, 'ff:1')))!;
    const o = JSON.parse(Buffer.from(first.value).toString());
    o.metadata = { ...o.metadata, name, uid: `uid-${name}` };
    o.status = { ...o.status, revision: Number(name.split(':')[1]), taskDefinitionArn: String(o.status.taskDefinitionArn).replace(/ff:1$/, name) };
    await fault.inner.create(storeKey('taskdefinitions', undefined, name), JSON.stringify(o));
    return name;
  }

  const scale = (svc: string, n: number) => s.call('PATCH', `${SVC}/${svc}`, undefined, { contentType: 'application/merge-patch+json', raw: JSON.stringify({ spec: { desiredCount: n } }) });

  async function follower(name: string) {
    const c = await s.call('POST', SVC, { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name }, spec: { taskDefinition: 'ff', desiredCount: 0 } });
    expect(c.status, JSON.stringify(c.body)).to.equal(201);
    expect(c.body.status.followedRevision).to.be.a('number');
    // this apiserver's cache holds its own write before the watch is made to lag (else the
    // next write waits for it, read-your-writes, and is refused for that reason instead)
    const l = await s.call('GET', `${SVC}?resourceVersion=${c.body.metadata.resourceVersion}&resourceVersionMatch=NotOlderThan`);
    expect(l.status).to.equal(200);
    return c.body.status.taskDefinition as string;
  }

  it('C5: the store revision read fails: the write is refused with 503, not acknowledged with the older revision', async () => {
    const was = await follower('ff-read');
    fault.holdEvents = true;
    const registered = await registerElsewhere();
    fault.failRevisionReads = true;
    try {
      const r = await scale('ff-read', 1);
      // before the fix: 200 with status.taskDefinition still `was` although `registered` was in the store first
      expect(r.status, `answered ${r.status} with ${r.body?.status?.taskDefinition} (was ${was}, ${registered} registered before the request)`).to.equal(503);
    } finally {
      fault.failRevisionReads = false;
      fault.releaseEvents();
    }
    // nothing was written by the refused request; the retry resolves the newer revision
    const g = await s.call('GET', `${SVC}/ff-read`);
    expect(g.body.spec.desiredCount).to.equal(0);
    const ok = await scale('ff-read', 1);
    expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
    expect(ok.body.status.taskDefinition).to.equal(registered);
  });

  it('C5: the watch lags behind the store past the wait: the write is refused with 503, then resolves the newer revision once the cache catches up', async () => {
    const was = await follower('ff-lag');
    fault.holdEvents = true;
    const registered = await registerElsewhere();
    try {
      const r = await scale('ff-lag', 2);
      expect(r.status, `answered ${r.status} with ${r.body?.status?.taskDefinition} (was ${was}, ${registered} registered before the request)`).to.equal(503);
      expect(r.body.message).to.match(/watch cache did not reach revision/);
    } finally {
      fault.releaseEvents();
    }
    const ok = await scale('ff-lag', 2);
    expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
    expect(ok.body.status.taskDefinition).to.equal(registered);
    expect(ok.body.spec.desiredCount).to.equal(2);
  });

  it('a service being deleted keeps the revision it runs: a write to it follows no newer one (it is drained; the multi-apiserver check counts no resolution for it)', async () => {
    const was = await follower('ff-deleting');
    const d = await s.call('DELETE', `${SVC}/ff-deleting`);
    expect(d.status).to.equal(200);
    expect(d.body.metadata.deletionTimestamp).to.be.a('string');
    const l = await s.call('GET', `${SVC}?resourceVersion=${d.body.metadata.resourceVersion}&resourceVersionMatch=NotOlderThan`);
    expect(l.status).to.equal(200);
    fault.holdEvents = true;
    await registerElsewhere();
    fault.releaseEvents();
    const r = await scale('ff-deleting', 1);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body.status.taskDefinition).to.equal(was);
  });
});
