import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { Histogram } from '../../apiserver/metrics.ts';
import { isBerthError } from '../../errors/errors.ts';
import { isAbort, type Client } from '../../client/client.ts';
import type { Informer } from '../../client/informer.ts';
import { WorkQueue, type WorkQueueOptions } from './workqueue.ts';

/**
 * A level-triggered controller: informers feed keys into a de-duplicating queue; workers
 * (started only once every informer has synced, and in a leadership term only once every
 * informer reflects the store at least as of the lease acquisition) call `reconcile(key, ctx)`, which re-reads
 * state from the caches and acts on the difference. An error re-queues the key with
 * backoff; a result with `requeueAfterMs` revisits it later (timeouts, grace periods).
 *
 * A controller runs for one term at a time (a leadership term, or the process's life
 * without leader election). Its writes go through the term's client, so they carry the
 * term's lease fence and are aborted when the term ends; `stop()` does not drain the
 * queue: the reconciles in flight end at their next request, the keys left wait for the
 * next term.
 */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export interface ReconcileContext {
  log: Logger;
  /** the client every write of this reconcile goes through (the term's: fenced, abortable) */
  client: Client;
  /** aborted when the term ends */
  signal: AbortSignal;
}

/** What a controller runs under: a leadership term, or the whole process without leader election. */
export interface Term {
  client: Client;
  signal: AbortSignal;
  /** a write was refused because the lease moved on (LeaseLost): the term is over */
  lost?(why: string): void;
  /**
   * The store revision the term began at (the write that acquired the lease). Every write
   * of the previous holder landed before it, so no worker plans until each informer's cache
   * is at least this new: a warm standby's cache may trail (a watch through a lagging
   * apiserver, or one relisting), and planning from it re-does the old leader's last work.
   */
  revision?: string;
}

export interface ControllerOptions {
  name: string;
  informers: Array<Pick<Informer, 'waitForSync'> & Partial<Pick<Informer, 'syncTo'>>>;
  /**
   * Runs at the start of every term once the caches are synced, before any worker: what the
   * controller keeps in memory about its own writes (expectations) belongs to the term that
   * made them, and a new term starts without it.
   */
  onTermStart?: () => void;
  reconcile: (key: string, ctx: ReconcileContext) => Promise<ReconcileResult | void>;
  /** the client of a run without a term (no leader election) */
  client?: Client;
  workers?: number;
  queue?: WorkQueueOptions;
  log: Logger;
  metrics?: ControllerMetrics;
}

export class Controller {
  queue: WorkQueue;
  private running = false;
  /** bumped by every run and stop: a run whose wait for the caches outlived it starts nothing */
  private generation = 0;
  private workers: Promise<void>[] = [];
  private term?: Term;
  private ownTerm?: AbortController;

  constructor(readonly o: ControllerOptions) {
    this.queue = new WorkQueue(o.queue);
  }

  enqueue = (key: string) => this.queue.add(key);
  /** enqueue in `ms` (the earliest pending delay wins): lets a burst of events share one reconcile */
  enqueueAfter = (key: string, ms: number) => this.queue.addAfter(key, ms);

  get isRunning(): boolean {
    return this.running;
  }

  /** `onSynced` runs once the caches are synced for this term, before any worker starts (e.g. to enqueue everything). */
  async run(term?: Term, onSynced?: () => void): Promise<void> {
    if (this.running) return;
    const gen = ++this.generation;
    if (this.queue.isShutDown) {
      // run again after losing and regaining leadership: what was queued meanwhile is kept
      const old = this.queue;
      this.queue = new WorkQueue(this.o.queue);
      for (const k of old.drain()) this.queue.add(k);
    }
    this.running = true;
    if (!term) {
      // no leader election: the process's own term, ended by stop()
      this.ownTerm = new AbortController();
      // every request in flight listens to the term's signal: dozens at once are normal
      setMaxListeners(0, this.ownTerm.signal);
      const c = this.o.client;
      // (a structural stand-in for the client without scopes, as the review's probes pass, is used as it is)
      term = { client: c && typeof c.scoped === 'function' ? c.scoped({ signal: this.ownTerm.signal }) : c!, signal: this.ownTerm.signal };
    }
    this.term = term;
    const rev = term.revision;
    const signal = term.signal;
    await Promise.all(this.o.informers.map((i) => (rev !== undefined && i.syncTo ? i.syncTo(rev, signal) : i.waitForSync())));
    if (gen !== this.generation || !this.running || signal.aborted) return;
    this.o.onTermStart?.();
    onSynced?.();
    this.o.log.info({ controller: this.o.name, ...(rev !== undefined ? { revision: rev } : {}) }, 'caches synced; starting workers');
    for (let i = 0; i < (this.o.workers ?? 4); i++) this.workers.push(this.worker(term));
  }

  /** Stops at once: no new reconcile starts; the ones in flight are aborted at their next request. */
  async stop(): Promise<void> {
    this.generation++;
    this.running = false;
    this.queue.shutDown();
    this.ownTerm?.abort();
    this.ownTerm = undefined;
    await Promise.all(this.workers);
    this.workers = [];
  }

  private async worker(term: Term): Promise<void> {
    const m = this.o.metrics;
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const log = this.o.log.child({ controller: this.o.name, key });
      const t0 = performance.now();
      try {
        const r = await this.o.reconcile(key, { log, client: term.client, signal: term.signal });
        this.queue.forget(key);
        if (r?.requeueAfterMs !== undefined) this.queue.addAfter(key, r.requeueAfterMs);
        m?.observe(this.o.name, 'success', (performance.now() - t0) / 1000);
      } catch (e) {
        const ended = isAbort(e) || term.signal.aborted || !this.running;
        if (isBerthError(e, 'LeaseLost')) {
          log.warn({ err: e.message }, 'a write was refused: the lease moved to another holder; stopping');
          term.lost?.(e.message);
          this.queue.carry(key);
        } else if (ended) {
          this.queue.carry(key); // cut short by the end of the term: the next one revisits it
        } else {
          const conflict = isBerthError(e, 'Conflict');
          // a conflict is the normal outcome of racing a writer: retry at once from fresh state
          if (!conflict) log.warn({ err: (e as Error).message, retries: this.queue.retries(key) }, 'reconcile failed; retrying with backoff');
          this.queue.addRateLimited(key);
        }
        m?.observe(this.o.name, isBerthError(e, 'Conflict') ? 'conflict' : ended ? 'aborted' : 'error', (performance.now() - t0) / 1000);
      } finally {
        this.queue.done(key);
        m?.depth(this.o.name, this.queue.length);
      }
    }
  }
}

/** Prometheus text metrics of the controllers: reconciles by result, latency, queue depth. */
export class ControllerMetrics {
  private readonly total = new Map<string, number>();
  private readonly latency = new Map<string, Histogram>();
  private readonly depths = new Map<string, number>();

  observe(controller: string, result: string, seconds: number) {
    const k = `controller="${controller}",result="${result}"`;
    this.total.set(k, (this.total.get(k) ?? 0) + 1);
    const h = this.latency.get(controller) ?? new Histogram();
    h.observe(seconds);
    this.latency.set(controller, h);
  }

  depth(controller: string, n: number) {
    this.depths.set(controller, n);
  }

  private readonly gauges = new Map<string, Map<string, number>>();

  /** A gauge of a controller's own (e.g. berth_instancehealth_evictions_halted{cluster="x"}). */
  gauge(name: string, labels: string, value: number) {
    (this.gauges.get(name) ?? this.gauges.set(name, new Map()).get(name)!).set(labels, value);
  }

  gaugeValue(name: string, labels: string): number | undefined {
    return this.gauges.get(name)?.get(labels);
  }

  count(controller: string, result: string): number {
    return this.total.get(`controller="${controller}",result="${result}"`) ?? 0;
  }

  render(): string {
    const out = ['# HELP berth_controller_reconciles_total Reconciles by controller and result.', '# TYPE berth_controller_reconciles_total counter'];
    for (const [k, v] of this.total) out.push(`berth_controller_reconciles_total{${k}} ${v}`);
    out.push('# HELP berth_controller_reconcile_duration_seconds Reconcile latency.', '# TYPE berth_controller_reconcile_duration_seconds histogram');
    for (const [k, h] of this.latency) out.push(...h.render('berth_controller_reconcile_duration_seconds', `controller="${k}"`));
    out.push('# HELP berth_controller_queue_depth Keys waiting.', '# TYPE berth_controller_queue_depth gauge');
    for (const [k, v] of this.depths) out.push(`berth_controller_queue_depth{controller="${k}"} ${v}`);
    for (const [name, m] of this.gauges) {
      out.push(`# TYPE ${name} gauge`);
      for (const [labels, v] of m) out.push(`${name}{${labels}} ${v}`);
    }
    out.push('# TYPE process_resident_memory_bytes gauge', `process_resident_memory_bytes ${process.memoryUsage().rss}`);
    return out.join('\n') + '\n';
  }
}
