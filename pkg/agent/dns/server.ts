/**
 * The agent's DNS server: UDP and TCP on one address, port 53 by default. Questions under
 * berth.internal are answered from the zone (zone.ts); every other question is relayed, as
 * it came, to the host's resolvers (the `nameserver` lines of /etc/resolv.conf), so
 * containers keep resolving the world. Encoding is dns-packet's; the sockets are node's.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import dnsPacket, { type Packet } from 'dns-packet';
import type { Logger } from 'pino';
import { answer, type Zone } from './zone.ts';

export interface Upstream {
  host: string;
  port: number;
}

/** The resolvers of a resolv.conf (`nameserver` lines), less the addresses given (our own: no loops). */
export function upstreamsOf(text: string, exclude: string[] = []): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1].replace(/%.*$/, '');
    if (net.isIP(host) && !exclude.includes(host)) out.push({ host, port: 53 });
  }
  return out;
}

export function readUpstreams(file: string, exclude: string[] = []): Upstream[] {
  try {
    return upstreamsOf(readFileSync(file, 'utf8'), exclude);
  } catch {
    return [];
  }
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
/** what a client without EDNS accepts over UDP (RFC 1035) */
const UDP_LIMIT = 512;

export interface DnsServerOptions {
  address: string;
  /** default 53 */
  port?: number;
  /** the zone as of now (called per question: the caller keeps it current) */
  zone: () => Zone;
  upstreams: () => Upstream[];
  ttl?: number;
  /** per upstream try (default 2 s) */
  forwardTimeoutMs?: number;
  log: Logger;
}

export class DnsServer {
  private udp?: dgram.Socket;
  private tcp?: net.Server;
  private readonly conns = new Set<net.Socket>();
  private readonly log: Logger;
  /** questions answered (zone) and relayed (upstream), for tests and metrics */
  readonly counts = { answered: 0, forwarded: 0, failed: 0 };

  constructor(private readonly o: DnsServerOptions) {
    this.log = o.log.child({ component: 'dns', address: o.address });
  }

  get port(): number {
    const a = this.udp?.address();
    return a ? a.port : 0;
  }

  async start(): Promise<void> {
    const family = net.isIPv6(this.o.address) ? 'udp6' : 'udp4';
    const udp = dgram.createSocket({ type: family });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', (e) => {
        udp.close();
        reject(e);
      });
      udp.bind(this.o.port ?? 53, this.o.address, () => {
        udp.removeAllListeners('error');
        resolve();
      });
    });
    udp.on('error', (e) => this.log.warn({ err: e.message }, 'dns socket error'));
    udp.on('message', (msg, rinfo) => {
      void this.handle(msg, 'udp').then((out) => {
        if (out) udp.send(out, rinfo.port, rinfo.address);
      });
    });
    this.udp = udp;
    const tcp = net.createServer((sock) => this.serveTcp(sock));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(this.port, this.o.address, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      this.udp = undefined;
      throw e;
    }
    this.tcp = tcp;
    this.log.info({ port: this.port }, 'serving service discovery DNS');
  }

  async stop(): Promise<void> {
    this.udp?.close();
    this.udp = undefined;
    for (const c of this.conns) c.destroy();
    await new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r()));
    this.tcp = undefined;
  }

  /** TCP: two-byte length, message; several per connection */
  private serveTcp(sock: net.Socket): void {
    this.conns.add(sock);
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('close', () => this.conns.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.handle(Buffer.from(msg), 'tcp').then((out) => {
          if (out && !sock.destroyed) sock.write(Buffer.concat([lengthPrefix(out.length), out]));
        });
      }
      if (buf.length > 65_537) sock.destroy();
    });
  }

  /** One message in, one out (undefined: drop it, e.g. not a query). Never throws: a failure is SERVFAIL. */
  async handle(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    try {
      return await this.reply(msg, transport);
    } catch (e) {
      this.counts.failed++;
      this.log.warn({ err: (e as Error).message }, 'cannot answer a DNS question');
      return msg.length >= 12 ? errorReply(msg, RCODE.SERVFAIL) : undefined;
    }
  }

  private async reply(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let q: ReturnType<typeof dnsPacket.decode>;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return msg.length >= 12 ? errorReply(msg, RCODE.FORMERR) : undefined;
    }
    if (q.type !== 'query') return undefined;
    const question = q.questions?.[0];
    if (!question || (((q.flags ?? 0) >> 11) & 0xf) !== 0) return errorReply(msg, question ? RCODE.NOTIMP : RCODE.FORMERR);
    const reply = answer(this.o.zone(), { name: question.name, type: question.type }, this.o.ttl);
    if (!reply) return this.forward(msg, transport);
    this.counts.answered++;
    const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
    const packet: Packet = {
      type: 'response',
      id: q.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | rd | RCODE[reply.rcode],
      questions: [question],
      answers: reply.answers,
      authorities: reply.authorities,
      additionals: reply.additionals,
    };
    let out = dnsPacket.encode(packet);
    const edns = q.additionals?.find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
    const limit = Math.max(UDP_LIMIT, edns?.udpPayloadSize ?? 0);
    if (transport === 'udp' && out.length > limit) {
      // too big for this client over UDP: say so (TC), and it asks again over TCP
      out = dnsPacket.encode({ ...packet, flags: (packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [], additionals: [] });
    }
    return out;
  }

  /** Relay to each upstream in turn, over the transport the client used; SERVFAIL when none answers. */
  private async forward(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const timeout = this.o.forwardTimeoutMs ?? 2000;
    for (const u of this.o.upstreams()) {
      try {
        const out = transport === 'udp' ? await udpExchange(u, msg, timeout) : await tcpExchange(u, msg, timeout);
        this.counts.forwarded++;
        return out;
      } catch (e) {
        this.log.debug({ upstream: `${u.host}:${u.port}`, err: (e as Error).message }, 'upstream resolver did not answer');
      }
    }
    this.counts.failed++;
    return errorReply(msg, RCODE.SERVFAIL);
  }
}

const lengthPrefix = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

/** A reply to `msg` with its header and question and this rcode, nothing else. */
function errorReply(msg: Buffer, rcode: number): Buffer {
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  try {
    const q = dnsPacket.decode(msg);
    return dnsPacket.encode({ type: 'response', id, flags: (flags & dnsPacket.RECURSION_DESIRED) | dnsPacket.RECURSION_AVAILABLE | rcode, questions: q.questions ?? [] });
  } catch {
    return dnsPacket.encode({ type: 'response', id, flags: rcode, questions: [] });
  }
}

type Done = (e?: Error, out?: Buffer) => void;

/** One exchange with an upstream: settles once (answer, error or timeout), then closes what `open` opened. */
function exchange(timeoutMs: number, open: (done: Done) => () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let close = () => {};
    const done: Done = (e, out) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      close();
      if (e) reject(e);
      else resolve(out!);
    };
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    close = open(done);
  });
}

function udpExchange(u: Upstream, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return exchange(timeoutMs, (done) => {
    const s = dgram.createSocket(net.isIPv6(u.host) ? 'udp6' : 'udp4');
    const id = msg.readUInt16BE(0);
    s.on('error', (e) => done(e));
    s.on('message', (out, rinfo) => {
      // only the upstream's answer to this query (anyone may send to an open port)
      if (rinfo.address !== u.host || rinfo.port !== u.port || out.length < 12 || out.readUInt16BE(0) !== id) return;
      done(undefined, out);
    });
    s.send(msg, u.port, u.host, (e) => e && done(e));
    return () => s.close();
  });
}

function tcpExchange(u: Upstream, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return exchange(timeoutMs, (done) => {
    const s = net.connect(u.port, u.host);
    let buf = Buffer.alloc(0);
    s.on('error', (e) => done(e));
    s.on('connect', () => s.write(Buffer.concat([lengthPrefix(msg.length), msg])));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(undefined, buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    s.on('end', () => done(new Error('closed before an answer')));
    return () => s.destroy();
  });
}
