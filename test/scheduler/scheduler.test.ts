import { expect } from 'chai';
import { emptyAllocation, type TaskDemand } from '../../pkg/api/allocation.ts';
import { best, candidateLimit, failureMessage, rank, schedule, scheduleAsync, type InstanceView, type TaskRequest } from '../../pkg/scheduler/scheduler.ts';
import { holdForDaemons, WAITING_FOR_DAEMONS, type DaemonClaim } from '../../pkg/scheduler/daemons.ts';
import { parseQuery } from '../../pkg/scheduler/query.ts';

const inst = (name: string, over: Partial<InstanceView> = {}): InstanceView => ({
  name,
  status: 'ACTIVE',
  agentConnected: true,
  attributes: { 'ecs.availability-zone': 'a' },
  capacity: { cpu: 1024, memory: 2048, reservedTcp: [22], reservedUdp: [] },
  allocation: emptyAllocation(),
  taskGroups: new Map(),
  runningTasksCount: 0,
  ...over,
});
const demand = (cpu: number, memory: number, ports: TaskDemand['ports'] = []): TaskDemand => ({ cpu, memory, ports });
const task = (name: string, d: TaskDemand, over: Partial<TaskRequest> = {}): TaskRequest => ({ name, demand: d, group: 'service:web', ...over });
let seed = 1;
const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);

describe('scheduler: feasibility', () => {
  const cases: Array<{ name: string; instance: Partial<InstanceView>; task: Partial<TaskRequest> & { demand?: TaskDemand }; reason?: string }> = [
    { name: 'fits', instance: {}, task: {} },
    { name: 'not ACTIVE', instance: { status: 'DRAINING' }, task: {}, reason: 'INACTIVE' },
    { name: 'agent disconnected', instance: { agentConnected: false }, task: {}, reason: 'AGENT' },
    { name: 'CPU', instance: {}, task: { demand: demand(2048, 10) }, reason: 'RESOURCE:CPU' },
    { name: 'memory', instance: {}, task: { demand: demand(10, 4096) }, reason: 'RESOURCE:MEMORY' },
    { name: 'memory already allocated', instance: { allocation: { cpu: 0, memory: 2000, tasks: {} } }, task: { demand: demand(10, 100) }, reason: 'RESOURCE:MEMORY' },
    { name: 'reserved tcp port', instance: {}, task: { demand: demand(1, 1, [{ containerName: 'a', containerPort: 22, protocol: 'tcp', hostPort: 22 }]) }, reason: 'RESOURCE:PORTS' },
    { name: 'allocated udp port', instance: { allocation: { cpu: 0, memory: 0, tasks: { x: { cpu: 0, memory: 0, tcp: [], udp: [53] } } } }, task: { demand: demand(1, 1, [{ containerName: 'a', containerPort: 53, protocol: 'udp', hostPort: 53 }]) }, reason: 'RESOURCE:PORTS' },
    { name: 'same port other protocol', instance: { allocation: { cpu: 0, memory: 0, tasks: { x: { cpu: 0, memory: 0, tcp: [53], udp: [] } } } }, task: { demand: demand(1, 1, [{ containerName: 'a', containerPort: 53, protocol: 'udp', hostPort: 53 }]) } },
    { name: 'dynamic range exhausted', instance: { dynamicHostPortRange: [40000, 40000], allocation: { cpu: 0, memory: 0, tasks: { x: { cpu: 0, memory: 0, tcp: [40000], udp: [] } } } }, task: { demand: demand(1, 1, [{ containerName: 'a', containerPort: 80, protocol: 'tcp' }]) }, reason: 'RESOURCE:PORTS' },
    { name: 'distinctInstance', instance: { taskGroups: new Map([['service:web', 1]]) }, task: { constraints: [{ type: 'distinctInstance' }] }, reason: 'DISTINCT_INSTANCE' },
    { name: 'distinctInstance other group', instance: { taskGroups: new Map([['service:db', 1]]) }, task: { constraints: [{ type: 'distinctInstance' }] } },
    { name: 'memberOf miss', instance: {}, task: { constraints: [{ type: 'memberOf', expression: 'attribute:ecs.availability-zone == b' }] }, reason: 'ATTRIBUTE' },
    { name: 'memberOf hit', instance: {}, task: { constraints: [{ type: 'memberOf', expression: 'attribute:ecs.availability-zone in [a, b]' }] } },
    { name: 'memberOf invalid', instance: {}, task: { constraints: [{ type: 'memberOf', expression: 'attribute:x ==' }] }, reason: 'INVALID' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = schedule([inst('i1', c.instance)], [task('t1', c.task.demand ?? demand(100, 100), c.task)], rnd);
      if (c.reason) {
        expect(r.placements).to.have.length(0);
        expect(r.failures[0].reason).to.equal(c.reason);
      } else {
        expect(r.failures).to.deep.equal([]);
        expect(r.placements[0].instance).to.equal('i1');
      }
    });
  }

  it('no instances at all', () => {
    const r = schedule([], [task('t', demand(1, 1))], rnd);
    expect(r.failures[0].reason).to.equal('NO_INSTANCES');
  });

  it('says which requirement failed on how many instances, naming the closest instance (D16: not the word "ID")', () => {
    const r = schedule([inst('i1', { agentConnected: false }), inst('i2', { capacity: { cpu: 1024, memory: 64, reservedTcp: [], reservedUdp: [] } }), inst('i3', { capacity: { cpu: 1024, memory: 64, reservedTcp: [], reservedUdp: [] } })], [task('t', demand(10, 128))], rnd);
    expect(r.failures[0].reason).to.equal('RESOURCE:MEMORY');
    expect(r.failures[0].message).to.include('The closest matching container-instance i2 has insufficient memory available');
    expect(r.failures[0].closest).to.equal('i2');
    expect(r.failures[0].message).to.include('RESOURCE:MEMORY on 2 instances, AGENT on 1 instance');
    expect(failureMessage({ reason: 'RESOURCE:CPU', reasons: { 'RESOURCE:CPU': 1 } })).to.include('insufficient CPU units');
  });
});

describe('scheduler: strategies', () => {
  const three = () => [inst('i1'), inst('i2'), inst('i3')];

  it('spread by instanceId balances a service across instances', () => {
    const tasks = Array.from({ length: 9 }, (_, i) => task(`t${i}`, demand(10, 10)));
    const r = schedule(three(), tasks, rnd);
    const per = new Map<string, number>();
    for (const p of r.placements) per.set(p.instance, (per.get(p.instance) ?? 0) + 1);
    expect([...per.values()]).to.deep.equal([3, 3, 3]);
  });

  it('spread counts tasks of the same group already running', () => {
    const r = schedule([inst('i1', { taskGroups: new Map([['service:web', 2]]) }), inst('i2')], [task('a', demand(1, 1)), task('b', demand(1, 1))], rnd);
    expect(r.placements.map((p) => p.instance)).to.deep.equal(['i2', 'i2']);
  });

  it('spread by attribute balances across zones first', () => {
    const insts = [inst('a1', { attributes: { 'ecs.availability-zone': 'a' } }), inst('a2', { attributes: { 'ecs.availability-zone': 'a' } }), inst('b1', { attributes: { 'ecs.availability-zone': 'b' } })];
    const r2 = schedule(insts, Array.from({ length: 4 }, (_, i) => task(`t${i}`, demand(1, 1), { strategies: [{ type: 'spread', field: 'attribute:ecs.availability-zone' }, { type: 'spread', field: 'instanceId' }] })), rnd);
    const zone = (n: string) => (n.startsWith('a') ? 'a' : 'b');
    const perZone = new Map<string, number>();
    for (const p of r2.placements) perZone.set(zone(p.instance), (perZone.get(zone(p.instance)) ?? 0) + 1);
    expect(perZone.get('a')).to.equal(2);
    expect(perZone.get('b')).to.equal(2);
    expect(r2.placements.filter((p) => p.instance === 'b1')).to.have.length(2);
  });

  it('binpack by memory fills the fullest instance first', () => {
    const insts = [inst('i1'), inst('i2', { allocation: { cpu: 0, memory: 1024, tasks: {} } })];
    const r = schedule(insts, [task('a', demand(1, 512), { strategies: [{ type: 'binpack', field: 'memory' }] }), task('b', demand(1, 512), { strategies: [{ type: 'binpack', field: 'memory' }] }), task('c', demand(1, 512), { strategies: [{ type: 'binpack', field: 'memory' }] })], rnd);
    expect(r.placements.map((p) => p.instance)).to.deep.equal(['i2', 'i2', 'i1']);
  });

  it('binpack by cpu', () => {
    const insts = [inst('i1', { allocation: { cpu: 512, memory: 0, tasks: {} } }), inst('i2')];
    const r = schedule(insts, [task('a', demand(256, 1), { strategies: [{ type: 'binpack', field: 'cpu' }] })], rnd);
    expect(r.placements[0].instance).to.equal('i1');
  });

  it('random places on any feasible instance, and only feasible ones', () => {
    const seen = new Set<string>();
    for (let k = 0; k < 40; k++) {
      const r = schedule([inst('i1'), inst('i2'), inst('i3', { agentConnected: false })], [task('a', demand(1, 1), { strategies: [{ type: 'random' }] })], rnd);
      seen.add(r.placements[0].instance);
    }
    expect([...seen].sort()).to.deep.equal(['i1', 'i2']);
  });

  it('chooses distinct dynamic host ports within a batch on one instance', () => {
    const d = demand(1, 1, [{ containerName: 'web', containerPort: 80, protocol: 'tcp' }]);
    const r = schedule([inst('i1', { dynamicHostPortRange: [40000, 40010] })], [task('a', d, { strategies: [{ type: 'binpack', field: 'memory' }] }), task('b', d, { strategies: [{ type: 'binpack', field: 'memory' }] })], rnd);
    expect(r.placements.map((p) => p.hostPorts[0].hostPort)).to.deep.equal([40000, 40001]);
  });
});

describe('scheduler: property: a batch never over-commits', () => {
  it('random clusters and tasks: every placement fits, no port twice, every failure has a reason', () => {
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(rnd() * 6);
      const insts = Array.from({ length: n }, (_, i) =>
        inst(`i${i}`, {
          capacity: { cpu: 256 * (1 + Math.floor(rnd() * 4)), memory: 256 * (1 + Math.floor(rnd() * 8)), reservedTcp: [22], reservedUdp: [] },
          status: rnd() < 0.1 ? 'DRAINING' : 'ACTIVE',
          agentConnected: rnd() > 0.1,
          dynamicHostPortRange: [50000, 50003],
          attributes: { 'ecs.availability-zone': ['a', 'b'][Math.floor(rnd() * 2)] },
        }),
      );
      const tasks = Array.from({ length: Math.floor(rnd() * 30) }, (_, i) => {
        const ports: TaskDemand['ports'] = [];
        if (rnd() < 0.3) ports.push({ containerName: 'c', containerPort: 80, protocol: 'tcp', ...(rnd() < 0.5 ? { hostPort: 8080 } : {}) });
        if (rnd() < 0.2) ports.push({ containerName: 'c', containerPort: 53, protocol: 'udp', hostPort: 53 });
        const strategies = [
          [{ type: 'random' as const }],
          [{ type: 'binpack' as const, field: 'memory' }],
          [{ type: 'spread' as const, field: 'instanceId' }],
          [{ type: 'spread' as const, field: 'attribute:ecs.availability-zone' }, { type: 'binpack' as const, field: 'memory' }],
          [{ type: 'spread' as const, field: 'instanceId' }, { type: 'binpack' as const, field: 'cpu' }],
        ][Math.floor(rnd() * 5)];
        return task(`t${i}`, demand(Math.floor(rnd() * 512), 4 + Math.floor(rnd() * 600), ports), { strategies, constraints: rnd() < 0.2 ? [{ type: 'distinctInstance' }] : [] });
      });
      const r = schedule(insts, tasks, rnd);
      expect(r.placements.length + r.failures.length).to.equal(tasks.length);
      for (const f of r.failures) expect(Object.keys(f.reasons).length + (f.reason === 'NO_INSTANCES' ? 1 : 0)).to.be.greaterThan(0);
      for (const i of insts) {
        const mine = r.placements.filter((p) => p.instance === i.name);
        expect(i.status === 'ACTIVE' && i.agentConnected || mine.length === 0).to.equal(true);
        const ts = mine.map((p) => tasks.find((t) => t.name === p.task)!);
        expect(ts.reduce((s, t) => s + t.demand.cpu, 0)).to.be.at.most(i.capacity.cpu);
        expect(ts.reduce((s, t) => s + t.demand.memory, 0)).to.be.at.most(i.capacity.memory);
        const tcp = mine.flatMap((p) => p.hostPorts.filter((h) => h.protocol === 'tcp').map((h) => h.hostPort));
        const udp = mine.flatMap((p) => p.hostPorts.filter((h) => h.protocol === 'udp').map((h) => h.hostPort));
        expect(new Set(tcp).size).to.equal(tcp.length);
        expect(new Set(udp).size).to.equal(udp.length);
        expect(tcp).to.not.include(22);
        // a distinctInstance task never lands where an earlier task of its group already went
        mine.forEach((p, k) => {
          if (tasks.find((t) => t.name === p.task)!.constraints?.some((c) => c.type === 'distinctInstance')) expect(k, `${p.task} on ${i.name}`).to.equal(0);
        });
      }
    }
  });
});

describe('scheduler: daemons are placed and reserved first', () => {
  const claim = (group: string, d?: TaskDemand, memberOf: string[] = []): DaemonClaim => ({ group, demand: d, memberOf: memberOf.map(parseQuery) });
  const cases: Array<{ name: string; instance: Partial<InstanceView>; daemons: DaemonClaim[]; held: boolean }> = [
    { name: 'a daemon that belongs, fits and has no task yet holds the instance', instance: {}, daemons: [claim('daemon:logs', demand(128, 256))], held: true },
    { name: 'its task is there: nothing held', instance: { taskGroups: new Map([['daemon:logs', 1]]) }, daemons: [claim('daemon:logs', demand(128, 256))], held: false },
    { name: 'one of two daemons missing still holds', instance: { taskGroups: new Map([['daemon:logs', 1]]) }, daemons: [claim('daemon:logs', demand(1, 1)), claim('service:metrics', demand(1, 1))], held: true },
    { name: 'memberOf excludes the instance: nothing held', instance: {}, daemons: [claim('daemon:logs', demand(1, 1), ['attribute:ecs.availability-zone == b'])], held: false },
    { name: 'memberOf includes the instance', instance: {}, daemons: [claim('daemon:logs', demand(1, 1), ['attribute:ecs.availability-zone == a'])], held: true },
    { name: 'the daemon cannot fit anyway: it must not starve the instance', instance: {}, daemons: [claim('daemon:big', demand(4096, 256))], held: false },
    { name: 'its task definition is unknown: nothing held', instance: {}, daemons: [claim('daemon:logs')], held: false },
    { name: 'a DRAINING instance is not held (it takes nothing anyway)', instance: { status: 'DRAINING' }, daemons: [claim('daemon:logs', demand(1, 1))], held: false },
    { name: 'no daemons', instance: {}, daemons: [], held: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const v = inst('i1', c.instance);
      const before = v.status;
      expect(holdForDaemons([v], c.daemons)).to.deep.equal(c.held ? ['i1'] : []);
      expect(v.status).to.equal(c.held ? WAITING_FOR_DAEMONS : before);
      // a held instance takes no application task
      const r = schedule([v], [task('app', demand(10, 10))], rnd);
      expect(r.placements.length).to.equal(c.held || before !== 'ACTIVE' ? 0 : 1);
    });
  }
});

describe('scheduler: best() picks what rank() puts first, in one pass', () => {
  it('agrees with rank on every strategy key over random clusters', () => {
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(rnd() * 30);
      const pool = Array.from({ length: n }, (_, k) =>
        inst(`i${k}`, {
          attributes: { 'ecs.availability-zone': ['a', 'b', 'c'][Math.floor(rnd() * 3)] },
          allocation: { cpu: Math.floor(rnd() * 4) * 128, memory: Math.floor(rnd() * 8) * 128, tasks: {} },
          taskGroups: new Map([['service:web', Math.floor(rnd() * 4)]]),
        }),
      );
      const strategies = [
        [{ type: 'spread', field: 'instanceId' }],
        [{ type: 'spread', field: 'attribute:ecs.availability-zone' }, { type: 'binpack', field: 'memory' }],
        [{ type: 'binpack', field: 'cpu' }],
        [{ type: 'random' }],
      ][round % 4] as TaskRequest['strategies'] & object;
      const t = task('t', demand(1, 1));
      const b = best(pool, pool, t, strategies, rnd)!;
      const first = rank(pool, pool, t, strategies, rnd)[0];
      if (strategies[0].type === 'random') continue; // both random: nothing to compare
      const key = (i: InstanceView) => strategies.map((s) => (s.type === 'binpack' ? (s.field === 'cpu' ? i.capacity.cpu - i.allocation.cpu : i.capacity.memory - i.allocation.memory) : s.field === 'instanceId' ? i.taskGroups.get('service:web') ?? 0 : pool.filter((p) => p.attributes['ecs.availability-zone'] === i.attributes['ecs.availability-zone']).reduce((a, p) => a + (p.taskGroups.get('service:web') ?? 0), 0)));
      expect(key(b), `round ${round}`).to.deep.equal(key(first));
    }
  });

  it('breaks ties at random, covering every tied instance', () => {
    const pool = Array.from({ length: 5 }, (_, k) => inst(`i${k}`));
    const seen = new Set<string>();
    for (let k = 0; k < 200; k++) seen.add(best(pool, pool, task('t', demand(1, 1)), [{ type: 'spread', field: 'instanceId' }], rnd)!.name);
    expect([...seen].sort()).to.deep.equal(['i0', 'i1', 'i2', 'i3', 'i4']);
  });
});

describe('scheduler: a limited number of candidates (D15, Nomad\'s LimitIterator)', () => {
  /** instances whose attributes count how often a feasibility check reads them */
  const counted = (n: number, over: (i: number) => Partial<InstanceView> = () => ({})) => {
    let reads = 0;
    const insts = Array.from({ length: n }, (_, i) => {
      const attrs = new Proxy({ 'ecs.availability-zone': ['a', 'b', 'c'][i % 3] } as Record<string, string>, { has: (t, k) => (reads++, k in t) });
      return inst(`i${i}`, { attributes: attrs, capacity: { cpu: 4096, memory: 16384, reservedTcp: [], reservedUdp: [] }, ...over(i) });
    });
    return { insts, reads: () => reads };
  };
  const exists = [{ type: 'memberOf' as const, expression: 'attribute:ecs.availability-zone exists' }];

  it('limit: max(2, ceil(log2 n)), more when a later strategy spreads', () => {
    expect(candidateLimit(1, [{ type: 'random' }])).to.equal(2);
    expect(candidateLimit(2000, [{ type: 'binpack', field: 'memory' }])).to.equal(11);
    expect(candidateLimit(2000, [{ type: 'spread', field: 'attribute:ecs.availability-zone' }, { type: 'spread', field: 'instanceId' }])).to.equal(100);
  });

  for (const strategies of [[{ type: 'spread' as const, field: 'instanceId' }], [{ type: 'binpack' as const, field: 'memory' }], [{ type: 'random' as const }], [{ type: 'spread' as const, field: 'attribute:ecs.availability-zone' }, { type: 'spread' as const, field: 'instanceId' }]]) {
    it(`D15: 1,000 tasks on 1,000 instances check about O(limit) instances per task, not all of them (${strategies.map((x) => `${x.type}:${'field' in x ? x.field : ''}`).join(', ')})`, () => {
      const { insts, reads } = counted(1000);
      const tasks = Array.from({ length: 1000 }, (_, i) => task(`t${i}`, demand(10, 10), { constraints: exists, strategies }));
      const r = schedule(insts, tasks, rnd);
      expect(r.placements).to.have.length(1000);
      // a full scan per task is 1,000,000 checks
      expect(reads(), `feasibility checks: ${reads()}`).to.be.below(1000 * (candidateLimit(1000, strategies) + 2) + 1000);
    });
  }

  it('D15: an instance found infeasible is not checked again for the same task shape, and a shape that failed fails the rest of the batch at once', () => {
    // 1,000 instances, 990 of them full: each is found infeasible once
    const { insts, reads } = counted(1000, (i) => (i < 990 ? { allocation: { cpu: 4096, memory: 16384, tasks: {} } } : {}));
    const r = schedule(insts, Array.from({ length: 500 }, (_, i) => task(`t${i}`, demand(10, 10), { constraints: exists })), rnd);
    expect(r.placements).to.have.length(500);
    expect(reads()).to.be.below(500 * 20 + 2000);
    const big = counted(1000);
    const f = schedule(big.insts, Array.from({ length: 500 }, (_, i) => task(`h${i}`, demand(10, 999_999), { constraints: exists })), rnd);
    expect(f.failures).to.have.length(500);
    expect(f.failures.every((x) => x.reason === 'RESOURCE:MEMORY')).to.equal(true);
    expect(big.reads(), 'one full scan to fail, then none').to.be.below(3000);
  });

  it('spread stays exact on its first key with a limit: 1,000 tasks on 200 instances, 5 each', () => {
    const insts = Array.from({ length: 200 }, (_, i) => inst(`i${i}`, { capacity: { cpu: 4096, memory: 16384, reservedTcp: [], reservedUdp: [] } }));
    const r = schedule(insts, Array.from({ length: 1000 }, (_, i) => task(`t${i}`, demand(1, 1))), rnd);
    const per = new Map<string, number>();
    for (const p of r.placements) per.set(p.instance, (per.get(p.instance) ?? 0) + 1);
    expect(new Set(per.values())).to.deep.equal(new Set([5]));
  });

  it('binpack stays exact on its first key with a limit: the fullest instance that fits, always', () => {
    const insts = Array.from({ length: 300 }, (_, i) => inst(`i${i}`, { capacity: { cpu: 4096, memory: 4096, reservedTcp: [], reservedUdp: [] }, allocation: { cpu: 0, memory: (i * 13) % 4000, tasks: {} } }));
    const tasks = Array.from({ length: 200 }, (_, i) => task(`t${i}`, demand(1, 64), { strategies: [{ type: 'binpack', field: 'memory' }] }));
    // the reference: a full scan per task, charging as it goes
    const mem = new Map(insts.map((i) => [i.name, i.allocation.memory]));
    const r = schedule(insts, tasks, rnd);
    for (const p of r.placements) {
      const left = (n: string) => 4096 - mem.get(n)!;
      const bestLeft = Math.min(...[...mem.keys()].filter((n) => left(n) >= 64).map(left));
      expect(left(p.instance), p.task).to.equal(bestLeft);
      mem.set(p.instance, mem.get(p.instance)! + 64);
    }
  });

  describe('R2-3: a binpack after a spread is exact on both keys, whatever the limit', () => {
    const spreadAz = { type: 'spread' as const, field: 'attribute:ecs.availability-zone' };
    const spreadId = { type: 'spread' as const, field: 'instanceId' };
    const binMem = { type: 'binpack' as const, field: 'memory' };
    const binCpu = { type: 'binpack' as const, field: 'cpu' };

    it('R2-3: spread then binpack picks the tightest feasible instance of the least-loaded value (AZ-balanced binpack on 1,024 instances)', () => {
      // in each of two AZs exactly one instance is nearly full (600 MiB left); the other 1,022 have 4,000 MiB left
      const fixture = () =>
        Array.from({ length: 1024 }, (_, k) =>
          inst(`i-${k}`, {
            attributes: { 'ecs.availability-zone': k % 2 ? 'us-east-1a' : 'us-east-1b' },
            capacity: { cpu: 4096, memory: 8192, reservedTcp: [], reservedUdp: [] },
            allocation: { cpu: 0, memory: k < 2 ? 8192 - 600 : 8192 - 4000, tasks: {} },
          }),
        );
      for (const strategies of [[spreadAz, binMem], [spreadId, binMem]]) {
        let hits = 0;
        for (let trial = 0; trial < 50; trial++) {
          const r = schedule(fixture(), [task('t1', demand(0, 512), { strategies }), task('t2', demand(0, 512), { strategies })], rnd);
          expect(r.placements).to.have.length(2);
          hits += r.placements.filter((p) => p.instance === 'i-0' || p.instance === 'i-1').length;
          // one per AZ
          expect(new Set(r.placements.map((p) => p.instance)).size).to.equal(2);
        }
        expect(hits, `${JSON.stringify(strategies)}: tasks on the tightest instance of each AZ`).to.equal(100);
      }
    });

    it('R2-3: every placement of a batch is the best by (spread, binpack) over all feasible instances (a full-scan reference, random clusters)', () => {
      for (let round = 0; round < 60; round++) {
        const n = 20 + Math.floor(rnd() * 300);
        const azs = ['a', 'b', 'c'].slice(0, 1 + Math.floor(rnd() * 3));
        const insts = Array.from({ length: n }, (_, k) =>
          inst(`i${k}`, {
            attributes: { 'ecs.availability-zone': azs[Math.floor(rnd() * azs.length)] },
            capacity: { cpu: 2048, memory: 4096, reservedTcp: [], reservedUdp: [] },
            // coarse steps: many ties on the binpack key too
            allocation: { cpu: Math.floor(rnd() * 16) * 128, memory: Math.floor(rnd() * 16) * 256, tasks: {} },
            taskGroups: new Map([['service:web', Math.floor(rnd() * 3)]]),
          }),
        );
        const strategies = [[spreadAz, binMem], [spreadId, binMem], [spreadAz, binCpu], [spreadId, binCpu, { type: 'random' as const }]][round % 4];
        const tasks = Array.from({ length: 1 + Math.floor(rnd() * 80) }, (_, k) => task(`t${k}`, demand(64 * (1 + Math.floor(rnd() * 4)), 128 * (1 + Math.floor(rnd() * 4))), { strategies }));
        // the reference world: charged placement by placement
        const cpu = new Map(insts.map((i) => [i.name, i.allocation.cpu]));
        const mem = new Map(insts.map((i) => [i.name, i.allocation.memory]));
        const groups = new Map(insts.map((i) => [i.name, i.taskGroups.get('service:web') ?? 0]));
        const az = new Map(insts.map((i) => [i.name, i.attributes['ecs.availability-zone']!]));
        const key = (name: string) => {
          const k1 = strategies[0] === spreadAz ? [...groups].filter(([m]) => az.get(m) === az.get(name)).reduce((a, [, g]) => a + g, 0) : groups.get(name)!;
          const k2 = strategies[1] === binMem ? 4096 - mem.get(name)! : 2048 - cpu.get(name)!;
          return [k1, k2];
        };
        const r = schedule(insts, tasks, rnd);
        const byTask = new Map(r.placements.map((p) => [p.task, p.instance]));
        for (const t of tasks) {
          const feasible = insts.map((i) => i.name).filter((m) => cpu.get(m)! + t.demand.cpu <= 2048 && mem.get(m)! + t.demand.memory <= 4096);
          const chosen = byTask.get(t.name);
          if (!feasible.length) {
            expect(chosen, `round ${round} ${t.name}: nothing fits`).to.equal(undefined);
            continue;
          }
          expect(chosen, `round ${round} ${t.name}`).to.be.a('string');
          const bestKey = feasible.map(key).sort((a, b) => a[0] - b[0] || a[1] - b[1])[0];
          expect(key(chosen!), `round ${round} ${t.name} (${JSON.stringify(strategies)})`).to.deep.equal(bestKey);
          cpu.set(chosen!, cpu.get(chosen!)! + t.demand.cpu);
          mem.set(chosen!, mem.get(chosen!)! + t.demand.memory);
          groups.set(chosen!, groups.get(chosen!)! + 1);
        }
      }
    });
  });

  it('scheduleAsync gives the event loop back while a batch is placed, with the same result shape', async () => {
    const insts = Array.from({ length: 50 }, (_, i) => inst(`i${i}`));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const r = await scheduleAsync(insts, Array.from({ length: 200 }, (_, i) => task(`t${i}`, demand(1, 1))), { rnd, sliceMs: 0 });
    clearInterval(timer);
    expect(r.placements).to.have.length(200);
    expect(ticks, 'timers ran while it worked').to.be.greaterThan(0);
  });
});
