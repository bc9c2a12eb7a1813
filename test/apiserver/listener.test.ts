import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { expect } from 'chai';
import { cidrList, inList, parseProxyHeader } from '../../pkg/apiserver/listener.ts';
import { logsEndpointProblem } from '../../pkg/apiserver/logs.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';

const V = '/apis/berth.dev/v1';
const NS = `${V}/namespaces/default`;

const v2 = (cmd: 'PROXY' | 'LOCAL', src?: { v4?: number[]; v6?: number[]; port: number }) => {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  let body = Buffer.alloc(0);
  let fam = 0x00;
  if (src?.v4) {
    fam = 0x11;
    body = Buffer.alloc(12);
    Buffer.from(src.v4).copy(body, 0);
    Buffer.from([127, 0, 0, 1]).copy(body, 4);
    body.writeUInt16BE(src.port, 8);
    body.writeUInt16BE(6443, 10);
  } else if (src?.v6) {
    fam = 0x21;
    body = Buffer.alloc(36);
    src.v6.forEach((g, i) => body.writeUInt16BE(g, i * 2));
    body.writeUInt16BE(src.port, 32);
  }
  const tlv = Buffer.from([0x04, 0x00, 0x02, 0xab, 0xcd]); // a TLV (NOOP) that must be skipped
  const head = Buffer.from([cmd === 'PROXY' ? 0x21 : 0x20, fam, 0, 0]);
  head.writeUInt16BE(body.length + tlv.length, 2);
  return Buffer.concat([sig, head, body, tlv]);
};

describe('S3: the PROXY protocol and where the logs proxy may go (units)', () => {
  it('parses PROXY v1 and v2 headers, and tells them from HTTP and TLS', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 10.9.8.7 127.0.0.1 40000 6443\r\nGET /'))).to.deep.equal({ kind: 'header', length: 42, source: { address: '10.9.8.7', port: 40000 } });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 fd00::7 ::1 40000 6443\r\n'))).to.deep.include({ kind: 'header', source: { address: 'fd00::7', port: 40000 } });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).to.deep.equal({ kind: 'header', length: 15 });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 10.9'))).to.deep.equal({ kind: 'incomplete' });
    expect(parseProxyHeader(Buffer.from('PRO'))).to.deep.equal({ kind: 'incomplete' });
    expect(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n'))).to.deep.equal({ kind: 'none' });
    expect(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01]))).to.deep.equal({ kind: 'none' });
    expect(() => parseProxyHeader(Buffer.from('PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n'))).to.throw(/cannot parse/);
    expect(() => parseProxyHeader(Buffer.from('PROXY TCP4 10.0.0.1 127.0.0.1 99999 2\r\n'))).to.throw(/cannot parse/);
    expect(() => parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(120)}`))).to.throw(/too long/);
    const h4 = v2('PROXY', { v4: [10, 9, 8, 6], port: 41000 });
    expect(parseProxyHeader(h4)).to.deep.equal({ kind: 'header', length: h4.length, source: { address: '10.9.8.6', port: 41000 } });
    const h6 = v2('PROXY', { v6: [0xfd00, 0, 0, 0, 0, 0, 0, 7], port: 41001 });
    expect(parseProxyHeader(h6)).to.deep.equal({ kind: 'header', length: h6.length, source: { address: 'fd00::7', port: 41001 } });
    const local = v2('LOCAL');
    expect(parseProxyHeader(local)).to.deep.equal({ kind: 'header', length: local.length });
    expect(parseProxyHeader(h4.subarray(0, 20))).to.deep.equal({ kind: 'incomplete' });
  });

  it('reads trusted CIDRs, refusing malformed ones with the flag\'s name', () => {
    const l = cidrList(['10.0.0.0/8', 'fd00::/8', '192.168.1.1']);
    for (const [a, want] of [['10.1.2.3', true], ['::ffff:10.1.2.3', true], ['fd00::1', true], ['192.168.1.1', true], ['192.168.1.2', false], ['11.0.0.1', false], ['junk', false]] as const) expect(inList(l, a), a).to.equal(want);
    for (const bad of ['10.0.0.0/33', 'x/8', '10.0.0.0/8/1', '::/129', '10.0.0.0/-1']) expect(() => cidrList([bad]), bad).to.throw(/--proxy-protocol-trusted/);
  });

  it('allows the logs endpoint only at http://IP:PORT on the registered address, never on link-local or metadata addresses', () => {
    const table: Array<[string, string | undefined, RegExp | undefined]> = [
      ['http://10.0.0.5:4000', '10.0.0.5', undefined],
      ['http://127.0.0.1:4000', '127.0.0.1', undefined],
      ['http://127.0.0.1:4000', '::1', undefined], // over loopback, any loopback address is the same host
      ['http://[fd00::5]:4000', 'fd00::5', undefined],
      ['http://10.0.0.6:4000', '10.0.0.5', /registered from \(10\.0\.0\.5\)/],
      ['http://127.0.0.1:4000', '10.0.0.5', /registered from/],
      ['http://169.254.169.254:80', '169.254.169.254', /link-local, metadata/],
      ['http://[fe80::1]:80', 'fe80::1', /link-local, metadata/],
      ['http://0.0.0.0:80', '0.0.0.0', /link-local, metadata/],
      ['http://100.100.100.200:80', '100.100.100.200', /metadata/],
      ['http://10.0.0.5:4000/', '10.0.0.5', /must be http:\/\/IP:PORT/],
      ['http://10.0.0.5:4000/internal?x=1#', '10.0.0.5', /must be http:\/\/IP:PORT/],
      ['http://user@10.0.0.5:4000', '10.0.0.5', /must be http:\/\/IP:PORT/],
      ['http://agent.local:4000', '10.0.0.5', /must be http:\/\/IP:PORT/],
      ['https://10.0.0.5:4000', '10.0.0.5', /must be http:\/\/IP:PORT/],
      ['http://10.0.0.5:0', '10.0.0.5', /out of range/],
      ['http://10.0.0.5:4000', undefined, /no registered address/],
    ];
    for (const [endpoint, registered, want] of table) {
      const p = logsEndpointProblem(endpoint, registered);
      if (want) expect(p, `${endpoint} from ${registered}`).to.match(want);
      else expect(p, `${endpoint} from ${registered}`).to.equal(undefined);
    }
  });
});

/** a raw request on a fresh connection, after `prefix` (a PROXY header); resolves with the answer text */
function exchange(url: string, prefix: Buffer, request: string, tls?: { ca: string }): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => {
      sock.write(prefix);
      let s: Socket = sock;
      if (tls) s = tlsConnect({ socket: sock, ca: tls.ca, servername: 'localhost', checkServerIdentity: () => undefined });
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (/\r\n\r\n/.test(got) && /Content-Length: (\d+)/i.test(got)) {
          const len = Number(/Content-Length: (\d+)/i.exec(got)![1]);
          if (Buffer.byteLength(got.split('\r\n\r\n').slice(1).join('\r\n\r\n')) >= len) {
            s.destroy();
            resolve(got);
          }
        }
      });
      s.on('close', () => resolve(got));
      s.on('error', reject);
      s.write(request);
    });
    sock.on('error', reject);
  });
}

const registration = (name: string, token: string) => {
  const body = JSON.stringify({ apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1024 }, { name: 'MEMORY', type: 'INTEGER', integerValue: 1024 }] } });
  return `POST ${NS}/containerinstances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
};

describe('S3: PROXY protocol from trusted balancers: registration records the real client address', function () {
  this.timeout(60_000);
  let s: TestApiServer;
  let plain: TestApiServer;
  before(async () => {
    s = await startApiServer({ listen: { proxyProtocolTrusted: ['127.0.0.0/8'] } });
    plain = await startApiServer();
  });
  after(async () => {
    await s?.stop();
    await plain?.stop();
  });

  const addressOf = async (api: TestApiServer, name: string) => (await api.call('GET', `${NS}/containerinstances/${name}`)).body.status?.registeredAddress;

  it('takes the source of a v1 header (plain HTTP) and of a v2 header (plain HTTP and TLS)', async () => {
    const a = await exchange(s.url, Buffer.from('PROXY TCP4 10.9.8.7 127.0.0.1 40000 6443\r\n'), registration('via-v1', s.bootstrapToken));
    expect(a).to.match(/^HTTP\/1\.1 201/);
    expect(await addressOf(s, 'via-v1')).to.equal('10.9.8.7');
    const b = await exchange(s.url, v2('PROXY', { v4: [10, 9, 8, 6], port: 41000 }), registration('via-v2', s.bootstrapToken));
    expect(b).to.match(/^HTTP\/1\.1 201/);
    expect(await addressOf(s, 'via-v2')).to.equal('10.9.8.6');
    const c = await exchange(s.tlsUrl, v2('PROXY', { v6: [0xfd00, 0, 0, 0, 0, 0, 0, 9], port: 41002 }), registration('via-v2-tls', s.bootstrapToken), { ca: s.certPem });
    expect(c).to.match(/^HTTP\/1\.1 201/);
    expect(await addressOf(s, 'via-v2-tls')).to.equal('fd00::9');
    // a LOCAL header (the balancer's own health check) and no header at all: the peer's address
    const d = await exchange(s.url, v2('LOCAL'), registration('via-local', s.bootstrapToken));
    expect(d).to.match(/^HTTP\/1\.1 201/);
    expect(await addressOf(s, 'via-local')).to.equal('127.0.0.1');
    expect((await s.call('POST', `${NS}/containerinstances`, { apiVersion: 'berth.dev/v1', kind: 'ContainerInstance', metadata: { name: 'direct' }, spec: { registeredResources: [{ name: 'CPU', type: 'INTEGER', integerValue: 1 }] } }, { token: s.bootstrapToken })).status).to.equal(201);
    expect(await addressOf(s, 'direct')).to.equal('127.0.0.1');
  });

  it('ignores nothing from untrusted peers: without --proxy-protocol-trusted a header is not HTTP (400) and nothing is registered', async () => {
    const a = await exchange(plain.url, Buffer.from('PROXY TCP4 10.9.8.7 127.0.0.1 40000 6443\r\n'), registration('spoofed', plain.bootstrapToken));
    expect(a).to.match(/^HTTP\/1\.1 400/);
    expect((await plain.call('GET', `${NS}/containerinstances/spoofed`)).status).to.equal(404);
  });
});
