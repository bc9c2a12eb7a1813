/**
 * The multi-apiserver test's checker (multi/check.ts) against small made-up histories: each
 * property it reports must flag a history that breaks it, and a history that keeps them all
 * must come back clean -- a checker that cannot fail proves nothing.
 */
import { expect } from 'chai';
import { check, type HEvent, type Report } from './multi/check.ts';
import { MARK, SEL, type Recording, type WatchRecord } from './multi/workload.ts';

const res = (memory: number) => [
  { name: 'CPU', type: 'INTEGER', integerValue: 1024 },
  { name: 'MEMORY', type: 'INTEGER', integerValue: memory },
];
const gateOf = (status = 'ACTIVE', agentConnected = true, memory = 100) => ({ status, agentConnected, registeredResources: res(memory) });
const put = (rev: number, key: string, value: any, createRev = rev): HEvent => ({ rev, type: 'put', key, value, createRev });
const del = (rev: number, key: string): HEvent => ({ rev, type: 'delete', key });
const ci = (spec: Record<string, unknown> = {}, status: Record<string, unknown> = {}, memory = 100) => ({ metadata: { name: 'i1' }, spec: { status: 'ACTIVE', registeredResources: res(memory), ...spec }, status: { agentConnected: true, ...status } });
const task = (name: string, spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({ metadata: { name, uid: `u-${name}`, labels: { [SEL]: 'yes' }, ...extra }, spec: { taskDefinition: 'fa:1', ...spec }, status: { lastStatus: 'PENDING' } });
const share = { cpu: 0, memory: 10, tcp: [], udp: [] };

/** a history that keeps every property: a cluster, an instance, a task created, bound, stopped */
const base = (): HEvent[] => [
  put(1, '/berth/clusters/_/c', { metadata: { name: 'c' } }),
  put(2, '/berth/containerinstances/c/i1', ci()),
  put(2, '/berth/allocations/c/i1', { cpu: 0, memory: 0, tasks: {}, instance: gateOf() }),
  put(3, '/berth/tasks/c/t1', task('t1')),
  put(4, '/berth/tasks/c/t1', task('t1', { containerInstance: 'i1' }), 3),
  put(4, '/berth/allocations/c/i1', { cpu: 0, memory: 10, tasks: { t1: share }, instance: gateOf() }, 2),
];
const empty = (): Recording => ({ acks: [], refusals: [], watches: [], lists: [], resolutions: [], serverErrors: [], unknown: 0, ops: 0 });
const watch = (over: Partial<WatchRecord>): WatchRecord => ({
  id: 'w',
  listServer: 0,
  server: 0,
  scope: { plural: 'tasks', ns: 'c' },
  from: 3,
  listed: new Map([['/berth/tasks/c/t1', 3]]),
  events: [ev('MODIFIED', 't1', 4)],
  bookmarks: [],
  close: () => undefined,
  ...over,
});
const ev = (type: string, name: string, rv: number) => ({ type, key: `/berth/tasks/c/${name}`, rv });
const problems = (r: Report) => Object.entries(r).filter(([k, v]) => k !== 'stats' && (v as string[]).length > 0).map(([k]) => k);

describe('the multi-apiserver checker flags each broken property, and only that', () => {
  it('a history that keeps every property is clean', () => {
    const rec = empty();
    rec.acks.push({ op: 1, server: 0, what: 'create task', key: '/berth/tasks/c/t1', rv: 3, type: 'put', uid: 'u-t1' });
    rec.acks.push({ op: 2, server: 0, what: 'bind', key: '/berth/tasks/c/t1', rv: 4, type: 'put', expect: { path: ['spec', 'containerInstance'], value: 'i1' } });
    rec.watches.push(watch({}));
    rec.lists.push({ id: 'l', server: 0, scope: { plural: 'tasks', ns: 'c' }, limit: 1, ackedBefore: 4, pages: [{ rv: '4', items: [{ key: '/berth/tasks/c/t1', rv: 4 }] }] });
    const r = check(rec, base(), () => 4);
    expect(problems(r)).to.deep.equal([]);
  });

  it('acknowledged writes: missing, applied twice, or not as acknowledged', () => {
    const rec = empty();
    rec.acks.push({ op: 1, server: 0, what: 'create', key: '/berth/tasks/c/nope', rv: 3, type: 'put', uid: 'x' });
    rec.acks.push({ op: 2, server: 0, what: 'bind', key: '/berth/tasks/c/t1', rv: 4, type: 'put', expect: { path: ['spec', 'containerInstance'], value: 'i2' } });
    const h = base();
    h.push(put(5, '/berth/tasks/c/t1', task('t1', { containerInstance: 'i1' }, { annotations: { [MARK]: 'm' } }), 3));
    h.push(put(6, '/berth/tasks/c/t1', task('t1', { containerInstance: 'i1' }), 3));
    h.push(put(7, '/berth/tasks/c/t1', task('t1', { containerInstance: 'i1' }, { annotations: { [MARK]: 'm' } }), 3));
    rec.acks.push({ op: 3, server: 0, what: 'label', key: '/berth/tasks/c/t1', rv: 5, type: 'put', marker: 'm' });
    const r = check(rec, h, () => 0);
    expect(r.ackedWrites.join('\n')).to.match(/nope.*not in the history/).and.match(/containerInstance is "i1", acknowledged "i2"/).and.match(/applied 2 times/);
    expect(problems(r)).to.deep.equal(['ackedWrites']);
  });

  it('a refused create that happened', () => {
    const rec = empty();
    rec.refusals.push({ op: 1, server: 0, what: 'create task', key: '/berth/tasks/c/t1', status: 404 });
    expect(problems(check(rec, base(), () => 0))).to.deep.equal(['refusedWrites']);
  });

  it('C4: a cluster deleted with a live task; a task created into a missing cluster', () => {
    const h = [...base(), del(5, '/berth/clusters/_/c'), put(6, '/berth/tasks/gone/t9', task('t9'))];
    const r = check(empty(), h, () => 0);
    expect(r.clusterContents.join('\n')).to.match(/cluster c deleted with \/berth\/tasks\/c\/t1/).and.match(/t9 created while cluster gone does not exist/);
    expect(problems(r)).to.deep.equal(['clusterContents']);
  });

  it('C4: two live daemons on one port', () => {
    const d = (n: string, td: string) => ({ metadata: { name: n }, spec: { daemonTaskDefinition: td }, status: { status: 'ACTIVE' } });
    const h = [...base(), put(5, '/berth/daemons/c/a', d('a', 'dp1:1')), put(6, '/berth/daemons/c/b', d('b', 'dp2:1')), put(7, '/berth/daemons/c/e', d('e', 'dp3:1'))];
    const r = check(empty(), h, () => 0);
    expect(r.daemonPorts).to.have.length.greaterThan(0);
    expect(r.daemonPorts[0]).to.match(/both on udp\/2000/);
    expect(problems(r)).to.deep.equal(['daemonPorts']);
  });

  it('C5: a revision created out of order, and a stale resolution', () => {
    const h = [...base(), put(5, '/berth/taskdefinitions/_/fx:2', { metadata: { name: 'fx:2' }, status: { revision: 2 } })];
    const rec = empty();
    rec.resolutions.push({ op: 1, server: 1, what: 'update service', family: 'fa', resolved: 2, atLeast: 3 });
    const r = check(rec, h, () => 0);
    expect(r.revisions[0]).to.match(/fx:2 created before fx:1/);
    expect(r.resolution[0]).to.match(/resolved to fa:2, but fa:3/);
    expect(problems(r)).to.deep.equal(['revisions', 'resolution']);
  });

  it('bindings: re-bound, or bound onto a DRAINING instance (D12)', () => {
    const h = base();
    h.push(put(5, '/berth/containerinstances/c/i1', ci({ status: 'DRAINING' }), 2), put(5, '/berth/allocations/c/i1', { cpu: 0, memory: 10, tasks: { t1: share }, instance: gateOf('DRAINING') }, 2));
    h.push(put(6, '/berth/tasks/c/t2', task('t2')));
    h.push(put(7, '/berth/tasks/c/t2', task('t2', { containerInstance: 'i1' }), 6), put(7, '/berth/allocations/c/i1', { cpu: 0, memory: 20, tasks: { t1: share, t2: share }, instance: gateOf('DRAINING') }, 2));
    h.push(put(8, '/berth/tasks/c/t1', task('t1', { containerInstance: 'i9' }), 3));
    const r = check(empty(), h, () => 0);
    expect(r.bindings.join('\n')).to.match(/t2 bound to i1, which is DRAINING/).and.match(/t1 re-bound from i1 to i9/);
  });

  it('C14: a record that holds a stopped task, is over-committed, or lacks the instance gate', () => {
    const h = base();
    h.push(put(5, '/berth/tasks/c/t1', { ...task('t1', { containerInstance: 'i1' }), status: { lastStatus: 'STOPPED' } }, 3));
    h.push(put(6, '/berth/tasks/c/t3', task('t3')));
    h.push(put(7, '/berth/tasks/c/t3', task('t3', { containerInstance: 'i1' }), 6), put(7, '/berth/allocations/c/i1', { cpu: 0, memory: 200, tasks: { t1: share, t3: { ...share, memory: 190 } }, instance: gateOf() }, 2));
    h.push(put(8, '/berth/containerinstances/c/i1', ci({}, { agentConnected: false }), 2));
    const r = check(empty(), h, () => 0);
    const all = r.allocations.join('\n');
    expect(all).to.match(/@5: .*holds \[t1\] but the live tasks bound there are \[\]/);
    expect(all).to.match(/over-committed: memory 200 of 100/);
    expect(all).to.match(/@8: .*gate .* is not the instance's/);
    expect(problems(r)).to.deep.equal(['allocations']);
  });

  it('watches: a gap, a duplicate, a replay at or before the resourceVersion, events out of order; cross-server ones apart', () => {
    const h = [...base(), put(5, '/berth/tasks/c/t2', task('t2')), put(6, '/berth/tasks/c/t2', task('t2', {}, { labels: { [SEL]: 'no' } }), 5), put(7, '/berth/tasks/c/t2', task('t2'), 5)];
    const rec = empty();
    // selected tasks: t2 ADDED @5, DELETED @6 (stops matching), ADDED @7 (matches again)
    const selected = { plural: 'tasks', ns: 'c', selected: true };
    rec.watches.push(watch({ id: 'ok', scope: selected, events: [ev('MODIFIED', 't1', 4), ev('ADDED', 't2', 5), ev('DELETED', 't2', 6), ev('ADDED', 't2', 7)] }));
    rec.watches.push(watch({ id: 'gap', scope: selected, events: [ev('MODIFIED', 't1', 4), ev('ADDED', 't2', 7)] }));
    rec.watches.push(watch({ id: 'dup', events: [ev('MODIFIED', 't1', 4), ev('MODIFIED', 't1', 4), ev('ADDED', 't2', 5), ev('MODIFIED', 't2', 6), ev('MODIFIED', 't2', 7)] }));
    rec.watches.push(watch({ id: 'replay', listServer: 1, events: [ev('ADDED', 't1', 3), ev('MODIFIED', 't1', 4), ev('ADDED', 't2', 5), ev('MODIFIED', 't2', 7), ev('MODIFIED', 't2', 6)] }));
    const r = check(rec, h, () => 7);
    expect(r.watchesSameServer.join('\n')).to.not.match(/^ok /m);
    expect(r.watchesSameServer.join('\n')).to.match(/^gap .*missing 2: ADDED \/berth\/tasks\/c\/t2@5, DELETED \/berth\/tasks\/c\/t2@6/m);
    expect(r.watchesSameServer.join('\n')).to.match(/^dup .*duplicate MODIFIED \/berth\/tasks\/c\/t1@4/m);
    expect(r.watchesCrossServer.join('\n')).to.match(/^replay .*replayed ADDED \/berth\/tasks\/c\/t1@3/m).and.match(/out of order/);
  });

  it('lists: pages at several revisions (C7), items not the store at that revision, older than an acknowledged write (C6)', () => {
    const h = [...base(), put(5, '/berth/tasks/c/t2', task('t2'))];
    const rec = empty();
    rec.lists.push({ id: 'pages', server: 0, scope: { plural: 'tasks', ns: 'c' }, limit: 1, ackedBefore: 0, pages: [{ rv: '4', items: [{ key: '/berth/tasks/c/t1', rv: 4 }], continue: 'x' }, { rv: '5', items: [{ key: '/berth/tasks/c/t2', rv: 5 }] }] });
    rec.lists.push({ id: 'stale', server: 0, scope: { plural: 'tasks', ns: 'c' }, limit: 5, ackedBefore: 5, pages: [{ rv: '4', items: [{ key: '/berth/tasks/c/t1', rv: 3 }] }] });
    const r = check(rec, h, () => 0);
    expect(r.paginationSnapshot[0]).to.match(/^pages .*2 resourceVersions.*t2@5 not in the store at that revision/);
    expect(r.listState[0]).to.match(/^stale .*t1@3 \(store: @4\)/);
    expect(r.listFreshness[0]).to.match(/^stale .*at 4, older than 5/);
    expect(problems(r)).to.deep.equal(['listState', 'paginationSnapshot', 'listFreshness']);
  });
});
