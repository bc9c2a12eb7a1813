/**
 * Service discovery names, pure: the Endpoints of a cluster become a zone under
 * `berth.internal`, and a question becomes an answer (or "not ours": forward it).
 *
 *   SERVICE.CLUSTER.berth.internal          A/AAAA: the serving tasks' addresses; SRV: one per task and port
 *   _SERVICE._tcp.CLUSTER.berth.internal    SRV of the service's tcp ports (_udp: udp ports)
 *   TASK.SERVICE.CLUSTER.berth.internal     A/AAAA of that task (the SRV targets)
 *
 * Names are matched case-insensitively. A name of the zone that has no record of the asked
 * type (a service without serving tasks, AAAA of an IPv4 task, a cluster) is NOERROR with no
 * answer; anything else under berth.internal is NXDOMAIN; both carry the zone's SOA, whose
 * minimum is the TTL, so resolvers cache the absence no longer than a presence.
 */
import type { Answer, SoaData, SrvAnswer } from 'dns-packet';
import type { EndpointSubset } from '../../api/endpoints.ts';

export const DNS_ZONE = 'berth.internal';
/** seconds: short, so a task that stops serving is forgotten quickly */
export const DNS_TTL = 5;

export interface ServiceEndpoints {
  cluster: string;
  service: string;
  subsets: EndpointSubset[];
}

interface Srv {
  priority: number;
  weight: number;
  port: number;
  target: string;
  protocol: 'tcp' | 'udp';
}

export interface Zone {
  /** name (lower case, no trailing dot) -> addresses */
  addresses: Map<string, string[]>;
  srv: Map<string, Srv[]>;
  /** every name of the zone and its ancestors: these exist (NOERROR), others do not */
  names: Set<string>;
}

export type Question = { name: string; type: string };
export type Reply = { rcode: 'NOERROR' | 'NXDOMAIN'; answers: Answer[]; authorities: Answer[]; additionals: Answer[] };

const norm = (n: string) => n.toLowerCase().replace(/\.$/, '');

/** Is this name berth's to answer? */
export const inZone = (name: string): boolean => {
  const n = norm(name);
  return n === DNS_ZONE || n.endsWith(`.${DNS_ZONE}`);
};

export function buildZone(all: ServiceEndpoints[]): Zone {
  const z: Zone = { addresses: new Map(), srv: new Map(), names: new Set([DNS_ZONE]) };
  const add = <T>(m: Map<string, T[]>, k: string, v: T) => (m.get(k) ?? m.set(k, []).get(k)!).push(v);
  const exists = (n: string) => {
    for (let cur = n; cur.length > DNS_ZONE.length; cur = cur.slice(cur.indexOf('.') + 1)) z.names.add(cur);
  };
  for (const e of all) {
    const cluster = norm(e.cluster);
    const svc = `${norm(e.service)}.${cluster}.${DNS_ZONE}`;
    exists(svc);
    for (const s of e.subsets) {
      const task = `${norm(s.task)}.${svc}`;
      exists(task);
      add(z.addresses, task, s.address);
      if (!z.addresses.get(svc)?.includes(s.address)) add(z.addresses, svc, s.address);
      for (const p of s.ports) {
        const r: Srv = { priority: 0, weight: 10, port: p.port, target: task, protocol: p.protocol };
        add(z.srv, svc, r);
        const under = `_${norm(e.service)}._${p.protocol}.${cluster}.${DNS_ZONE}`;
        exists(under);
        add(z.srv, under, r);
      }
    }
  }
  return z;
}

const soa = (ttl: number): Answer => ({
  name: DNS_ZONE,
  type: 'SOA',
  ttl,
  data: { mname: `ns.${DNS_ZONE}`, rname: `hostmaster.${DNS_ZONE}`, serial: 1, refresh: 60, retry: 10, expire: 600, minimum: ttl } as SoaData,
});

const addressRecord = (name: string, ip: string, ttl: number): Answer => (ip.includes(':') ? { name, type: 'AAAA', ttl, data: ip } : { name, type: 'A', ttl, data: ip });

/** The answer to one question of the zone; undefined when the name is not under berth.internal (forward it). */
export function answer(z: Zone, q: Question, ttl = DNS_TTL): Reply | undefined {
  if (!inZone(q.name)) return undefined;
  const n = norm(q.name);
  const out: Reply = { rcode: 'NOERROR', answers: [], authorities: [], additionals: [] };
  if (!z.names.has(n)) return { ...out, rcode: 'NXDOMAIN', authorities: [soa(ttl)] };
  const want = (t: string) => q.type === t || q.type === 'ANY';
  for (const ip of z.addresses.get(n) ?? []) {
    const r = addressRecord(q.name, ip, ttl);
    if (want(r.type)) out.answers.push(r);
  }
  if (want('SRV')) {
    const targets = new Set<string>();
    for (const s of z.srv.get(n) ?? []) {
      out.answers.push({ name: q.name, type: 'SRV', ttl, data: { priority: s.priority, weight: s.weight, port: s.port, target: s.target } } as SrvAnswer);
      targets.add(s.target);
    }
    for (const t of targets) for (const ip of z.addresses.get(t) ?? []) out.additionals.push(addressRecord(t, ip, ttl));
  }
  if (want('SOA') && n === DNS_ZONE) out.answers.push(soa(ttl));
  if (!out.answers.length) out.authorities.push(soa(ttl));
  return out;
}
