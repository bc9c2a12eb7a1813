import { createServer, type Server } from 'node:http';
import { expect } from 'chai';
import type { Lease, Task } from '../../pkg/api/kinds.ts';
import { Client, isAbort } from '../../pkg/client/client.ts';
import { Informer } from '../../pkg/client/informer.ts';
import { Controller } from '../../pkg/controller/runtime/controller.ts';
import { LeaderElector, type LeadershipTerm } from '../../pkg/controller/runtime/leader.ts';
import { WorkQueue } from '../../pkg/controller/runtime/workqueue.ts';
import { Expectations } from '../../pkg/controller/runtime/expectations.ts';
import { certainlyNotWritten, createOwnedTask, ownedTask, stopOwnedTask } from '../../pkg/controller/runtime/writes.ts';
import { BerthError, isBerthError, type Reason } from '../../pkg/errors/errors.ts';
import { silentLogger } from '../../pkg/log/log.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';
import { startHttpProxy, type HttpProxy } from '../support/holdproxy.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = silentLogger();

describe('controller runtime: a stop that does not drain (D2) and the suspicions', () => {
  // an HTTP server that never answers: a request in flight until it is aborted
  let hang: Server;
  let hangUrl: string;
  before(async () => {
    hang = createServer(() => undefined);
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    hangUrl = `http://127.0.0.1:${(hang.address() as { port: number }).port}`;
  });
  after(async () => {
    hang.closeAllConnections();
    await new Promise((r) => hang.close(r));
  });

  it('D2: once stopped, no queued key starts a reconcile; they wait for the next run, which gets all of them', async () => {
    const client = new Client({ server: hangUrl });
    let started = 0;
    let afterStop = 0;
    let stopped = false;
    const seen = new Set<string>();
    const c = new Controller({
      name: 't',
      informers: [],
      client,
      workers: 1,
      log,
      reconcile: async (key) => {
        started++;
        if (stopped) afterStop++;
        seen.add(key);
        await sleep(2);
      },
    });
    await c.run();
    for (let i = 0; i < 100; i++) c.enqueue(`ns/svc-${i}`);
    await sleep(10);
    stopped = true;
    await c.stop();
    expect(afterStop, 'reconciles started after stop()').to.equal(0);
    expect(started).to.be.below(100);
    stopped = false;
    await c.run();
    await eventually(() => seen.size === 100, 10_000, 'the next run reconciles what was left');
    await c.stop();
    client.close();
  });

  it('D2: a reconcile in flight is aborted at its request when the controller stops', async () => {
    const client = new Client({ server: hangUrl });
    let outcome: unknown;
    const c = new Controller({
      name: 't',
      informers: [],
      client,
      workers: 1,
      log,
      reconcile: async (_key, ctx) => {
        try {
          await ctx.client.get('Task', 'default', 'x');
        } catch (e) {
          outcome = e;
          throw e;
        }
      },
    });
    await c.run();
    c.enqueue('k');
    await sleep(100);
    const t0 = Date.now();
    await c.stop();
    expect(Date.now() - t0, 'stop() waits for no request').to.be.below(5000);
    expect(isAbort(outcome), String(outcome)).to.equal(true);
    client.close();
  });

  it('suspicion "dropped dirty key": a key added while processing and done after a shut-down is carried over', () => {
    const q = new WorkQueue();
    q.add('a');
    void q.get();
    q.add('a'); // dirty while processing
    q.shutDown();
    q.done('a');
    expect(q.drain()).to.deep.equal(['a']);
  });

  it('suspicion "double worker start": run, stop, run while the caches sync starts one set of workers', async () => {
    let synced!: () => void;
    const sync = new Promise<void>((r) => (synced = r));
    let inFlight = 0;
    let peak = 0;
    const c = new Controller({
      name: 't',
      informers: [{ waitForSync: () => sync }],
      client: new Client({ server: hangUrl }),
      workers: 1,
      log,
      reconcile: async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await sleep(5);
        inFlight--;
      },
    });
    const first = c.run();
    await c.stop();
    const second = c.run();
    synced();
    await Promise.all([first, second]);
    for (let i = 0; i < 20; i++) c.enqueue(`k${i}`);
    await sleep(300);
    await c.stop();
    expect(peak, 'reconciles at once with workers: 1').to.equal(1);
  });
});

describe('informer: handlers are isolated (the throwing-handler suspicion)', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  before(async () => {
    api = await startApiServer();
  });
  after(async () => api?.stop());

  it('a handler that throws neither keeps the others from the event nor aborts the watch', async () => {
    const admin = new Client({ server: api.url, token: api.adminToken });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'iso' }, spec: { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 8 }] } });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'iso', namespace: 'default' }, spec: { taskDefinition: 'iso' } });
    const seen: string[] = [];
    const inf = new Informer<Task>(admin, 'Task', { namespace: 'default', log })
      .on({
        update: () => {
          throw new Error('a buggy handler');
        },
      })
      .on({ update: (_p, t) => void seen.push(t.metadata.labels?.n ?? '') });
    inf.start();
    await inf.waitForSync();
    for (let i = 0; i < 3; i++) await admin.patch('Task', 'default', 'iso', { metadata: { labels: { n: String(i) } } });
    await eventually(() => seen.length === 3, 10_000, 'the second handler saw every update');
    expect(seen).to.deep.equal(['0', '1', '2']);
    expect(inf.relists, 'the watch was not torn down').to.equal(0);
    inf.stop();
    admin.close();
  });

  it('D16: a stop never overwrites an earlier one (a user\'s StopTask keeps its reason and code), and awaits no event when it wrote nothing', async () => {
    const admin = new Client({ server: api.url, token: api.adminToken });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'userstop', namespace: 'default' }, spec: { taskDefinition: 'iso' } });
    await admin.patch('Task', 'default', 'userstop', { spec: { desiredStatus: 'STOPPED', stopReason: 'stopped by me', stopCode: 'UserInitiated' } });
    const exp = new Expectations(60_000);
    await stopOwnedTask(admin, exp, 'default/svc', 'default', 'userstop', 'Service scaled down');
    const t = await admin.get<Task>('Task', 'default', 'userstop');
    expect([t.spec.stopReason, t.spec.stopCode]).to.deep.equal(['stopped by me', 'UserInitiated']);
    expect(exp.satisfied('default/svc', 0), 'nothing to wait for').to.equal(true);
    admin.close();
  });
});

describe('R2-7: a create whose answer is lost stays expected', function () {
  this.timeout(60_000);
  let api: TestApiServer;
  let proxy: HttpProxy;
  before(async () => {
    api = await startApiServer();
    proxy = await startHttpProxy(api.url);
    const admin = new Client({ server: api.url, token: api.adminToken });
    await admin.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'r27' }, spec: { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 8 }] } });
    admin.close();
  });
  after(async () => {
    proxy?.release();
    await proxy?.close();
    await api?.stop();
  });
  const owner = { kind: 'Service' as const, name: 'svc', uid: 'uid-r2-7' };
  const spec = { taskDefinition: 'r27', desiredStatus: 'RUNNING' } as Task['spec'];

  it('R2-7: a create that commits but times out keeps its expectation, so a reconcile whose cache lacks the task starts nothing', async () => {
    const admin = new Client({ server: api.url, token: api.adminToken });
    // the answer takes longer than the client waits; the write goes through after the client gave up
    const lossy = new Client({ server: proxy.url, token: api.adminToken, timeoutMs: 300 });
    proxy.delay((m, p) => m === 'POST' && p.includes('/tasks'), 1500);
    const exp = new Expectations(60_000);
    const task = ownedTask('default', owner, spec);
    const err = await createOwnedTask(lossy, exp, 'default/svc', task).catch((e) => e);
    expect(isBerthError(err, 'Timeout'), String(err)).to.equal(true);
    await eventually(async () => !!(await admin.tryGet('Task', 'default', task.metadata.name)), 20_000, 'the create landed after all');
    // the reconcile's gate (the service and daemon controllers return early while it holds)
    expect(exp.satisfied('default/svc', 0), 'the next reconcile would plan without the task it created: a duplicate').to.equal(false);
    exp.observed('default/svc', task.metadata.name); // the task informer's add
    expect(exp.satisfied('default/svc', 0)).to.equal(true);
    admin.close();
    lossy.close();
  });

  it('R2-7: a refused create is forgotten at once; an unknown outcome waits at most the expectation TTL', async () => {
    const cases: Array<[string, unknown, boolean]> = [
      ...(['Invalid', 'Conflict', 'AlreadyExists', 'Forbidden', 'BadRequest', 'TooManyRequests', 'LeaseLost', 'NotFound'] as Reason[]).map(
        (r): [string, unknown, boolean] => [r, new BerthError(r, r), true],
      ),
      ...(['Timeout', 'ServiceUnavailable', 'InternalError', 'BadGateway'] as Reason[]).map((r): [string, unknown, boolean] => [r, new BerthError(r, r), false]),
      ['AbortError', Object.assign(new Error('aborted'), { name: 'AbortError' }), false],
      ['a socket error', new Error('ECONNRESET'), false],
    ];
    for (const [what, e, refused] of cases) {
      expect(certainlyNotWritten(e), what).to.equal(refused);
      const exp = new Expectations(300);
      const failing = { create: async () => Promise.reject(e) };
      await createOwnedTask(failing, exp, 'k', ownedTask('default', owner, spec)).catch(() => undefined);
      expect(exp.satisfied('k', 0), `${what}: ${refused ? 'forgotten' : 'still expected'}`).to.equal(refused);
    }
    // the TTL bounds the wait for a create that never landed
    const exp = new Expectations(300);
    await createOwnedTask({ create: async () => Promise.reject(new BerthError('Timeout', 'lost')) }, exp, 'k', ownedTask('default', owner, spec)).catch(() => undefined);
    expect(exp.satisfied('k', 0)).to.equal(false);
    await sleep(400);
    expect(exp.satisfied('k', 0), 'expired').to.equal(true);
  });
});

describe('R3-1: the expectation of a create whose answer was lost counts its TTL from the failure', function () {
  this.timeout(30_000);
  // an apiserver that commits every create and never answers (a dropped response)
  let srv: Server;
  let url: string;
  const committed: string[] = [];
  before(async () => {
    srv = createServer((req) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => committed.push(JSON.parse(b).metadata.name));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  });
  after(async () => {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  });

  it('R3-1: with the client timeout equal to the TTL (as in production: 30 s each), the next reconcile still waits when the Timeout surfaces', async () => {
    const ms = 400;
    const client = new Client({ server: url, token: 'x', timeoutMs: ms });
    const exp = new Expectations(ms);
    const task = ownedTask('default', { kind: 'Service', name: 'svc', uid: 'uid-r3-1' }, { taskDefinition: 'r31', desiredStatus: 'RUNNING' } as Task['spec']);
    const err = await createOwnedTask(client, exp, 'default/svc', task).catch((e) => e);
    expect(isBerthError(err, 'Timeout'), String(err)).to.equal(true);
    expect(committed, 'the server took the create').to.include(task.metadata.name);
    await sleep(20); // the worker's first rate-limited retry; the cache does not show the task yet
    expect(exp.satisfied('default/svc', 0), 'the expectation expired as the timeout surfaced: the next reconcile creates a duplicate').to.equal(false);
    // still bounded: a create that never shows is given up on one TTL after the failure
    await eventually(() => exp.satisfied('default/svc', 0), 10_000, 'the expectation expired after its TTL');
    client.close();
  });
});

describe('R3-5: a create the client never sent is forgotten, one sent and cut off stays expected', function () {
  this.timeout(30_000);
  const owner = { kind: 'Service' as const, name: 'svc', uid: 'uid-r3-5' };
  const spec = { taskDefinition: 'r35', desiredStatus: 'RUNNING' } as Task['spec'];

  it('R3-5: connection refused (nothing listens) marks the error notSent and the key may be reconciled at once', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r)); // nothing listens there now: ECONNREFUSED
    const client = new Client({ server: `http://127.0.0.1:${port}`, token: 'x' });
    const exp = new Expectations(60_000);
    const err = await createOwnedTask(client, exp, 'default/svc', ownedTask('default', owner, spec)).catch((e) => e);
    expect(isBerthError(err, 'ServiceUnavailable'), String(err)).to.equal(true);
    expect(err.details.notSent, 'the client says it never sent the request').to.equal(true);
    expect(exp.satisfied('default/svc', 0), 'nothing was written, so nothing is awaited').to.equal(true);
    client.close();
  });

  it('R3-5: a connection cut after the request was sent is not notSent: the create may have committed', async () => {
    const srv = createServer((req) => req.on('data', () => req.socket.destroy()));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = new Client({ server: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, token: 'x' });
    const exp = new Expectations(60_000);
    const err = await createOwnedTask(client, exp, 'default/svc', ownedTask('default', owner, spec)).catch((e) => e);
    expect(isBerthError(err, 'ServiceUnavailable'), String(err)).to.equal(true);
    expect(err.details.notSent).to.equal(false);
    expect(exp.satisfied('default/svc', 0), 'a write that may have landed is still awaited').to.equal(false);
    client.close();
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  });
});

describe('leader election: renewals bounded by the renew deadline, observation after the read (D3)', function () {
  this.timeout(90_000);
  let api: TestApiServer;
  const proxies: HttpProxy[] = [];
  const electors: LeaderElector[] = [];
  const clients: Client[] = [];
  before(async () => {
    api = await startApiServer();
  });
  afterEach(async () => {
    for (const p of proxies.splice(0)) p.release();
    for (const e of electors.splice(0)) await e.stop();
    for (const p of proxies.splice(0)) await p.close();
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => api?.stop());

  const elector = (name: string, identity: string, server: string, o: { duration?: number; deadline?: number; retry?: number; onStarted?: (t: LeadershipTerm) => void; onStopped?: (why: string) => void } = {}) => {
    const client = new Client({ server, token: api.adminToken, timeoutMs: 30_000 });
    clients.push(client);
    const e = new LeaderElector({ client, name, identity, leaseDurationMs: o.duration ?? 4000, renewDeadlineMs: o.deadline ?? 2000, retryPeriodMs: o.retry ?? 300, log, onStartedLeading: (t) => o.onStarted?.(t), onStoppedLeading: (w) => o.onStopped?.(w) });
    electors.push(e);
    return e;
  };

  it('D3: a Lease PUT that hangs makes the leader step down within the renew deadline (the client would wait 30 s)', async () => {
    const proxy = await startHttpProxy(api.url);
    proxies.push(proxy);
    let term: LeadershipTerm | undefined;
    const e = elector('d3-hang', 'a', proxy.url, { onStarted: (t) => (term = t) });
    e.start();
    await eventually(() => e.isLeader, 10_000, 'leading');
    expect(term!.valid()).to.equal(true);
    proxy.hold((m, p) => m === 'PUT' && p.includes('/leases/'));
    const held = Date.now();
    await eventually(() => !e.isLeader, 15_000, 'stepped down');
    const took = Date.now() - held;
    // within the renew deadline (2 s) of the last renewal, plus one retry period and some slack for a loaded machine
    expect(took, `stepped down after ${took} ms`).to.be.below(2000 + 300 + 3000);
    expect(term!.valid()).to.equal(false);
    expect(term!.signal.aborted).to.equal(true);
    // and its writes are refused before they are sent
    const err = await term!.client.create({ apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'never' }, spec: { containerDefinitions: [{ name: 'a', image: 'x', memory: 8 }] } }).catch((x) => x);
    expect(isAbort(err) || (err as { reason?: string }).reason === 'LeaseLost', String(err)).to.equal(true);
  });

  it('D3: a follower counts the lease duration from when its read of the lease returned, not from when it sent it', async () => {
    const pa = await startHttpProxy(api.url);
    const pb = await startHttpProxy(api.url);
    proxies.push(pa, pb);
    const a = elector('d3-observe', 'a', pa.url);
    a.start();
    await eventually(() => a.isLeader, 10_000, 'a leads');
    // a goes silent (its requests are held: no renewal, no release)
    pa.hold(() => true);
    // b's first read of the lease takes 1.5 s to come back (within its 2 s attempt budget)
    let first = true;
    pb.delay((m, p) => {
      const slow = first && m === 'GET' && p.includes('/leases/');
      if (slow) first = false;
      return slow;
    }, 1500);
    const b = elector('d3-observe', 'b', pb.url);
    b.start();
    await eventually(() => b.isLeader, 30_000, 'b takes over');
    const firstGet = pb.requests.find((r) => r.method === 'GET' && r.path.includes('/leases/'))!;
    const acquire = pb.requests.find((r) => r.method === 'PUT' && r.path.includes('/leases/'))!;
    // the lease was 4 s; b saw it first when its slow read returned, and took it at least 4 s after that
    expect(acquire.at - firstGet.doneAt!, `took over ${acquire.at - firstGet.doneAt!} ms after its first read returned`).to.be.at.least(4000);
    const l = await new Client({ server: api.url, token: api.adminToken }).get<Lease>('Lease', 'berth-system', 'd3-observe');
    expect(l.spec.holderIdentity).to.equal('b');
  });
});
