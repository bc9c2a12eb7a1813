/**
 * Test support: cutting the API connections of the processes in some namespaces of a topology
 * (the controller-managers in the control namespace, an agent in its host's), for real:
 * `ss -K` destroys the established TCP connections to the load balancer (the process sees
 * its watch or request fail at once; the load balancer gets a reset and closes its side, so
 * the apiserver's watch ends too), and an iptables rule in the namespace's OUTPUT chain
 * answers every new connection to the load balancer with a reset until it is lifted. The
 * test's own clients, in the root namespace, are not affected; nor is anything between the
 * load balancer and the apiservers or etcd.
 */
import { nsExecAsync } from './netns.ts';
import type { Topology } from './topology.ts';

export interface Cutter {
  /** destroy the connections to the load balancer in every namespace now; returns how many there were */
  cut(): Promise<number>;
  /** refuse new connections (and cut the current ones) until `unblock` */
  block(): Promise<number>;
  unblock(): Promise<void>;
  /** established connections to the load balancer, per namespace */
  connections(): Promise<Record<string, number>>;
}

export function cutter(t: Topology, namespaces: string[]): Cutter {
  const lb = new URL(t.url);
  // new connections only (SYN): the resets `ss -K` sends for the cut ones must reach the load balancer
  const rule = ['OUTPUT', '-p', 'tcp', '--syn', '-d', lb.hostname, '--dport', lb.port, '-j', 'REJECT', '--reject-with', 'tcp-reset'];
  const filter = ['dst', lb.hostname, 'dport', '=', `:${lb.port}`];
  let blocked = false;
  const count = async (ns: string) => (await nsExecAsync(ns, 'ss', '-tnH', 'state', 'established', ...filter)).split('\n').filter(Boolean).length;
  const c: Cutter = {
    async cut() {
      let n = 0;
      for (const ns of namespaces) {
        n += await count(ns);
        await nsExecAsync(ns, 'ss', '-K', '-tn', ...filter);
      }
      return n;
    },
    async block() {
      for (const ns of namespaces) await nsExecAsync(ns, 'iptables', '-I', ...rule);
      blocked = true;
      return c.cut();
    },
    async unblock() {
      if (!blocked) return;
      for (const ns of namespaces) await nsExecAsync(ns, 'iptables', '-D', ...rule).catch(() => undefined);
      blocked = false;
    },
    async connections() {
      const out: Record<string, number> = {};
      for (const ns of namespaces) out[ns] = await count(ns);
      return out;
    },
  };
  return c;
}

/** An apiserver's Prometheus metrics, as name{labels} -> value. */
export async function apiserverMetrics(t: Topology, url: string): Promise<Map<string, number>> {
  const { request } = await import('node:https');
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(`${url}/metrics`, { ca: t.caPem, headers: { Authorization: `Bearer ${t.adminToken}` }, timeout: 10_000 }, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(s) : reject(new Error(`${url}/metrics: ${res.statusCode} ${s.slice(0, 200)}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}/metrics: no answer`)));
    req.on('error', reject);
    req.end();
  });
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sums over every apiserver: open watches, and requests by verb (list, watch) */
export async function apiTotals(t: Topology): Promise<{ watches: number; lists: number; watchRequests: number }> {
  const totals = { watches: 0, lists: 0, watchRequests: 0 };
  for (const url of t.apiserverUrls) {
    const m = await apiserverMetrics(t, url);
    for (const [k, v] of m) {
      if (k === 'berth_apiserver_watches') totals.watches += v;
      else if (k.startsWith('berth_apiserver_requests_total{verb="list"')) totals.lists += v;
      else if (k.startsWith('berth_apiserver_requests_total{verb="watch"')) totals.watchRequests += v;
    }
  }
  return totals;
}
