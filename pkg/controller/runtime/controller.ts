import type { Logger } from 'pino';
import { Histogram } from '../../apiserver/metrics.ts';
import { isBerthError } from '../../errors/errors.ts';
import type { Informer } from '../../client/informer.ts';
import { WorkQueue, type WorkQueueOptions } from './workqueue.ts';

/**
 * A level-triggered controller: informers feed keys into a de-duplicating queue; workers
 * (started only once every informer has synced) call `reconcile(key)`, which re-reads
 * state from the caches and acts on the difference. An error re-queues the key with
 * backoff; a result with `requeueAfterMs` revisits it later (timeouts, grace periods).
 */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export interface ControllerOptions {
  name: string;
  informers: Array<Pick<Informer, 'waitForSync'>>;
  reconcile: (key: string, log: Logger) => Promise<ReconcileResult | void>;
  workers?: number;
  queue?: WorkQueueOptions;
  log: Logger;
  metrics?: ControllerMetrics;
}

export class Controller {
  queue: WorkQueue;
  private running = false;
  private workers: Promise<void>[] = [];

  constructor(readonly o: ControllerOptions) {
    this.queue = new WorkQueue(o.queue);
  }

  enqueue = (key: string) => this.queue.add(key);
  /** enqueue in `ms` (the earliest pending delay wins): lets a burst of events share one reconcile */
  enqueueAfter = (key: string, ms: number) => this.queue.addAfter(key, ms);

  async run(): Promise<void> {
    if (this.running) return;
    if (this.queue.isShutDown) {
      // run again after losing and regaining leadership: what was queued meanwhile is kept
      const old = this.queue;
      this.queue = new WorkQueue(this.o.queue);
      for (const k of old.drain()) this.queue.add(k);
    }
    this.running = true;
    await Promise.all(this.o.informers.map((i) => i.waitForSync()));
    if (!this.running) return;
    this.o.log.info({ controller: this.o.name }, 'caches synced; starting workers');
    for (let i = 0; i < (this.o.workers ?? 4); i++) this.workers.push(this.worker());
  }

  async stop(): Promise<void> {
    this.running = false;
    this.queue.shutDown();
    await Promise.all(this.workers);
    this.workers = [];
  }

  private async worker(): Promise<void> {
    const m = this.o.metrics;
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const log = this.o.log.child({ controller: this.o.name, key });
      const t0 = performance.now();
      try {
        const r = await this.o.reconcile(key, log);
        this.queue.forget(key);
        if (r?.requeueAfterMs !== undefined) this.queue.addAfter(key, r.requeueAfterMs);
        m?.observe(this.o.name, 'success', (performance.now() - t0) / 1000);
      } catch (e) {
        const conflict = isBerthError(e, 'Conflict');
        // a conflict is the normal outcome of racing a writer: retry at once from fresh state
        if (!conflict) log.warn({ err: (e as Error).message, retries: this.queue.retries(key) }, 'reconcile failed; retrying with backoff');
        m?.observe(this.o.name, conflict ? 'conflict' : 'error', (performance.now() - t0) / 1000);
        if (this.running) this.queue.addRateLimited(key);
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
    out.push('# TYPE process_resident_memory_bytes gauge', `process_resident_memory_bytes ${process.memoryUsage().rss}`);
    return out.join('\n') + '\n';
  }
}
