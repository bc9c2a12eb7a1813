/**
 * The store: a revisioned key-value space, the only place desired and observed state live.
 * Two backends implement it (etcd, embedded SQLite) and pass one conformance suite
 * (test/store/conformance.ts). Only the apiserver uses it.
 *
 * Revisions are the store's global, strictly increasing modification counter (etcd's
 * `header.revision`). Every key carries the revision that created it and the one that last
 * modified it; `modRevision` is what optimistic concurrency compares.
 * Values are opaque strings (the apiserver stores JSON).
 */

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
}

export interface ListOptions {
  /**
   * read at this past revision; default: the current one. A compacted revision fails with
   * `CompactedError`, one the store has not reached yet with `TooLargeResourceVersionError`
   * (never silently clamped: kine's ErrFutureRev).
   */
  revision?: number;
  /** at most this many items; 0 or absent = no limit */
  limit?: number;
  /** an opaque token from a previous page (continues at the same revision) */
  continue?: string;
}

export interface ListResult {
  items: KeyValue[];
  /** the revision the whole list (every page of it) is consistent at */
  revision: number;
  /** set when more items remain */
  continue?: string;
}

/** A condition of a transaction. `modRevision: 0` means "the key must not exist". */
export interface Compare {
  key: string;
  modRevision: number;
}

export type Op =
  | { type: 'put'; key: string; value: string }
  | { type: 'delete'; key: string };

export interface TxnResult {
  /** true when every compare held and every op was applied */
  succeeded: boolean;
  /** the store revision after the txn (when it succeeded) or at which it was evaluated */
  revision: number;
  /** on failure: the keys whose compare did not hold */
  failed: string[];
  /** on success: the written keys with their new revisions (deletes are absent) */
  written: KeyValue[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** for put: the new value; for delete: absent */
  value?: string;
  /** the value before this event, when there was one and the watch asked for it (`prevValues`) */
  prevValue?: string;
  /** the revision of this event */
  modRevision: number;
  /** the key's createRevision (put only) */
  createRevision?: number;
}

export interface WatchHandlers {
  /**
   * Called with the events of one or more revisions, in revision order, never twice for the
   * same event. All events of one revision (one txn) arrive in the same call.
   */
  onEvents(events: WatchEvent[]): void;
  /**
   * Called at most once, after which the watch delivers nothing more: `CompactedError` when
   * the start revision is compacted (the caller relists), or another error when the store
   * went away for good (closed).
   */
  onError(err: Error): void;
  /** optional: periodic progress, `revision` = every event up to it has been delivered */
  onProgress?(revision: number): void;
}

export interface Watch {
  close(): void;
}

export interface WatchOptions {
  /**
   * deliver each event's previous value too (etcd's prev_kv). Off by default: it doubles
   * every event on the wire, and the watch cache keeps its own previous values.
   */
  prevValues?: boolean;
}

export interface Store {
  readonly backend: 'etcd' | 'embedded';

  get(key: string): Promise<KeyValue | undefined>;
  list(prefix: string, opts?: ListOptions): Promise<ListResult>;
  /** the number of keys under prefix (cheap) */
  count(prefix: string): Promise<number>;

  /** fails with AlreadyExists when the key exists */
  create(key: string, value: string): Promise<KeyValue>;
  /** fails with Conflict when the key's modRevision differs, NotFound when it is gone */
  update(key: string, value: string, modRevision: number): Promise<KeyValue>;
  /** with modRevision: fails with Conflict when it differs. NotFound when absent. Returns the deleted KV. */
  delete(key: string, modRevision?: number): Promise<KeyValue>;

  /** atomic: all ops apply iff every compare holds */
  txn(compares: Compare[], ops: Op[]): Promise<TxnResult>;

  /**
   * Every event under prefix with revision > afterRevision, in order, then live ones.
   * afterRevision = the revision a list returned (like Kubernetes' resourceVersion).
   */
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers, opts?: WatchOptions): Watch;

  /** the current store revision */
  currentRevision(): Promise<number>;
  /**
   * forget history before revision (clamped to the current one); watches and lists from
   * before it fail with CompactedError. May take a while on a large history: the embedded
   * store works through it in batches and yields between them.
   */
  compact(revision: number): Promise<void>;
  /** the oldest revision still retained (0 when never compacted) */
  compactedRevision(): Promise<number>;

  close(): Promise<void>;
}

export const STORE = Symbol.for('berth.Store');
