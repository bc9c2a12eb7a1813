import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CompactedError, alreadyExists, conflict, notFound } from '../errors/errors.ts';
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
} from './store.ts';
import { decodeContinue, encodeContinue, prefixEnd } from './keys.ts';

/**
 * The embedded store: SQLite through better-sqlite3, one append-only table of revisions
 * like k3s's kine. Every write appends a row carrying the store revision of its txn (all
 * ops of one txn share one revision, as in etcd); the newest row of a name is its current
 * state, a row with `deleted = 1` a tombstone. Compaction drops rows superseded at or before
 * the compact revision.
 *
 * Single process only: watches are fed by in-process notification after each commit.
 * better-sqlite3 is synchronous, so reading history and subscribing to live events happen
 * in one uninterrupted step and a watch has no seam where an event could be lost or doubled.
 * WAL with synchronous=NORMAL: a committed txn survives the process being killed.
 */
export class EmbeddedStore implements Store {
  readonly backend = 'embedded' as const;
  private readonly db: Database.Database;
  private rev: number;
  private compactRev: number;
  private readonly watchers = new Set<EmbeddedWatch>();
  private closed = false;
  private readonly stmt: ReturnType<EmbeddedStore['prepare']>;

  constructor(readonly path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
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
      compactSuperseded: db.prepare(
        `DELETE FROM kv WHERE rev < ? AND EXISTS (
           SELECT 1 FROM kv k2 WHERE k2.name = kv.name AND k2.rev > kv.rev AND k2.rev <= ?)`,
      ),
      compactTombstones: db.prepare('DELETE FROM kv WHERE rev <= ? AND deleted = 1'),
    };
  }

  static open(dir: string): EmbeddedStore {
    mkdirSync(dir, { recursive: true });
    return new EmbeddedStore(join(dir, 'berth.db'));
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
    if (revision > this.rev) revision = this.rev;
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

  async txn(compares: Compare[], ops: Op[]): Promise<TxnResult> {
    this.check();
    return this.txnSync(compares, ops);
  }

  private readonly txnSync = (compares: Compare[], ops: Op[]): TxnResult => {
    const events: WatchEvent[] = [];
    const run = this.db.transaction((): TxnResult => {
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
      // a key written twice in one txn keeps its last op (etcd rejects duplicates; we are lenient)
      const last = new Map<string, Op>();
      for (const op of ops) last.set(op.key, op);
      for (const op of last.values()) {
        const cur = this.current(op.key);
        if (op.type === 'put') {
          const createRev = cur ? cur.createRevision : rev;
          const info = this.stmt.insert.run(rev, op.key, 0, createRev, op.value, cur?.value ?? null);
          this.stmt.putLatest.run(op.key, info.lastInsertRowid);
          const kv = { key: op.key, value: op.value, createRevision: createRev, modRevision: rev };
          written.push(kv);
          events.push({
            type: 'put',
            key: op.key,
            value: op.value,
            prevValue: cur?.value,
            modRevision: rev,
            createRevision: createRev,
          });
        } else if (cur) {
          this.stmt.insert.run(rev, op.key, 1, cur.createRevision, null, cur.value);
          this.stmt.delLatest.run(op.key);
          events.push({ type: 'delete', key: op.key, prevValue: cur.value, modRevision: rev });
        }
      }
      if (events.length === 0) return { succeeded: true, revision: this.rev, failed: [], written };
      this.stmt.setMeta.run(rev, 'rev');
      this.rev = rev;
      return { succeeded: true, revision: rev, failed: [], written };
    });
    const result = run.immediate();
    if (events.length > 0) for (const w of this.watchers) w.deliver(events);
    return result;
  };

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Watch {
    const w = new EmbeddedWatch(prefix, handlers, () => this.watchers.delete(w));
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

  async compact(revision: number): Promise<void> {
    this.check();
    if (revision <= this.compactRev) return;
    if (revision > this.rev) revision = this.rev;
    this.db.transaction(() => {
      this.stmt.compactSuperseded.run(revision, revision);
      this.stmt.compactTombstones.run(revision);
      this.stmt.setMeta.run(revision, 'compact');
    }).immediate();
    this.compactRev = revision;
  }

  async compactedRevision(): Promise<number> {
    return this.compactRev;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watchers]) w.fail(new Error('store is closed'));
    this.watchers.clear();
    this.db.close();
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
    private readonly detach: () => void,
  ) {
    this.end = prefixEnd(prefix);
  }

  deliver(events: WatchEvent[]) {
    if (this.done) return;
    const mine = events.filter((e) => e.key >= this.prefix && e.key < this.end);
    if (mine.length === 0) return;
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
