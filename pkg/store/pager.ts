import type { KeyValue, Store } from './store.ts';

export interface PagerOptions {
  /** read at this revision (default: the current one, pinned by the first page) */
  revision?: number;
  /** an opaque continue token of the store to start from (it carries its revision) */
  continue?: string;
  /** at most this many keys per page (default 1000) */
  maxKeys?: number;
  /** aim for at most about this many bytes per page (default 2 MiB) */
  maxBytes?: number;
}

export interface Page {
  items: KeyValue[];
  /** the revision every page is read at */
  revision: number;
  /** set when more keys follow this page */
  continue?: string;
}

export const PAGE_MAX_KEYS = 1000;
export const PAGE_MAX_BYTES = 2 * 1024 * 1024;

const sizeOf = (items: KeyValue[]) => items.reduce((n, kv) => n + kv.key.length + kv.value.length, 0);

/**
 * Every key under a prefix at ONE revision, in pages bounded by keys and by bytes. etcd's
 * range cannot be limited by bytes, so the page size adapts: the first page is small, and
 * each next one holds about `maxBytes` at the average size seen so far (never more than
 * `maxKeys`). A relist of 20,000 objects of 1.7 KB reads pages of 1,000 (1.7 MB each), far
 * below a gRPC message limit; a prefix of 1 MiB values reads two at a time.
 */
export async function* listPages(store: Store, prefix: string, o: PagerOptions = {}): AsyncGenerator<Page> {
  const maxKeys = o.maxKeys ?? PAGE_MAX_KEYS;
  const maxBytes = o.maxBytes ?? PAGE_MAX_BYTES;
  let limit = Math.max(1, Math.min(maxKeys, 100));
  let cont = o.continue;
  let revision = o.revision;
  let seenKeys = 0;
  let seenBytes = 0;
  for (;;) {
    const page = await store.list(prefix, cont ? { limit, continue: cont } : { limit, revision });
    revision = page.revision;
    seenKeys += page.items.length;
    seenBytes += sizeOf(page.items);
    yield { items: page.items, revision: page.revision, continue: page.continue };
    if (!page.continue) return;
    cont = page.continue;
    const avg = seenKeys ? seenBytes / seenKeys : 1;
    limit = Math.max(1, Math.min(maxKeys, Math.floor(maxBytes / Math.max(1, avg))));
  }
}
