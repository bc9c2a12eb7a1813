import { expect } from 'chai';
import { BerthError, CompactedError, TooLargeResourceVersionError, isBerthError } from '../../pkg/errors/errors.ts';
import { listPages } from '../../pkg/store/pager.ts';
import type { Op, Store, WatchEvent } from '../../pkg/store/store.ts';

export interface StoreHarness {
  store: Store;
  /** a second, independent client of the same data (etcd: another connection) */
  other?: () => Promise<Store>;
  /** cut the store's connections (etcd through a proxy); absent for embedded */
  cut?: () => void;
}

let seq = 0;
const uniq = () => `/t${process.pid}-${Date.now()}-${seq++}/`;

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

/** Collects watch events; resolves when `n` have arrived. */
function collector(store: Store, prefix: string, after: number, opts: { prevValues?: boolean } = {}) {
  const events: WatchEvent[] = [];
  const calls: WatchEvent[][] = [];
  let error: Error | undefined;
  let waiters: Array<() => void> = [];
  const w = store.watch(prefix, after, {
    onEvents(evs) {
      calls.push(evs);
      events.push(...evs);
      waiters.forEach((f) => f());
    },
    onError(e) {
      error = e;
      waiters.forEach((f) => f());
    },
  }, opts);
  return {
    events,
    calls,
    get error() {
      return error;
    },
    close: () => w.close(),
    async until(pred: () => boolean, ms = 15000) {
      const deadline = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out; have ${events.length} events, error ${error}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
        waiters = [];
      }
    },
  };
}

export function describeStoreConformance(
  name: string,
  setup: () => Promise<StoreHarness>,
  teardown: () => Promise<void>,
  opts: { networked: boolean },
) {
  describe(`store conformance: ${name}`, function () {
    let h: StoreHarness;
    let s: Store;
    before(async () => {
      h = await setup();
      s = h.store;
    });
    after(teardown);

    it('creates, gets, and refuses to create an existing key', async () => {
      const p = uniq();
      const kv = await s.create(p + 'a', '1');
      expect(kv.value).to.equal('1');
      expect(kv.modRevision).to.be.greaterThan(0);
      const got = await s.get(p + 'a');
      expect(got).to.deep.include({ key: p + 'a', value: '1', modRevision: kv.modRevision });
      const err = await rejects(s.create(p + 'a', '2'));
      expect(isBerthError(err, 'AlreadyExists')).to.equal(true);
      expect((await s.get(p + 'a'))!.value).to.equal('1');
      expect(await s.get(p + 'missing')).to.equal(undefined);
    });

    it('updates with the current revision and fails with a typed Conflict on a stale one', async () => {
      const p = uniq();
      const a = await s.create(p + 'k', 'v1');
      const b = await s.update(p + 'k', 'v2', a.modRevision);
      expect(b.modRevision).to.be.greaterThan(a.modRevision);
      const err = await rejects(s.update(p + 'k', 'v3', a.modRevision));
      expect(err).to.be.instanceOf(BerthError);
      expect((err as BerthError).reason).to.equal('Conflict');
      expect((await s.get(p + 'k'))!.value).to.equal('v2');
      const nf = await rejects(s.update(p + 'gone', 'x', 5));
      expect(isBerthError(nf, 'NotFound')).to.equal(true);
    });

    it('deletes with and without a compare', async () => {
      const p = uniq();
      const a = await s.create(p + 'x', '1');
      await s.create(p + 'y', '2');
      const stale = await rejects(s.delete(p + 'x', a.modRevision - 1));
      expect(isBerthError(stale, 'Conflict')).to.equal(true);
      const del = await s.delete(p + 'x', a.modRevision);
      expect(del.value).to.equal('1');
      expect(await s.get(p + 'x')).to.equal(undefined);
      await s.delete(p + 'y');
      expect(await s.count(p)).to.equal(0);
      expect(isBerthError(await rejects(s.delete(p + 'y')), 'NotFound')).to.equal(true);
    });

    it('applies a txn atomically across keys, and reports the compares that failed', async () => {
      const p = uniq();
      const a = await s.create(p + 'a', '1');
      const b = await s.create(p + 'b', '1');
      const ok = await s.txn(
        [
          { key: p + 'a', modRevision: a.modRevision },
          { key: p + 'c', modRevision: 0 },
        ],
        [
          { type: 'put', key: p + 'a', value: '2' },
          { type: 'put', key: p + 'c', value: '1' },
          { type: 'delete', key: p + 'b' },
        ],
      );
      expect(ok.succeeded).to.equal(true);
      expect(ok.written.map((w) => w.modRevision)).to.deep.equal([ok.revision, ok.revision]);
      const bad = await s.txn(
        [
          { key: p + 'a', modRevision: a.modRevision }, // stale now
          { key: p + 'c', modRevision: ok.revision },
        ],
        [
          { type: 'put', key: p + 'a', value: '3' },
          { type: 'put', key: p + 'd', value: '1' },
        ],
      );
      expect(bad.succeeded).to.equal(false);
      expect(bad.failed).to.deep.equal([p + 'a']);
      expect((await s.get(p + 'a'))!.value).to.equal('2');
      expect(await s.get(p + 'd')).to.equal(undefined);
      expect(await s.get(p + 'b')).to.equal(undefined);
      void b;
    });

    it('lists consistently at one revision and paginates', async () => {
      const p = uniq();
      for (let i = 0; i < 25; i++) await s.create(`${p}${String(i).padStart(3, '0')}`, String(i));
      const first = await s.list(p, { limit: 10 });
      expect(first.items).to.have.length(10);
      expect(first.continue).to.be.a('string');
      // writes between pages must not show in later pages
      await s.create(`${p}005a`, 'new');
      await s.update(`${p}020`, 'changed', (await s.get(`${p}020`))!.modRevision);
      await s.delete(`${p}015`);
      const seen = [...first.items];
      let tok = first.continue;
      while (tok) {
        const page = await s.list(p, { limit: 10, continue: tok });
        expect(page.revision).to.equal(first.revision);
        seen.push(...page.items);
        tok = page.continue;
      }
      expect(seen.map((kv) => kv.value)).to.deep.equal(Array.from({ length: 25 }, (_, i) => String(i)));
      const now = await s.list(p);
      expect(now.items).to.have.length(25);
      expect(now.items.find((kv) => kv.key === `${p}020`)!.value).to.equal('changed');
      expect(await s.count(p)).to.equal(25);
    });

    it('delivers every later event exactly once, in order, with previous values', async () => {
      const p = uniq();
      const start = await s.currentRevision();
      const c = collector(s, p, start, { prevValues: true });
      const a = await s.create(p + 'a', '1');
      await s.update(p + 'a', '2', a.modRevision);
      await s.txn([], [
        { type: 'put', key: p + 'b', value: 'x' },
        { type: 'put', key: p + 'c', value: 'y' },
      ]);
      await s.delete(p + 'a');
      await s.create(p.slice(0, -1) + 'zzz/other', 'not mine'); // outside the prefix
      await c.until(() => c.events.length >= 5);
      await new Promise((r) => setTimeout(r, 200));
      c.close();
      expect(c.events.map((e) => [e.type, e.key, e.value, e.prevValue])).to.deep.equal([
        ['put', p + 'a', '1', undefined],
        ['put', p + 'a', '2', '1'],
        ['put', p + 'b', 'x', undefined],
        ['put', p + 'c', 'y', undefined],
        ['delete', p + 'a', undefined, '2'],
      ]);
      const revs = c.events.map((e) => e.modRevision);
      expect(revs).to.deep.equal([...revs].sort((x, y) => x - y));
      expect(revs[2]).to.equal(revs[3]); // one txn, one revision
      const txnCall = c.calls.find((call) => call.some((e) => e.key === p + 'b'))!;
      expect(txnCall.some((e) => e.key === p + 'c')).to.equal(true);
      // a watch started from an earlier revision replays the same history
      const replay = collector(s, p, start);
      await replay.until(() => replay.events.length >= 5);
      replay.close();
      expect(replay.events.map((e) => e.modRevision)).to.deep.equal(revs);
    });

    it('fails a watch from a compacted revision with CompactedError', async () => {
      const p = uniq();
      const a = await s.create(p + 'a', '1');
      const a2 = await s.update(p + 'a', '2', a.modRevision);
      const b = await s.update(p + 'a', '3', a2.modRevision);
      await s.compact(b.modRevision);
      expect(await s.compactedRevision()).to.be.at.least(b.modRevision);
      const c = collector(s, p, a.modRevision - 1);
      await c.until(() => c.error !== undefined);
      expect(c.error).to.be.instanceOf(CompactedError);
      expect(c.events).to.have.length(0);
      const listErr = await rejects(s.list(p, { revision: a.modRevision }));
      expect(listErr).to.be.instanceOf(CompactedError);
      expect((await s.get(p + 'a'))!.value).to.equal('3');
      // watching from the compact revision itself still works
      const ok = collector(s, p, b.modRevision);
      await s.delete(p + 'a');
      await ok.until(() => ok.events.length === 1);
      ok.close();
      expect(ok.error).to.equal(undefined);
    });

    it('ends at exactly 50 after 50 concurrent CAS incrementers', async function () {
      const p = uniq();
      await s.create(p + 'counter', '0');
      const worker = async () => {
        for (;;) {
          const cur = (await s.get(p + 'counter'))!;
          try {
            await s.update(p + 'counter', String(Number(cur.value) + 1), cur.modRevision);
            return;
          } catch (e) {
            if (!isBerthError(e, 'Conflict')) throw e;
          }
        }
      };
      await Promise.all(Array.from({ length: 50 }, worker));
      expect((await s.get(p + 'counter'))!.value).to.equal('50');
    });

    // C1: etcd sends a range in one gRPC message and an unsynced watcher up to 1,000
    // revisions in one response; grpc-js refuses messages over 4 MiB unless told otherwise
    it('C1: stores, lists and watches values of 1 MiB; one list page of more than 4 MiB arrives whole', async function () {
      this.timeout(120_000);
      const p = uniq();
      const big = (i: number) => String(i).padStart(4, '0') + 'x'.repeat(1024 * 1024 - 4);
      const start = await s.currentRevision();
      for (let i = 0; i < 6; i++) await s.create(`${p}${i}`, big(i));
      expect((await s.get(`${p}3`))!.value).to.equal(big(3));
      const all = await s.list(p); // ~6 MiB in one answer
      expect(all.items.map((kv) => kv.value.slice(0, 4))).to.deep.equal(['0000', '0001', '0002', '0003', '0004', '0005']);
      expect(all.items.every((kv, i) => kv.value === big(i))).to.equal(true);
      const paged = await s.list(p, { limit: 5 }); // ~5 MiB in one page
      expect(paged.items).to.have.length(5);
      expect(paged.continue).to.be.a('string');
      // the pager bounds its pages by bytes: 2 MiB is two of these values
      const pages: number[] = [];
      for await (const page of listPages(s, p)) pages.push(page.items.length);
      expect(pages.reduce((a, b) => a + b, 0)).to.equal(6);
      expect(Math.max(...pages.slice(1))).to.be.at.most(2);
      const c = collector(s, p, start, { prevValues: true });
      await c.until(() => c.events.length >= 6, 60_000);
      c.close();
      expect(c.error).to.equal(undefined);
      expect(c.events.map((e) => e.value!.slice(0, 4))).to.deep.equal(['0000', '0001', '0002', '0003', '0004', '0005']);
    });

    it('C1: a watch from before 1,000 revisions of 5 KB values gets every event, once, in order', async function () {
      this.timeout(180_000);
      const p = uniq();
      const start = await s.currentRevision();
      const N = 1000;
      const value = (i: number) => `${String(i).padStart(5, '0')}:${'v'.repeat(5 * 1024)}`;
      for (let i = 0; i < N; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => s.create(`${p}${String(i + j).padStart(5, '0')}`, value(i + j))));
      }
      const c = collector(s, p, start);
      await c.until(() => c.events.length >= N || c.error !== undefined, 120_000);
      await new Promise((r) => setTimeout(r, 200));
      c.close();
      expect(c.error).to.equal(undefined);
      expect(c.events).to.have.length(N);
      const revs = c.events.map((e) => e.modRevision);
      expect(new Set(revs).size).to.equal(N);
      expect(revs).to.deep.equal([...revs].sort((a, b) => a - b));
      expect(c.events.map((e) => e.value).sort()).to.deep.equal(Array.from({ length: N }, (_, i) => value(i)));
    });

    it('refuses to list at a revision it has not reached (TooLargeResourceVersionError, never clamped)', async () => {
      const p = uniq();
      await s.create(p + 'a', '1');
      const cur = await s.currentRevision();
      const err = await rejects(s.list(p, { revision: cur + 1000 }));
      expect(err).to.be.instanceOf(TooLargeResourceVersionError);
      expect((err as TooLargeResourceVersionError).requested).to.equal(cur + 1000);
      expect(isBerthError(err, 'Timeout')).to.equal(true);
      // the current revision itself is fine
      expect((await s.list(p, { revision: cur })).items).to.have.length(1);
    });

    it('C10: compaction across thousands of revisions keeps the state at the compact revision and after it', async function () {
      this.timeout(120_000);
      const p = uniq();
      // 1,200 keys, each rewritten twice, a third deleted: 3,600 revisions of history
      const ops = (i: number, v: string): Op[] => [{ type: 'put', key: `${p}${String(i).padStart(4, '0')}`, value: v }];
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 1200; i += 100) {
          await Promise.all(Array.from({ length: 100 }, (_, j) => (round === 2 && (i + j) % 3 === 0 ? s.delete(`${p}${String(i + j).padStart(4, '0')}`) : s.txn([], ops(i + j, `r${round}`)))));
        }
        if (round === 1) {
          const mid = await s.currentRevision();
          await s.compact(mid);
          expect(await s.compactedRevision()).to.be.at.least(mid);
          const at = await s.list(p, { revision: mid });
          expect(at.items).to.have.length(1200);
          expect(at.items.every((kv) => kv.value === 'r1')).to.equal(true);
        }
      }
      const now = await s.list(p);
      expect(now.items).to.have.length(800);
      expect(now.items.every((kv) => kv.value === 'r2')).to.equal(true);
      const cur = await s.currentRevision();
      await s.compact(cur);
      expect((await s.list(p)).items).to.have.length(800);
      expect(await rejects(s.list(p, { revision: cur - 1 }))).to.be.instanceOf(CompactedError);
      const gone = collector(s, p, cur - 10);
      await gone.until(() => gone.error !== undefined);
      expect(gone.error).to.be.instanceOf(CompactedError);
      // and life goes on after it
      const live = collector(s, p, cur);
      await s.create(`${p}new`, 'x');
      await live.until(() => live.events.length === 1);
      live.close();
    });

    if (opts.networked) it('resumes a watch across a dropped connection with no gap and no duplicate', async function () {
      const p = uniq();
      const writer = await h.other!();
      const start = await s.currentRevision();
      const c = collector(s, p, start);
      const N = 60;
      const writes = (async () => {
        for (let i = 0; i < N; i++) {
          await writer.create(`${p}${String(i).padStart(3, '0')}`, String(i));
          if (i % 15 === 7) h.cut!();
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      await writes;
      await c.until(() => c.events.length >= N, 30000);
      await new Promise((r) => setTimeout(r, 300));
      c.close();
      await writer.close();
      expect(c.error).to.equal(undefined);
      expect(c.events.map((e) => e.value)).to.deep.equal(Array.from({ length: N }, (_, i) => String(i)));
    });

    it('stops delivering after close()', async () => {
      const p = uniq();
      const c = collector(s, p, await s.currentRevision());
      c.close();
      await s.create(p + 'a', '1');
      await new Promise((r) => setTimeout(r, 200));
      expect(c.events).to.have.length(0);
    });
  });
}
