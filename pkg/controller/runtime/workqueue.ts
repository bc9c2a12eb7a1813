/**
 * A de-duplicating work queue with client-go's semantics: a key is queued at most once; a
 * key being processed that is added again is re-queued when `done` is called (so one key
 * is never reconciled by two workers at once, and no change is lost); failures come back
 * with per-key exponential backoff, and retries are held to a global token bucket.
 */
export interface WorkQueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** retries per second across all keys (token bucket) */
  qps?: number;
  burst?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { t: NodeJS.Timeout; at: number }>();
  private waiters: Array<(k: string | undefined) => void> = [];
  private shuttingDown = false;
  private tokens: number;
  private lastRefill = Date.now();
  private readonly o: Required<WorkQueueOptions>;

  constructor(opts: WorkQueueOptions = {}) {
    this.o = { baseDelayMs: 5, maxDelayMs: 300_000, qps: 50, burst: 500, ...opts };
    this.tokens = this.o.burst;
  }

  get length(): number {
    return this.queue.length - this.head;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const w = this.waiters.shift();
    if (w) {
      this.dirty.delete(key);
      this.processing.add(key);
      w(key);
      return;
    }
    this.queue.push(key);
  }

  /** Adds the key after `ms`; of several pending delays for one key the earliest wins (client-go's delaying queue). */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const prev = this.timers.get(key);
    if (prev && prev.at <= at) return;
    if (prev) clearTimeout(prev.t);
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    t.unref?.();
    this.timers.set(key, { t, at });
  }

  /** Re-queue after this key's backoff (doubling per failure) or the global bucket's wait, whichever is longer. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const backoff = Math.min(this.o.baseDelayMs * 2 ** n, this.o.maxDelayMs);
    this.addAfter(key, Math.max(backoff, this.bucketDelay()));
  }

  /** The key succeeded: its backoff starts over. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  private bucketDelay(): number {
    const now = Date.now();
    this.tokens = Math.min(this.o.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.o.qps);
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.o.qps) * 1000;
  }

  /**
   * The next key, or undefined once shut down. Shut down means stop now: the keys still
   * queued are not handed out (a controller that lost its lease must not keep reconciling
   * its backlog), they stay for `drain`.
   */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    if (this.head < this.queue.length) {
      const k = this.queue[this.head++];
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.dirty.delete(k);
      this.processing.add(k);
      return Promise.resolve(k);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    // after a shut-down a dirty key stays dirty, so `drain` carries it over
    if (this.dirty.has(key) && !this.shuttingDown) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  /** Keep a key for the next run after a shut-down (a reconcile that was cut short). */
  carry(key: string): void {
    if (this.shuttingDown) this.dirty.add(key);
    else this.add(key);
  }

  get isShutDown(): boolean {
    return this.shuttingDown;
  }

  /** The keys still waiting (after a shut-down, to carry them over to a new queue). */
  drain(): string[] {
    const out = [...new Set([...this.queue.slice(this.head), ...this.dirty])];
    this.queue.length = 0;
    this.head = 0;
    this.dirty.clear();
    return out;
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const [k, { t }] of this.timers) {
      clearTimeout(t);
      this.dirty.add(k);
    }
    this.timers.clear();
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w(undefined);
  }
}
