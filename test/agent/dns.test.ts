import dgram from 'node:dgram';
import net from 'node:net';
import { expect } from 'chai';
import dnsPacket from 'dns-packet';
import { DnsServer, upstreamsOf } from '../../pkg/agent/dns/server.ts';
import { answer, buildZone, type ServiceEndpoints } from '../../pkg/agent/dns/zone.ts';
import { silentLogger } from '../../pkg/log/log.ts';

const web: ServiceEndpoints = {
  cluster: 'default',
  service: 'web',
  subsets: [
    { task: 't1', address: '10.0.0.5', ports: [{ containerName: 'app', containerPort: 80, port: 49153, protocol: 'tcp' }] },
    { task: 't2', address: '10.0.0.5', ports: [{ containerName: 'app', containerPort: 80, port: 49154, protocol: 'tcp' }, { containerName: 'app', containerPort: 53, port: 49155, protocol: 'udp' }] },
    { task: 't3', address: '172.17.0.9', ports: [{ containerName: 'app', containerPort: 80, port: 80, protocol: 'tcp' }] },
  ],
};
const zone = buildZone([web, { cluster: 'prod', service: 'Api', subsets: [{ task: 'a1', address: 'fd00::7', ports: [] }] }, { cluster: 'default', service: 'idle', subsets: [] }]);

/** name + type -> rcode and the answers' data (SRV as "port target") */
const rows: Array<[string, string, string, string[]]> = [
  ['web.default.berth.internal', 'A', 'NOERROR', ['10.0.0.5', '172.17.0.9']],
  ['WEB.Default.berth.internal.', 'A', 'NOERROR', ['10.0.0.5', '172.17.0.9']],
  ['web.default.berth.internal', 'AAAA', 'NOERROR', []],
  ['web.default.berth.internal', 'SRV', 'NOERROR', ['49153 t1.web.default.berth.internal', '49154 t2.web.default.berth.internal', '49155 t2.web.default.berth.internal', '80 t3.web.default.berth.internal']],
  ['_web._tcp.default.berth.internal', 'SRV', 'NOERROR', ['49153 t1.web.default.berth.internal', '49154 t2.web.default.berth.internal', '80 t3.web.default.berth.internal']],
  ['_web._udp.default.berth.internal', 'SRV', 'NOERROR', ['49155 t2.web.default.berth.internal']],
  ['t2.web.default.berth.internal', 'A', 'NOERROR', ['10.0.0.5']],
  ['t3.web.default.berth.internal', 'A', 'NOERROR', ['172.17.0.9']],
  ['a1.api.prod.berth.internal', 'AAAA', 'NOERROR', ['fd00::7']],
  ['api.prod.berth.internal', 'A', 'NOERROR', []],
  // a service without serving tasks exists, with no address
  ['idle.default.berth.internal', 'A', 'NOERROR', []],
  // a cluster is an ancestor of names: it exists
  ['default.berth.internal', 'A', 'NOERROR', []],
  ['t9.web.default.berth.internal', 'A', 'NXDOMAIN', []],
  ['nope.default.berth.internal', 'A', 'NXDOMAIN', []],
  ['web.other.berth.internal', 'SRV', 'NXDOMAIN', []],
  ['_web._sctp.default.berth.internal', 'SRV', 'NXDOMAIN', []],
];

const data = (a: dnsPacket.Answer) => (a.type === 'SRV' ? `${a.data.port} ${a.data.target}` : String((a as { data: unknown }).data));
/** what dns-packet decodes besides its declared fields */
type Decoded = dnsPacket.DecodedPacket & { rcode: string; flag_aa: boolean; flag_tc: boolean };

describe('service discovery DNS', function () {
  describe('answers from the cluster\'s endpoints', () => {
    for (const [name, type, rcode, want] of rows) {
      it(`${type} ${name} -> ${rcode} ${want.join(', ') || '(no answer)'}`, () => {
        const r = answer(zone, { name, type }, 5)!;
        expect(r.rcode).to.equal(rcode);
        expect(r.answers.map(data).sort()).to.deep.equal([...want].sort());
        for (const a of r.answers) expect((a as { ttl?: number }).ttl).to.equal(5);
        // an absence carries the zone's SOA, whose minimum bounds negative caching
        if (!want.length) expect(r.authorities.map((a) => a.type)).to.deep.equal(['SOA']);
      });
    }
    it('gives the SRV targets\' addresses as additional records', () => {
      const r = answer(zone, { name: '_web._udp.default.berth.internal', type: 'SRV' })!;
      expect(r.additionals.map((a) => `${a.name} ${a.type} ${data(a)}`)).to.deep.equal(['t2.web.default.berth.internal A 10.0.0.5']);
    });
    it('leaves names outside berth.internal to the upstream resolvers', () => {
      expect(answer(zone, { name: 'example.com', type: 'A' })).to.equal(undefined);
      expect(answer(zone, { name: 'berth.internal.example.com', type: 'A' })).to.equal(undefined);
    });
    it('reads the upstreams of a resolv.conf, without its own address', () => {
      expect(upstreamsOf('# c\nsearch x\nnameserver 10.1.1.1\nnameserver 172.17.0.1\nnameserver fe80::1%eth0\nnameserver bogus\n', ['172.17.0.1'])).to.deep.equal([
        { host: '10.1.1.1', port: 53 },
        { host: 'fe80::1', port: 53 },
      ]);
    });
  });

  describe('on real sockets', () => {
    let upstream: dgram.Socket;
    let upstreamTcp: net.Server;
    let server: DnsServer;
    let upPort = 0;
    const big = buildZone([{ cluster: 'default', service: 'many', subsets: Array.from({ length: 60 }, (_, i) => ({ task: `task-with-a-long-name-${i}`, address: `10.0.1.${i}`, ports: [{ containerName: 'c', containerPort: 80, port: 30000 + i, protocol: 'tcp' as const }] })) }, web]);

    // a stand-in for the host's resolver: answers every A question with 192.0.2.1
    const upstreamAnswer = (msg: Buffer) => {
      const q = dnsPacket.decode(msg);
      return dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ name: q.questions![0].name, type: 'A', ttl: 60, data: '192.0.2.1' }] });
    };

    before(async () => {
      upstream = dgram.createSocket('udp4');
      upstream.on('message', (m, r) => upstream.send(upstreamAnswer(m), r.port, r.address));
      await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
      upPort = upstream.address().port;
      upstreamTcp = net.createServer((s) => s.on('data', (d) => {
        const out = upstreamAnswer(d.subarray(2));
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        s.end(Buffer.concat([len, out]));
      }));
      await new Promise<void>((r) => upstreamTcp.listen(upPort, '127.0.0.1', () => r()));
      server = new DnsServer({ address: '127.0.0.1', port: 0, zone: () => big, upstreams: () => [{ host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port: upPort }], forwardTimeoutMs: 300, log: silentLogger() });
      await server.start();
    });
    after(async () => {
      await server?.stop();
      upstream?.close();
      await new Promise((r) => upstreamTcp?.close(r));
    });

    const udpAsk = (name: string, type: string) =>
      new Promise<Decoded>((resolve, reject) => {
        const s = dgram.createSocket('udp4');
        const t = setTimeout(() => (s.close(), reject(new Error('no answer'))), 3000);
        s.on('message', (m) => (clearTimeout(t), s.close(), resolve(dnsPacket.decode(m) as Decoded)));
        s.send(dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as 'A' }] }), server.port, '127.0.0.1');
      });
    const tcpAsk = (name: string, type: string) =>
      new Promise<Decoded>((resolve, reject) => {
        const s = net.connect(server.port, '127.0.0.1');
        let buf = Buffer.alloc(0);
        s.on('error', reject);
        s.on('connect', () => s.write(dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ name, type: type as 'A' }] })));
        s.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
            s.destroy();
            resolve(dnsPacket.streamDecode(buf) as Decoded);
          }
        });
      });

    it('answers berth.internal over UDP, authoritatively, NXDOMAIN for unknown names', async () => {
      const r = await udpAsk('t1.web.default.berth.internal', 'A');
      expect(r.id).to.equal(4242);
      expect(r.flag_aa).to.equal(true);
      expect(r.rcode).to.equal('NOERROR');
      expect(r.answers!.map(data)).to.deep.equal(['10.0.0.5']);
      expect((await udpAsk('gone.web.default.berth.internal', 'A')).rcode).to.equal('NXDOMAIN');
    });
    it('forwards other names to the next upstream when one does not answer (UDP and TCP)', async () => {
      const r = await udpAsk('example.com', 'A');
      expect(r.rcode).to.equal('NOERROR');
      expect(r.answers!.map(data)).to.deep.equal(['192.0.2.1']);
      const t = await tcpAsk('example.org', 'A');
      expect(t.answers!.map(data)).to.deep.equal(['192.0.2.1']);
    });
    it('truncates an answer too big for UDP, and gives it whole over TCP', async () => {
      const u = await udpAsk('many.default.berth.internal', 'SRV');
      expect(u.flag_tc).to.equal(true);
      expect(u.answers).to.have.length(0);
      const t = await tcpAsk('many.default.berth.internal', 'SRV');
      expect(t.answers).to.have.length(60);
      expect(t.answers!.map(data)).to.include('30007 task-with-a-long-name-7.many.default.berth.internal');
    });
    it('refuses to start on an address another server holds (an agent then runs without it)', async () => {
      const second = new DnsServer({ address: '127.0.0.1', port: server.port, zone: () => big, upstreams: () => [], log: silentLogger() });
      let err: unknown;
      await second.start().catch((e) => (err = e));
      expect((err as NodeJS.ErrnoException)?.code).to.equal('EADDRINUSE');
      expect((await udpAsk('t1.web.default.berth.internal', 'A')).answers!.map(data)).to.deep.equal(['10.0.0.5']);
    });
    it('answers garbage with FORMERR or not at all, and keeps serving', async () => {
      const s = dgram.createSocket('udp4');
      const got = new Promise<Buffer>((r) => s.on('message', (m) => r(m)));
      s.send(Buffer.from('0123456789abcdefgh'), server.port, '127.0.0.1');
      const m = await got;
      s.close();
      expect((dnsPacket.decode(m) as Decoded).rcode).to.equal('FORMERR');
      expect((await udpAsk('web.default.berth.internal', 'A')).answers).to.have.length(2);
    });
  });
});
