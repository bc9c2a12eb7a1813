import { Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { noop } from 'cockatiel';
import { BerthError, CompactedError, TooLargeResourceVersionError, alreadyExists, badRequest, conflict, internal, isBerthError, notFound, unavailable } from '../errors/errors.ts';
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

const META_COMPACTED = '/berth-meta/compacted';

export interface EtcdStoreOptions {
  /** e.g. ['http://127.0.0.1:2379'] */
  hosts: string[];
  /** per-call deadline for unary calls, ms (default 10 s) */
  callTimeoutMs?: number;
  /** TLS: the CA that verifies the members and the client certificate they may require */
  credentials?: { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer };
}

/**
 * The etcd backend, on the `etcd3` client. Production and HA.
 *
 * - Writes are never retried by the client (its default policy can resend a txn whose
 *   first attempt committed): every write is a txn with compares, and its outcome is read
 *   from the response only. Reads are retried here, since they are idempotent. A write is
 *   sent again only when it certainly was not taken (no connection to that member, or the
 *   member answered that it has no leader); one etcd did not confirm (a timeout, a leader
 *   change) is a 504 "may have been applied", one it never took a 503 (FS1): never the
 *   raw gRPC error, which the faces would answer as a 500.
 * - Watches track the last delivered revision themselves: the client moves its resume
 *   point to the header revision as soon as a (re)connect is acknowledged, before the
 *   catch-up events have arrived, so a second drop could skip events. On every disconnect
 *   the resume point is set back to lastDelivered+1 and events at or below lastDelivered
 *   are dropped: no gap, no duplicate.
 * - etcd limits ops per txn (`--max-txn-ops`, default 128); berth's batch binding wants
 *   more, so run etcd with `--max-txn-ops 10000` (hack/etcd.sh and the tests do).
 * - Message sizes: grpc-js refuses to receive a message over 4 MiB by default, and etcd
 *   sends an unsynced watcher up to 1,000 revisions in ONE response and a range in one
 *   message. The receive (and send) limits are lifted, as Kubernetes' clientv3 does
 *   (MaxInt32); large lists are paged by keys and bytes by their callers (`listPages`), and
 *   watches carry previous values only when asked (`prevValues`), not doubling every event.
 */
export class EtcdStore implements Store {
  readonly backend = 'etcd' as const;
  readonly client: Etcd3;
  private compactRev = 0;
  private readonly watches = new Set<EtcdWatch>();
  private closed = false;

  constructor(opts: EtcdStoreOptions) {
    const deadline = opts.callTimeoutMs ?? 10_000;
    this.client = new Etcd3({
      hosts: opts.hosts,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      faultHandling: { global: noop },
      grpcOptions: { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + deadline }),
    });
  }

  private async read<T>(fn: () => Promise<T>): Promise<T> {
    let delay = 50;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (isCompacted(e) || isFuture(e)) throw e;
        if (attempt >= 5 || this.closed) throw unavailable(`etcd: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const res = await this.read(() => this.client.kv.range({ key: Buffer.from(key) }));
    return res.kvs.length ? toKV(res.kvs[0]) : undefined;
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListResult> {
    let start = prefix;
    let revision = opts.revision && opts.revision > 0 ? opts.revision : 0;
    if (opts.continue) {
      const c = decodeContinue(opts.continue, prefix);
      start = c.nextKey;
      revision = c.revision;
    }
    const limit = opts.limit && opts.limit > 0 ? opts.limit : 0;
    let res;
    try {
      res = await this.read(() =>
        this.client.kv.range({
          key: Buffer.from(start),
          range_end: Buffer.from(prefixEnd(prefix)),
          revision,
          limit,
          sort_order: 'Ascend',
          sort_target: 'Key',
        }),
      );
    } catch (e) {
      if (isCompacted(e)) throw new CompactedError(revision, this.compactRev);
      if (isFuture(e)) throw new TooLargeResourceVersionError(revision, await this.currentRevision());
      throw e;
    }
    const at = revision || Number(res.header.revision);
    const items = res.kvs.map(toKV);
    const result: ListResult = { items, revision: at };
    if (res.more && items.length > 0) result.continue = encodeContinue(at, items[items.length - 1].key + '\0', prefix);
    return result;
  }

  async count(prefix: string): Promise<number> {
    const res = await this.read(() =>
      this.client.kv.range({ key: Buffer.from(prefix), range_end: Buffer.from(prefixEnd(prefix)), count_only: true }),
    );
    return Number(res.count);
  }

  async create(key: string, value: string): Promise<KeyValue> {
    const r = await this.txn([{ key, modRevision: 0 }], [{ type: 'put', key, value }]);
    if (!r.succeeded) throw alreadyExists('key', key);
    return r.written[0];
  }

  async update(key: string, value: string, modRevision: number): Promise<KeyValue> {
    if (modRevision <= 0) throw badRequest('update needs the modRevision of the key');
    const r = await this.txn([{ key, modRevision }], [{ type: 'put', key, value }]);
    if (!r.succeeded) {
      if (r.missing?.includes(key)) throw notFound('key', key);
      throw conflict('key', key);
    }
    return r.written[0];
  }

  async delete(key: string, modRevision?: number): Promise<KeyValue> {
    const compare = modRevision !== undefined ? [{ key, modRevision }] : [];
    const res = await this.write(() => this.client.kv.txn({
      compare: compare.map(toCompare),
      success: [{ request_delete_range: { key: Buffer.from(key), prev_kv: true } }],
      failure: [{ request_range: { key: Buffer.from(key) } }],
    }));
    if (!res.succeeded) {
      if (res.responses[0].response_range.kvs.length === 0) throw notFound('key', key);
      throw conflict('key', key);
    }
    const prev = res.responses[0].response_delete_range.prev_kvs;
    if (!prev || prev.length === 0) throw notFound('key', key);
    return toKV(prev[0]);
  }

  /** A write call: sent again while it certainly was not taken, then what failed as a 503/504 (FS1). */
  private async write<T>(fn: () => Promise<T>): Promise<T> {
    let delay = 50;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (isBerthError(e)) throw e;
        if (notTaken(e) && attempt < 5 && !this.closed) {
          await new Promise((r) => setTimeout(r, delay));
          delay *= 2;
          continue;
        }
        throw writeError(e);
      }
    }
  }

  async txn(compares: Compare[], ops: Op[]): Promise<TxnResult & { missing?: string[] }> {
    const res = await this.write(() =>
      this.client.kv
        .txn({
          compare: compares.map(toCompare),
          success: ops.map((op) =>
            op.type === 'put'
              ? { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value) } }
              : { request_delete_range: { key: Buffer.from(op.key) } },
          ),
          // on failure read the compared keys, to tell which compares did not hold
          failure: compares.map((c) => ({ request_range: { key: Buffer.from(c.key), keys_only: true } })),
        })
        .catch((e: unknown) => {
          throw txnLimitError(e, compares.length, ops.length) ?? e;
        }),
    );
    const revision = Number(res.header.revision);
    if (!res.succeeded) {
      const failed: string[] = [];
      const missing: string[] = [];
      compares.forEach((c, i) => {
        const kvs = res.responses[i].response_range.kvs;
        const mod = kvs.length ? Number(kvs[0].mod_revision) : 0;
        if (kvs.length === 0) missing.push(c.key);
        if (mod !== c.modRevision) failed.push(c.key);
      });
      return { succeeded: false, revision, failed, written: [], missing };
    }
    // etcd does not return createRevision on put; a created key (compare 0) was created now
    const created = new Set(compares.filter((c) => c.modRevision === 0).map((c) => c.key));
    const written: KeyValue[] = [];
    for (const op of ops) {
      if (op.type !== 'put') continue;
      written.push({
        key: op.key,
        value: op.value,
        modRevision: revision,
        createRevision: created.has(op.key) ? revision : 0,
      });
    }
    return { succeeded: true, revision, failed: [], written };
  }

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers, opts: WatchOptions = {}): Watch {
    const w = new EtcdWatch(this, prefix, afterRevision, handlers, !!opts.prevValues, () => this.watches.delete(w));
    this.watches.add(w);
    w.start();
    return w;
  }

  async currentRevision(): Promise<number> {
    const res = await this.read(() => this.client.kv.range({ key: Buffer.from(META_COMPACTED) }));
    return Number(res.header.revision);
  }

  async compact(revision: number): Promise<void> {
    const current = await this.currentRevision();
    if (revision > current) revision = current;
    if (revision <= this.compactRev) return;
    try {
      // logical compaction takes effect at once; etcd frees the space in the background
      // (a physical wait can outlast the call deadline on a large database)
      await this.client.kv.compact({ revision });
    } catch (e) {
      if (!isCompacted(e)) throw e;
    }
    this.compactRev = revision;
  }

  async compactedRevision(): Promise<number> {
    return this.compactRev;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.fail(new Error('store is closed'));
    this.client.close();
  }

  /** @internal: undefined when `revision` is still readable, else the known compact revision */
  async isCompacted(revision: number): Promise<number | undefined> {
    try {
      await this.client.kv.range({ key: Buffer.from(META_COMPACTED), revision });
      return undefined;
    } catch (e) {
      if (!isCompacted(e)) return undefined;
      if (this.compactRev < revision) this.compactRev = revision;
      return this.compactRev;
    }
  }

  /** @internal */
  noteCompacted(rev: number) {
    if (rev > this.compactRev) this.compactRev = rev;
  }
}

class EtcdWatch implements Watch {
  private watcher?: Watcher;
  private lastRev: number;
  private done = false;

  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
    after: number,
    private readonly handlers: WatchHandlers,
    private readonly prevValues: boolean,
    private readonly detach: () => void,
  ) {
    this.lastRev = after;
  }

  start() {
    const b = this.store.client.watch().prefix(this.prefix).startRevision(String(this.lastRev + 1));
    const w = (this.prevValues ? b.withPreviousKV() : b).watcher();
    this.watcher = w;
    w.on('data', (res) => {
      if (this.done) return;
      const compactRev = Number(res.compact_revision ?? 0);
      if (compactRev > 0) {
        this.store.noteCompacted(compactRev);
        this.fail(new CompactedError(this.lastRev, compactRev));
        return;
      }
      const events: WatchEvent[] = [];
      for (const ev of res.events) {
        const rev = Number(ev.kv.mod_revision);
        if (rev <= this.lastRev) continue; // already delivered before a reconnect
        const key = ev.kv.key.toString();
        const prevValue = ev.prev_kv ? ev.prev_kv.value.toString() : undefined;
        if (ev.type === 'Put') {
          events.push({
            type: 'put',
            key,
            value: ev.kv.value.toString(),
            prevValue,
            modRevision: rev,
            createRevision: Number(ev.kv.create_revision),
          });
        } else {
          events.push({ type: 'delete', key, prevValue, modRevision: rev });
        }
      }
      if (events.length === 0) return;
      this.lastRev = events[events.length - 1].modRevision;
      this.handlers.onEvents(events);
    });
    w.on('disconnected', () => {
      // the client will resume from request.start_revision: put it back to where we are
      (w.request as { start_revision?: string }).start_revision = String(this.lastRev + 1);
    });
    w.on('connected', () => {
      (w.request as { start_revision?: string }).start_revision = String(this.lastRev + 1);
    });
    w.on('error', (err: Error) => {
      if (this.done) return;
      // etcd cancels a watch whose start revision is compacted; the client drops the
      // compact_revision and often the reason, so ask etcd whether that revision is gone
      void this.store.isCompacted(this.lastRev + 1).then((rev) => {
        if (rev !== undefined || /compacted/i.test(err.message)) this.fail(new CompactedError(this.lastRev, rev ?? 0));
        else this.fail(err);
      });
    });
  }

  fail(err: Error) {
    if (this.done) return;
    this.done = true;
    this.detach();
    void this.watcher?.cancel().catch(() => {});
    setImmediate(() => this.handlers.onError(err));
  }

  close() {
    if (this.done) return;
    this.done = true;
    this.detach();
    void this.watcher?.cancel().catch(() => {});
  }
}

function toKV(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
}

function toCompare(c: Compare) {
  return c.modRevision === 0
    ? { key: Buffer.from(c.key), target: 'Create' as const, result: 'Equal' as const, create_revision: 0 }
    : { key: Buffer.from(c.key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: c.modRevision };
}

/**
 * etcd's refusal of a txn beyond its limits, as an error that names the limit (R1-4): berth
 * keeps its txns within etcd's defaults, so this is a txn berth failed to split, or an etcd
 * run with lower limits than its defaults.
 */
function txnLimitError(e: unknown, compares: number, ops: number): Error | undefined {
  const msg = (e as Error)?.message ?? '';
  if (/too many operations in txn request/i.test(msg)) {
    return internal(`the store refused a transaction of ${compares} compares and ${ops} operations: etcd's --max-txn-ops (default 128) is lower (${msg})`);
  }
  if (/request is too large/i.test(msg)) {
    const what = `the store refused a transaction of ${compares} compares and ${ops} operations as too large`;
    return internal(`${what}: etcd's --max-request-bytes (default 1.5 MiB) is lower (${msg})`);
  }
  return undefined;
}

/**
 * The call certainly did not reach etcd's log: no connection to the member could be made, or
 * the member refused it because the cluster has no leader. Sending it again cannot apply it
 * twice.
 */
function notTaken(e: unknown): boolean {
  return /No connection established|ECONNREFUSED|etcdserver: no leader/.test((e as Error)?.message ?? '');
}

/**
 * What a failed write is to the caller: 503 when etcd did not take it (nothing was written),
 * 504 when etcd did not confirm it (a deadline, a leader change, a dropped connection: it may
 * have been applied, so the caller reads before it retries). Anything else (a request etcd
 * refuses as malformed) stays what it is.
 */
function writeError(e: unknown): Error {
  const msg = (e as Error)?.message ?? String(e);
  if (notTaken(e)) return new BerthError('ServiceUnavailable', `etcd is unavailable (${msg}); nothing was written: try again`, { retryAfterSeconds: 1 });
  if (/UNAVAILABLE|DEADLINE_EXCEEDED|context deadline exceeded|CANCELLED|etcdserver: (request timed out|leader changed|timed out)|Connection dropped/i.test(msg)) {
    return new BerthError('Timeout', `etcd did not confirm the write (${msg}); it may or may not have been applied: read the object before trying again`, { retryAfterSeconds: 1 });
  }
  return e as Error;
}

function isCompacted(e: unknown): boolean {
  return e instanceof CompactedError || /compacted/i.test((e as Error)?.message ?? '');
}

/** etcd: "mvcc: required revision is a future revision" */
function isFuture(e: unknown): boolean {
  return e instanceof TooLargeResourceVersionError || /future revision/i.test((e as Error)?.message ?? '');
}
