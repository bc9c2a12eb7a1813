// Regression test (C5, the daemon side; found by the review). Before the fix: a Daemon follows its family through the controller's status
// write naming the newer revision. Admission judges "an ACTIVE revision of the family" on this
// apiserver's cache without catching up first: a revision registered on another apiserver that
// this one's watch has not delivered yet is refused 422 Invalid, which the daemon controller
// takes as "cannot take the newer revision" (it logs and goes on), not 503 (retried).
import { expect } from 'chai';
import { storeKey } from '../../pkg/api/meta.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { FaultStore } from '../support/faultstore.ts';

const V = '/apis/berth.dev/v1';
const dtd = { apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'pd' }, spec: { containerDefinitions: [{ name: 'agent', image: 'busybox', memory: 32 }] } };

describe('C5: a daemon moved to a revision registered on another apiserver', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  let fault: FaultStore;
  before(async () => {
    s = await startApiServer({ wrapStore: (st) => (fault = new FaultStore(st)) });
    expect((await s.call('POST', `${V}/daemontaskdefinitions`, dtd)).status).to.equal(201);
  });
  after(async () => {
    fault?.releaseEvents();
    await s?.stop();
  });

  it('the controller\'s status write naming pd:2 is not refused as invalid while this cache lags', async () => {
    const c = await s.call('POST', `${V}/namespaces/default/daemons`, { apiVersion: 'berth.dev/v1', kind: 'Daemon', metadata: { name: 'pdd' }, spec: { daemonTaskDefinition: 'pd' } });
    expect(c.status, JSON.stringify(c.body)).to.equal(201);
    const l = await s.call('GET', `${V}/namespaces/default/daemons?resourceVersion=${c.body.metadata.resourceVersion}&resourceVersionMatch=NotOlderThan`);
    expect(l.status).to.equal(200);
    fault.holdEvents = true;
    // pd:2 registered through another apiserver (straight into the store)
    const first = (await fault.inner.get(storeKey('daemontaskdefinitions', undefined, 'pd:1')))!;
    const o = JSON.parse(Buffer.from(first.value).toString());
    o.metadata = { ...o.metadata, name: 'pd:2', uid: 'uid-pd-2' };
    o.status = { ...o.status, revision: 2, taskDefinitionArn: String(o.status.taskDefinitionArn).replace(/pd:1$/, 'pd:2') };
    await fault.inner.create(storeKey('daemontaskdefinitions', undefined, 'pd:2'), JSON.stringify(o));
    let r: { status: number; body: any };
    try {
      // the controller (its informer on another apiserver saw pd:2) moves the daemon
      r = await s.call('PATCH', `${V}/namespaces/default/daemons/pdd/status`, undefined, { contentType: 'application/merge-patch+json', raw: JSON.stringify({ status: { taskDefinition: 'pd:2', followedRevision: 2 } }) });
    } finally {
      fault.releaseEvents();
    }
    // while this cache cannot catch up: 503 (retried), never 422 (taken as final)
    expect(r.status, JSON.stringify(r.body)).to.equal(503);
    const again = await s.call('PATCH', `${V}/namespaces/default/daemons/pdd/status`, undefined, { contentType: 'application/merge-patch+json', raw: JSON.stringify({ status: { taskDefinition: 'pd:2', followedRevision: 2 } }) });
    expect(again.status, JSON.stringify(again.body)).to.equal(200);
    expect(again.body.status.taskDefinition).to.equal('pd:2');
  });
});
