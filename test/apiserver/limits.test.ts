import { connect, type Socket } from 'node:net';
import { expect } from 'chai';
import { IdentityLimiter, watchTimeoutMs } from '../../pkg/apiserver/limits.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually } from '../support/fleet.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;

/** a raw HTTP/1.1 exchange on its own connection: what the server sends, and whether it closed */
function raw(url: string, text: string): { sock: Socket; received: () => string; closed: Promise<void> } {
  const u = new URL(url);
  const sock = connect(Number(u.port), u.hostname);
  let got = '';
  sock.on('data', (d) => (got += d.toString('latin1')));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  if (text) sock.write(text);
  return { sock, received: () => got, closed };
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${what} did not happen within ${ms} ms`)), ms))]);

describe('S5: limits on requests, watches and connections (units)', () => {
  it('a watch without timeoutSeconds gets a random timeout in [min, 2*min]; a client timeout is kept', () => {
    expect(watchTimeoutMs(0, 1000, () => 0)).to.equal(1000);
    expect(watchTimeoutMs(0, 1000, () => 0.999)).to.equal(1999);
    expect(watchTimeoutMs(30, 1000, () => 0.5)).to.equal(30_000);
    expect(watchTimeoutMs(10 ** 9, 1000)).to.equal(2 ** 31 - 1);
  });
  it('counts per identity, refuses beyond the limit with 429, and releases once', () => {
    const l = new IdentityLimiter(2, 'watches');
    const a = { user: 'a', groups: [] };
    const r1 = l.acquire(a);
    l.acquire(a);
    let e: unknown;
    try {
      l.acquire(a);
    } catch (x) {
      e = x;
    }
    expect(isBerthError(e, 'TooManyRequests')).to.equal(true);
    expect((e as { details: { retryAfterSeconds: number } }).details.retryAfterSeconds).to.equal(1);
    l.acquire({ user: 'b', groups: [] });
    r1();
    r1();
    expect(l.count(a)).to.equal(1);
    l.acquire(a);
    expect(l.count(a)).to.equal(2);
  });
});

describe('S5: limits through the real apiserver', function () {
  this.timeout(120_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer({
      build: { serverLimits: { requestTimeoutMs: 1500, maxWatchesPerIdentity: 2, maxInFlightPerIdentity: 3, watchBufferBytes: 64 * 1024, minWatchTimeoutMs: 1000 }, random: () => 0 },
      listen: { firstByteTimeoutMs: 500, headersTimeoutMs: 1000, bodyTimeoutMs: 3000 },
    });
    expect((await s.call('POST', `${V}/taskdefinitions`, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'lim' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } })).status).to.equal(201);
  });
  after(async () => s?.stop());

  it('closes a connection that sends nothing (first-byte timeout)', async () => {
    const c = raw(s.url, '');
    await within(c.closed, 15_000, 'closing a silent connection');
    expect(c.received()).to.equal('');
  });

  it('answers 408 to headers that do not finish in time and closes the connection', async () => {
    const h = raw(s.url, 'GET /version HTTP/1.1\r\nHost: x\r\n');
    await within(h.closed, 15_000, 'closing a connection with unfinished headers');
    expect(h.received()).to.match(/^HTTP\/1\.1 408/);
  });

  it('answers 504 Timeout to a request that is not answered within the request timeout, and counts requests in flight per identity (429)', async () => {
    const partial = (token: string) => raw(s.url, `POST ${V}/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"apiVersion":`);
    const held = [partial(s.adminToken), partial(s.adminToken), partial(s.adminToken)];
    // the three hang in the server reading their bodies: a fourth request of the admin is refused
    let over: { status: number; body: any } | undefined;
    await eventually(async () => {
      over = await s.call('GET', `${V}/clusters`);
      return over.status === 429;
    }, 10_000, 'the fourth request of the admin to be refused');
    expect(over!.body.reason).to.equal('TooManyRequests');
    expect(over!.body.message).to.contain('requests in flight for admin');
    // another identity is not affected
    expect((await s.call('GET', `${V}/clusters`, undefined, { token: s.viewerToken })).status).to.equal(200);
    // each held request is answered 504 at the request timeout (its connection then ends at the body timeout)
    for (const h of held) await within(h.closed, 20_000, 'the held request to end');
    for (const h of held) {
      expect(h.received()).to.match(/^HTTP\/1\.1 504 /);
      expect(h.received()).to.contain('"reason":"Timeout"');
    }
    await eventually(async () => (await s.call('GET', `${V}/clusters`)).status === 200, 10_000, 'the admin to be served again');
  });

  it('limits open watches per identity (429 with Retry-After); a closed watch frees its slot', async () => {
    const open = () => {
      const ac = new AbortController();
      const p = fetch(`${s.url}${NS}/tasks?watch=1&timeoutSeconds=60`, { headers: { Authorization: `Bearer ${s.viewerToken}` }, signal: ac.signal });
      return { ac, p };
    };
    const a = open();
    const b = open();
    expect((await a.p).status).to.equal(200);
    expect((await b.p).status).to.equal(200);
    const c = await fetch(`${s.url}${NS}/tasks?watch=1`, { headers: { Authorization: `Bearer ${s.viewerToken}` } });
    expect(c.status).to.equal(429);
    expect(c.headers.get('retry-after')).to.equal('1');
    expect(((await c.json()) as { message: string }).message).to.contain('too many watches for viewer');
    // the admin still watches
    const ad = new AbortController();
    expect((await fetch(`${s.url}${NS}/tasks?watch=1`, { headers: { Authorization: `Bearer ${s.adminToken}` }, signal: ad.signal })).status).to.equal(200);
    ad.abort();
    a.ac.abort();
    await eventually(async () => {
      const ac = new AbortController();
      const r = await fetch(`${s.url}${NS}/tasks?watch=1`, { headers: { Authorization: `Bearer ${s.viewerToken}` }, signal: ac.signal });
      ac.abort();
      return r.status === 200;
    }, 10_000, 'a slot to free up');
    b.ac.abort();
  });

  it('ends a watch without timeoutSeconds by itself, after the randomized server-side timeout', async () => {
    const r = await fetch(`${s.url}${NS}/tasks?watch=1`, { headers: { Authorization: `Bearer ${s.adminToken}` } });
    expect(r.status).to.equal(200);
    await within(r.text(), 20_000, 'the server to end the watch');
  });

  it('closes a watch whose client does not read once its buffer is full, and the client can watch again', async () => {
    const baseline = s.api.cache.watcherCount;
    const big = 'x'.repeat(100 * 1024);
    expect((await s.call('POST', `${NS}/tasks`, { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'big' }, spec: { taskDefinition: 'lim', overrides: { containerOverrides: [{ name: 'c', environment: [{ name: 'PAD', value: big }] }] } } })).status).to.equal(201);
    const rv = (await s.call('GET', `${NS}/tasks`)).body.metadata.resourceVersion;
    const w = raw(s.url, `GET ${NS}/tasks?watch=1&timeoutSeconds=600&resourceVersion=${rv} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\n\r\n`);
    w.sock.pause(); // never reads: the kernel's buffers fill, then the server's
    await eventually(() => s.api.cache.watcherCount > baseline, 10_000, 'the watch to start');
    let sent = 0;
    for (let i = 0; i < 150 && s.api.cache.watcherCount > baseline; i++) {
      const r = await s.call('PATCH', `${NS}/tasks/big/status`, { status: { version: i + 2 } }, { contentType: 'application/merge-patch+json' });
      expect(r.status).to.equal(200);
      sent += big.length;
    }
    await eventually(() => s.api.cache.watcherCount === baseline, 10_000, `the slow watch to be closed (after ${sent} bytes of events)`);
    // far less than the 16 MiB a watch could queue before
    expect(sent).to.be.lessThan(8 * 1024 * 1024);
    w.sock.destroy();
    const again = new AbortController();
    expect((await fetch(`${s.url}${NS}/tasks?watch=1&resourceVersion=${rv}`, { headers: { Authorization: `Bearer ${s.adminToken}` }, signal: again.signal })).status).to.equal(200);
    again.abort();
  });
});

describe('S5: connections per identity', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  before(async () => {
    s = await startApiServer({ build: { serverLimits: { maxConnectionsPerIdentity: 2 } } });
  });
  after(async () => s?.stop());

  /** one keep-alive GET on `c`; resolves with the status line once the whole answer is in */
  const get = (c: ReturnType<typeof raw>, token: string) => {
    const before = c.received().length;
    c.sock.write(`GET ${V}/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    return eventually(() => {
      const text = c.received().slice(before);
      const m = /Content-Length: (\d+)\r\n[\s\S]*?\r\n\r\n/i.exec(text);
      if (!m || text.length < m.index + m[0].length + Number(m[1])) return undefined;
      return text.split('\r\n')[0] + (/Connection: close/i.test(text) ? ' [close]' : '');
    }, 10_000, 'an answer');
  };

  it('refuses a request on one connection too many (429, and that connection closes); the others keep working', async () => {
    const [a, b, c] = [raw(s.url, ''), raw(s.url, ''), raw(s.url, '')];
    expect(await get(a, s.viewerToken)).to.equal('HTTP/1.1 200 OK');
    expect(await get(b, s.viewerToken)).to.equal('HTTP/1.1 200 OK');
    expect(await get(c, s.viewerToken)).to.equal('HTTP/1.1 429 Too Many Requests [close]');
    await within(c.closed, 10_000, 'the refused connection to close');
    expect(c.received()).to.contain('too many connections for viewer');
    expect(await get(a, s.viewerToken)).to.equal('HTTP/1.1 200 OK');
    // another identity has connections of its own
    const d = raw(s.url, '');
    expect(await get(d, s.adminToken)).to.equal('HTTP/1.1 200 OK');
    // a closed connection frees its place
    a.sock.destroy();
    await eventually(async () => {
      const e = raw(s.url, '');
      const line = await get(e, s.viewerToken);
      e.sock.destroy();
      return line === 'HTTP/1.1 200 OK';
    }, 10_000, 'a place to free up');
    for (const x of [b, d]) x.sock.destroy();
  });
});
