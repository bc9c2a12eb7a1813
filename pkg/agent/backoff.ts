/**
 * Exponential backoff with jitter, the ECS agent's `retry.NewExponentialBackoff(min, max,
 * jitter, multiple)`: the n-th delay is min * multiple^n capped at max, then moved by up to
 * +/- jitter of itself. Every retry loop of the agent (Docker stops, pulls, creates, status
 * reports, event-stream reconnects, runner restarts) waits through one of these, so no loop
 * is hot and many failing tasks do not retry in step.
 */

export interface BackoffOptions {
  /** first delay, ms */
  minMs: number;
  /** cap, ms */
  maxMs: number;
  /** growth per attempt (ECS: 1.3 for stops, 2 for pulls) */
  multiplier: number;
  /** fraction of the delay added or removed at random (ECS: 0.2) */
  jitter: number;
  /** [0, 1) source; injectable for tests */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly o: BackoffOptions) {}

  /** The next delay (ms); each call grows the following one. */
  next(): number {
    const base = Math.min(this.o.maxMs, this.o.minMs * this.o.multiplier ** this.attempt);
    this.attempt++;
    const r = (this.o.random ?? Math.random)();
    return Math.max(0, Math.round(base + base * this.o.jitter * (2 * r - 1)));
  }

  /** How many delays were handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** ECS docker_task_engine.go: stopContainerBackoff 1 s .. 5 s, x1.3, jitter 0.2, 5 attempts. */
export const STOP_BACKOFF: BackoffOptions = { minMs: 1000, maxMs: 5000, multiplier: 1.3, jitter: 0.2 };
export const STOP_ATTEMPTS = 5;
/** ECS docker_client.go: pull retries 1.1 s .. 5 s, x2, jitter 0.2, 5 attempts. */
export const PULL_BACKOFF: BackoffOptions = { minMs: 1100, maxMs: 5000, multiplier: 2, jitter: 0.2 };
export const PULL_ATTEMPTS = 5;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref?.());

/**
 * Run `fn` up to `attempts` times, waiting a backoff delay between failures that
 * `retryable` accepts; the last error is thrown. `onRetry` sees each failure before the wait.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  o: {
    attempts: number;
    backoff: BackoffOptions;
    retryable?: (e: unknown) => boolean;
    onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
    sleep?: (ms: number) => Promise<void>;
  },
): Promise<T> {
  const b = new Backoff(o.backoff);
  for (let i = 0; ; i++) {
    try {
      return await fn(i);
    } catch (e) {
      if (i >= o.attempts - 1 || (o.retryable && !o.retryable(e))) throw e;
      const d = b.next();
      o.onRetry?.(e, i + 1, d);
      await (o.sleep ?? sleep)(d);
    }
  }
}
