/**
 * The checker of the multi-apiserver test: what the workload recorded, held against the
 * store's own history (a raw etcd watch from revision 1, read by this test's own client).
 * Each property is reported on its own, so a failure says which one and a run says which
 * hold.
 */
import { Etcd3 } from 'etcd3';
import { DTDS, MARK, SEL, type Recording, type Scope, type WatchRecord } from './workload.ts';

export interface HEvent {
  rev: number;
  type: 'put' | 'delete';
  key: string;
  /** the parsed value (put) */
  value?: any;
  createRev?: number;
}

/** Every event under /berth/ from revision 1 up to a marker written now (so nothing later than the call is missed). */
export async function readHistory(endpoints: string[]): Promise<HEvent[]> {
  const client = new Etcd3({ hosts: endpoints, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
  try {
    const end = `/berth/zz-history-end/_/${Date.now()}`;
    const put = await client.put(end).value('{}').exec();
    const until = Number(put.header.revision);
    const events: HEvent[] = [];
    await new Promise<void>((resolve, reject) => {
      const w = client.watch().prefix('/berth/').startRevision('1').watcher();
      const timer = setTimeout(() => reject(new Error('reading the history timed out')), 60_000);
      w.on('data', (res) => {
        for (const ev of res.events) {
          const rev = Number(ev.kv.mod_revision);
          const key = ev.kv.key.toString();
          if (ev.type === 'Put') {
            let value: unknown;
            try {
              value = JSON.parse(ev.kv.value.toString());
            } catch {
              value = ev.kv.value.toString();
            }
            events.push({ rev, type: 'put', key, value, createRev: Number(ev.kv.create_revision) });
          } else events.push({ rev, type: 'delete', key });
          if (rev >= until) {
            clearTimeout(timer);
            void w.cancel().catch(() => {});
            resolve();
          }
        }
      });
      w.on('error', (e: Error) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    return events.filter((e) => !e.key.startsWith('/berth/zz-history-end/'));
  } finally {
    client.close();
  }
}

const parts = (key: string) => {
  const [, , plural, ns, ...rest] = key.split('/');
  return { plural, ns: ns === '_' ? undefined : ns, name: rest.join('/') };
};
const at = (o: any, path: string[]) => path.reduce((v, p) => (v === undefined || v === null ? undefined : v[p]), o);
const liveTask = (t: any) => t?.status?.lastStatus !== 'STOPPED';

/** the instance fields a binding depends on (pkg/api/allocation.ts gateOf, restated) */
function gate(ci: any) {
  const status = (ci.spec.status ?? 'ACTIVE') === 'ACTIVE' ? (ci.status?.status === 'INACTIVE' ? 'INACTIVE' : 'ACTIVE') : ci.spec.status;
  return JSON.stringify({ status, agentConnected: ci.status?.agentConnected ?? false, registeredResources: ci.spec.registeredResources ?? [], ...(ci.spec.dynamicHostPortRange ? { dynamicHostPortRange: ci.spec.dynamicHostPortRange } : {}) });
}
const capacity = (res: any[] | undefined, name: string) => res?.find((r) => r.name === name)?.integerValue ?? 0;

export interface Report {
  /** every acknowledged write is in the history exactly once, at its revision, as acknowledged */
  ackedWrites: string[];
  /** a create refused with 4xx never happened */
  refusedWrites: string[];
  /** C4: no cluster deleted with contents, no object created into a missing cluster */
  clusterContents: string[];
  /** C4: no two live daemons of a cluster on one port */
  daemonPorts: string[];
  /** C5: revisions of a family are created in order, one each */
  revisions: string[];
  /** a task is bound once, never re-bound; bound only on an ACTIVE connected instance (D12) */
  bindings: string[];
  /** allocation records hold exactly the live tasks bound there, within capacity, with the instance's gate (C14) */
  allocations: string[];
  /** C5: a family resolved at write time is at least the revision registered before the request */
  resolution: string[];
  /** watches listed and watched on the same apiserver: gap-free, duplicate-free, in order */
  watchesSameServer: string[];
  /** watches resumed on another apiserver from a list's resourceVersion (needs C6) */
  watchesCrossServer: string[];
  /** a list's items are the store's state at its resourceVersion (any list) */
  listState: string[];
  /** every page of a paginated list is one snapshot: page 1's resourceVersion, its items (needs C7) */
  paginationSnapshot: string[];
  /** a list with resourceVersion "" is at least as new as every write acknowledged before it (needs C6) */
  listFreshness: string[];
  /** no 5xx from an apiserver that was not paused */
  serverErrors: string[];
  stats: Record<string, number>;
}

/** how a server may end a watch that the client then starts again (not a lost event) */
const LEGIT_END = /Too large resource version|ResourceVersionTooLarge|storage is \(re\)initializing|fetch failed|ECONNRESET|socket hang up|terminated|other side closed/;

export function check(rec: Recording, history: HEvent[], until: (w: WatchRecord) => number): Report {
  const r: Report = {
    ackedWrites: [],
    refusedWrites: [],
    clusterContents: [],
    daemonPorts: [],
    revisions: [],
    bindings: [],
    allocations: [],
    resolution: [],
    watchesSameServer: [],
    watchesCrossServer: [],
    listState: [],
    paginationSnapshot: [],
    listFreshness: [],
    serverErrors: rec.serverErrors.map((e) => `op ${e.op} (${e.what}) on apiserver ${e.server}: ${e.status} ${e.message}`),
    stats: {},
  };
  const byKeyRev = new Map<string, HEvent>();
  const byKey = new Map<string, HEvent[]>();
  for (const e of history) {
    byKeyRev.set(`${e.key}@${e.rev}`, e);
    const l = byKey.get(e.key);
    if (l) l.push(e);
    else byKey.set(e.key, [e]);
  }

  // ---------------------------------------------------------------- acknowledged writes
  for (const a of rec.acks) {
    const what = `op ${a.op} ${a.what} ${a.key}@${a.rv} (apiserver ${a.server})`;
    const e = byKeyRev.get(`${a.key}@${a.rv}`);
    if (!e) {
      r.ackedWrites.push(`${what}: not in the history at that revision`);
      continue;
    }
    if (e.type !== a.type) r.ackedWrites.push(`${what}: the history has a ${e.type} there`);
    const events = byKey.get(a.key)!;
    if (a.uid) {
      if (e.value?.metadata?.uid !== a.uid || e.createRev !== a.rv) r.ackedWrites.push(`${what}: the create at that revision is another object`);
      const creates = events.filter((x) => x.type === 'put' && x.createRev === x.rev && x.value?.metadata?.uid === a.uid);
      if (creates.length !== 1) r.ackedWrites.push(`${what}: created ${creates.length} times`);
    }
    if (a.marker) {
      if (e.value?.metadata?.annotations?.[MARK] !== a.marker) r.ackedWrites.push(`${what}: the object at that revision lacks the op's marker`);
      let introduced = 0;
      let prev: string | undefined;
      for (const x of events) {
        const m = x.type === 'put' ? x.value?.metadata?.annotations?.[MARK] : undefined;
        if (m === a.marker && prev !== a.marker) introduced++;
        prev = m;
      }
      if (introduced !== 1) r.ackedWrites.push(`${what}: applied ${introduced} times`);
    }
    if (a.expect && e.type === 'put') {
      const v = at(e.value, a.expect.path);
      if (JSON.stringify(v) !== JSON.stringify(a.expect.value)) r.ackedWrites.push(`${what}: ${a.expect.path.join('.')} is ${JSON.stringify(v)}, acknowledged ${JSON.stringify(a.expect.value)}`);
    }
  }
  for (const f of rec.refusals) {
    if (byKey.has(f.key)) r.refusedWrites.push(`op ${f.op} ${f.what} ${f.key} was refused (${f.status} ${f.message ?? ''}) but is in the history`);
  }

  // ---------------------------------------------------------------- replay: invariants at every revision
  const state = new Map<string, HEvent>();
  const revs: HEvent[][] = [];
  for (const e of history) {
    const last = revs.at(-1);
    if (last && last[0].rev === e.rev) last.push(e);
    else revs.push([e]);
  }
  const live = (plural: string, ns: string) => {
    const out: Array<[string, any]> = [];
    const pre = `/berth/${plural}/${ns}/`;
    for (const [k, e] of state) if (k.startsWith(pre)) out.push([k, e.value]);
    return out;
  };
  for (const txn of revs) {
    const rev = txn[0].rev;
    const before = new Map(txn.map((e) => [e.key, state.get(e.key)]));
    for (const e of txn) {
      if (e.type === 'put') state.set(e.key, e);
      else state.delete(e.key);
    }
    const touched = new Set<string>();
    for (const e of txn) {
      const p = parts(e.key);
      const prev = before.get(e.key);
      if (p.ns) touched.add(p.ns);
      // C4: a cluster is deleted only when empty
      if (p.plural === 'clusters' && e.type === 'delete') {
        const ns = p.name;
        const left = [
          ...live('tasks', ns).filter(([, t]) => liveTask(t)),
          ...live('services', ns).filter(([, s]) => s?.status?.status !== 'INACTIVE'),
          ...live('containerinstances', ns).filter(([, i]) => i?.spec?.status !== 'INACTIVE'),
        ];
        if (left.length) r.clusterContents.push(`@${rev}: cluster ${ns} deleted with ${left.map(([k]) => k).join(', ')}`);
      }
      // C4: nothing is created into a cluster that does not exist
      if (['tasks', 'services', 'containerinstances', 'daemons'].includes(p.plural) && e.type === 'put' && !prev && p.ns) {
        const cl = state.get(`/berth/clusters/_/${p.ns}`);
        if (!cl) r.clusterContents.push(`@${rev}: ${e.key} created while cluster ${p.ns} does not exist`);
      }
      // C5: revisions in order, one each
      if (p.plural === 'taskdefinitions' && e.type === 'put' && !prev) {
        const [family, n] = p.name.split(':');
        const num = Number(n);
        if (e.value?.status?.revision !== num) r.revisions.push(`@${rev}: ${p.name} carries revision ${e.value?.status?.revision}`);
        if (num > 1 && !state.has(`/berth/taskdefinitions/_/${family}:${num - 1}`)) r.revisions.push(`@${rev}: ${p.name} created before ${family}:${num - 1}`);
      }
      // bindings: once, never changed; only onto an ACTIVE, connected instance
      if (p.plural === 'tasks' && e.type === 'put') {
        const was = prev?.value?.spec?.containerInstance;
        const now = e.value?.spec?.containerInstance;
        if (was && now !== was) r.bindings.push(`@${rev}: ${e.key} re-bound from ${was} to ${now}`);
        if (was && JSON.stringify(prev!.value.spec.hostPorts) !== JSON.stringify(e.value.spec.hostPorts)) r.bindings.push(`@${rev}: ${e.key} host ports changed`);
        if (!was && now) {
          const ci = state.get(`/berth/containerinstances/${p.ns}/${now}`)?.value;
          if (!ci) r.bindings.push(`@${rev}: ${e.key} bound to ${now}, which does not exist`);
          else {
            const g = JSON.parse(gate(ci));
            if (g.status !== 'ACTIVE' || !g.agentConnected) r.bindings.push(`@${rev}: ${e.key} bound to ${now}, which is ${g.status}${g.agentConnected ? '' : ', disconnected'}`);
          }
          if (e.value?.status?.lastStatus === 'STOPPED' || e.value?.spec?.desiredStatus === 'STOPPED') r.bindings.push(`@${rev}: ${e.key} bound while stopped`);
        }
      }
    }
    for (const ns of touched) {
      // C4: daemons of a cluster never share a port
      if (txn.some((e) => e.key.startsWith(`/berth/daemons/${ns}/`))) {
        const ports = new Map<string, string>();
        for (const [k, d] of live('daemons', ns)) {
          if (d?.status?.status === 'INACTIVE') continue;
          const dtd = String(d.spec.daemonTaskDefinition).split(':')[0];
          const port = DTDS[dtd];
          if (!port) continue;
          if (ports.has(port)) r.daemonPorts.push(`@${rev}: ${k} and ${ports.get(port)} both on ${port}`);
          else ports.set(port, k);
        }
      }
      // allocation records: exactly the live bound tasks, within capacity, carrying the gate
      if (txn.some((e) => /^\/berth\/(tasks|allocations|containerinstances)\//.test(e.key) && parts(e.key).ns === ns)) {
        const boundOn = new Map<string, Set<string>>();
        for (const [k, t] of live('tasks', ns)) {
          const i = t?.spec?.containerInstance;
          if (!i || !liveTask(t)) continue;
          const s = boundOn.get(i) ?? new Set();
          s.add(parts(k).name);
          boundOn.set(i, s);
        }
        const instances = new Map(live('containerinstances', ns).map(([k, v]) => [parts(k).name, v]));
        for (const [k, a] of live('allocations', ns)) {
          const name = parts(k).name;
          const ci = instances.get(name);
          if (!ci) {
            r.allocations.push(`@${rev}: ${k} without its instance`);
            continue;
          }
          const want = [...(boundOn.get(name) ?? [])].sort();
          const have = Object.keys(a.tasks ?? {}).sort();
          if (JSON.stringify(want) !== JSON.stringify(have)) r.allocations.push(`@${rev}: ${k} holds [${have}] but the live tasks bound there are [${want}]`);
          const mem = Object.values(a.tasks ?? {}).reduce((s: number, x: any) => s + x.memory, 0);
          if (mem !== a.memory) r.allocations.push(`@${rev}: ${k} memory ${a.memory} is not the sum of its tasks' ${mem}`);
          // over-commit: a record that grew past what the instance offers (a shrink does not evict)
          const was = before.get(k)?.value;
          for (const [field, res] of [['memory', 'MEMORY'], ['cpu', 'CPU']] as const) {
            if (before.has(k) && a[field] > (was?.[field] ?? 0) && a[field] > capacity(ci.spec.registeredResources, res)) {
              r.allocations.push(`@${rev}: ${k} over-committed: ${field} ${a[field]} of ${capacity(ci.spec.registeredResources, res)}`);
            }
          }
          if (JSON.stringify(a.instance) !== gate(ci)) r.allocations.push(`@${rev}: ${k} gate ${JSON.stringify(a.instance)} is not the instance's ${gate(ci)}`);
        }
        for (const name of instances.keys()) if (!state.has(`/berth/allocations/${ns}/${name}`)) r.allocations.push(`@${rev}: instance ${ns}/${name} without its allocation record`);
      }
    }
  }

  for (const x of rec.resolutions) {
    if (!(x.resolved >= x.atLeast)) r.resolution.push(`op ${x.op} ${x.what} on apiserver ${x.server}: ${x.family} resolved to ${x.family}:${x.resolved}, but ${x.family}:${x.atLeast} was registered before the request`);
  }

  // ---------------------------------------------------------------- watches and lists against the history
  const inScope = (s: Scope, key: string) => {
    const p = parts(key);
    return p.plural === s.plural && (s.ns === undefined || p.ns === s.ns);
  };
  const matches = (s: Scope, v: any) => !s.selected || v?.metadata?.labels?.[SEL] === 'yes';
  /** the scope's objects at a revision: key -> rv */
  const stateAt = (s: Scope, rev: number) => {
    const out = new Map<string, number>();
    for (const [key, events] of byKey) {
      if (!inScope(s, key)) continue;
      let last: HEvent | undefined;
      for (const e of events) {
        if (e.rev > rev) break;
        last = e;
      }
      if (last?.type === 'put' && matches(s, last.value)) out.set(key, last.rev);
    }
    return out;
  };
  const diffState = (got: Map<string, number>, want: Map<string, number>) => {
    const out: string[] = [];
    for (const [k, v] of want) if (got.get(k) !== v) out.push(got.has(k) ? `${k}@${got.get(k)} (store: @${v})` : `${k}@${v} missing`);
    for (const [k, v] of got) if (!want.has(k)) out.push(`${k}@${v} not in the store at that revision`);
    return out;
  };

  for (const w of rec.watches) {
    const sink = w.listServer === w.server ? r.watchesSameServer : r.watchesCrossServer;
    const name = `${w.id} (${w.scope.plural}${w.scope.ns ? ` in ${w.scope.ns}` : ''}${w.scope.selected ? ', selected' : ''}; listed on ${w.listServer}, watched on ${w.server} from ${w.from})`;
    const listDiff = diffState(w.listed, stateAt(w.scope, w.from));
    if (listDiff.length) r.listState.push(`${name}: its list is not the store at ${w.from}: ${listDiff.slice(0, 5).join('; ')}`);
    // a watch the server ended (Kubernetes' 504 "Too large resource version" while the cache
    // catches up, 429 while it resyncs, a connection cut during failover) is one a client
    // starts again: it must be gap-free up to what it delivered, and nothing more is owed
    const endedLegitimately = !!w.ended && LEGIT_END.test(w.ended);
    const end = endedLegitimately ? Math.max(w.from, w.events.at(-1)?.rv ?? 0) : until(w);
    const want: Array<{ type: string; key: string; rv: number }> = [];
    for (const [key, events] of byKey) {
      if (!inScope(w.scope, key)) continue;
      let prev: HEvent | undefined;
      for (const e of events) {
        if (e.rev > end) break;
        if (e.rev > w.from) {
          const was = prev?.type === 'put' && matches(w.scope, prev.value);
          const is = e.type === 'put' && matches(w.scope, e.value);
          const type = was && is ? 'MODIFIED' : is ? 'ADDED' : was ? 'DELETED' : undefined;
          if (type) want.push({ type, key, rv: e.rev });
        }
        prev = e;
      }
    }
    const got = w.events.filter((e) => e.rv <= end);
    const id = (e: { type: string; key: string; rv: number }) => `${e.type} ${e.key}@${e.rv}`;
    const wantSet = new Set(want.map(id));
    const seen = new Map<string, number>();
    const problems: string[] = [];
    let lastRv = 0;
    for (const e of got) {
      seen.set(id(e), (seen.get(id(e)) ?? 0) + 1);
      if (e.rv < lastRv) problems.push(`out of order: ${id(e)} after @${lastRv}`);
      lastRv = Math.max(lastRv, e.rv);
      if (e.rv <= w.from) problems.push(`replayed ${id(e)}, at or before the resourceVersion it watched from`);
      else if (!wantSet.has(id(e))) problems.push(`unexpected ${id(e)}`);
    }
    for (const [k, n] of seen) if (n > 1) problems.push(`duplicate ${k} (${n} times)`);
    const missing = want.filter((e) => !seen.has(id(e)));
    if (missing.length) problems.push(`missing ${missing.length}: ${missing.slice(0, 5).map(id).join(', ')}`);
    if (Math.max(w.from, w.events.at(-1)?.rv ?? 0) < end && w.ended && !endedLegitimately) problems.push(`ended before @${end}: ${w.ended}`);
    if (problems.length) sink.push(`${name}: ${problems.slice(0, 8).join('; ')}${problems.length > 8 ? ` (+${problems.length - 8})` : ''}`);
  }

  for (const l of rec.lists) {
    if (l.error || l.pages.length === 0) continue;
    const name = `${l.id} (${l.scope.plural}${l.scope.ns ? ` in ${l.scope.ns}` : ''}${l.scope.selected ? ', selected' : ''}, limit ${l.limit}, ${l.pages.length} pages, apiserver ${l.server})`;
    const rv = Number(l.pages[0].rv);
    if (rv < l.ackedBefore) r.listFreshness.push(`${name}: at ${rv}, older than ${l.ackedBefore}, acknowledged before it was asked for`);
    const rvs = [...new Set(l.pages.map((p) => p.rv))];
    const items = new Map<string, number>();
    const dups: string[] = [];
    for (const p of l.pages) for (const it of p.items) (items.has(it.key) ? dups.push(it.key) : items.set(it.key, it.rv));
    const diff = diffState(items, stateAt(l.scope, rv));
    const problems = [
      ...(rvs.length > 1 ? [`pages at ${rvs.length} resourceVersions (${rvs.slice(0, 4).join(', ')})`] : []),
      ...(dups.length ? [`items on two pages: ${dups.slice(0, 3).join(', ')}`] : []),
      ...(diff.length ? [`not the store at ${rv}: ${diff.slice(0, 4).join('; ')}`] : []),
    ];
    if (problems.length) {
      if (l.pages.length > 1) r.paginationSnapshot.push(`${name}: ${problems.join('; ')}`);
      else r.listState.push(`${name}: ${problems.join('; ')}`);
    }
  }

  r.stats = {
    revisions: revs.length,
    events: history.length,
    ops: rec.ops,
    acks: rec.acks.length,
    refusals: rec.refusals.length,
    unknownOutcomes: rec.unknown,
    watches: rec.watches.length,
    watchEvents: rec.watches.reduce((s, w) => s + w.events.length, 0),
    lists: rec.lists.length,
    paginatedLists: rec.lists.filter((l) => l.pages.length > 1).length,
    resolutions: rec.resolutions.length,
  };
  return r;
}
