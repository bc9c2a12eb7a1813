import Database from 'better-sqlite3';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { BerthError, CompactedError, TooLargeResourceVersionError, alreadyExists, conflict, notFound } from '../errors/errors.ts';
import type {
  Compare,
  KeyValue,
  ListOptions,
  ListResult,
  Op,
  Store,
  TxnResult,
  Watch,
  WatchEvent,
  WatchHandlers,
  WatchOptions,
} from './store.ts';
import { decodeContinue, encodeContinue, prefixEnd } from './keys.ts';

export interface EmbeddedStoreOptions {
  /** how long to wait for another process to release the data dir before refusing (ms, default 2 s) */
  lockWaitMs?: number;
}

/** revisions compacted per SQLite transaction: between batches the event loop serves requests */
export const COMPACT_BATCH_REVISIONS = 1000;

interface PendingTxn {
  compares: Compare[];
  ops: Op[];
  resolve(r: TxnResult): void;
  reject(e: unknown): void;
}

/**
 * The embedded store: SQLite through better-sqlite3, one append-only table of revisions
 * like k3s's kine. Every write appends a row carrying the store revision of its txn (all
 * ops of one txn share one revision, as in etcd); the newest row of a name is its current
 * state, a row with `deleted = 1` a tombstone. Compaction drops rows superseded at or before
 * the compact revision, in batches of revisions (kine's compactIter), never in one long
 * synchronous delete.
 *
 * One process only, and enforced: the database is opened with `locking_mode=EXCLUSIVE`, so
 * SQLite holds an exclusive lock on it for as long as the store is open (the kernel drops
 * it when the process dies); a second process is refused with a message naming the data dir
 * and the holder's pid (from `berth.db.lock`, written once the lock is held). The revision
 * counter lives in this process's memory, so two writers would hand out the same revisions.
 *
 * Watches are fed by in-process notification after each commit. better-sqlite3 is
 * synchronous, so reading history and subscribing to live events happen in one
 * uninterrupted step and a watch has no seam where an event could be lost or doubled.
 *
 * Durability: WAL with `synchronous=FULL`: a txn is acknowledged only after its commit is
 * fsynced, so an acknowledged write survives the process being killed AND the machine
 * losing power (the revisions it used are never handed out again). The fsync is shared:
 * txns issued in the same event-loop turn commit together in one SQLite transaction (group
 * commit), each with its own revision and its own compares, all acknowledged after it.
 */
export class EmbeddedStore implements Store {
  readonly backend = 'embedded' as const;
  private readonly db: Database.Database;
  private rev: number;
  private compactRev: number;
  private readonly watchers = new Set<EmbeddedWatch>();
  private closed = false;
  private readonly stmt: ReturnType<EmbeddedStore['prepare']>;
  private readonly lockFile: string;
  private pending: PendingTxn[] = [];
  private flushScheduled = false;
  private compacting: Promise<void> = Promise.resolve();

  constructor(readonly path: string, opts: EmbeddedStoreOptions = {}) {
    this.lockFile = `${path}.lock`;
    const db = new Database(path, { timeout: opts.lockWaitMs ?? 2000 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      // take the exclusive lock now (WAL + EXCLUSIVE keeps it until close) rather than at the first write
      db.exec('BEGIN IMMEDIATE; COMMIT');
    } catch (e) {
      db.close();
      if ((e as { code?: string }).code === 'SQLITE_BUSY') throw lockedError(path, this.lockFile);
      throw e;
    }
    this.db = db;
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rev INTEGER NOT NULL,
        name TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        create_rev INTEGER NOT NULL,
        value TEXT,
        old_value TEXT
      );
      CREATE INDEX IF NOT EXISTS kv_name_rev ON kv (name, rev);
      CREATE INDEX IF NOT EXISTS kv_rev ON kv (rev);
      CREATE TABLE IF NOT EXISTS latest (name TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
      INSERT OR IGNORE INTO meta (k, v) VALUES ('rev', 0), ('compact', 0);
    `);
    this.stmt = this.prepare();
    this.rev = (this.stmt.getMeta.get('rev') as { v: number }).v;
    this.compactRev = (this.stmt.getMeta.get('compact') as { v: number }).v;
    writeFileSync(this.lockFile, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }) + '\n');
  }

  private prepare() {
    const db = this.db;
    return {
      getMeta: db.prepare('SELECT v FROM meta WHERE k = ?'),
      setMeta: db.prepare('UPDATE meta SET v = ? WHERE k = ?'),
      getLatest: db.prepare(
        'SELECT kv.name, kv.value, kv.create_rev, kv.rev FROM latest JOIN kv ON kv.id = latest.id WHERE latest.name = ?',
      ),
      listLatest: db.prepare(
        `SELECT kv.name, kv.value, kv.create_rev, kv.rev FROM latest JOIN kv ON kv.id = latest.id
         WHERE latest.name >= ? AND latest.name < ? ORDER BY latest.name LIMIT ?`,
      ),
      countLatest: db.prepare('SELECT COUNT(*) AS n FROM latest WHERE name >= ? AND name < ?'),
      listAt: db.prepare(
        `SELECT kv.name, kv.value, kv.create_rev, kv.rev FROM kv JOIN (
           SELECT name, MAX(rev) AS mrev FROM kv WHERE name >= ? AND name < ? AND rev <= ? GROUP BY name
         ) m ON kv.name = m.name AND kv.rev = m.mrev
         WHERE kv.deleted = 0 ORDER BY kv.name LIMIT ?`,
      ),
      insert: db.prepare(
        'INSERT INTO kv (rev, name, deleted, create_rev, value, old_value) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      putLatest: db.prepare('INSERT OR REPLACE INTO latest (name, id) VALUES (?, ?)'),
      delLatest: db.prepare('DELETE FROM latest WHERE name = ?'),
      history: db.prepare(
        `SELECT rev, name, deleted, create_rev, value, old_value FROM kv
         WHERE rev > ? AND name >= ? AND name < ? ORDER BY rev, id`,
      ),
      // one batch of compaction, revisions (lo, hi]: every row superseded by a row written
      // in the batch, then the batch's tombstones. Each superseded row has its superseder in
      // exactly one batch, so batches in order remove what one big delete at hi would.
      compactSuperseded: db.prepare(
        `DELETE FROM kv WHERE id IN (
           SELECT p.id FROM kv c JOIN kv p ON p.name = c.name AND p.rev < c.rev WHERE c.rev > ? AND c.rev <= ?)`,
      ),
      compactTombstones: db.prepare('DELETE FROM kv WHERE rev > ? AND rev <= ? AND deleted = 1'),
    };
  }

  static open(dir: string, opts: EmbeddedStoreOptions = {}): EmbeddedStore {
    mkdirSync(dir, { recursive: true });
    return new EmbeddedStore(join(dir, 'berth.db'), opts);
  }

  private check() {
    if (this.closed) throw new Error('store is closed');
  }

  private current(key: string): KeyValue | undefined {
    const row = this.stmt.getLatest.get(key) as Row | undefined;
    return row && toKV(row);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check();
    return this.current(key);
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListResult> {
    this.check();
    let start = prefix;
    let revision = opts.revision && opts.revision > 0 ? opts.revision : this.rev;
    if (opts.continue) {
      const c = decodeContinue(opts.continue, prefix);
      start = c.nextKey;
      revision = c.revision;
    }
    if (revision > this.rev) throw new TooLargeResourceVersionError(revision, this.rev);
    if (revision < this.compactRev) throw new CompactedError(revision, this.compactRev);
    const end = prefixEnd(prefix);
    const limit = opts.limit && opts.limit > 0 ? opts.limit : -1;
    const fetch = limit > 0 ? limit + 1 : -1;
    const rows = (
      revision === this.rev
        ? this.stmt.listLatest.all(start, end, fetch)
        : this.stmt.listAt.all(start, end, revision, fetch)
    ) as Row[];
    const more = limit > 0 && rows.length > limit;
    const items = (more ? rows.slice(0, limit) : rows).map(toKV);
    const result: ListResult = { items, revision };
    if (more) result.continue = encodeContinue(revision, items[items.length - 1].key + '\0', prefix);
    return result;
  }

  async count(prefix: string): Promise<number> {
    this.check();
    return (this.stmt.countLatest.get(prefix, prefixEnd(prefix)) as { n: number }).n;
  }

  async create(key: string, value: string): Promise<KeyValue> {
    const r = await this.txn([{ key, modRevision: 0 }], [{ type: 'put', key, value }]);
    if (!r.succeeded) throw alreadyExists('key', key);
    return r.written[0];
  }

  async update(key: string, value: string, modRevision: number): Promise<KeyValue> {
    const r = await this.txn([{ key, modRevision }], [{ type: 'put', key, value }]);
    if (!r.succeeded) {
      if (!this.current(key)) throw notFound('key', key);
      throw conflict('key', key);
    }
    return r.written[0];
  }

  async delete(key: string, modRevision?: number): Promise<KeyValue> {
    this.check();
    const prev = this.current(key);
    if (!prev) throw notFound('key', key);
    const r = await this.txn(
      [{ key, modRevision: modRevision ?? prev.modRevision }],
      [{ type: 'delete', key }],
    );
    if (!r.succeeded) {
      if (!this.current(key)) throw notFound('key', key);
      throw conflict('key', key);
    }
    return prev;
  }

  /** Queued for the group commit of this event-loop turn; resolves once that commit is durable. */
  txn(compares: Compare[], ops: Op[]): Promise<TxnResult> {
    this.check();
    return new Promise<TxnResult>((resolve, reject) => {
      this.pending.push({ compares, ops, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Commits every queued txn in ONE SQLite transaction (one fsync), in arrival order, each
   * evaluated against the state the earlier ones left (a savepoint each, so one that throws
   * takes only itself back). If the commit fails, none of them is acknowledged and the
   * revisions they took are given back.
   */
  private flush() {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    if (this.closed) {
      for (const t of batch) t.reject(new Error('store is closed'));
      return;
    }
    const startRev = this.rev;
    const outcomes: Array<{ ok: true; result: TxnResult; events: WatchEvent[] } | { ok: false; err: unknown }> = [];
    try {
      this.db
        .transaction(() => {
          for (const t of batch) {
            const events: WatchEvent[] = [];
            try {
              outcomes.push({ ok: true, result: this.applyOne(t.compares, t.ops, events), events });
            } catch (err) {
              outcomes.push({ ok: false, err });
            }
          }
          if (this.rev !== startRev) this.stmt.setMeta.run(this.rev, 'rev');
        })
        .immediate();
    } catch (err) {
      this.rev = startRev;
      for (const t of batch) t.reject(err);
      return;
    }
    const events = outcomes.flatMap((o) => (o.ok ? o.events : []));
    if (events.length > 0) for (const w of this.watchers) w.deliver(events);
    batch.forEach((t, i) => {
      const o = outcomes[i];
      if (o.ok) t.resolve(o.result);
      else t.reject(o.err);
    });
  }

  private applyFn?: (compares: Compare[], ops: Op[], events: WatchEvent[]) => TxnResult;

  /** One txn inside the group commit: a nested transaction (a savepoint); its events go to `events`. */
  private applyOne(compares: Compare[], ops: Op[], events: WatchEvent[]): TxnResult {
    this.applyFn ??= this.db.transaction((compares: Compare[], ops: Op[], events: WatchEvent[]): TxnResult => {
      const failed: string[] = [];
      for (const c of compares) {
        const cur = this.current(c.key);
        const mod = cur ? cur.modRevision : 0;
        if (mod !== c.modRevision) failed.push(c.key);
      }
      if (failed.length > 0) return { succeeded: false, revision: this.rev, failed, written: [] };
      if (ops.length === 0) return { succeeded: true, revision: this.rev, failed: [], written: [] };
      const rev = this.rev + 1;
      const written: KeyValue[] = [];
      const mine: WatchEvent[] = [];
      // a key written twice in one txn keeps its last op (etcd rejects duplicates; we are lenient)
      const last = new Map<string, Op>();
      for (const op of ops) last.set(op.key, op);
      for (const op of last.values()) {
        const cur = this.current(op.key);
        if (op.type === 'put') {
          const createRev = cur ? cur.createRevision : rev;
          const info = this.stmt.insert.run(rev, op.key, 0, createRev, op.value, cur?.value ?? null);
          this.stmt.putLatest.run(op.key, info.lastInsertRowid);
          written.push({ key: op.key, value: op.value, createRevision: createRev, modRevision: rev });
          mine.push({ type: 'put', key: op.key, value: op.value, prevValue: cur?.value, modRevision: rev, createRevision: createRev });
        } else if (cur) {
          this.stmt.insert.run(rev, op.key, 1, cur.createRevision, null, cur.value);
          this.stmt.delLatest.run(op.key);
          mine.push({ type: 'delete', key: op.key, prevValue: cur.value, modRevision: rev });
        }
      }
      if (mine.length === 0) return { succeeded: true, revision: this.rev, failed: [], written };
      this.rev = rev;
      events.push(...mine);
      return { succeeded: true, revision: rev, failed: [], written };
    });
    return this.applyFn(compares, ops, events);
  }

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers, opts: WatchOptions = {}): Watch {
    const w = new EmbeddedWatch(prefix, handlers, !!opts.prevValues, () => this.watchers.delete(w));
    if (this.closed) {
      w.fail(new Error('store is closed'));
      return w;
    }
    if (afterRevision < this.compactRev) {
      w.fail(new CompactedError(afterRevision, this.compactRev));
      return w;
    }
    // history and subscription in one synchronous step: no gap, no duplicate
    if (afterRevision < this.rev) {
      const rows = this.stmt.history.all(afterRevision, prefix, prefixEnd(prefix)) as HistRow[];
      if (rows.length > 0) w.deliver(rows.map(histToEvent));
    }
    this.watchers.add(w);
    return w;
  }

  async currentRevision(): Promise<number> {
    this.check();
    return this.rev;
  }

  /** Compactions run one at a time, each in batches of revisions with the event loop free between them. */
  compact(revision: number): Promise<void> {
    this.check();
    const run = this.compacting.then(() => this.compactTo(revision));
    this.compacting = run.catch(() => {});
    return run;
  }

  private async compactTo(target: number): Promise<void> {
    if (target > this.rev) target = this.rev;
    while (!this.closed && this.compactRev < target) {
      const lo = this.compactRev;
      const hi = Math.min(target, lo + COMPACT_BATCH_REVISIONS);
      this.db
        .transaction(() => {
          this.stmt.compactSuperseded.run(lo, hi);
          this.stmt.compactTombstones.run(lo, hi);
          this.stmt.setMeta.run(hi, 'compact');
        })
        .immediate();
      this.compactRev = hi;
      if (hi < target) await new Promise((r) => setImmediate(r));
    }
  }

  async compactedRevision(): Promise<number> {
    return this.compactRev;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush(); // what was queued commits (or fails) before the database goes
    this.closed = true;
    for (const w of [...this.watchers]) w.fail(new Error('store is closed'));
    this.watchers.clear();
    this.db.close();
    try {
      const holder = JSON.parse(readFileSync(this.lockFile, 'utf8')) as { pid?: number };
      if (holder.pid === process.pid) rmSync(this.lockFile, { force: true });
    } catch {
      /* gone already */
    }
  }
}

/** The refusal a second process gets: the data dir, and who holds it when berth.db.lock says. */
function lockedError(path: string, lockFile: string): BerthError {
  let holder = '';
  try {
    const h = JSON.parse(readFileSync(lockFile, 'utf8')) as { pid?: number; host?: string; since?: string };
    if (h.pid === process.pid && h.host === hostname()) {
      const msg = `the embedded store in ${dirname(path)} is already open in this process (pid ${h.pid}): open it once and share it`;
      return new BerthError('Conflict', msg, { kind: 'store', name: dirname(path) });
    }
    if (typeof h.pid === 'number' && (h.host !== hostname() || alive(h.pid))) {
      holder = ` (pid ${h.pid}${h.host && h.host !== hostname() ? ` on ${h.host}` : ''}${h.since ? `, since ${h.since}` : ''})`;
    }
  } catch {
    /* no record of the holder */
  }
  return new BerthError(
    'Conflict',
    `the embedded store in ${dirname(path)} is in use by another process${holder}: only one process may open it at a time; ` +
      'stop that process, or give this one a data dir of its own',
    { kind: 'store', name: dirname(path) },
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

interface Row {
  name: string;
  value: string;
  create_rev: number;
  rev: number;
}
interface HistRow {
  rev: number;
  name: string;
  deleted: number;
  create_rev: number;
  value: string | null;
  old_value: string | null;
}

const toKV = (r: Row): KeyValue => ({
  key: r.name,
  value: r.value,
  createRevision: r.create_rev,
  modRevision: r.rev,
});

const histToEvent = (r: HistRow): WatchEvent =>
  r.deleted
    ? { type: 'delete', key: r.name, prevValue: r.old_value ?? undefined, modRevision: r.rev }
    : {
        type: 'put',
        key: r.name,
        value: r.value ?? '',
        prevValue: r.old_value ?? undefined,
        modRevision: r.rev,
        createRevision: r.create_rev,
      };

/** One watch: filters by prefix, delivers asynchronously and in order. */
class EmbeddedWatch implements Watch {
  private queue: WatchEvent[][] = [];
  private scheduled = false;
  private done = false;
  private readonly end: string;
  constructor(
    private readonly prefix: string,
    private readonly handlers: WatchHandlers,
    private readonly prevValues: boolean,
    private readonly detach: () => void,
  ) {
    this.end = prefixEnd(prefix);
  }

  deliver(events: WatchEvent[]) {
    if (this.done) return;
    let mine = events.filter((e) => e.key >= this.prefix && e.key < this.end);
    if (mine.length === 0) return;
    if (!this.prevValues) mine = mine.map(({ prevValue: _, ...e }) => e);
    this.queue.push(mine);
    this.schedule();
  }

  fail(err: Error) {
    if (this.done) return;
    this.done = true;
    this.detach();
    setImmediate(() => this.handlers.onError(err));
  }

  private schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.done) return;
      const batch = this.queue.flat();
      this.queue = [];
      if (batch.length > 0) this.handlers.onEvents(batch);
    });
  }

  close() {
    this.done = true;
    this.queue = [];
    this.detach();
  }
}
