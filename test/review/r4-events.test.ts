import { expect } from 'chai';
import { eventsOf } from '../../pkg/apiserver/events.ts';
import type { WatchCache } from '../../pkg/apiserver/watchcache.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

/** Regression tests for the core/v1 Events view: the finding each guards is in its title. */
const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;

describe('review R4: core/v1 events', function () {
  this.timeout(30_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer();
    const td = await s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'ev' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 32 }] } });
    expect(td.status, JSON.stringify(td.body)).to.equal(201);
    const sv = await s.call('POST', `${NS}/services`, { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'ev' }, spec: { taskDefinition: 'ev', desiredCount: 0 } });
    expect(sv.status, JSON.stringify(sv.body)).to.equal(201);
  });
  after(async () => {
    await s?.stop();
  });

  async function addEvent(id: string, message: string) {
    const cur = (await s.call('GET', `${NS}/services/ev`)).body;
    const events = [...(cur.status?.events ?? []), { id, createdAt: new Date().toISOString(), message }];
    const r = await s.call('PUT', `${NS}/services/ev/status`, { ...cur, status: { ...(cur.status ?? {}), events } });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
  }

  it('R4-5: an event that appears between a list and the watch resumed from its resourceVersion is delivered (kubectl get events -w)', async () => {
    await addEvent('e1', '(service ev) has reached a steady state.');
    const list = await s.call('GET', '/api/v1/namespaces/default/events');
    expect(list.status).to.equal(200);
    const rv = list.body.metadata.resourceVersion;
    // the event written after the list, before the watch starts (kubectl's list-then-watch gap)
    await addEvent('e2', '(service ev) has started 1 tasks: (task x).');
    const res = await fetch(`${s.url}/api/v1/namespaces/default/events?watch=1&resourceVersion=${rv}&timeoutSeconds=2`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
    const text = await res.text();
    const after = await s.call('GET', '/api/v1/namespaces/default/events');
    expect(after.body.items.map((e: { metadata: { name: string } }) => e.metadata.name), 'the event is in a list').to.include('ev.e2');
    expect(text, 'the watch skipped an event newer than the resourceVersion it resumed from').to.contain('ev.e2');
  });

  it('R4-5: a watch resumed from the current resourceVersion sends nothing the list already had', async () => {
    const list = await s.call('GET', '/api/v1/namespaces/default/events');
    expect(list.body.items.length).to.be.greaterThan(0);
    const res = await fetch(`${s.url}/api/v1/namespaces/default/events?watch=1&resourceVersion=${list.body.metadata.resourceVersion}&timeoutSeconds=1`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
    expect(await res.text()).to.equal('');
  });

  it('R4-6: the events view at 10x (2,000 services x 100 events, 20,000 stopped tasks) is built once per cache revision, not once per watcher', () => {
    const services: Array<[string, unknown]> = [];
    for (let i = 0; i < 2000; i++) {
      const events = Array.from({ length: 100 }, (_, j) => ({ id: `e${j}`, createdAt: new Date(1_700_000_000_000 + i * 1000 + j).toISOString(), message: `(service s${i}) has reached a steady state.` }));
      services.push([`k${i}`, { metadata: { name: `s${i}`, namespace: 'default', uid: `u${i}`, resourceVersion: '1' }, status: { events } }]);
    }
    const tasks: Array<[string, unknown]> = [];
    for (let i = 0; i < 20_000; i++) tasks.push([`t${i}`, { metadata: { name: `t${i}`, namespace: 'default', resourceVersion: '1' }, status: { lastStatus: 'STOPPED', stoppedAt: new Date(1_700_000_000_000 + i).toISOString(), stoppedReason: 'Essential container in task exited', stopCode: 'EssentialContainerExited' } }]);
    const fake = { revision: 1, list: (plural: string) => (plural === 'services' ? services : plural === 'tasks' ? tasks : []) };
    const cache = fake as unknown as WatchCache;
    let t0 = performance.now();
    const built = eventsOf(cache, 'default');
    const buildMs = performance.now() - t0;
    expect(built.length).to.equal(220_000);
    // 250 watchers reading the view in the same second, the cache unchanged
    t0 = performance.now();
    for (let w = 0; w < 250; w++) expect(eventsOf(cache, 'default')).to.equal(built);
    const readMs = performance.now() - t0;
    expect(readMs, `250 watchers at one revision took ${readMs.toFixed(1)} ms (one build: ${buildMs.toFixed(0)} ms)`).to.be.below(50);
    // a change: the next read sees it
    tasks.push(['t-new', { metadata: { name: 't-new', namespace: 'default', resourceVersion: '2' }, status: { lastStatus: 'STOPPED', stoppedAt: new Date(1_800_000_000_000).toISOString(), stopCode: 'UserInitiated' } }]);
    fake.revision = 2;
    const next = eventsOf(cache, 'default');
    expect(next.length).to.equal(220_001);
    expect(next.at(-1)!.metadata.name).to.equal('t-new.stopped');
  });
});
