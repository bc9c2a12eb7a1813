import { connect, type Socket } from 'node:net';
import { expect } from 'chai';
import { watchEncoding } from '../../pkg/apiserver/registry.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;
const merge = { contentType: 'application/merge-patch+json' };

/** A watch read line by line, as the bytes came (each line is one event's frame). */
interface Watcher {
  lines: string[];
  stop(): void;
}

async function watch(s: TestApiServer, path: string, accept?: string): Promise<Watcher> {
  const ac = new AbortController();
  const r = await fetch(`${s.url}${path}`, { headers: { Authorization: `Bearer ${s.adminToken}`, ...(accept ? { Accept: accept } : {}) }, signal: ac.signal });
  expect(r.status, path).to.equal(200);
  const w: Watcher = { lines: [], stop: () => ac.abort() };
  void (async () => {
    let buf = Buffer.alloc(0);
    try {
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        buf = Buffer.concat([buf, chunk]);
        let nl: number;
        while ((nl = buf.indexOf(10)) >= 0) {
          w.lines.push(buf.subarray(0, nl + 1).toString('utf8'));
          buf = buf.subarray(nl + 1);
        }
      }
    } catch {
      /* aborted */
    }
  })();
  return w;
}

const typesOf = (w: Watcher) => w.lines.map((l) => (JSON.parse(l) as { type: string }).type);

/**
 * Serialize once (issue 22, lever 3): an event's object is encoded once and the same frame
 * written to every watcher it reaches; selectors decide who gets an event, not its bytes;
 * what a kind hides on read is hidden in that one encoding; a watcher that does not read is
 * cut off without holding up the others.
 */
describe('watch events are encoded once and shared by every watcher (real apiserver)', function () {
  this.timeout(120_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer({ build: { serverLimits: { watchBufferBytes: 64 * 1024 } } });
    expect((await s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'ws' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } })).status).to.equal(201);
  });
  after(async () => s?.stop());

  it('N watchers of tasks (plain, by label, by field) receive identical bytes, and each event is serialized once', async () => {
    const rv = (await s.call('GET', `${NS}/tasks`)).body.metadata.resourceVersion;
    const from = `${NS}/tasks?watch=1&resourceVersion=${rv}`;
    const plain = await Promise.all(Array.from({ length: 6 }, () => watch(s, from)));
    const byLabel = await Promise.all([watch(s, `${from}&labelSelector=tier%3Dweb`), watch(s, `${from}&labelSelector=tier%3Dweb`)]);
    const byField = await watch(s, `${from}&fieldSelector=metadata.name%3Dshared`);
    const table = await watch(s, from, 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json');
    const all = [...plain, ...byLabel, byField, table];
    await eventually(() => s.api.cache.watcherCount >= all.length, 10_000, 'the watches to start');
    const before = watchEncoding.objects;
    expect((await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'shared', labels: { tier: 'web' } }, spec: { taskDefinition: 'ws' } })).status).to.equal(201);
    expect((await s.call('PATCH', `${NS}/tasks/shared/status`, { status: { healthStatus: 'HEALTHY' } }, merge)).status).to.equal(200);
    // leaves the label watchers' selector: DELETED (its last state) to them, MODIFIED to the others
    expect((await s.call('PATCH', `${NS}/tasks/shared`, { metadata: { labels: { tier: 'db' } } }, merge)).status).to.equal(200);
    expect((await s.call('DELETE', `${NS}/tasks/shared`)).status).to.equal(200);
    await eventually(() => plain.every((w) => w.lines.length >= 4) && byField.lines.length >= 4 && table.lines.length >= 4 && byLabel.every((w) => w.lines.length >= 3), 10_000, 'every watcher to get its events');
    // the task's delete may be a finalizer's two steps: compare what was sent, not a count
    await new Promise((r) => setTimeout(r, 300));
    const events = plain[0].lines.length;
    expect(typesOf(plain[0]).slice(0, 4)).to.deep.equal(['ADDED', 'MODIFIED', 'MODIFIED', events === 4 ? 'DELETED' : 'MODIFIED']);
    for (const w of [...plain, byField]) expect(w.lines, 'every plain and field watcher got the same bytes').to.deep.equal(plain[0].lines);
    expect(typesOf(byLabel[0])).to.deep.equal(['ADDED', 'MODIFIED', 'DELETED']);
    expect(byLabel[1].lines).to.deep.equal(byLabel[0].lines);
    // the label watchers' ADDED and MODIFIED are the very frames the others got
    expect(byLabel[0].lines.slice(0, 2)).to.deep.equal(plain[0].lines.slice(0, 2));
    // their DELETED is the object as it is now (out of their selector), at its revision
    const del = JSON.parse(byLabel[0].lines[2]);
    expect([del.object.metadata.labels, del.object.metadata.resourceVersion]).to.deep.equal([{ tier: 'db' }, JSON.parse(plain[0].lines[2]).object.metadata.resourceVersion]);
    // a Table watch (kubectl get -w) is its own encoding: rows, columns with the first only
    const rows = table.lines.map((l) => JSON.parse(l).object);
    expect(rows.map((t) => t.kind)).to.deep.equal(rows.map(() => 'Table'));
    expect(rows[0].columnDefinitions.length).to.be.greaterThan(0);
    expect(rows[1].columnDefinitions).to.deep.equal([]);
    // one encoding per event and object sent (the label watchers' DELETED is a second
    // object of its event), not one per watcher: 10 watchers of which 9 take the shared form
    expect(watchEncoding.objects - before, 'objects serialized for the watchers').to.equal(events + 1);
    all.forEach((w) => w.stop());
  });

  it('what a kind hides on read is hidden in the shared encoding: a container instance\'s logs token, a secret\'s data', async () => {
    const ciRv = (await s.call('GET', `${NS}/containerinstances`)).body.metadata.resourceVersion;
    const secRv = (await s.call('GET', `${V}/secrets`)).body.metadata.resourceVersion;
    const cis = await Promise.all([watch(s, `${NS}/containerinstances?watch=1&resourceVersion=${ciRv}`), watch(s, `${NS}/containerinstances?watch=1&resourceVersion=${ciRv}&fieldSelector=metadata.name%3Dci-logs`)]);
    const secs = await Promise.all([watch(s, `${V}/secrets?watch=1&resourceVersion=${secRv}`), watch(s, `${V}/secrets?watch=1&resourceVersion=${secRv}`)]);
    await eventually(() => s.api.cache.watcherCount >= 4, 10_000, 'the watches to start');
    const resources = [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 }];
    expect((await s.call('POST', `${NS}/containerinstances`, { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'ci-logs' }, spec: { registeredResources: resources } })).status).to.equal(201);
    const TOKEN = 'logs-token-never-shown-0123456789';
    const set = await s.call('PATCH', `${NS}/containerinstances/ci-logs/status`, { status: { logs: { endpoint: 'http://127.0.0.1:4999', token: TOKEN } } }, merge);
    expect(set.status, JSON.stringify(set.body)).to.equal(200);
    const stored = JSON.parse((await s.store.get('/berth/containerinstances/default/ci-logs'))!.value);
    expect(stored.status.logs.token, 'the store has the token').to.equal(TOKEN);
    const CLEAR = 'secret-value-never-shown-9876';
    expect((await s.call('POST', `${V}/secrets`, { apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name: 'watched' }, spec: { data: { password: CLEAR } } })).status).to.equal(201);
    expect((await s.call('PATCH', `${V}/secrets/watched`, { spec: { data: { password: CLEAR + '2' } } }, merge)).status).to.equal(200);
    await eventually(() => cis.every((w) => w.lines.length >= 2) && secs.every((w) => w.lines.length >= 2), 10_000, 'the events');
    await new Promise((r) => setTimeout(r, 200));
    const storedSecret = JSON.parse((await s.store.get((await s.store.list('/berth/secrets/')).items.find((kv) => kv.key.endsWith('/watched'))!.key))!.value);
    const cipher = Object.values(storedSecret.spec.data as Record<string, string>)[0];
    for (const w of [...cis, ...secs]) {
      for (const l of w.lines) {
        expect(l).to.not.contain(TOKEN);
        expect(l).to.not.contain(CLEAR);
        expect(l).to.not.contain(cipher);
      }
    }
    const last = JSON.parse(cis[0].lines[cis[0].lines.length - 1]).object;
    expect(last.status.logs).to.deep.equal({ endpoint: 'http://127.0.0.1:4999' });
    for (const l of secs[0].lines) expect(JSON.parse(l).object.spec.data).to.equal(undefined);
    expect(cis[1].lines).to.deep.equal(cis[0].lines);
    expect(secs[1].lines).to.deep.equal(secs[0].lines);
    [...cis, ...secs].forEach((w) => w.stop());
  });

  it('a watcher that does not read is closed once its buffer is full; the others keep receiving every event', async () => {
    // events of 24 KB: below the 64 KB buffer (a single event larger than it leaves any watcher whose socket does not take it at once over the cap)
    const big = 'x'.repeat(24 * 1024);
    expect((await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'big' }, spec: { taskDefinition: 'ws', overrides: { containerOverrides: [{ name: 'c', environment: [{ name: 'PAD', value: big }] }] } } })).status).to.equal(201);
    const rv = (await s.call('GET', `${NS}/tasks`)).body.metadata.resourceVersion;
    // the earlier tests' watches end as their connections close
    await eventually(() => s.api.cache.watcherCount === 0, 10_000, 'the earlier watches to end');
    const baseline = 0;
    const readers = await Promise.all([watch(s, `${NS}/tasks?watch=1&resourceVersion=${rv}`), watch(s, `${NS}/tasks?watch=1&resourceVersion=${rv}`)]);
    const u = new URL(s.url);
    const slow: Socket = connect(Number(u.port), u.hostname);
    slow.on('error', () => undefined);
    const slowClosed = new Promise<void>((r) => slow.once('close', () => r()));
    slow.write(`GET ${NS}/tasks?watch=1&timeoutSeconds=600&resourceVersion=${rv} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\n\r\n`);
    slow.pause(); // never reads: the kernel's buffers fill, then the server's
    await eventually(() => s.api.cache.watcherCount === baseline + 3, 10_000, 'the watches to start');
    let patches = 0;
    for (let i = 0; i < 1000 && s.api.cache.watcherCount > baseline + 2; i++) {
      expect((await s.call('PATCH', `${NS}/tasks/big/status`, { status: { version: i + 2 } }, merge)).status).to.equal(200);
      patches++;
    }
    await eventually(() => s.api.cache.watcherCount === baseline + 2, 10_000, `the slow watch to be closed (${patches} patches, ${s.api.cache.watcherCount} watchers, readers at ${readers.map((w) => w.lines.length)})`);
    // and a few more after it is gone
    for (let i = 0; i < 5; i++) expect((await s.call('PATCH', `${NS}/tasks/big/status`, { status: { version: 1000 + i } }, merge)).status).to.equal(200);
    patches += 5;
    slow.resume();
    await Promise.race([slowClosed, new Promise((_, rej) => setTimeout(() => rej(new Error('the slow watch\'s connection was not closed')), 10_000))]);
    await eventually(() => readers.every((w) => w.lines.length === patches), 20_000, `the readers to get all ${patches} events`);
    for (const w of readers) {
      const versions = w.lines.map((l) => JSON.parse(l).object.status.version);
      expect(versions.slice(-5)).to.deep.equal([1000, 1001, 1002, 1003, 1004]);
      expect(new Set(typesOf(w))).to.deep.equal(new Set(['MODIFIED']));
    }
    expect(readers[1].lines).to.deep.equal(readers[0].lines);
    readers.forEach((w) => w.stop());
  });
});
