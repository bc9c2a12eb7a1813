import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { startAuthzServer, ns, type AuthzServer } from '../support/authz.ts';
import { eventually } from '../support/fleet.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startEtcd, type EtcdProcess } from '../support/etcd.ts';
import { FENCE_HEADER, fenceHeader, fenceKey } from '../../pkg/apiserver/fence.ts';

/**
 * POST /namespaces/CLUSTER/taskstatuses: an agent's status reports of one interval in one
 * request and one store txn, each item answered (and checked: node restriction, admission,
 * validation) as its own status PATCH. Real apiserver, embedded store and real etcd.
 */
for (const store of ['embedded', 'etcd'] as const) {
  describe(`taskstatuses: many task statuses in one request and one txn (${store} store)`, function () {
    this.timeout(90_000);
    let s: AuthzServer;
    let n = 0;
    const post = (who: 'nodeA' | 'nodeB' | 'admin' | 'viewer', statuses: unknown, cluster = 'A') => s.k8s(who, 'POST', `${ns(cluster)}/taskstatuses`, { statuses });
    const getTask = async (name: string) => (await s.k8s('admin', 'GET', `${ns('A')}/tasks/${name}`)).body;
    /** new tasks bound to ci-a (nodeA's instance) */
    const tasksOnA = async (count: number) => {
      const names = Array.from({ length: count }, () => `bt${++n}`);
      for (const name of names) {
        const r = await s.k8s('admin', 'POST', `${ns('A')}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name }, spec: { taskDefinition: 'web' } });
        expect(r.status, JSON.stringify(r.body)).to.equal(201);
      }
      const b = await s.k8s('admin', 'POST', `${ns('A')}/bindings`, { bindings: names.map((task) => ({ task, containerInstance: 'ci-a' })) });
      expect(b.body.results.every((x: { bound: boolean }) => x.bound), JSON.stringify(b.body)).to.equal(true);
      return names;
    };
    const revision = () => s.api.store.currentRevision();

    before(async () => {
      s = await startAuthzServer({ store });
    });
    after(async () => s?.stop());

    it('a batch of N statuses is ONE store txn: one revision, every task at it, and each task is a watch event', async () => {
      const names = await tasksOnA(8);
      const before = await revision();
      const watch = new AbortController();
      const events: string[] = [];
      const res = await fetch(`${s.api.url}${ns('A')}/tasks?watch=true&resourceVersion=${before}`, { headers: { Authorization: `Bearer ${s.api.adminToken}` }, signal: watch.signal });
      const reading = (async () => {
        const dec = new TextDecoder();
        let buf = '';
        for await (const chunk of res.body!) {
          buf += dec.decode(chunk as Uint8Array, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const ev = JSON.parse(buf.slice(0, i));
            buf = buf.slice(i + 1);
            if (ev.type === 'MODIFIED') events.push(`${ev.object.metadata.name} ${ev.object.status.lastStatus} ${ev.object.metadata.resourceVersion}`);
          }
        }
      })().catch(() => undefined);
      const r = await post(
        'nodeA',
        names.map((task) => ({ task, status: { lastStatus: 'RUNNING', version: 2 } })),
      );
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body.results.map((x: { code: number }) => x.code)).to.deep.equal(names.map(() => 200));
      const rvs = new Set(r.body.results.map((x: { resourceVersion: string }) => x.resourceVersion));
      expect(rvs.size, 'every item committed at one revision').to.equal(1);
      expect(await revision(), 'one txn: the store moved by one revision').to.equal(before + 1);
      const rv = [...rvs][0];
      for (const name of names) {
        const t = await getTask(name);
        expect([t.status.lastStatus, t.metadata.resourceVersion]).to.deep.equal(['RUNNING', rv]);
      }
      await eventually(() => events.length >= names.length, 10_000, 'a watch event per task');
      expect(events.sort()).to.deep.equal(names.map((x) => `${x} RUNNING ${rv}`).sort());
      watch.abort();
      await reading;
    });

    it('each item has its own outcome; a hostile node naming another node\'s task is refused for that item and writes nothing for it', async () => {
      const [ok, back] = await tasksOnA(2);
      expect((await post('nodeA', [{ task: back, status: { lastStatus: 'RUNNING', version: 2 } }])).body.results[0].code).to.equal(200);
      const tb = await getTask('tb'); // bound to ci-b
      const before = await revision();
      const r = await post('nodeA', [
        { task: ok, status: { lastStatus: 'RUNNING', version: 2 } },
        { task: 'tb', status: { lastStatus: 'STOPPED', stoppedReason: 'hostile', version: 9 } },
        { task: back, status: { lastStatus: 'PENDING', version: 3 } },
        { task: ok, status: { lastStatus: 'STOPPED', version: 3 } },
        { task: 'absent', status: { lastStatus: 'RUNNING' } },
      ]);
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      const [a, b, c, d, e] = r.body.results;
      expect(a.code, JSON.stringify(a)).to.equal(200);
      expect([b.code, b.reason], JSON.stringify(b)).to.deep.equal([403, 'Forbidden']);
      expect([c.code, c.reason], JSON.stringify(c)).to.deep.equal([422, 'Invalid']);
      expect(c.message).to.match(/lastStatus/);
      expect([d.code, d.message], JSON.stringify(d)).to.deep.equal([400, d.message]);
      expect(d.message).to.match(/named twice/);
      expect(e.code, JSON.stringify(e)).to.be.oneOf([403, 404]);
      expect(await revision(), 'one txn, for the one item that may be written').to.equal(before + 1);
      const tbAfter = await getTask('tb');
      expect(tbAfter.metadata.resourceVersion).to.equal(tb.metadata.resourceVersion);
      expect(tbAfter.status.lastStatus).to.equal(tb.status.lastStatus);
      expect((await getTask(back)).status.lastStatus).to.equal('RUNNING');
      expect((await getTask(ok)).status.lastStatus).to.equal('RUNNING');
      // the audit line names each item and how it was answered
      await eventually(async () => (await readFile(s.auditLog, 'utf8')).includes('"items"'), 5000, 'the audit line');
      const line = (await readFile(s.auditLog, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .find((l) => l.items?.some((x: { name: string; code: number }) => x.name === 'tb' && x.code === 403));
      expect(line, 'an audit line for the batch').to.not.equal(undefined);
      expect(line.resource).to.deep.include({ plural: 'tasks', namespace: 'A', subresource: 'status' });
      expect(line.items.map((x: { code: number }) => x.code)).to.deep.equal([200, 403, 422, 400, e.code]);
    });

    it('a node may not write what a node does not own in its own tasks\' status (node restriction per item)', async () => {
      const [t] = await tasksOnA(1);
      const r = await post('nodeA', [{ task: t, status: { taskArn: 'arn:aws:ecs:us-east-1:000000000000:task/A/forged' } }]);
      expect([r.body.results[0].code, r.body.results[0].reason]).to.deep.equal([403, 'Forbidden']);
      expect((await getTask(t)).status.taskArn).to.not.match(/forged/);
      // and a viewer may write no status at all
      const v = await post('viewer', [{ task: t, status: { lastStatus: 'RUNNING' } }]);
      expect(v.body.results[0].code).to.equal(403);
      expect((await getTask(t)).status.lastStatus).to.equal('PENDING');
    });

    it('tasks of one instance stopping in one batch each release their allocation (the record is written once per txn)', async () => {
      const left = async () => (await s.k8s('admin', 'GET', `${ns('A')}/containerinstances/ci-a`)).body.status.remainingResources.find((x: { name: string }) => x.name === 'MEMORY').integerValue;
      const start = await left();
      const names = await tasksOnA(3);
      expect(await left()).to.equal(start - 3 * 64);
      const r = await post(
        'nodeA',
        names.map((task) => ({ task, status: { lastStatus: 'STOPPED', stoppedReason: 'done', version: 2 } })),
      );
      expect(r.body.results.map((x: { code: number }) => x.code), JSON.stringify(r.body)).to.deep.equal([200, 200, 200]);
      for (const name of names) expect((await getTask(name)).status.lastStatus).to.equal('STOPPED');
      expect(await left()).to.equal(start);
    });

    it('bad input is a 4xx naming the field (422 Invalid, as a binding call): empty, too many, not an object, an unknown field', async () => {
      const cases: Array<[unknown, RegExp]> = [
        [[], /statuses/],
        [Array.from({ length: 1001 }, (_, i) => ({ task: `x${i}`, status: {} })), /statuses.*1000|1000.*statuses/s],
        [[{ task: 'x', status: 'RUNNING' }], /statuses\[0\]\.status/],
        [[{ task: 'x', status: {}, extra: 1 }], /extra/],
        [[{ status: {} }], /statuses\[0\]\.task/],
      ];
      for (const [statuses, field] of cases) {
        const before = await revision();
        const r = await post('nodeA', statuses);
        expect(r.status, JSON.stringify(r.body).slice(0, 300)).to.be.oneOf([400, 422]);
        expect(JSON.stringify(r.body)).to.match(field);
        expect(await revision()).to.equal(before);
      }
    });
  });
}

describe("taskstatuses on etcd with its DEFAULT limits (128 compares and ops per txn)", function () {
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

  it('a batch bigger than one txn may hold is split into as few txns as fit, every item committed', async () => {
    const N = 150;
    const V = '/apis/berth.dev/v1';
    const must = async (p: Promise<{ status: number; body: any }>) => {
      const r = await p;
      expect(r.status, JSON.stringify(r.body)).to.be.oneOf([200, 201]);
      return r;
    };
    await must(s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'tiny' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 4 }] } }));
    const resources = [
      { name: 'CPU', type: 'INTEGER', integerValue: 1_000_000 },
      { name: 'MEMORY', type: 'INTEGER', integerValue: 1_000_000 },
    ];
    await must(s.call('POST', `${V}/namespaces/default/containerinstances`, { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'big' }, spec: { registeredResources: resources } }));
    const names = Array.from({ length: N }, (_, i) => `split${i}`);
    for (const name of names) await must(s.call('POST', `${V}/namespaces/default/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name }, spec: { taskDefinition: 'tiny' } }));
    const b = await must(s.call('POST', `${V}/namespaces/default/bindings`, { bindings: names.map((task) => ({ task, containerInstance: 'big' })) }));
    expect(b.body.results.every((x: { bound: boolean }) => x.bound)).to.equal(true);
    const before = await s.store.currentRevision();
    const r = await must(s.call('POST', `${V}/namespaces/default/taskstatuses`, { statuses: names.map((task) => ({ task, status: { lastStatus: 'RUNNING', version: 2 } })) }));
    expect(r.body.results.filter((x: { code: number }) => x.code !== 200)).to.deep.equal([]);
    // 150 items of one compare and one put each: 128 in the first txn, 22 in the second
    expect(await s.store.currentRevision()).to.equal(before + 2);
    expect(new Set(r.body.results.map((x: { resourceVersion: string }) => x.resourceVersion)).size).to.equal(2);
  });

  it("a controller's fenced batch: the fence's compare counts against the limit too (bindings and statuses of 150 tasks)", async () => {
    const V = '/apis/berth.dev/v1';
    const lease = await s.call('POST', `${V}/namespaces/berth-system/leases`, {
      apiVersion: 'berth.dev/v1', kind: 'Lease', metadata: { name: 'big-batches' },
      spec: { holderIdentity: 'me', acquireTime: new Date().toISOString(), renewTime: new Date().toISOString(), leaseDurationSeconds: 60 },
    });
    expect(lease.status, JSON.stringify(lease.body)).to.equal(201);
    const fence = fenceHeader('berth-system', 'big-batches', (await s.store.get(fenceKey('berth-system', 'big-batches')))!.modRevision);
    const fenced = async (path: string, body: unknown) => {
      const res = await fetch(`${s.url}${V}/namespaces/default/${path}`, { method: 'POST', headers: { Authorization: `Bearer ${s.adminToken}`, 'Content-Type': 'application/json', [FENCE_HEADER]: fence }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as any };
    };
    const names = Array.from({ length: 150 }, (_, i) => `fenced${i}`);
    for (const name of names) expect((await s.call('POST', `${V}/namespaces/default/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name }, spec: { taskDefinition: 'tiny' } })).status).to.equal(201);
    const b = await fenced('bindings', { bindings: names.map((task) => ({ task, containerInstance: 'big' })) });
    expect(b.status, JSON.stringify(b.body).slice(0, 400)).to.equal(200);
    expect(b.body.results.filter((x: { bound: boolean }) => !x.bound)).to.deep.equal([]);
    const r = await fenced('taskstatuses', { statuses: names.map((task) => ({ task, status: { lastStatus: 'RUNNING', version: 2 } })) });
    expect(r.status, JSON.stringify(r.body).slice(0, 400)).to.equal(200);
    expect(r.body.results.filter((x: { code: number }) => x.code !== 200)).to.deep.equal([]);
  });
});
