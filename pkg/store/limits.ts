import type { Store } from './store.ts';

/**
 * How big one store txn may be. etcd refuses a txn with more than `--max-txn-ops` compares
 * or ops (default 128) and a request above `--max-request-bytes` (default 1.5 MiB); berth
 * splits what may grow (a binding call, a family's deregistration) into txns within both.
 */
export interface TxnLimits {
  /** compares, and ops, per txn */
  maxOps: number;
  /** keys and values per txn */
  maxBytes: number;
}

/** etcd's defaults (with room under the 1.5 MiB request limit for the request's framing) */
export const ETCD_TXN_LIMITS: TxnLimits = { maxOps: 128, maxBytes: 1024 * 1024 };
/** the embedded store has no limits of its own: big txns are cheap there */
export const EMBEDDED_TXN_LIMITS: TxnLimits = { maxOps: 10_000, maxBytes: 8 * 1024 * 1024 };

/** The limits a store has by default. */
export const defaultTxnLimits = (store: Pick<Store, 'backend'>): TxnLimits => (store.backend === 'etcd' ? ETCD_TXN_LIMITS : EMBEDDED_TXN_LIMITS);
