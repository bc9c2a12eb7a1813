import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'chai';
import type { Lease, Service, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startFleet, type Fleet } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy, type ProxiedRequest } from '../support/holdproxy.ts';

/**
 * Two real berth-controller-manager processes, each behind its own recording proxy; the
 * leader's Lease renewals are blocked mid-rollout. The old leader must not write anything
 * that lands after the new leader's acquisition (checked in the store's revisions: every
 * write the old leader got a success for is older than the takeover), and no service may
 * leave its min/max bounds at any sample (every 100 ms).
 */
const LEASES = ['service', 'placement', 'daemon', 'instancehealth', 'gc'].map((c) => `berth-controller-${c}`);
const td = (name: string, sleepFor: string) => ({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32, command: ['sleep', sleepFor] }] } });

/** The store revisions a successful write was committed at (objects, bindings, deletes). */
function writeRevisions(r: ProxiedRequest): number[] {
  if (r.method === 'GET' || (r.status ?? 500) >= 300 || !r.body) return [];
  try {
    const b = JSON.parse(r.body) as { metadata?: { resourceVersion?: string }; results?: Array<{ bound?: boolean; resourceVersion?: string }> };
    const revs = [b.metadata?.resourceVersion, ...(b.results ?? []).filter((x) => x.bound).map((x) => x.resourceVersion)].filter((x): x is string => !!x).map(Number);
    return revs;
  } catch {
    return [];
  }
}

for (const store of (process.env.ONLY_STORE ? [process.env.ONLY_STORE] : ['embedded', 'etcd']) as Array<'embedded' | 'etcd'>) {
  describe(`two controller-managers, the leader's renewals blocked (real processes, ${store} store): D2, D3 and fencing`, function () {
    this.timeout(240_000);
    let api: TestApiServer;
    let client: Client;
    let fleet: Fleet;
    const proxies: HttpProxy[] = [];
    const procs: ChildProcess[] = [];
    const logs = new Map<ChildProcess, string>();

    const startManager = (server: string, name: string) => {
      const p = spawn(
        process.execPath,
        ['cmd/berth-controller-manager/bin.mjs', '--server', server, '--token', api.adminToken, '--log-level', 'info', '--task-healthy-after', '1', '--leader-elect-lease-duration', '6', '--leader-elect-renew-deadline', '4', '--leader-elect-retry-period', '1', '--instance-heartbeat-timeout', '30'],
        { env: { ...process.env, BERTH_TEST_NAME: name }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      logs.set(p, '');
      p.stderr!.on('data', (d) => logs.set(p, logs.get(p) + String(d)));
      procs.push(p);
      return p;
    };

    before(async () => {
      api = await startApiServer({ store });
      client = new Client({ server: api.url, token: api.adminToken });
      fleet = await startFleet(api.url, api.bootstrapToken, 3, { memoryMiB: 4096, cpus: 4 });
    });
    after(async () => {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      for (const p of proxies) await p.close();
      await fleet?.stop();
      client?.close();
      await api?.stop();
    });

    it('the old leader stops writing at once: nothing it wrote lands after the takeover, and no service leaves its bounds', async () => {
      const pa = await startHttpProxy(api.url);
      const pb = await startHttpProxy(api.url);
      proxies.push(pa, pb);
      const a = startManager(pa.url, 'mgr-a');
      const holders = async () => Promise.all(LEASES.map(async (l) => (await client.tryGet<Lease>('Lease', 'berth-system', l))?.spec.holderIdentity ?? ''));
      const aId = await eventually(async () => {
        const h = await holders();
        return h.every((x) => x && x === h[0]) && h[0];
      }, 30_000, 'a leads every controller');
      const b = startManager(pb.url, 'mgr-b');

      // services to keep within their bounds, mid-rollout when the leader is cut off
      const S = 4;
      const D = 4;
      await client.create(td('to', '1d'));
      for (let i = 0; i < S; i++) await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: `s${i}`, namespace: 'default' }, spec: { taskDefinition: 'to', desiredCount: D } });
      const all = async () => (await client.list<Task>('Task', 'default')).items;
      await eventually(async () => (await all()).filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING').length === S * D, 60_000, 'every service running');
      const violations: string[] = [];
      let samples = 0;
      const sampler = setInterval(async () => {
        try {
          const ts = await all();
          samples++;
          for (let i = 0; i < S; i++) {
            const mine = ts.filter((t) => t.spec.group === `service:s${i}`);
            const liveOnes = mine.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED').length;
            // maximumPercent counts what is RUNNING or PENDING, stopping tasks included
            const total = mine.filter((t) => t.status?.lastStatus !== 'STOPPED').length;
            const running = mine.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus === 'RUNNING').length;
            if (total > (D * 200) / 100) violations.push(`s${i}: ${total} running or pending (max ${(D * 200) / 100})`);
            if (running < D) violations.push(`s${i}: ${running} running (min ${D}), ${liveOnes} live`);
          }
        } catch {
          /* the next sample */
        }
      }, 100);

      // a service whose desired count keeps changing: there is always work for whoever leads
      await client.create({ apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'churn', namespace: 'default' }, spec: { taskDefinition: 'to', desiredCount: 1 } });
      let flip = 1;
      const churn = setInterval(() => void client.patch('Service', 'default', 'churn', { spec: { desiredCount: (flip = 3 - flip) } }).catch(() => undefined), 500);

      // roll every service, and cut the leader's renewals off while it works
      const cur = await client.get('TaskDefinition', undefined, 'to');
      await client.request('PUT', client.path('TaskDefinition', undefined, 'to'), { ...cur, spec: td('to', '2d').spec });
      for (let i = 0; i < S; i++) await client.patch('Service', 'default', `s${i}`, { spec: { taskDefinition: 'to:2' } });
      await new Promise((r) => setTimeout(r, 300));
      pa.hold((m, p) => m === 'PUT' && p.includes('/leases/'));
      const cutAt = Date.now();

      // a steps down within its renew deadline and exits (leader election lost); b takes over
      const code = await new Promise<number | null>((r) => a.once('exit', (c) => r(c)));
      expect(code, logs.get(a)).to.equal(1);
      expect(Date.now() - cutAt, 'a stopped within its renew deadline (+ its shutdown)').to.be.below(4000 + 1000 + 5000 + 3000);
      expect(logs.get(a)).to.match(/lost the lease/);
      const bId = await eventually(async () => {
        const h = await holders();
        return h.every((x) => x && x !== aId && x === h[0]) && h[0];
      }, 60_000, 'b leads every controller');
      expect(bId).to.not.equal(aId);
      // and finishes the rollout
      await eventually(async () => {
        const ss = await Promise.all(Array.from({ length: S }, (_, i) => client.get<Service>('Service', 'default', `s${i}`)));
        return ss.every((s) => s.status?.deployments?.length === 1 && s.status.deployments[0].taskDefinition === 'to:2' && s.status.deployments[0].rolloutState === 'COMPLETED' && s.status.runningCount === D);
      }, 90_000, 'b finished the rollout');
      clearInterval(sampler);
      clearInterval(churn);

      // the takeover: the first acquisition of a lease by b, in store revisions
      const takeover = Math.min(...pb.requests.filter((r) => r.method === 'PUT' && r.path.includes('/leases/') && (r.status ?? 500) < 300).map((r) => Number(r.resourceVersion ?? Infinity)));
      expect(Number.isFinite(takeover)).to.equal(true);
      const aWrites = pa.requests.filter((r) => !r.path.includes('/leases/'));
      const late = aWrites.flatMap((r) => writeRevisions(r).filter((rev) => rev >= takeover).map((rev) => `${r.method} ${r.path} at revision ${rev}`));
      expect(late, 'writes by the old leader that landed after the takeover').to.deep.equal([]);
      expect(aWrites.some((r) => writeRevisions(r).length > 0), 'the old leader did write before (the check is not vacuous)').to.equal(true);
      expect(samples).to.be.greaterThan(20);
      expect(violations, violations.slice(0, 5).join('\n')).to.deep.equal([]);
      expect(b.exitCode).to.equal(null);
    });
  });
}
