import { expect } from 'chai';
import { eventsOf } from '../../pkg/apiserver/events.ts';
import type { WatchCache } from '../../pkg/apiserver/watchcache.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

/** Review probes for the core/v1 Events view. A failing `it` is a finding (its id in the title). */
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

  it('R4-6: building the events view at 10x (2,000 services x 100 events, 20,000 stopped tasks) takes under 50 ms (each events watch rebuilds it every second)', () => {
    const services: Array<[string, unknown]> = [];
    for (let i = 0; i < 2000; i++) {
      const events = Array.from({ length: 100 }, (_, j) => ({ id: `e${j}`, createdAt: new Date(1_700_000_000_000 + i * 1000 + j).toISOString(), message: `(service s${i}) has reached a steady state.` }));
      services.push([`k${i}`, { metadata: { name: `s${i}`, namespace: 'default', uid: `u${i}`, resourceVersion: '1' }, status: { events } }]);
    }
    const tasks: Array<[string, unknown]> = [];
    for (let i = 0; i < 20_000; i++) tasks.push([`t${i}`, { metadata: { name: `t${i}`, namespace: 'default', resourceVersion: '1' }, status: { lastStatus: 'STOPPED', stoppedAt: new Date(1_700_000_000_000 + i).toISOString(), stoppedReason: 'Essential container in task exited', stopCode: 'EssentialContainerExited' } }]);
    const cache = { list: (plural: string) => (plural === 'services' ? services : plural === 'tasks' ? tasks : []) } as unknown as WatchCache;
    eventsOf(cache, 'default'); // warm
    const t0 = performance.now();
    const n = eventsOf(cache, 'default').length;
    const ms = performance.now() - t0;
    expect(n).to.equal(220_000);
    expect(ms, `one rebuild took ${ms.toFixed(0)} ms; 10 kubectl events -w spend ${(ms * 10 / 10).toFixed(0)}% of a core`).to.be.below(50);
  });
});
