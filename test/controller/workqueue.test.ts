import { expect } from 'chai';
import { WorkQueue } from '../../pkg/controller/runtime/workqueue.ts';
import { Expectations } from '../../pkg/controller/runtime/expectations.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('controller runtime: work queue', () => {
  it('holds a key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('a');
    q.add('b');
    expect(q.length).to.equal(2);
    expect(await q.get()).to.equal('a');
    expect(await q.get()).to.equal('b');
  });

  it('never hands a key to two workers: added while processing, it comes back after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = await q.get();
    q.add('a');
    expect(q.length).to.equal(0);
    q.done(k!);
    expect(q.length).to.equal(1);
    expect(await q.get()).to.equal('a');
  });

  it('of two delays for one key the earlier wins', async () => {
    const q = new WorkQueue();
    q.addAfter('a', 5000);
    q.addAfter('a', 20);
    await sleep(60);
    expect(q.length).to.equal(1);
    q.addAfter('b', 20);
    q.addAfter('b', 5000);
    await sleep(60);
    expect(q.length).to.equal(2);
    q.shutDown();
  });

  it('backs off per key, doubling, and forgets on success', () => {
    const q = new WorkQueue({ baseDelayMs: 1000, qps: 1000, burst: 1000 });
    q.addRateLimited('a');
    q.addRateLimited('a');
    q.addRateLimited('a');
    expect(q.retries('a')).to.equal(3);
    q.forget('a');
    expect(q.retries('a')).to.equal(0);
    q.shutDown();
  });

  it('a waiting worker gets a key added later; shut down wakes it with undefined', async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.add('x');
    expect(await p).to.equal('x');
    const p2 = q.get();
    q.shutDown();
    expect(await p2).to.equal(undefined);
  });

  it('carries queued and delayed keys over after a shut-down (leadership lost and regained)', () => {
    const q = new WorkQueue();
    q.add('a');
    q.addAfter('b', 10_000);
    q.shutDown();
    expect(q.drain().sort()).to.deep.equal(['a', 'b']);
  });
});

describe('controller runtime: expectations', () => {
  it('waits for every written name and the written version, then lets the key through', () => {
    const e = new Expectations(10_000);
    expect(e.satisfied('k', 1)).to.equal(true);
    e.expect('k', ['t1', 't2'], 10);
    expect(e.satisfied('k', 10)).to.equal(false);
    e.observed('k', 't1');
    e.observed('k', 't2');
    expect(e.satisfied('k', 9)).to.equal(false);
    expect(e.satisfied('k', 10)).to.equal(true);
  });

  it('expires, so a lost event cannot wedge a key', async () => {
    const e = new Expectations(20);
    e.expect('k', ['never']);
    expect(e.satisfied('k', 0)).to.equal(false);
    await sleep(40);
    expect(e.satisfied('k', 0)).to.equal(true);
  });
});
