/**
 * Prometheus text metrics of the apiserver: requests by verb/resource/code with latency
 * histograms, open watches, store latency.
 */
const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram {
  counts = new Array(BUCKETS.length).fill(0);
  sum = 0;
  n = 0;
  observe(v: number) {
    this.sum += v;
    this.n++;
    for (let i = 0; i < BUCKETS.length; i++) if (v <= BUCKETS[i]) this.counts[i]++;
  }
  render(name: string, labels: string): string[] {
    const lines = BUCKETS.map((b, i) => `${name}_bucket{${labels}${labels ? ',' : ''}le="${b}"} ${this.counts[i]}`);
    lines.push(`${name}_bucket{${labels}${labels ? ',' : ''}le="+Inf"} ${this.n}`);
    lines.push(`${name}_sum{${labels}} ${this.sum}`, `${name}_count{${labels}} ${this.n}`);
    return lines;
  }
}

export class Metrics {
  private readonly requests = new Map<string, number>();
  private readonly latency = new Map<string, Histogram>();
  private readonly store = new Map<string, Histogram>();
  private openWatches = 0;

  observeRequest(verb: string, resource: string, code: number, seconds: number) {
    const k = `verb="${verb}",resource="${resource}",code="${code}"`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
    const lk = `verb="${verb}",resource="${resource}"`;
    const h = this.latency.get(lk) ?? new Histogram();
    h.observe(seconds);
    this.latency.set(lk, h);
  }

  observeStore(op: string, seconds: number) {
    const h = this.store.get(op) ?? new Histogram();
    h.observe(seconds);
    this.store.set(op, h);
  }

  watchers(delta: number) {
    this.openWatches += delta;
  }

  get watchCount() {
    return this.openWatches;
  }

  render(): string {
    const out: string[] = [];
    out.push('# HELP berth_apiserver_requests_total Requests by verb, resource and HTTP code.', '# TYPE berth_apiserver_requests_total counter');
    for (const [k, v] of this.requests) out.push(`berth_apiserver_requests_total{${k}} ${v}`);
    out.push('# HELP berth_apiserver_request_duration_seconds Request latency.', '# TYPE berth_apiserver_request_duration_seconds histogram');
    for (const [k, h] of this.latency) out.push(...h.render('berth_apiserver_request_duration_seconds', k));
    out.push('# HELP berth_apiserver_watches Open watches.', '# TYPE berth_apiserver_watches gauge', `berth_apiserver_watches ${this.openWatches}`);
    out.push('# HELP berth_store_request_duration_seconds Store operation latency.', '# TYPE berth_store_request_duration_seconds histogram');
    for (const [k, h] of this.store) out.push(...h.render('berth_store_request_duration_seconds', `operation="${k}"`));
    const mem = process.memoryUsage();
    out.push('# TYPE process_resident_memory_bytes gauge', `process_resident_memory_bytes ${mem.rss}`);
    return out.join('\n') + '\n';
  }
}
