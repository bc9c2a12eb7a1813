/**
 * Several apiservers on one etcd cluster behave as one.
 *
 * Three real `berth-apiserver` processes on a 3-member etcd cluster (etcd's default limits),
 * the third over a slow link (its cache trails the others by 150 ms),
 * a seeded randomized workload spread over them -- creates, updates, deletes, bindings, task
 * definition registrations, daemons, cluster deletes, watches (listed on one apiserver,
 * watched on the same or another) and paginated lists -- recording every acknowledged write,
 * every refusal and every watch stream. Afterwards each is held against the store's own
 * history (a raw etcd watch from revision 1): every acknowledged write there exactly once;
 * every watch stream gap-free, duplicate-free and in order; every paginated list one
 * snapshot; and the invariants of C4, C5, C14 and D12 at every revision. Then the same
 * with one apiserver SIGSTOPped for 10 s in the middle.
 *
 * Each property is its own test.
 *
 * MULTI_OPS (default 400) operations per phase; MULTI_RUNS (default 1) runs; MULTI_SEED to
 * replay a run (the seed of each run is in its title).
 */
import { expect } from 'chai';
import { startApiProcesses, type ApiProcesses } from '../support/apiprocs.ts';
import { startEtcdCluster, type EtcdCluster } from '../support/etcdcluster.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcpproxy.ts';
import { check, readHistory, type Report } from './multi/check.ts';
import { prng, STABLE, Workload } from './multi/workload.ts';

const OPS = Number(process.env.MULTI_OPS ?? 400);
const RUNS = Number(process.env.MULTI_RUNS ?? 1);
const WORKERS = 6;

for (let run = 0; run < RUNS; run++) {
  const seed = process.env.MULTI_SEED ? Number(process.env.MULTI_SEED) + run : Math.floor(Math.random() * 2 ** 31);
  describe(`three apiserver processes on a 3-member etcd cluster, randomized workload (run ${run + 1} of ${RUNS}, seed ${seed}, ${OPS} ops a phase)`, function () {
    this.timeout(Math.max(600_000, OPS * 1000));
    let etcd: EtcdCluster;
    let procs: ApiProcesses;
    const proxies: TcpProxy[] = [];

    before(async () => {
      etcd = await startEtcdCluster({ members: 3 });
      // the third apiserver reaches etcd over a slow link: what etcd sends it (watch events,
      // txn answers) arrives 150 ms late, so its cache trails the other two
      for (const m of etcd.members) proxies.push(await startTcpProxy(Number(new URL(m.clientUrl).port), { delayMs: 150 }));
      procs = await startApiProcesses(etcd.storeUrl, 3, [], [undefined, undefined, `etcd://${proxies.map((p) => `127.0.0.1:${p.port}`).join(',')}`]);
    });
    after(async () => {
      await procs?.stop();
      for (const p of proxies) await p.close();
      await etcd?.stop();
    });

    for (const pause of [false, true]) {
      describe(pause ? 'with one apiserver SIGSTOPped for 10 s in the middle' : 'all three apiservers up', () => {
        let report: Report;
        before(async () => {
          const rng = prng(seed * 2 + (pause ? 1 : 0));
          let paused: number | undefined;
          const wl = new Workload(
            pause ? 'p' : 'u',
            procs.servers.map((s) => ({ index: s.index, url: s.url })),
            rng,
            () => paused,
          );
          await wl.setup();
          // watches from the start: each apiserver lists and watches a stable cluster's
          // selected tasks itself, and one of them resumes another's list of all services
          for (let i = 0; i < 3; i++) {
            await wl.startWatch({ scope: { plural: 'tasks', ns: STABLE[0], selected: true }, listServer: i, server: i });
            await wl.startWatch({ scope: { plural: 'services' }, listServer: i, server: (i + 1) % 3 });
            await wl.startWatch({ scope: { plural: 'containerinstances', ns: STABLE[1] }, listServer: i, server: i });
          }
          let pausing: Promise<void> | undefined;
          await wl.run(OPS, WORKERS, (done) => {
            // informers failing over to the apiserver behind the slow link, every so often
            if (done % 40 === 0) void wl.startWatch({ scope: { plural: done % 80 ? 'tasks' : 'containerinstances' }, listServer: done % 3 === 0 ? 0 : 1, server: 2 });
            if (!pause || pausing || done < OPS / 3) return;
            const victim = procs.servers[rng.int(3)];
            paused = victim.index;
            victim.pause();
            // informers failing over to it while it is stopped: listed on another apiserver,
            // the watch asked of the stopped one, which answers once it runs again and before
            // its cache has caught up
            setTimeout(() => {
              for (const plural of ['tasks', 'containerinstances']) void wl.startWatch({ scope: { plural }, listServer: (victim.index + 2) % 3, server: victim.index });
            }, 3000);
            pausing = new Promise<void>((resolve) =>
              setTimeout(() => {
                victim.resume();
                // its requests sent during the pause may still time out a little later
                setTimeout(() => {
                  paused = undefined;
                }, 5000);
                // informers failing over to it while it catches up: listed on another
                // apiserver, watched on the one that was stopped
                const other = (victim.index + 1) % 3;
                void Promise.all([
                  wl.startWatch({ scope: { plural: 'tasks' }, listServer: other, server: victim.index }),
                  wl.startWatch({ scope: { plural: 'services' }, listServer: other, server: victim.index }),
                ]).then(() => resolve());
              }, 10_000),
            );
          });
          await pausing;
          const until = await wl.sentinels(pause ? 'paused' : 'up');
          const deadline = Date.now() + 60_000;
          for (const w of wl.rec.watches) {
            while (!w.ended && Workload.reached(w) < until(w) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
            w.close();
          }
          report = check(wl.rec, await readHistory(etcd.endpoints), until);
          console.log(`      ${JSON.stringify(report.stats)}`);
        });

        const holds = (what: keyof Report) => () => expect(report[what], `${what} (seed ${seed})`).to.deep.equal([]);
        it('every acknowledged write is in the store history exactly once, at its revision, as acknowledged', holds('ackedWrites'));
        it('a create refused with 4xx never happened', holds('refusedWrites'));
        it('C4: no cluster is deleted with tasks, services or instances in it, and nothing is created into a missing cluster, at any revision', holds('clusterContents'));
        it('C4: no two live daemons of a cluster share a port, at any revision', holds('daemonPorts'));
        it('C5: each family revision is created once, in order', holds('revisions'));
        it('C5: a family resolved at write time is at least the revision registered before the request, on any apiserver', holds('resolution'));
        it('bindings: a task is bound once, only onto an ACTIVE connected instance (D12), never re-bound', holds('bindings'));
        it('C14: allocation records hold exactly the live tasks bound there, within capacity, and carry the instance gate, at every revision', holds('allocations'));
        it('no 5xx from an apiserver that was not paused', holds('serverErrors'));
        it('a list is the store state at its resourceVersion', holds('listState'));
        it('watches listed and watched on one apiserver are gap-free, duplicate-free and in order', holds('watchesSameServer'));
        it('C6: a watch resumed on another apiserver from a list resourceVersion is gap-free and duplicate-free', holds('watchesCrossServer'));
        it('C6: a list is at least as fresh as every write acknowledged before it', holds('listFreshness'));
        it('C7: every page of a paginated list is one snapshot', holds('paginationSnapshot'));
      });
    }
  });
}
