import { BlockList, isIP, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Server } from 'node:http';
import { badRequest } from '../errors/errors.ts';

/**
 * The TCP front of every apiserver listener: it closes connections that send nothing
 * (S5: a silent connection was held forever), reads a PROXY protocol header (v1 or v2)
 * from trusted load balancers so the apiserver knows the real client address (S3: the
 * logs proxy and registration use it), and hands the connection to the TLS or the
 * plain-HTTP server by its first byte.
 */

export interface FrontOptions {
  /** a connection that sends no byte within this long is closed */
  firstByteTimeoutMs: number;
  /** CIDRs whose connections may start with a PROXY protocol header (v1 or v2); none: never read one */
  proxyProtocolTrusted?: string[];
}

export const DEFAULT_FIRST_BYTE_TIMEOUT_MS = 10_000;

/** `::ffff:10.0.0.1` is 10.0.0.1: one spelling per address. */
export function normalizeAddress(a: string | undefined): string {
  if (!a) return '';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1] : a.toLowerCase();
}

/** A BlockList of CIDRs (`10.0.0.0/8`, `fd00::/8`, or a bare address); a malformed one is a clear error. */
export function cidrList(cidrs: string[], flag = '--proxy-protocol-trusted'): BlockList {
  const list = new BlockList();
  for (const raw of cidrs) {
    const c = raw.trim();
    if (!c) continue;
    const [addr, bits, extra] = c.split('/');
    const family = isIP(addr);
    const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
    if (!family || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 6 ? 128 : 32) || (bits !== undefined && !/^\d+$/.test(bits))) {
      throw badRequest(`${flag} ${JSON.stringify(c)}: expected a CIDR such as 10.0.0.0/8 or fd00::/8`);
    }
    list.addSubnet(addr, prefix, family === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

export const isLoopback = (a: string): boolean => {
  const n = normalizeAddress(a);
  return n === '::1' || /^127\./.test(n);
};

export const inList = (list: BlockList, address: string): boolean => {
  const a = normalizeAddress(address);
  const family = isIP(a);
  return family !== 0 && list.check(a, family === 6 ? 'ipv6' : 'ipv4');
};

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
const V1_MAX = 107;

export type ProxyHeader =
  /** not a PROXY header: the connection speaks HTTP or TLS at once */
  | { kind: 'none' }
  /** more bytes are needed to decide */
  | { kind: 'incomplete' }
  /** a header of `length` bytes; `source` absent for LOCAL (v2) and UNKNOWN (v1): the peer's own address counts */
  | { kind: 'header'; length: number; source?: { address: string; port: number } };

/**
 * Parses the start of a connection as a PROXY protocol header (haproxy's proxy-protocol.txt,
 * versions 1 and 2). Throws on a header that starts right but is malformed.
 */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) {
    if (buf.length < 16) return { kind: 'incomplete' };
    const verCmd = buf[12];
    if (verCmd >> 4 !== 2) throw badRequest('PROXY protocol v2: unsupported version');
    const len = buf.readUInt16BE(14);
    if (buf.length < 16 + len) return { kind: 'incomplete' };
    const cmd = verCmd & 0x0f;
    if (cmd === 0) return { kind: 'header', length: 16 + len }; // LOCAL: health checks of the balancer itself
    if (cmd !== 1) throw badRequest('PROXY protocol v2: unknown command');
    const fam = buf[13] >> 4;
    const body = buf.subarray(16, 16 + len);
    if (fam === 1 && len >= 12) {
      return { kind: 'header', length: 16 + len, source: { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) } };
    }
    if (fam === 2 && len >= 36) {
      const parts: string[] = [];
      for (let i = 0; i < 16; i += 2) parts.push(body.readUInt16BE(i).toString(16));
      return { kind: 'header', length: 16 + len, source: { address: compressV6(parts), port: body.readUInt16BE(32) } };
    }
    return { kind: 'header', length: 16 + len }; // AF_UNSPEC or unix: keep the peer address
  }
  const m1 = Math.min(buf.length, V1_PREFIX.length);
  if (!buf.subarray(0, m1).equals(V1_PREFIX.subarray(0, m1))) return { kind: 'none' };
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    if (buf.length >= V1_MAX) throw badRequest('PROXY protocol v1: the header line is too long');
    return { kind: 'incomplete' };
  }
  const line = buf.subarray(0, end).toString('latin1');
  const f = line.split(' ');
  if (f[1] === 'UNKNOWN') return { kind: 'header', length: end + 2 };
  if (f.length !== 6 || (f[1] !== 'TCP4' && f[1] !== 'TCP6')) throw badRequest(`PROXY protocol v1: cannot parse ${JSON.stringify(line.slice(0, 64))}`);
  const [, proto, src, , sport] = f;
  if (isIP(src) !== (proto === 'TCP4' ? 4 : 6) || !/^\d{1,5}$/.test(sport) || Number(sport) > 65535) {
    throw badRequest(`PROXY protocol v1: cannot parse ${JSON.stringify(line.slice(0, 64))}`);
  }
  return { kind: 'header', length: end + 2, source: { address: normalizeAddress(src), port: Number(sport) } };
}

function compressV6(parts: string[]): string {
  const full = parts.join(':');
  // the longest run of zero groups becomes '::' (RFC 5952)
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  if (best.at < 0) return normalizeAddress(full);
  return normalizeAddress(`${parts.slice(0, best.at).join(':')}::${parts.slice(best.at + best.len).join(':')}`);
}

/**
 * The real client address of each proxied connection, keyed by the connection's own
 * 4-tuple (unique on this host while it is open), so the TLS socket wrapping a raw one
 * finds it too.
 */
const proxied = new Map<string, string>();
const tupleOf = (s: Pick<Socket, 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort'>) =>
  `${normalizeAddress(s.localAddress)}|${s.localPort}|${normalizeAddress(s.remoteAddress)}|${s.remotePort}`;

/** The address a request came from: the PROXY header's source when a trusted balancer sent one, else the peer. */
export function sourceAddressOf(sock: Pick<Socket, 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort'> | undefined): string {
  if (!sock) return '';
  return proxied.get(tupleOf(sock)) ?? normalizeAddress(sock.remoteAddress);
}

/** A listening front: close it and closeAllConnections, as an http.Server. */
export type Listener = NetServer & { closeAllConnections(): void };

/**
 * A net server in front of a TLS and/or a plain HTTP server. Closing it closes both
 * (callers use server.close and closeAllConnections, as on an http.Server).
 */
export function frontServer(targets: { tls?: Server; plain?: Server }, o: FrontOptions): Listener {
  const trusted = o.proxyProtocolTrusted?.length ? cidrList(o.proxyProtocolTrusted) : undefined;
  const waiting = new Set<Socket>();
  const handOff = (sock: Socket, first: Buffer) => {
    const to = first[0] === 0x16 ? (targets.tls ?? targets.plain) : (targets.plain ?? targets.tls);
    sock.pause();
    if (first.length) sock.unshift(first);
    to!.emit('connection', sock);
    process.nextTick(() => sock.resume());
  };
  const front = createNetServer((sock) => {
    waiting.add(sock);
    const maySendProxy = trusted !== undefined && inList(trusted, sock.remoteAddress ?? '');
    let buf: Buffer = Buffer.alloc(0);
    let headerDone = !maySendProxy;
    const timer = setTimeout(() => sock.destroy(), o.firstByteTimeoutMs);
    const done = () => {
      clearTimeout(timer);
      waiting.delete(sock);
      sock.removeListener('data', onData);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!headerDone) {
        let h: ProxyHeader;
        try {
          h = parseProxyHeader(buf);
        } catch {
          done();
          sock.destroy();
          return;
        }
        if (h.kind === 'incomplete') return;
        headerDone = true;
        if (h.kind === 'header') {
          // a balancer on another host cannot have a client on this host's loopback: such a
          // source would let a client pass for a local one (and reach loopback through the logs proxy)
          if (h.source && !(isLoopback(h.source.address) && !isLoopback(sock.remoteAddress ?? ''))) {
            const key = tupleOf(sock);
            proxied.set(key, h.source.address);
            sock.once('close', () => proxied.delete(key));
          }
          buf = buf.subarray(h.length);
          if (!buf.length) return; // the request itself comes in the next packet
        }
      }
      done();
      handOff(sock, buf);
    };
    sock.on('data', onData);
    sock.once('close', () => {
      clearTimeout(timer);
      waiting.delete(sock);
    });
    sock.on('error', () => sock.destroy());
  });
  // the inner servers never listen themselves: 'listening' starts their connection tracking
  // (closeAllConnections) and the checks of headersTimeout and requestTimeout
  front.once('listening', () => {
    for (const t of [targets.tls, targets.plain]) t?.emit('listening');
  });
  front.once('close', () => {
    for (const t of [targets.tls, targets.plain]) t?.close(() => undefined);
  });
  return Object.assign(front, {
    closeAllConnections: () => {
      for (const s of waiting) s.destroy();
      waiting.clear();
      targets.tls?.closeAllConnections();
      targets.plain?.closeAllConnections();
    },
  });
}
