// Compaction (C10) and etcd's message limits at the apiserver (C1), on real etcd and the
// embedded store.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Compactor, COMPACT_KEY } from '../../pkg/apiserver/compactor.ts';
import { Client } from '../../pkg/client/client.ts';
import { Informer } from '../../pkg/client/informer.ts';
import { CompactedError } from '../../pkg/errors/errors.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { EtcdStore } from '../../pkg/store/etcd.ts';
import type { Store } from '../../pkg/store/store.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startEtcd, type EtcdProcess } from '../support/etcd.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcpproxy.ts';

const V = '/apis/berth.dev/v1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cluster = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name, labels } });

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

for (const backend of ['embedded', 'etcd'] as const) {
  describe(`compactor (${backend} store, C10)`, function () {
    this.timeout(120_000);
    let etcd: EtcdProcess | undefined;
    let dir: string;
    let s1: Store;
    let s2: Store; // a second apiserver's connection to the same data
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'berth-compactor-'));
      if (backend === 'etcd') {
        etcd = await startEtcd();
        s1 = new EtcdStore({ hosts: [etcd.endpoint] });
        s2 = new EtcdStore({ hosts: [etcd.endpoint] });
      } else {
        s1 = s2 = EmbeddedStore.open(dir); // one process per embedded store: its compactors share it
      }
    });
    after(async () => {
      await s1?.close();
      if (s2 !== s1) await s2?.close();
      await etcd?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('C10: of two apiservers one compacts per round, keeping the retention; the other takes over when the first stops', async () => {
      let now = 0;
      const c1 = new Compactor(s1, silentLogger(), { retentionMs: 1000, now: () => now });
      const c2 = new Compactor(s2, silentLogger(), { retentionMs: 1000, now: () => now });
      const revAt: number[] = [];
      const round = async (who: Compactor[]) => {
        await s1.create(`/c10/${now}`, 'x');
        revAt.push(await s1.currentRevision());
        for (const c of who) await c.tick();
        now += 500;
      };
      for (let i = 0; i < 6; i++) await round([c1, c2]);
      expect(c1.wins).to.equal(6);
      expect(c2.wins).to.equal(0);
      // the last round (t=2500) compacted to what the store had at t=1500: 1 s of history kept
      expect(c1.compactedTo).to.be.within(revAt[3], revAt[3] + 4);
      expect(await rejects(s1.list('/c10/', { revision: revAt[2] }))).to.be.instanceOf(CompactedError);
      expect((await s1.list('/c10/', { revision: c1.compactedTo })).items.length).to.be.at.least(4);
      // c1's apiserver goes away: c2 wins the next round and compacts further
      const before = c1.compactedTo;
      for (let i = 0; i < 3; i++) await round([c2]);
      expect(c2.wins).to.be.at.least(2);
      expect(c2.compactedTo).to.be.greaterThan(before);
      const rec = JSON.parse((await s1.get(COMPACT_KEY))!.value) as { revision: number };
      expect(rec.revision).to.equal(c2.compactedTo);
      // both compactors racing in the same round: exactly one wins it
      const w1 = c1.wins;
      const w2 = c2.wins;
      await Promise.all([c1.tick(), c2.tick()]);
      expect(c1.wins - w1 + (c2.wins - w2)).to.equal(1);
    });

    it('C10: the apiserver compacts by itself; an exact list below the compacted revision is 410', async function () {
      const s = await startApiServer({ store: backend, server: { compactionIntervalMs: 200, compactionRetentionMs: 600 } });
      try {
        const first = (await s.call('POST', `${V}/clusters`, cluster('cmp-0'))).body.metadata.resourceVersion;
        for (let i = 1; i < 10; i++) {
          await s.call('POST', `${V}/clusters`, cluster(`cmp-${i}`));
          await sleep(150);
        }
        await until('a compaction', () => s.api.compactor.compactedTo > Number(first));
        const gone = await s.call('GET', `${V}/clusters?resourceVersion=${first}&resourceVersionMatch=Exact`);
        expect(gone.status).to.equal(410);
        expect(gone.body.reason).to.equal('Expired');
        const l = await s.call('GET', `${V}/clusters`);
        expect(l.body.items).to.have.length(11);
      } finally {
        await s.stop();
      }
    });
  });
}

describe('an apiserver whose store watch is compacted away heals (C2, C10, etcd)', function () {
  this.timeout(180_000);
  let etcd: EtcdProcess;
  let proxy: TcpProxy;
  let a: TestApiServer;
  let b: TestApiServer;
  before(async () => {
    etcd = await startEtcd();
    proxy = await startTcpProxy(etcd.port);
    a = await startApiServer({ etcdEndpoints: [etcd.endpoint], server: { compactionIntervalMs: 0 } });
    b = await startApiServer({ etcdEndpoints: [`http://127.0.0.1:${proxy.port}`], adminToken: a.adminToken, server: { compactionIntervalMs: 0 } });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await proxy?.close();
    await etcd?.stop();
  });

  it('C10: B cannot reach etcd while A writes and compacts; B relists, is ready again with every change, and informers on B end up right', async () => {
    await a.call('POST', `${V}/clusters`, cluster('keep', { h: 'y' }));
    await a.call('POST', `${V}/clusters`, cluster('gone', { h: 'y' }));
    const client = new Client({ server: b.url, token: a.adminToken });
    const inf = new Informer(client, 'Cluster', { labelSelector: 'h=y' });
    const deletes: string[] = [];
    inf.on({ delete: (o) => deletes.push(o.metadata.name) });
    inf.start();
    try {
      await until('the informer on B has both', () => !!inf.get('keep') && !!inf.get('gone'));
      const oldRv = (await b.call('GET', `${V}/clusters`)).body.metadata.resourceVersion;
      proxy.hold();
      await a.call('POST', `${V}/clusters`, cluster('new-1', { h: 'y' }));
      await a.call('POST', `${V}/clusters`, cluster('new-2', { h: 'y' }));
      await a.call('DELETE', `${V}/clusters/gone`);
      await a.store.compact(await a.store.currentRevision());
      await sleep(500);
      proxy.release();
      await until('B relisted', () => b.api.cache.relists >= 1, 90_000);
      await until('B ready', async () => (await fetch(`${b.url}/readyz`)).status === 200);
      const l = await b.call('GET', `${V}/clusters?labelSelector=h%3Dy&resourceVersion=0`);
      expect(l.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).to.deep.equal(['keep', 'new-1', 'new-2']);
      await until('the informer on B caught up', () => !!inf.get('new-2') && !inf.get('gone'));
      expect(deletes).to.deep.equal(['gone']);
      // a watch from before the hole cannot be served: 410, and its client relists
      const w = await fetch(`${b.url}${V}/clusters?watch=1&resourceVersion=${oldRv}`, { headers: { Authorization: `Bearer ${a.adminToken}` } });
      const first = JSON.parse((await w.text()).split('\n')[0]);
      expect(first.type).to.equal('ERROR');
      expect(first.object.code).to.equal(410);
    } finally {
      inf.stop();
      client.close();
    }
  });
});

describe('etcd message limits at the apiserver (C1)', function () {
  this.timeout(300_000);
  let etcd: EtcdProcess;
  let store: EtcdStore;
  before(async () => {
    etcd = await startEtcd();
    store = new EtcdStore({ hosts: [etcd.endpoint] });
  });
  after(async () => {
    await store?.close();
    await etcd?.stop();
  });

  it('C1: a second apiserver starts on an etcd holding 6,000 objects of ~1.7 KB (a relist of ~10 MB), and pages through them as one snapshot', async () => {
    const pad = 'p'.repeat(1500);
    const N = 6000;
    for (let i = 0; i < N; i += 100) {
      await store.txn(
        [],
        Array.from({ length: 100 }, (_, j) => {
          const name = `big-${String(i + j).padStart(5, '0')}`;
          const o = { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name, uid: name, creationTimestamp: '2026-01-01T00:00:00Z', annotations: { pad } }, spec: {} };
          return { type: 'put' as const, key: `/berth/clusters/_/${name}`, value: JSON.stringify(o) };
        }),
      );
    }
    const s = await startApiServer({ etcdEndpoints: [etcd.endpoint], noDefaultCluster: true, server: { compactionIntervalMs: 0 } });
    try {
      expect((await fetch(`${s.url}/readyz`)).status).to.equal(200);
      let cont = '';
      let rv = '';
      let n = 0;
      do {
        const p = await s.call('GET', `${V}/clusters?limit=1000${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
        expect(p.status, JSON.stringify(p.body).slice(0, 300)).to.equal(200);
        rv ||= p.body.metadata.resourceVersion;
        expect(p.body.metadata.resourceVersion).to.equal(rv);
        n += p.body.items.length;
        cont = p.body.metadata.continue ?? '';
      } while (cont);
      expect(n).to.equal(N);
    } finally {
      await s.stop();
    }
  });
});
