import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { openStore } from '../../pkg/store/open.ts';
import { describeStoreConformance } from './conformance.ts';

let dir: string;
let store: EmbeddedStore;

describeStoreConformance(
  'embedded',
  async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-embedded-'));
    store = EmbeddedStore.open(dir);
    return { store };
  },
  async () => {
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  },
  { networked: false },
);

describe('embedded store durability', function () {
  this.timeout(60000);
  it('keeps every committed write across kill -9 of the writing process, and reopens', async () => {
    const d = await mkdtemp(join(tmpdir(), 'berth-kill-'));
    try {
      // a child process writes keys as fast as it can and prints each committed key
      const script = `
        import { openStore } from ${JSON.stringify(new URL('../../pkg/store/open.ts', import.meta.url).pathname)};
        const s = await openStore(${JSON.stringify('embedded:' + d)});
        for (let i = 0; ; i++) {
          await s.create('/k/' + String(i).padStart(8, '0'), String(i));
          process.stdout.write(i + '\\n');
        }`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let acked = -1;
      let buf = '';
      child.stdout!.on('data', (d) => {
        buf += d;
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) acked = Number(l);
      });
      const deadline = Date.now() + 30000;
      while (acked < 500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      expect(acked).to.be.at.least(500);
      const s = await openStore('embedded:' + d);
      const list = await s.list('/k/');
      // every acknowledged write is there, in order, with nothing missing before it
      expect(list.items.length).to.be.at.least(acked + 1);
      list.items.forEach((kv, i) => expect(kv.value).to.equal(String(i)));
      // and it is writable again, revisions continuing
      const rev = await s.currentRevision();
      const kv = await s.create('/k/after', 'x');
      expect(kv.modRevision).to.equal(rev + 1);
      await s.close();
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});

/** Runs a script in a child node process (tsx loaded) and returns it with its output gathered. */
function child(script: string, opts: { argv0?: string[] } = {}) {
  const cmd = opts.argv0 ?? [];
  const argv = [...cmd, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script];
  const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  return {
    p,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    exited,
  };
}

const openTs = JSON.stringify(new URL('../../pkg/store/open.ts', import.meta.url).pathname);
const embeddedTs = JSON.stringify(new URL('../../pkg/store/embedded.ts', import.meta.url).pathname);

describe('embedded store: one process per data dir (C9)', function () {
  this.timeout(60000);
  let d: string;
  beforeEach(async () => {
    d = await mkdtemp(join(tmpdir(), 'berth-lock-'));
  });
  afterEach(async () => rm(d, { recursive: true, force: true }));

  it('C9: a second process on the same data dir is refused, naming the dir and the holder pid; after the holder closes it opens', async () => {
    const s = EmbeddedStore.open(d);
    await s.create('/k/a', '1');
    // a real second process, as `berth-apiserver --store embedded:DIR` beside a running `berth up` would be
    const second = child(`
      import { openStore } from ${openTs};
      try { const s = await openStore(${JSON.stringify('embedded:' + d)}); await s.create('/k/b', '2'); console.log('OPENED'); }
      catch (e) { console.log('REFUSED ' + e.message); process.exit(3); }`);
    expect(await second.exited, second.err).to.equal(3);
    expect(second.out).to.include('REFUSED');
    expect(second.out).to.include(d);
    expect(second.out).to.include(`pid ${process.pid}`);
    // nothing of the second process reached the store, and the first one still works
    expect(await s.get('/k/b')).to.equal(undefined);
    const kv = await s.create('/k/c', '3');
    expect(kv.modRevision).to.equal(2);
    // the same process opening it twice is refused too
    expect(() => EmbeddedStore.open(d, { lockWaitMs: 50 })).to.throw(/already open in this process/);
    await s.close();
    const again = child(`
      import { openStore } from ${openTs};
      const s = await openStore(${JSON.stringify('embedded:' + d)});
      const kv = await s.create('/k/d', '4'); console.log('REV ' + kv.modRevision); await s.close();`);
    expect(await again.exited, again.err).to.equal(0);
    expect(again.out).to.include('REV 3');
  });

  it('C9: a second berth-apiserver on the data dir of a running one exits with a message naming the dir and the holder', async function () {
    const bin = new URL('../../cmd/berth-apiserver/bin.mjs', import.meta.url).pathname;
    const first = spawn(process.execPath, [bin, '--store', `embedded:${d}`, '--listen', '127.0.0.1:0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    first.stderr!.on('data', (x) => (out += x)); // the log goes to stderr
    const firstExit = new Promise((r) => first.once('exit', r));
    try {
      const deadline = Date.now() + 30000;
      while (!out.includes('berth-apiserver serving') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(out).to.include('berth-apiserver serving');
      const second = spawn(process.execPath, [bin, '--store', `embedded:${d}`, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      second.stderr!.on('data', (x) => (err += x));
      const code = await new Promise((r) => second.once('exit', r));
      expect(code, err).to.equal(2);
      expect(err).to.include(`berth-apiserver: the embedded store in ${d} is in use by another process (pid ${first.pid}`);
    } finally {
      first.kill('SIGTERM');
      await firstExit;
    }
  });

  it('C9: a holder killed with SIGKILL releases the lock (the kernel drops it); the next opener gets every committed write', async () => {
    const holder = child(`
      import { openStore } from ${openTs};
      // held by a global: an unreferenced store is collected, and better-sqlite3 closes it then
      globalThis.store = await openStore(${JSON.stringify('embedded:' + d)});
      await globalThis.store.create('/k/a', '1'); console.log('HOLDING'); setInterval(() => {}, 1000);`);
    try {
      const deadline = Date.now() + 30000;
      while (!holder.out.includes('HOLDING') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(holder.out, holder.err).to.include('HOLDING');
      expect(() => EmbeddedStore.open(d, { lockWaitMs: 50 })).to.throw(new RegExp(`pid ${holder.p.pid}`));
    } finally {
      holder.p.kill('SIGKILL');
      await holder.exited;
    }
    const s = EmbeddedStore.open(d);
    expect((await s.get('/k/a'))!.value).to.equal('1');
    await s.close();
  });
});

describe('embedded store durability under faults (C11, group commit)', function () {
  this.timeout(180000);

  it('SIGKILL at random moments of a concurrent write burst (group commits), five times: no acknowledged write lost, no revision reused', async () => {
    const d = await mkdtemp(join(tmpdir(), 'berth-kill-'));
    try {
      const acked = new Map<string, number>();
      for (let round = 0; round < 5; round++) {
        // 16 writers at once (so group commits hold many txns), each ack reported as "key rev"
        const w = child(`
          import { openStore } from ${openTs};
          const s = await openStore(${JSON.stringify('embedded:' + d)});
          let n = 0;
          await Promise.all(Array.from({ length: 16 }, async (_, w) => {
            for (;;) {
              const key = '/r${round}/' + w + '/' + String(n++).padStart(8, '0');
              const r = await s.txn([{ key, modRevision: 0 }], [{ type: 'put', key, value: key }]);
              process.stdout.write(key + ' ' + r.revision + '\\n');
            }
          }));`);
        try {
          const firstAck = Date.now() + 30000;
          while (!w.out.includes('\n') && Date.now() < firstAck) await new Promise((r) => setTimeout(r, 10));
          await new Promise((r) => setTimeout(r, 50 + Math.floor(Math.random() * 400)));
        } finally {
          w.p.kill('SIGKILL');
          await w.exited;
        }
        const lines = w.out.split('\n');
        lines.pop(); // a line cut by the kill is not an ack
        expect(lines.length, w.err).to.be.greaterThan(0);
        for (const l of lines) {
          const [key, rev] = l.split(' ');
          acked.set(key, Number(rev));
        }
      }
      const s = EmbeddedStore.open(d);
      const all = await s.list('/r');
      const stored = new Map(all.items.map((kv) => [kv.key, kv.modRevision]));
      for (const [key, rev] of acked) expect(stored.get(key), `acknowledged ${key}@${rev}`).to.equal(rev);
      // one key per txn: two keys with one revision would be a revision handed out twice
      const revs = all.items.map((kv) => kv.modRevision);
      expect(new Set(revs).size).to.equal(revs.length);
      expect(await s.currentRevision()).to.equal(Math.max(...revs));
      await s.close();
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it('C11: every acknowledged write was fsynced before its acknowledgement (synchronous=FULL, traced with strace)', async function () {
    const d = await mkdtemp(join(tmpdir(), 'berth-fsync-'));
    const trace = join(d, 'trace');
    try {
      const w = child(
        `
        import { EmbeddedStore } from ${embeddedTs};
        const s = EmbeddedStore.open(${JSON.stringify(join(d, 'data'))});
        for (let i = 0; i < 100; i++) {
          const r = await s.create('/k/' + i, 'v' + i);
          process.stdout.write('ACK' + r.modRevision + '\\n');
        }
        await s.close();`,
        { argv0: ['strace', '-f', '-qq', '-s', '16', '-o', trace, '-e', 'trace=openat,pwrite64,write,fsync,fdatasync'] },
      );
      expect(await w.exited, w.err).to.equal(0);
      const lines = (await import('node:fs')).readFileSync(trace, 'utf8').split('\n');
      let wal = -1;
      let dirty = false; // WAL bytes written since its last sync
      let acks = 0;
      for (const l of lines) {
        const open = /openat\(.*berth\.db-wal".*\)\s+=\s+(\d+)/.exec(l);
        if (open) wal = Number(open[1]);
        const call = /^\d+\s+(pwrite64|write|fsync|fdatasync)\((\d+)(?:,\s*"([^"]*))?/.exec(l);
        if (!call) continue;
        const [, fn, fdStr, data = ''] = call;
        const fd = Number(fdStr);
        if (fd === wal && (fn === 'pwrite64' || fn === 'write')) dirty = true;
        if (fd === wal && (fn === 'fsync' || fn === 'fdatasync')) dirty = false;
        if (fd === 1 && fn === 'write' && data.startsWith('ACK')) {
          acks++;
          expect(dirty, `an acknowledgement (${data.trim()}) went out with WAL writes not yet synced`).to.equal(false);
        }
      }
      expect(wal, 'the trace shows the WAL being opened').to.be.greaterThan(0);
      expect(acks).to.equal(100);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});

describe('embedded store compaction (C10)', function () {
  this.timeout(60000);
  it('C10: compacting thousands of revisions works in batches, leaving the event loop free between them', async () => {
    const d = await mkdtemp(join(tmpdir(), 'berth-compact-'));
    const s = EmbeddedStore.open(d);
    try {
      for (let i = 0; i < 6000; i += 200) {
        await Promise.all(Array.from({ length: 200 }, (_, j) => s.txn([], [{ type: 'put', key: `/k/${(i + j) % 300}`, value: String(i + j) }])));
      }
      const cur = await s.currentRevision();
      expect(cur).to.equal(6000);
      let ticks = 0;
      let done = false;
      const spin = () => {
        if (done) return;
        ticks++;
        setImmediate(spin);
      };
      setImmediate(spin);
      await s.compact(cur);
      done = true;
      expect(ticks, 'event-loop turns while compacting').to.be.at.least(4);
      expect(await s.compactedRevision()).to.equal(cur);
      const now = await s.list('/k/');
      expect(now.items).to.have.length(300);
      expect(now.items.every((kv) => Number(kv.value) >= 5700)).to.equal(true);
    } finally {
      await s.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});
