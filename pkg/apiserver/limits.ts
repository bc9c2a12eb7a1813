import type { Socket } from 'node:net';
import { tooManyRequests } from '../errors/errors.ts';
import type { Identity } from './auth.ts';

/**
 * What one request, one watch and one identity may take of an apiserver (S5). The defaults
 * are sane for a fleet of agents (one or two watches each), controllers (a few watches, a
 * few dozen requests at a time) and people; `berth-apiserver` flags change them.
 */
export interface ServerLimits {
  /** a request that is not a watch or a followed log must be answered within this (504 after it) */
  requestTimeoutMs: number;
  /** a watch whose client reads slower than events come is closed once this much is queued for it */
  watchBufferBytes: number;
  /** watches without timeoutSeconds end after a random time in [min, 2*min] (Kubernetes' --min-request-timeout), so clients spread over apiservers again */
  minWatchTimeoutMs: number;
  /** open watches (and followed logs) per identity; beyond: 429 with Retry-After */
  maxWatchesPerIdentity: number;
  /** requests in flight per identity (not watches); beyond: 429 with Retry-After */
  maxInFlightPerIdentity: number;
  /** connections an identity's requests arrive on (each costs the server 30-65 KB); a request on one more: 429, and the connection closes */
  maxConnectionsPerIdentity: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  requestTimeoutMs: 60_000,
  watchBufferBytes: 2 * 1024 * 1024,
  minWatchTimeoutMs: 1_800_000,
  maxWatchesPerIdentity: 250,
  maxInFlightPerIdentity: 400,
  maxConnectionsPerIdentity: 500,
};

/** Kubernetes' rule (endpoints/handlers/get.go): the client's timeout, else a random one in [min, 2*min]. */
export function watchTimeoutMs(clientSeconds: number, minMs: number, random: () => number = Math.random): number {
  const ms = clientSeconds > 0 ? clientSeconds * 1000 : Math.floor(minMs * (1 + random()));
  return Math.min(ms, 2 ** 31 - 1); // what a timer can hold (about 24 days)
}

const identityKey = (id: Identity) => `${id.user}\u0000${id.uid ?? ''}`;

/** Counts what each identity holds; `acquire` refuses beyond the limit, the returned function releases (once). */
export class IdentityLimiter {
  private readonly held = new Map<string, number>();
  constructor(
    private readonly limit: number,
    private readonly what: string,
  ) {}

  acquire(id: Identity): () => void {
    if (this.limit <= 0) return () => undefined;
    const k = identityKey(id);
    const n = this.held.get(k) ?? 0;
    if (n >= this.limit) {
      throw tooManyRequests(`too many ${this.what} for ${id.user}: ${n} open, the limit is ${this.limit}; close some or try again later`, 1);
    }
    this.held.set(k, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const m = (this.held.get(k) ?? 1) - 1;
      if (m <= 0) this.held.delete(k);
      else this.held.set(k, m);
    };
  }

  count(id: Identity): number {
    return this.held.get(identityKey(id)) ?? 0;
  }
}

/**
 * The connections each identity's requests arrive on. A connection belongs to the
 * identity of its latest request (a client may switch tokens on a pooled connection) and
 * leaves when it closes.
 */
export class ConnectionTracker {
  private readonly owner = new WeakMap<Socket, string>();
  private readonly byIdentity = new Map<string, Set<Socket>>();
  constructor(private readonly limit: number) {}

  /** Counts `sock` for `id`; throws 429 when it would be one connection too many. */
  admit(id: Identity, sock: Socket): void {
    if (this.limit <= 0) return;
    const k = identityKey(id);
    const had = this.owner.get(sock);
    if (had === k) return;
    const set = this.byIdentity.get(k) ?? new Set<Socket>();
    if (set.size >= this.limit) {
      throw tooManyRequests(`too many connections for ${id.user}: ${set.size} open, the limit is ${this.limit}; reuse connections (keep-alive) or close some`, 1);
    }
    if (had !== undefined) this.drop(had, sock);
    else sock.once('close', () => this.drop(this.owner.get(sock), sock));
    this.owner.set(sock, k);
    set.add(sock);
    this.byIdentity.set(k, set);
  }

  private drop(k: string | undefined, sock: Socket) {
    if (k === undefined) return;
    const set = this.byIdentity.get(k);
    set?.delete(sock);
    if (set && set.size === 0) this.byIdentity.delete(k);
  }

  count(id: Identity): number {
    return this.byIdentity.get(identityKey(id))?.size ?? 0;
  }
}
