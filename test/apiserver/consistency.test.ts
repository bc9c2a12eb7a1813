// Two apiservers on one 3-member etcd cluster, as the HA deployment runs them.
// Apiserver A talks to the leader and one follower; apiserver B only to the other follower F.
// Pausing F (SIGSTOP) makes B lag for real: its store reads and its watch stop while the
// cluster keeps committing A's writes. Modelled on k8s.io/apiserver's RunTestConsistentList,
// RunTestListContinuation and RunWatchSemantics.
import { expect } from 'chai';
import { Client } from '../../pkg/client/client.ts';
import { Informer } from '../../pkg/client/informer.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startEtcdCluster, type EtcdCluster, type EtcdMember } from '../support/etcdcluster.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcpproxy.ts';

const V = '/apis/berth.dev/v1';
const cluster = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name, labels } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A raw watch stream: its events as they arrive. */
function watchStream(s: TestApiServer, path: string) {
  const ctl = new AbortController();
  const events: Array<{ type: string; object: any }> = [];
  let status = 0;
  const done = (async () => {
    const res = await fetch(s.url + path, { headers: { Authorization: `Bearer ${s.adminToken}` }, signal: ctl.signal });
    status = res.status;
    const reader = res.body!.getReader();
    let buf = '';
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) return;
      buf += Buffer.from(value).toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) events.push(JSON.parse(line));
      }
    }
  })().catch(() => {});
  return {
    events,
    get status() {
      return status;
    },
    close: () => ctl.abort(),
    done,
  };
}

describe('consistency across two apiservers on one etcd cluster (C6, C7, C8)', function () {
  this.timeout(240_000);
  let etcd: EtcdCluster;
  let f: EtcdMember; // B's only member
  let a: TestApiServer;
  let b: TestApiServer;

  before(async () => {
    etcd = await startEtcdCluster({ members: 3, extraArgs: ['--max-txn-ops', '10000'] });
    const leader = await etcd.leader();
    f = etcd.members.find((m) => m !== leader)!;
    a = await startApiServer({ etcdEndpoints: etcd.members.filter((m) => m !== f).map((m) => m.clientUrl), server: { compactionIntervalMs: 0 } });
    b = await startApiServer({ etcdEndpoints: [f.clientUrl], server: { compactionIntervalMs: 0 }, adminToken: a.adminToken, bootstrapToken: a.bootstrapToken });
  });
  after(async () => {
    f?.resume();
    await a?.stop();
    await b?.stop();
    await etcd?.stop();
  });
  afterEach(() => f.resume());

  /** B lags for `ms`: its etcd member is stopped while `during` runs, then resumed. */
  async function whileBLags<T>(ms: number, during: () => Promise<T>): Promise<T> {
    f.pause();
    const resumed = sleep(ms).then(() => f.resume());
    try {
      return await during();
    } finally {
      await resumed;
    }
  }

  it('C6: a get or list on B after a write on A sees the write, while B lags (RunTestConsistentList)', async () => {
    const [g, l, g0] = await whileBLags(800, async () => {
      const c = await a.call('POST', `${V}/clusters`, cluster('fresh-1', { t: 'fresh' }));
      expect(c.status).to.equal(201);
      // all three start while B's member is stopped; B must not answer from what it has
      return Promise.all([
        b.call('GET', `${V}/clusters/fresh-1`),
        b.call('GET', `${V}/clusters?labelSelector=t%3Dfresh`),
        b.call('GET', `${V}/clusters/fresh-1?resourceVersion=${c.body.metadata.resourceVersion}`),
      ]);
    });
    expect(g.status, JSON.stringify(g.body)).to.equal(200);
    expect(g.body.metadata.name).to.equal('fresh-1');
    expect(l.status).to.equal(200);
    expect(l.body.items.map((i: any) => i.metadata.name)).to.deep.equal(['fresh-1']);
    expect(Number(l.body.metadata.resourceVersion)).to.be.at.least(Number(g.body.metadata.resourceVersion));
    expect(g0.status).to.equal(200);
  });

  it('C6: concurrent consistent reads on one apiserver share their revision reads', async () => {
    const before = b.api.registry.reader.revisionReads;
    const rs = await Promise.all(Array.from({ length: 40 }, () => b.call('GET', `${V}/clusters/default`)));
    expect(rs.every((r) => r.status === 200)).to.equal(true);
    const used = b.api.registry.reader.revisionReads - before;
    expect(used).to.be.greaterThan(0);
    expect(used, `${used} store revision reads for 40 concurrent gets`).to.be.below(40);
  });

  it('C6: a watch on B from a resourceVersion A returned replays nothing and misses nothing (RunWatchSemantics)', async () => {
    const base = (await a.call('POST', `${V}/clusters`, cluster('w-0', { t: 'w' }))).body.metadata.resourceVersion;
    await until('B has w-0', async () => (await b.call('GET', `${V}/clusters/w-0?resourceVersion=0`)).status === 200);
    let from = '';
    const w = await whileBLags(800, async () => {
      for (const n of ['w-1', 'w-2']) from = (await a.call('POST', `${V}/clusters`, cluster(n, { t: 'w' }))).body.metadata.resourceVersion;
      // the client read w-2 from A; it watches B from there while B is still at w-0
      const s = watchStream(b, `${V}/clusters?watch=1&labelSelector=t%3Dw&resourceVersion=${from}`);
      await a.call('POST', `${V}/clusters`, cluster('w-3', { t: 'w' }));
      return s;
    });
    await a.call('POST', `${V}/clusters`, cluster('w-4', { t: 'w' }));
    await until('w-4 on the watch', () => w.events.some((e) => e.object?.metadata?.name === 'w-4'));
    await sleep(300);
    w.close();
    expect(Number(from)).to.be.greaterThan(Number(base));
    expect(w.events.map((e) => `${e.type} ${e.object.metadata.name}`)).to.deep.equal(['ADDED w-3', 'ADDED w-4']);
    expect(w.events.every((e) => Number(e.object.metadata.resourceVersion) > Number(from))).to.equal(true);
  });

  it('C7: a paginated list is one snapshot across writes on another apiserver; every page has page 1\'s resourceVersion (RunTestListContinuation)', async () => {
    for (let i = 0; i < 6; i++) expect((await a.call('POST', `${V}/clusters`, cluster(`p-${i}`, { t: 'page' }))).status).to.equal(201);
    await until('B has p-5', async () => (await b.call('GET', `${V}/clusters/p-5?resourceVersion=0`)).status === 200);
    const p1 = await a.call('GET', `${V}/clusters?labelSelector=t%3Dpage&limit=3`);
    expect(p1.body.items.map((i: any) => i.metadata.name)).to.deep.equal(['p-0', 'p-1', 'p-2']);
    const snapshot = p1.body.metadata.resourceVersion;
    const before4 = (await a.call('GET', `${V}/clusters/p-4`)).body;
    // meanwhile, through B: p-4 changes, p-5 goes, p-3a appears
    const relabel = JSON.stringify({ metadata: { labels: { t: 'page', changed: 'yes' } } });
    expect((await b.call('PATCH', `${V}/clusters/p-4`, undefined, { contentType: 'application/merge-patch+json', raw: relabel })).status).to.equal(200);
    expect((await b.call('DELETE', `${V}/clusters/p-5`)).status).to.equal(200);
    expect((await b.call('POST', `${V}/clusters`, cluster('p-3a', { t: 'page' }))).status).to.equal(201);
    const p2 = await b.call('GET', `${V}/clusters?labelSelector=t%3Dpage&limit=3&continue=${encodeURIComponent(p1.body.metadata.continue)}`);
    expect(p2.status, JSON.stringify(p2.body)).to.equal(200);
    expect(p2.body.metadata.resourceVersion).to.equal(snapshot);
    expect(p2.body.items.map((i: any) => i.metadata.name)).to.deep.equal(['p-3', 'p-4', 'p-5']);
    const p4 = p2.body.items[1];
    expect(p4.metadata.resourceVersion).to.equal(before4.metadata.resourceVersion);
    expect(p4.metadata.labels.changed).to.equal(undefined);
    // later pages (keys that do not match the selector may follow) hold nothing more, at the same version
    for (let cont = p2.body.metadata.continue; cont; ) {
      const p = await b.call('GET', `${V}/clusters?labelSelector=t%3Dpage&limit=3&continue=${encodeURIComponent(cont)}`);
      expect(p.body.metadata.resourceVersion).to.equal(snapshot);
      expect(p.body.items).to.deep.equal([]);
      cont = p.body.metadata.continue;
    }
    // a list started now sees the new state
    const now = await b.call('GET', `${V}/clusters?labelSelector=t%3Dpage`);
    expect(now.body.items.map((i: any) => i.metadata.name)).to.deep.equal(['p-0', 'p-1', 'p-2', 'p-3', 'p-3a', 'p-4']);
    // a continue token whose revision is compacted: 410 Expired
    const p1b = await b.call('GET', `${V}/clusters?labelSelector=t%3Dpage&limit=2`);
    await a.call('POST', `${V}/clusters`, cluster('p-bump'));
    await a.store.compact(await a.store.currentRevision());
    const gone = await b.call('GET', `${V}/clusters?labelSelector=t%3Dpage&limit=2&continue=${encodeURIComponent(p1b.body.metadata.continue)}`);
    expect(gone.status).to.equal(410);
    expect(gone.body.reason).to.equal('Expired');
    expect(gone.body.message).to.match(/continue parameter is too old/);
  });

  it('C6: a resourceVersion B does not reach in time is 504 "Too large resource version" (get, list, watch)', async () => {
    const cur = Number((await b.call('GET', `${V}/clusters`)).body.metadata.resourceVersion);
    const far = cur + 1_000_000;
    const t0 = Date.now();
    const l = await b.call('GET', `${V}/clusters?resourceVersion=${far}&resourceVersionMatch=NotOlderThan`);
    expect(Date.now() - t0).to.be.at.least(2500); // it waited (about 3 s) before giving up
    expect(l.status).to.equal(504);
    expect(l.body.reason).to.equal('Timeout');
    expect(l.body.details.causes[0].reason).to.equal('ResourceVersionTooLarge');
    expect(l.body.message).to.match(/Too large resource version/);
    const g = await b.call('GET', `${V}/clusters/default?resourceVersion=${far}`);
    expect(g.status).to.equal(504);
    const w = watchStream(b, `${V}/clusters?watch=1&resourceVersion=${far}`);
    await until('an ERROR event', () => w.events.length > 0, 15_000);
    w.close();
    expect(w.events[0].type).to.equal('ERROR');
    expect(w.events[0].object.code).to.equal(504);
    expect(w.events[0].object.details.causes[0].reason).to.equal('ResourceVersionTooLarge');
    // Exact at a revision the store does not have yet: the store says so too
    const x = await b.call('GET', `${V}/clusters?resourceVersion=${far}&resourceVersionMatch=Exact`);
    expect(x.status).to.equal(504);
    // and bad combinations are 400s that name the parameter
    const bad = await b.call('GET', `${V}/clusters?resourceVersionMatch=NotOlderThan`);
    expect(bad.status).to.equal(400);
    expect(bad.body.message).to.match(/resourceVersionMatch/);
  });

  it('C8: a precondition (PUT, DELETE) with a version B has not seen yet is confirmed, not refused with 409', async () => {
    await a.call('POST', `${V}/clusters`, cluster('pre-1', { v: '1' }));
    await a.call('POST', `${V}/clusters`, cluster('pre-2'));
    await until('B has pre-2', async () => (await b.call('GET', `${V}/clusters/pre-2?resourceVersion=0`)).status === 200);
    const [put, del, patch404] = await whileBLags(800, async () => {
      const cur = (await a.call('GET', `${V}/clusters/pre-1`)).body;
      const upd = await a.call('PATCH', `${V}/clusters/pre-1`, undefined, { contentType: 'application/merge-patch+json', raw: JSON.stringify({ metadata: { labels: { v: '2' } } }) });
      expect(upd.status).to.equal(200);
      expect(upd.body.metadata.resourceVersion).to.not.equal(cur.metadata.resourceVersion);
      const p2 = (await a.call('PATCH', `${V}/clusters/pre-2`, undefined, { contentType: 'application/merge-patch+json', raw: JSON.stringify({ metadata: { labels: { x: 'y' } } }) })).body;
      await a.call('POST', `${V}/clusters`, cluster('pre-3'));
      // the client read those versions from A and writes through B, whose cache is older
      return Promise.all([
        b.call('PUT', `${V}/clusters/pre-1`, { ...upd.body, metadata: { ...upd.body.metadata, labels: { v: '3' } } }),
        b.call('DELETE', `${V}/clusters/pre-2`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: p2.metadata.resourceVersion } }),
        b.call('PATCH', `${V}/clusters/pre-3`, undefined, { contentType: 'application/merge-patch+json', raw: JSON.stringify({ metadata: { labels: { seen: 'yes' } } }) }),
      ]);
    });
    expect(put.status, JSON.stringify(put.body)).to.equal(200);
    expect(put.body.metadata.labels.v).to.equal('3');
    expect(del.status, JSON.stringify(del.body)).to.equal(200);
    expect(patch404.status, JSON.stringify(patch404.body)).to.equal(200);
    // a precondition that is really stale is still a 409
    const stale = await b.call('PUT', `${V}/clusters/pre-1`, { ...put.body, metadata: { ...put.body.metadata, resourceVersion: String(Number(put.body.metadata.resourceVersion) - 1) } });
    expect(stale.status).to.equal(409);
  });

  it('C6: a node credential issued through A works on B at once, and the node reads a task bound through A on B (no 401/403 from a lag)', async () => {
    const NS = `${V}/namespaces/default`;
    const instance = { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'node-x' }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 2048 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 2048 }] } };
    await a.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'nodetd' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } });
    const [who, task] = await whileBLags(800, async () => {
      const reg = await a.call('POST', `${NS}/containerinstances`, instance, { token: a.bootstrapToken });
      expect(reg.status, JSON.stringify(reg.body)).to.equal(201);
      const token = reg.body.metadata.annotations['berth.dev/node-token'];
      expect((await a.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'node-t' }, spec: { taskDefinition: 'nodetd' } })).status).to.equal(201);
      const bind = await a.call('POST', `${NS}/bindings`, { bindings: [{ task: 'node-t', containerInstance: 'node-x' }] });
      expect(bind.body.results[0].bound, JSON.stringify(bind.body)).to.equal(true);
      // the agent's next requests land on B, whose cache has neither the credential nor the binding yet
      return Promise.all([b.call('GET', `${NS}/containerinstances/node-x`, undefined, { token }), b.call('GET', `${NS}/tasks/node-t`, undefined, { token })]);
    });
    expect(who.status, JSON.stringify(who.body)).to.equal(200);
    expect(task.status, JSON.stringify(task.body)).to.equal(200);
    expect(task.body.spec.containerInstance).to.equal('node-x');
  });

  describe('an informer failing over from A to B while B lags (C6)', () => {
    let proxy: TcpProxy;
    after(async () => proxy?.close());

    it('C6: relists with resourceVersion=<last seen>&resourceVersionMatch=NotOlderThan: no phantom deletes, no time travel', async () => {
      const port = (s: TestApiServer) => Number(new URL(s.url).port);
      proxy = await startTcpProxy(port(a));
      const client = new Client({ server: `http://127.0.0.1:${proxy.port}`, token: a.adminToken });
      const inf = new Informer(client, 'Cluster', { labelSelector: 'inf=yes', log: process.env.DEBUG_INF ? (await import('../../pkg/log/log.ts')).newLogger({ level: 'debug' }) : undefined });
      const deleted: string[] = [];
      const rvs: number[] = [];
      inf.on({ delete: (o) => deleted.push(o.metadata.name), add: (o) => rvs.push(Number(o.metadata.resourceVersion)), update: (_, o) => rvs.push(Number(o.metadata.resourceVersion)) });
      inf.start();
      try {
        await a.call('POST', `${V}/clusters`, cluster('inf-1', { inf: 'yes' }));
        await until('the informer has inf-1', () => !!inf.get('inf-1'));
        await whileBLags(1500, async () => {
          await a.call('POST', `${V}/clusters`, cluster('inf-2', { inf: 'yes' }));
          await until('the informer has inf-2 (from A)', () => !!inf.get('inf-2'));
          // the load balancer fails over to B, and the watch connection breaks
          const relists = inf.relists;
          proxy.setTarget(port(b));
          proxy.cut();
          await until('the informer relisted', () => inf.relists > relists, 20_000);
        });
        await a.call('POST', `${V}/clusters`, cluster('inf-3', { inf: 'yes' }));
        await until('the informer has inf-3 (from B)', () => !!inf.get('inf-3'));
        expect(deleted, 'objects reported deleted that exist').to.deep.equal([]);
        expect(inf.list().map((o) => o.metadata.name).sort()).to.deep.equal(['inf-1', 'inf-2', 'inf-3']);
        expect(rvs, 'resourceVersions the handlers saw, in order').to.deep.equal([...rvs].sort((x, y) => x - y));
      } finally {
        inf.stop();
        client.close();
      }
    });
  });
});
