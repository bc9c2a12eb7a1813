import { expect } from 'chai';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const V = '/apis/berth.dev/v1';
const td = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'TaskDefinition',
  metadata: { name },
  spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 128, portMappings: [{ containerPort: 80 }], ...extra }] },
});
const instance = (name: string, cpu = 1024, memory = 1024, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'ContainerInstance',
  metadata: { name },
  spec: {
    registeredResources: [
      { name: 'CPU', type: 'INTEGER', integerValue: cpu },
      { name: 'MEMORY', type: 'INTEGER', integerValue: memory },
      { name: 'PORTS', type: 'STRINGSET', stringSetValue: ['22'] },
      { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: [] },
    ],
    ...extra,
  },
});
const task = (name: string, taskDefinition: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'berth.dev/v1',
  kind: 'Task',
  metadata: { name },
  spec: { taskDefinition, ...extra },
});

for (const store of ['embedded', 'etcd'] as const) {
  describe(`apiserver resources (${store} store)`, function () {
    this.timeout(60_000);
    let s: TestApiServer;
    before(async () => {
      s = await startApiServer({ store, watchCacheCapacity: 200 });
    });
    after(async () => s?.stop());

    it('creates, reads, lists and deletes with uid, generation and resourceVersion', async () => {
      const c = await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'crud', labels: { team: 'a' } } });
      expect(c.status).to.equal(201);
      expect(c.body.metadata.uid).to.match(/^[0-9a-f-]{36}$/);
      expect(c.body.metadata.generation).to.equal(1);
      expect(Number(c.body.metadata.resourceVersion)).to.be.greaterThan(0);
      expect(c.body.status.status).to.equal('ACTIVE');
      const g = await s.call('GET', `${V}/clusters/crud`);
      expect(g.body.metadata.uid).to.equal(c.body.metadata.uid);
      const dup = await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'crud' } });
      expect(dup.status).to.equal(409);
      expect(dup.body.reason).to.equal('AlreadyExists');
      const l = await s.call('GET', `${V}/clusters?labelSelector=team%3Da`);
      expect(l.body.items.map((i: any) => i.metadata.name)).to.deep.equal(['crud']);
      const d = await s.call('DELETE', `${V}/clusters/crud`);
      expect(d.status).to.equal(200);
      expect((await s.call('GET', `${V}/clusters/crud`)).status).to.equal(404);
    });

    it('refuses a stale resourceVersion with 409 and lets exactly one of two racing writers win', async () => {
      const c = await s.call('POST', `${V}/namespaces/default/services`, {
        apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'race' }, spec: { taskDefinition: 'x:1', desiredCount: 1 },
      });
      // the task definition does not exist: services resolve it at creation
      expect(c.status).to.equal(422);
      expect((await s.call('POST', `${V}/taskdefinitions`, td('racetd'))).status).to.equal(201);
      const ok = await s.call('POST', `${V}/namespaces/default/services`, {
        apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'race' }, spec: { taskDefinition: 'racetd', desiredCount: 1 },
      });
      expect(ok.status).to.equal(201);
      const put = (n: number) => s.call('PUT', `${V}/namespaces/default/services/race`, { ...ok.body, spec: { ...ok.body.spec, desiredCount: n } });
      const results = await Promise.all([put(2), put(3), put(4)]);
      expect(results.map((r) => r.status).sort()).to.deep.equal([200, 409, 409]);
      const conflicts = results.filter((r) => r.status === 409);
      expect(conflicts[0].body.reason).to.equal('Conflict');
      const now = await s.call('GET', `${V}/namespaces/default/services/race`);
      const winner = results.find((r) => r.status === 200)!.body.spec.desiredCount;
      expect(now.body.spec.desiredCount).to.equal(winner);
      expect(now.body.metadata.generation).to.equal(2);
      // a stale version in a merge patch is refused too
      const stale = await s.call('PATCH', `${V}/namespaces/default/services/race`, { metadata: { resourceVersion: ok.body.metadata.resourceVersion }, spec: { desiredCount: 9 } }, { contentType: 'application/merge-patch+json' });
      expect(stale.status).to.equal(409);
    });

    it('keeps spec and status apart: the object ignores status, /status ignores spec', async () => {
      const c = await s.call('POST', `${V}/namespaces/default/containerinstances`, instance('ci-status'));
      expect(c.status).to.equal(201);
      const p = await s.call('PATCH', `${V}/namespaces/default/containerinstances/ci-status`, { spec: { status: 'DRAINING' }, status: { agentConnected: false } }, { contentType: 'application/merge-patch+json' });
      expect(p.status).to.equal(200);
      expect(p.body.spec.status).to.equal('DRAINING');
      expect(p.body.status.agentConnected).to.equal(true);
      const ps = await s.call('PATCH', `${V}/namespaces/default/containerinstances/ci-status/status`, { spec: { status: 'ACTIVE' }, status: { agentConnected: false } }, { contentType: 'application/merge-patch+json' });
      expect(ps.status).to.equal(200);
      expect(ps.body.spec.status).to.equal('DRAINING');
      expect(ps.body.status.agentConnected).to.equal(false);
      expect(ps.body.metadata.generation).to.equal(2); // status writes do not bump it
      const jp = await s.call('PATCH', `${V}/namespaces/default/containerinstances/ci-status`, [{ op: 'replace', path: '/spec/status', value: 'ACTIVE' }], { contentType: 'application/json-patch+json' });
      expect(jp.status).to.equal(200);
      expect(jp.body.spec.status).to.equal('ACTIVE');
      const bad = await s.call('PATCH', `${V}/namespaces/default/containerinstances/ci-status`, [{ op: 'test', path: '/spec/status', value: 'DRAINING' }], { contentType: 'application/json-patch+json' });
      expect(bad.status).to.be.within(400, 499);
    });

    it('registers task definition revisions: same content is a no-op, new content the next revision, family resolves to the latest ACTIVE', async () => {
      const a = await s.call('POST', `${V}/taskdefinitions`, td('fam'));
      expect(a.body.metadata.name).to.equal('fam:1');
      const again = await s.call('POST', `${V}/taskdefinitions`, td('fam'));
      expect(again.body.metadata.name).to.equal('fam:1');
      const b = await s.call('POST', `${V}/taskdefinitions`, td('fam', { memory: 256 }));
      expect(b.body.metadata.name).to.equal('fam:2');
      expect(b.body.status.taskDefinitionArn).to.match(/:task-definition\/fam:2$/);
      expect((await s.call('GET', `${V}/taskdefinitions/fam`)).body.status.revision).to.equal(2);
      const edit = await s.call('PATCH', `${V}/taskdefinitions/fam:2`, { spec: { cpu: '256' } }, { contentType: 'application/merge-patch+json' });
      expect(edit.status).to.equal(422);
      expect(JSON.stringify(edit.body)).to.contain('immutable');
      // deregistering the latest revision makes the family resolve to the one before
      expect((await s.call('DELETE', `${V}/taskdefinitions/fam:2`)).body.status.status).to.equal('INACTIVE');
      expect((await s.call('GET', `${V}/taskdefinitions/fam`)).body.status.revision).to.equal(1);
      expect((await s.call('GET', `${V}/taskdefinitions/fam:2`)).body.status.status).to.equal('INACTIVE');
    });

    it('lists by field selector and pages with limit/continue', async () => {
      await s.call('POST', `${V}/taskdefinitions`, td('pager'));
      for (let i = 0; i < 7; i++) {
        const r = await s.call('POST', `${V}/namespaces/default/tasks`, task(`pg-${i}`, 'pager', { group: i % 2 ? 'family:odd' : 'family:even' }));
        expect(r.status).to.equal(201);
      }
      const odd = await s.call('GET', `${V}/namespaces/default/tasks?fieldSelector=spec.group%3Dfamily%3Aodd`);
      expect(odd.body.items.map((t: any) => t.metadata.name).sort()).to.deep.equal(['pg-1', 'pg-3', 'pg-5']);
      const seen: string[] = [];
      let cont = '';
      let pages = 0;
      do {
        const p = await s.call('GET', `${V}/namespaces/default/tasks?labelSelector=&limit=3${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
        expect(p.status).to.equal(200);
        seen.push(...p.body.items.map((t: any) => t.metadata.name));
        cont = p.body.metadata.continue ?? '';
        pages++;
      } while (cont);
      expect(pages).to.be.greaterThanOrEqual(3);
      expect(seen.filter((n) => n.startsWith('pg-')).sort()).to.deep.equal(['pg-0', 'pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5', 'pg-6']);
      expect(new Set(seen).size).to.equal(seen.length);
      const unknownField = await s.call('GET', `${V}/namespaces/default/tasks?fieldSelector=spec.nope%3Dx`);
      expect(unknownField.status).to.equal(400);
      expect(unknownField.body.message).to.contain('spec.nope');
    });

    it('streams watch events from a resourceVersion, resumes, and answers 410 Expired for a compacted one', async () => {
      const start = await s.call('GET', `${V}/namespaces/default/containerinstances`);
      const rv = start.body.metadata.resourceVersion;
      const ctl = new AbortController();
      const res = await fetch(`${s.url}${V}/namespaces/default/containerinstances?watch=1&resourceVersion=${rv}`, {
        headers: { Authorization: `Bearer ${s.adminToken}` },
        signal: ctl.signal,
      });
      expect(res.status).to.equal(200);
      await s.call('POST', `${V}/namespaces/default/containerinstances`, instance('w1'));
      await s.call('PATCH', `${V}/namespaces/default/containerinstances/w1`, { metadata: { labels: { x: 'y' } } }, { contentType: 'application/merge-patch+json' });
      await s.call('DELETE', `${V}/namespaces/default/containerinstances/w1`);
      const events: any[] = [];
      const reader = res.body!.getReader();
      let buf = '';
      while (events.filter((e) => e.object.metadata.name === 'w1').length < 3) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += Buffer.from(value).toString();
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          if (buf.slice(0, nl).trim()) events.push(JSON.parse(buf.slice(0, nl)));
          buf = buf.slice(nl + 1);
        }
      }
      ctl.abort();
      const mine = events.filter((e) => e.object.metadata.name === 'w1');
      expect(mine.map((e) => e.type)).to.deep.equal(['ADDED', 'MODIFIED', 'DELETED']);
      const revs = mine.map((e) => Number(e.object.metadata.resourceVersion));
      expect(revs[0]).to.be.lessThan(revs[1]);
      // the watch cache keeps 200 events here: push rv out of it, and compact the store too
      for (let i = 0; i < 210; i++) await s.call('POST', `${V}/clusters`, { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: `churn-${i}` } });
      await s.store.compact(Number((await s.call('GET', `${V}/clusters`)).body.metadata.resourceVersion));
      const gone = await fetch(`${s.url}${V}/namespaces/default/containerinstances?watch=1&resourceVersion=${rv}`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
      const text = await gone.text();
      const status = gone.status === 410 ? JSON.parse(text) : JSON.parse(text.trim().split('\n')[0]).object;
      expect(status.reason).to.equal('Expired');
      expect(status.code).to.equal(410);
    });

    it('binds many tasks in one call, never over-commits or double-books a port however many binders race', async () => {
      await s.call('POST', `${V}/taskdefinitions`, td('fixed', { portMappings: [{ containerPort: 80, hostPort: 8080 }], memory: 100, cpu: 10 }));
      await s.call('POST', `${V}/taskdefinitions`, td('dyn', { memory: 100, cpu: 10 }));
      for (const n of ['b1', 'b2']) expect((await s.call('POST', `${V}/namespaces/default/containerinstances`, instance(n, 1024, 1000))).status).to.equal(201);
      const names: string[] = [];
      for (let i = 0; i < 30; i++) {
        const name = `bt-${i}`;
        names.push(name);
        expect((await s.call('POST', `${V}/namespaces/default/tasks`, task(name, i < 4 ? 'fixed' : 'dyn'))).status).to.equal(201);
      }
      // 6 binders race, each trying to put every task on the same two instances
      const binders = Array.from({ length: 6 }, (_, k) =>
        s.call('POST', `${V}/namespaces/default/bindings`, { bindings: names.map((t, i) => ({ task: t, containerInstance: (i + k) % 2 ? 'b1' : 'b2' })) }),
      );
      const out = await Promise.all(binders);
      for (const o of out) expect(o.status).to.equal(200);
      const tasks = (await s.call('GET', `${V}/namespaces/default/tasks?labelSelector=`)).body.items.filter((t: any) => t.metadata.name.startsWith('bt-'));
      const perInstance = new Map<string, { memory: number; ports: number[] }>();
      for (const t of tasks) {
        if (!t.spec.containerInstance) continue;
        const e = perInstance.get(t.spec.containerInstance) ?? { memory: 0, ports: [] };
        e.memory += 100;
        e.ports.push(...(t.spec.hostPorts ?? []).map((p: any) => p.hostPort));
        perInstance.set(t.spec.containerInstance, e);
      }
      let bound = 0;
      for (const [ci, e] of perInstance) {
        expect(e.memory, `memory on ${ci}`).to.be.at.most(1000);
        expect(new Set(e.ports).size, `ports on ${ci}: ${e.ports}`).to.equal(e.ports.length);
        expect(e.ports.filter((p) => p === 8080).length).to.be.at.most(1);
        bound += e.memory / 100;
      }
      // 20 tasks fit (10 per instance by memory), and only 2 of the 4 fixed-port ones can
      expect(bound).to.equal(20);
      for (const ci of ['b1', 'b2']) {
        const got = (await s.call('GET', `${V}/namespaces/default/containerinstances/${ci}`)).body;
        const mem = got.status.remainingResources.find((r: any) => r.name === 'MEMORY').integerValue;
        expect(mem).to.equal(1000 - perInstance.get(ci)!.memory);
      }
      // stopping a task releases its allocation in the same write
      const victim = tasks.find((t: any) => t.spec.containerInstance === 'b1');
      const st = await s.call('PATCH', `${V}/namespaces/default/tasks/${victim.metadata.name}/status`, { status: { lastStatus: 'STOPPED' } }, { contentType: 'application/merge-patch+json' });
      expect(st.status).to.equal(200);
      const after = (await s.call('GET', `${V}/namespaces/default/containerinstances/b1`)).body;
      expect(after.status.remainingResources.find((r: any) => r.name === 'MEMORY').integerValue).to.equal(1000 - perInstance.get('b1')!.memory + 100);
    });
  });
}
