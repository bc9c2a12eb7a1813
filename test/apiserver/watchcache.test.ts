// The watch cache heals (C2), sizes its history by time and sends bookmarks before a
// watch's timeout (C12). On the real embedded store; the relist failures come from a
// fault-injecting wrapper around it (test/support/faultstore.ts).
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CACHE_INDEXES } from '../../pkg/apiserver/admission.ts';
import { Reader } from '../../pkg/apiserver/reader.ts';
import { fieldValue } from '../../pkg/apiserver/selectors.ts';
import { WatchCache, type CacheWatcher, type Obj } from '../../pkg/apiserver/watchcache.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { FaultStore } from '../support/faultstore.ts';

const V = '/apis/berth.dev/v1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cluster = (name: string) => ({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name } });

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('watch cache: heals after its store watch ends (C2)', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  let fault: FaultStore;
  before(async () => {
    s = await startApiServer({ wrapStore: (st) => (fault = new FaultStore(st)), server: { watchCache: { backoff: { initialMs: 40, maxMs: 200 } } } });
  });
  after(async () => s?.stop());

  it('C2: relists until it succeeds (with backoff); meanwhile /readyz is 503 with the reason, watches and writes 429, reads go to the store', async () => {
    expect((await s.call('POST', `${V}/clusters`, cluster('heal-1'))).status).to.equal(201);
    fault.failLists = Infinity;
    fault.endWatches();
    await until('/readyz 503', async () => (await fetch(`${s.url}/readyz`)).status === 503);
    await until('a few failed relists', () => fault.failedLists >= 3);
    const rz = await fetch(`${s.url}/readyz`);
    expect(rz.status).to.equal(503);
    expect(await rz.text()).to.match(/watch cache not ready: relisting from the store failed \(attempt \d+, next in \d+ ms\): .*injected/);
    // a watch needs the cache: 429 "storage is (re)initializing", with Retry-After
    const w = await fetch(`${s.url}${V}/clusters?watch=1`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
    expect(w.status).to.equal(429);
    expect(w.headers.get('retry-after')).to.equal('1');
    expect(((await w.json()) as { message: string }).message).to.match(/storage is \(re\)initializing/);
    // so does a write (its read-modify-write starts from the cache)
    const wr = await s.call('PATCH', `${V}/clusters/heal-1`, undefined, { contentType: 'application/merge-patch+json', raw: '{"metadata":{"labels":{"a":"b"}}}' });
    expect(wr.status).to.equal(429);
    // a write that reached the store another way while the cache is down
    await s.store.create('/berth/clusters/_/heal-2', JSON.stringify({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'heal-2', uid: 'u', creationTimestamp: new Date().toISOString() }, spec: {} }));
    // gets go to the store while the cache is not synced (Kubernetes' delegator does the same)
    const g = await s.call('GET', `${V}/clusters/heal-2`);
    expect(g.status, JSON.stringify(g.body)).to.equal(200);
    const before = fault.failedLists;
    await sleep(600);
    expect(fault.failedLists, 'it keeps retrying').to.be.greaterThan(before);
    // the store comes back: the cache heals by itself, with what changed meanwhile
    fault.failLists = 0;
    await until('/readyz 200', async () => (await fetch(`${s.url}/readyz`)).status === 200, 10_000);
    expect(s.api.cache.relists).to.be.at.least(1);
    const l = await s.call('GET', `${V}/clusters?resourceVersion=0`);
    expect(l.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).to.include.members(['heal-1', 'heal-2']);
    expect((await s.call('PATCH', `${V}/clusters/heal-1`, undefined, { contentType: 'application/merge-patch+json', raw: '{"metadata":{"labels":{"a":"b"}}}' })).status).to.equal(200);
  });
});

describe('watch cache: history sized by time (C12)', function () {
  this.timeout(60_000);
  let dir: string;
  let store: EmbeddedStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-wc-'));
    store = EmbeddedStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const put = (i: number) => store.txn([], [{ type: 'put', key: `/berth/clusters/_/c${i}`, value: JSON.stringify({ metadata: { name: `c${i}` } }) }]);
  const watcher = (from: number, got: number[]): CacheWatcher => ({ plural: 'clusters', from, matches: () => true, send: (_t, _o, rev) => got.push(rev) });

  it('C12: keeps every event of the window however many, drops older ones down to the minimum, never beyond the cap', async () => {
    let now = 1_000_000;
    const wc = new WatchCache(store, silentLogger(), {}, { capacity: 500, historyMs: 75_000, minEvents: 20, now: () => now });
    await wc.start();
    const start = wc.revision;
    for (let i = 0; i < 300; i++) await put(i);
    await until('the cache has 300 events', () => wc.revision === start + 300);
    expect(wc.historySize).to.equal(300); // all younger than 75 s: all kept (a count of 100 would have dropped them)
    let got: number[] = [];
    (await wc.addWatcher(watcher(start, got), start))();
    expect(got).to.have.length(300);
    // 80 s later one more event: what is older than the window goes, down to the minimum of 20
    now += 80_000;
    await put(300);
    await until('the cache has event 301', () => wc.revision === start + 301);
    expect(wc.historySize).to.equal(20);
    const refused = await wc.addWatcher(watcher(start, []), start).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(refused?.message).to.match(/too old resource version/);
    got = [];
    (await wc.addWatcher(watcher(start + 281, got), start + 281))();
    expect(got).to.deep.equal(Array.from({ length: 20 }, (_, i) => start + 282 + i));
    // a burst within the window is capped
    for (let i = 0; i < 700; i++) await put(1000 + i);
    await until('the burst is in', () => wc.revision === start + 1001);
    expect(wc.historySize).to.equal(500);
    wc.stop();
  });

  it('C6: never delivers an event at or below the revision a watcher starts from, even when the cache applies it later', async () => {
    const wc = new WatchCache(store, silentLogger(), {});
    await wc.start();
    const base = wc.revision;
    const got: number[] = [];
    // a watcher that claims revision base+2 before the cache has it
    await wc.addWatcher(watcher(base + 2, got), base + 2);
    for (let i = 0; i < 4; i++) await put(i);
    await until('the cache has 4 more events', () => wc.revision === base + 4);
    expect(got).to.deep.equal([base + 3, base + 4]);
    wc.stop();
  });

  it('C2: a cache whose first list fails keeps trying and is unready until it succeeds', async () => {
    const fault = new FaultStore(store);
    fault.failLists = 3;
    const wc = new WatchCache(fault, silentLogger(), {}, { backoff: { initialMs: 20, maxMs: 50 } });
    const started = wc.start();
    expect(wc.isReady).to.equal(false);
    await started;
    expect(wc.isReady).to.equal(true);
    expect(fault.failedLists).to.equal(3);
    try {
      await wc.waitFor(wc.revision + 1, 50);
      expect.fail('waited for a revision that does not exist');
    } catch (e) {
      expect(isBerthError(e, 'ServiceUnavailable')).to.equal(true);
    }
    wc.stop();
  });
});

describe('watch cache: a resumed watch replays by key and index, not by parsing the history (R1-5)', function () {
  this.timeout(60_000);
  let dir: string;
  let store: EmbeddedStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-wc-'));
    store = EmbeddedStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const task = (ns: string, name: string, instance: string, v: number) =>
    JSON.stringify({
      apiVersion: 'berth.dev/v1',
      kind: 'Task',
      metadata: { name, namespace: ns, labels: { app: 'web' } },
      spec: { taskDefinition: 'web:1', containerInstance: instance, desiredStatus: 'RUNNING', overrides: { containerOverrides: [{ name: 'c', environment: [{ name: 'K', value: 'v'.repeat(200) }] }] } },
      status: { lastStatus: 'RUNNING', version: v },
    });
  const put = (ns: string, name: string, instance: string, v: number) => store.txn([], [{ type: 'put', key: `/berth/tasks/${ns}/${name}`, value: task(ns, name, instance, v) }]);
  /** an agent's watch: its instance's tasks in cluster A (the index makes live events cheap) */
  const agent = (instance: string, from: number, got: string[]): CacheWatcher => ({
    plural: 'tasks',
    namespace: 'A',
    from,
    index: { field: 'spec.containerInstance', value: instance },
    matches: (o: Obj) => fieldValue(o, 'spec.containerInstance') === instance,
    send: (type, o, rev) => got.push(`${type} ${o.metadata.name} ${rev}`),
  });
  /** JSON.parse calls made while `fn` runs (nothing else runs meanwhile) */
  async function parsesDuring<T>(fn: () => Promise<T>): Promise<{ value: T; parses: number }> {
    const real = JSON.parse;
    let parses = 0;
    JSON.parse = ((text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown) => {
      parses++;
      return real(text, reviver);
    }) as typeof JSON.parse;
    try {
      return { value: await fn(), parses };
    } finally {
      JSON.parse = real;
    }
  }

  it('R1-5: an agent resuming from the ring start parses only its own tasks\' events and gets exactly what it got live', async () => {
    const wc = new WatchCache(store, silentLogger(), CACHE_INDEXES);
    await wc.start();
    const from = wc.revision;
    const live: string[] = [];
    const stopLive = await wc.addWatcher(agent('ci-x', from, live), from);
    // 1,000 events of other instances' tasks, and among them ci-x's: a task bound to it
    // (ADDED), updated (MODIFIED), deleted (DELETED); another one; one in another cluster
    for (let e = 0; e < 1000; e++) {
      await put(e % 2 ? 'A' : 'B', `t${e % 50}`, `ci-${e % 7}`, e);
      if (e === 100) await put('A', 'x1', 'ci-x', 1);
      if (e === 500) await put('A', 'x1', 'ci-x', 2);
      if (e === 600) await store.txn([], [{ type: 'delete', key: '/berth/tasks/A/x1' }]);
      if (e === 700) await put('A', 'x2', 'ci-x', 1);
      if (e === 800) await put('B', 'x3', 'ci-x', 1);
    }
    await until('the cache has every event', () => wc.revision === from + 1005);
    expect(live.map((l) => l.split(' ').slice(0, 2).join(' '))).to.deep.equal(['ADDED x1', 'MODIFIED x1', 'DELETED x1', 'ADDED x2']);
    const replayed: string[] = [];
    const { value: stop, parses } = await parsesDuring(() => wc.addWatcher(agent('ci-x', from, replayed), from));
    expect(replayed).to.deep.equal(live);
    // x1 put (its object), x1 put again (object and old object), x1 deleted (old object), x2 put (object)
    expect(parses, 'objects parsed to replay 1,005 events to an agent with 4 of them').to.equal(5);
    expect(wc.replayParsed).to.equal(5);
    // an agent whose instance has no events parses nothing, and gets nothing
    const none: string[] = [];
    const quiet = await parsesDuring(() => wc.addWatcher(agent('ci-none', from, none), from));
    expect([quiet.parses, none]).to.deep.equal([0, []]);
    stop();
    stopLive();
    quiet.value();
    wc.stop();
  });

  it('R1-5: a long replay yields the event loop in slices and still delivers every event once, in order, with writes arriving meanwhile', async () => {
    const wc = new WatchCache(store, silentLogger(), CACHE_INDEXES, { replaySliceMs: 0 });
    await wc.start();
    const from = wc.revision;
    const all = (got: string[]): CacheWatcher => ({ plural: 'tasks', namespace: 'A', from, matches: () => true, send: (type, o, rev) => got.push(`${type} ${o.metadata.name} ${rev}`) });
    const live: string[] = [];
    const stopLive = await wc.addWatcher(all(live), from);
    for (let e = 0; e < 1500; e++) await put('A', `t${e % 40}`, `ci-${e % 3}`, e);
    await until('the history is in', () => wc.revision === from + 1500);
    const replayed: string[] = [];
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    // the replay starts; while it yields, more events arrive
    const started = wc.addWatcher(all(replayed), from);
    for (let e = 0; e < 100; e++) await put('A', `n${e % 10}`, 'ci-0', e);
    const stop = await started;
    clearInterval(ticker);
    await until('every event is in', () => wc.revision === from + 1600);
    await until('the resumed watch has every event', () => replayed.length === 1600);
    expect(replayed).to.deep.equal(live);
    expect(new Set(replayed).size).to.equal(1600);
    expect(wc.replaysYielded, 'the replay yielded').to.be.at.least(1);
    expect(ticks, 'timers ran while it replayed').to.be.greaterThan(0);
    stop();
    stopLive();
    wc.stop();
  });
});

describe('Reader: shared revision reads stay linearizable (C6)', function () {
  this.timeout(30_000);
  it('C6: a read that arrives while a revision read is in flight waits for the next one, which every such caller shares', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-reader-'));
    const store = EmbeddedStore.open(dir);
    const fault = new FaultStore(store);
    const wc = new WatchCache(fault, silentLogger(), {});
    try {
      await wc.start();
      const reader = new Reader(fault, wc);
      const r0 = await store.currentRevision();
      fault.holdRevisionReads = true;
      const first = reader.storeRevision(); // in flight: it read r0 and answers late
      const x = await store.txn([], [{ type: 'put', key: '/berth/clusters/_/x', value: JSON.stringify({ metadata: { name: 'x' } }) }]);
      // these begin after x was acknowledged: the answer they get must include it
      const later = [reader.storeRevision(), reader.storeRevision(), reader.consistent()];
      fault.releaseRevisionReads();
      expect(await first).to.equal(r0);
      const [b, c, d] = await Promise.all(later);
      expect(b).to.be.at.least(x.revision);
      expect(c).to.equal(b);
      expect(d).to.equal(b);
      expect(fault.revisionReads, 'one read in flight, one shared by the three that came during it').to.equal(2);
      expect(wc.get('/berth/clusters/_/x')).to.not.equal(undefined);
    } finally {
      wc.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('watch bookmarks (C12)', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer({ server: { bookmarkIntervalMs: 700 } });
  });
  after(async () => s?.stop());

  async function collect(path: string, untilMs: number) {
    const t0 = Date.now();
    const events: Array<{ at: number; type: string; rv: number; name?: string }> = [];
    const res = await fetch(s.url + path, { headers: { Authorization: `Bearer ${s.adminToken}` }, signal: AbortSignal.timeout(untilMs) });
    const reader = res.body!.getReader();
    let buf = '';
    let closedAt: number | undefined;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          closedAt = Date.now() - t0;
          break;
        }
        buf += Buffer.from(value).toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const e = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          events.push({ at: Date.now() - t0, type: e.type, rv: Number(e.object.metadata.resourceVersion), name: e.object.metadata.name });
        }
      }
    } catch {
      /* aborted */
    }
    return { events, closedAt };
  }

  it('C12: a bookmark about every interval, never below what the watch has sent', async () => {
    const from = Number((await s.call('GET', `${V}/clusters`)).body.metadata.resourceVersion);
    const writes = (async () => {
      for (let i = 0; i < 4; i++) {
        await sleep(500);
        await s.call('POST', `${V}/clusters`, cluster(`bm-${i}`));
      }
    })();
    const { events, closedAt } = await collect(`${V}/clusters?watch=1&allowWatchBookmarks=true&timeoutSeconds=5&resourceVersion=${from}`, 15_000);
    await writes;
    expect(closedAt, 'the server closed the watch at its timeout').to.be.within(4500, 9000);
    const bookmarks = events.filter((e) => e.type === 'BOOKMARK');
    expect(bookmarks.length).to.be.at.least(4);
    let sent = from;
    for (const e of events) {
      if (e.type === 'BOOKMARK') expect(e.rv, 'a bookmark below what was sent').to.be.at.least(sent);
      sent = Math.max(sent, e.rv);
    }
    expect(events.filter((e) => e.type === 'ADDED').map((e) => e.name)).to.deep.equal(['bm-0', 'bm-1', 'bm-2', 'bm-3']);
  });

  it('C12: without an interval configured, a short watch still gets its bookmark ~2 s before the timeout', async () => {
    const t = await startApiServer({});
    try {
      const rv = (await t.call('GET', `${V}/clusters`)).body.metadata.resourceVersion;
      const t0 = Date.now();
      const res = await fetch(`${t.url}${V}/clusters?watch=1&allowWatchBookmarks=true&timeoutSeconds=4&resourceVersion=${rv}`, { headers: { Authorization: `Bearer ${t.adminToken}` } });
      const reader = res.body!.getReader();
      const got: Array<{ at: number; type: string; rv: string }> = [];
      for (;;) {
        const { value, done } = await reader.read(); // ends at the timeout
        if (done) break;
        for (const l of Buffer.from(value).toString().split('\n').filter(Boolean)) {
          const e = JSON.parse(l);
          got.push({ at: Date.now() - t0, type: e.type, rv: e.object.metadata.resourceVersion });
        }
      }
      const closedAt = Date.now() - t0;
      expect(got.map((e) => e.type)).to.deep.equal(['BOOKMARK']);
      // ~2 s before the deadline, so the client resumes from a fresh resourceVersion
      expect(got[0].at).to.be.within(closedAt - 2600, closedAt - 1400);
      expect(Number(got[0].rv)).to.be.at.least(Number(rv));
    } finally {
      await t.stop();
    }
  });
});
