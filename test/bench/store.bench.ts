// `npm run bench:store`: throughput and watch latency of both store backends, measured in
// one run on this machine, printed as JSON and written to test/bench/results/store.json.
// A benchmark, not a test: it asserts nothing about the figures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { EtcdStore } from '../../pkg/store/etcd.ts';
import type { Store } from '../../pkg/store/store.ts';
import { startEtcd } from '../support/etcd.ts';
import { describeMachine } from './machine.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);

async function timed(concurrency: number, op: (worker: number, i: number) => Promise<unknown>): Promise<number> {
  const deadline = performance.now() + SECONDS * 1000;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await op(w, i);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function benchStore(store: Store, tag: string) {
  const out: Record<string, number> = {};
  for (const conc of [1, 64]) {
    out[`creates_per_s_c${conc}`] = await timed(conc, (w, i) => store.create(`/bench/${tag}/create/c${conc}/${w}/${i}`, '{"x":1}'));
    // CAS updates: each worker increments its own key with compare-and-swap
    const keys = await Promise.all(Array.from({ length: conc }, (_, w) => store.create(`/bench/${tag}/cas/c${conc}/${w}`, '0')));
    const revs = keys.map((k) => k.modRevision);
    out[`cas_updates_per_s_c${conc}`] = await timed(conc, async (w, i) => {
      const kv = await store.update(`/bench/${tag}/cas/c${conc}/${w}`, String(i + 1), revs[w]);
      revs[w] = kv.modRevision;
    });
    // txns of 3 keys with compares (a binding's shape: task, task, allocation)
    out[`txn3_per_s_c${conc}`] = await timed(conc, (w, i) =>
      store.txn(
        [{ key: `/bench/${tag}/txn/c${conc}/${w}/${i}/a`, modRevision: 0 }],
        [
          { type: 'put', key: `/bench/${tag}/txn/c${conc}/${w}/${i}/a`, value: 'x' },
          { type: 'put', key: `/bench/${tag}/txn/c${conc}/${w}/${i}/b`, value: 'y' },
          { type: 'put', key: `/bench/${tag}/txn/c${conc}/${w}/${i}/c`, value: 'z' },
        ],
      ),
    );
  }
  // batching: 100 puts per txn
  const batch = await timed(4, (w, i) =>
    store.txn(
      [],
      Array.from({ length: 100 }, (_, j) => ({ type: 'put' as const, key: `/bench/${tag}/batch/${w}/${i}/${j}`, value: '{"x":1}' })),
    ),
  );
  out.batched_keys_per_s_txn100_c4 = batch * 100;

  // watch delivery latency: time from the write's resolution... from its start to onEvents
  const sent = new Map<string, number>();
  const lat: number[] = [];
  const w = store.watch(`/bench/${tag}/watch/`, await store.currentRevision(), {
    onEvents(evs) {
      const now = performance.now();
      for (const e of evs) {
        const t = sent.get(e.key);
        if (t !== undefined) lat.push(now - t);
      }
    },
    onError(e) {
      console.error('watch error', e);
    },
  });
  for (let i = 0; i < 500; i++) {
    const key = `/bench/${tag}/watch/${i}`;
    sent.set(key, performance.now());
    await store.create(key, 'v');
    if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  const until = Date.now() + 10000;
  while (lat.length < 500 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  w.close();
  out.watch_latency_ms_p50 = pct(lat, 50);
  out.watch_latency_ms_p99 = pct(lat, 99);
  out.watch_events_received = lat.length;
  for (const k of Object.keys(out)) out[k] = Math.round(out[k] * 100) / 100;
  return out;
}

async function main() {
  const etcd = await startEtcd();
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-'));
  const results: Record<string, unknown> = {};
  try {
    const es = new EtcdStore({ hosts: [etcd.endpoint] });
    results.etcd = await benchStore(es, 'etcd');
    await es.close();
    const em = EmbeddedStore.open(dir);
    results.embedded = await benchStore(em, 'embedded');
    await em.close();
  } finally {
    await etcd.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const report = {
    benchmark: 'store',
    date: new Date().toISOString(),
    machine: describeMachine(),
    secondsPerFigure: SECONDS,
    results,
    ratios: {
      embedded_over_etcd_creates_c64:
        Math.round(((results.embedded as Record<string, number>).creates_per_s_c64 / (results.etcd as Record<string, number>).creates_per_s_c64) * 100) / 100,
      etcd_batched_keys_over_single_creates_c64:
        Math.round(((results.etcd as Record<string, number>).batched_keys_per_s_txn100_c4 / (results.etcd as Record<string, number>).creates_per_s_c64) * 100) / 100,
    },
  };
  const text = JSON.stringify(report, null, 2);
  console.log(text);
  const outDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'store.json'), text + '\n');
}

await main();
