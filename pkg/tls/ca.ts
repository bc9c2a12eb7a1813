/**
 * A berth certificate authority and the certificates it issues, made with the openssl CLI
 * (as pkg/tls/selfsigned.ts): EC P-256 keys written with mode 0600 in a 0700 directory, and
 * files that are never overwritten unless asked (`force`). Re-running with the same
 * request keeps what is there; a different request fails naming the file.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { badRequest, internal } from '../errors/errors.ts';

const run = promisify(execFile);

/** What a certificate is for: its key usages and extended key usages. */
export type CertRole = 'server' | 'client' | 'peer';

const EKU: Record<CertRole, string> = {
  server: 'serverAuth',
  client: 'clientAuth',
  // etcd members use one certificate as a server and as a client of each other
  peer: 'serverAuth,clientAuth',
};

export interface CaFiles {
  certFile: string;
  keyFile: string;
}

export interface IssueRequest {
  ca: CaFiles;
  /** written as DIR/BASE.crt and DIR/BASE.key */
  dir: string;
  base: string;
  role: CertRole;
  commonName: string;
  /** subject alternative names: IP addresses and DNS names (servers and peers need at least one) */
  names?: string[];
  /** organizations (O=) of the subject; Kubernetes reads them as groups */
  organizations?: string[];
  days?: number;
  force?: boolean;
}

export interface Issued {
  certFile: string;
  keyFile: string;
  /** false when matching files were there already and were kept */
  created: boolean;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const IPV6 = /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$/;
const DNS = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** `IP:...`/`DNS:...` entries for openssl, each name checked (a bad one is a 400 naming it). */
export function sanEntries(names: string[]): string[] {
  return names.map((raw) => {
    const n = raw.trim();
    if (IPV4.test(n)) {
      if (n.split('.').some((o) => Number(o) > 255)) throw badRequest(`--names: "${n}" is not an IPv4 address`);
      return `IP:${n}`;
    }
    if (IPV6.test(n)) return `IP:${n}`;
    if (DNS.test(n) && n.length <= 253) return `DNS:${n}`;
    throw badRequest(`--names: "${raw}" is neither an IP address nor a DNS name`);
  });
}

/** The names a certificate carries, as openssl prints them, normalized to `IP:`/`DNS:` entries, sorted. */
export async function certificateNames(certFile: string): Promise<string[]> {
  const { stdout } = await run('openssl', ['x509', '-in', certFile, '-noout', '-ext', 'subjectAltName']);
  return stdout
    .split('\n')
    .slice(1)
    .join(',')
    .split(',')
    .map((s) => s.trim().replace(/^IP Address:/, 'IP:'))
    .filter(Boolean)
    .map(canonicalSan)
    .sort();
}

/** `IP:0:0:0:0:0:0:0:1` and `IP:::1` are one name: IPv6 addresses in their compressed form. */
function canonicalSan(s: string): string {
  if (!s.startsWith('IP:') || !s.includes(':', 3)) return s;
  try {
    return `IP:${new URL(`http://[${s.slice(3)}]/`).hostname.slice(1, -1)}`;
  } catch {
    return s;
  }
}

/** The subject, one line (`CN = x, O = y`). */
export async function certificateSubject(certFile: string): Promise<string> {
  const { stdout } = await run('openssl', ['x509', '-in', certFile, '-noout', '-subject', '-nameopt', 'sep_comma_plus_space']);
  return stdout.replace(/^subject=\s*/, '').trim();
}

const pair = (dir: string, base: string) => ({ certFile: join(dir, `${base}.crt`), keyFile: join(dir, `${base}.key`) });

async function openssl(args: string[], what: string): Promise<void> {
  try {
    await run('openssl', args);
  } catch (e) {
    throw internal(`openssl could not create ${what}: ${((e as { stderr?: string }).stderr || (e as Error).message).trim()}`);
  }
}

/**
 * Writes the key and certificate made in a private temp dir into place: the key with mode
 * 0600, then the certificate, each by rename (a reader never sees half a file).
 */
async function install(tmp: string, target: { certFile: string; keyFile: string }): Promise<void> {
  await chmod(join(tmp, 'key.pem'), 0o600);
  await rename(join(tmp, 'key.pem'), target.keyFile);
  await rename(join(tmp, 'cert.pem'), target.certFile);
}

function checkDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 36500) throw badRequest(`--days ${days}: must be a whole number of days from 1 to 36500`);
  return days;
}

/** A new CA in DIR (ca.crt, ca.key); kept when it exists, replaced only with force. */
export async function createCa(o: { dir: string; commonName?: string; days?: number; force?: boolean }): Promise<Issued> {
  const days = checkDays(o.days ?? 3650);
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const target = pair(o.dir, 'ca');
  const present = [target.certFile, target.keyFile].filter((f) => existsSync(f));
  if (present.length && !o.force) {
    if (present.length === 2) return { ...target, created: false };
    throw badRequest(`${present[0]} exists without its pair; remove it or pass --force to make a new CA`);
  }
  const tmp = await mkdtemp(join(o.dir, '.tmp-'));
  try {
    await openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', String(days),
      '-subj', `/CN=${subjectValue(o.commonName ?? 'berth-ca')}`,
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
      '-keyout', join(tmp, 'key.pem'), '-out', join(tmp, 'cert.pem'),
    ], `a CA in ${o.dir}`);
    await install(tmp, target);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { ...target, created: true };
}

function subjectValue(v: string): string {
  if (!v || /[/\\=+,\n]/.test(v) || v.length > 64) throw badRequest(`"${v}": a certificate name must be 1 to 64 characters without / \\ = + , or newlines`);
  return v;
}

/** The CA of DIR (ca.crt and ca.key), or a 400 saying how to make one. */
export function caIn(dir: string): CaFiles {
  const ca = pair(dir, 'ca');
  for (const f of [ca.certFile, ca.keyFile]) {
    if (!existsSync(f)) throw badRequest(`--ca ${dir}: no ${f}; make the CA first with \`berth certs ca --dir ${dir}\``);
  }
  return ca;
}

/** A certificate signed by the CA, for a server, a client or an etcd peer. */
export async function issueCertificate(r: IssueRequest): Promise<Issued> {
  const days = checkDays(r.days ?? 825);
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(r.base)) throw badRequest(`"${r.base}": a file name must be letters, digits, . _ : -`);
  subjectValue(r.commonName);
  for (const org of r.organizations ?? []) subjectValue(org);
  const names = r.names ?? [];
  if (r.role !== 'client' && names.length === 0) throw badRequest('--names: a serving certificate needs at least one IP address or DNS name');
  const san = sanEntries(names);
  await mkdir(r.dir, { recursive: true, mode: 0o700 });
  const target = pair(r.dir, r.base);
  const present = [target.certFile, target.keyFile].filter((f) => existsSync(f));
  if (present.length && !r.force) {
    if (present.length === 1) throw badRequest(`${present[0]} exists without its pair; remove it or pass --force`);
    const have = san.length ? await certificateNames(target.certFile) : [];
    const want = san.map(canonicalSan).sort();
    if (JSON.stringify(have) !== JSON.stringify(want)) {
      throw badRequest(`${target.certFile} exists for other names (${have.join(', ') || 'none'}); pass --force to replace it`);
    }
    return { ...target, created: false };
  }
  const tmp = await mkdtemp(join(r.dir, '.tmp-'));
  try {
    const ext = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${EKU[r.role]}`,
      ...(san.length ? [`subjectAltName=${san.join(',')}`] : []),
    ];
    await writeFile(join(tmp, 'ext.cnf'), ext.join('\n') + '\n');
    const subj = `/CN=${r.commonName}${(r.organizations ?? []).map((o) => `/O=${o}`).join('')}`;
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subj, '-keyout', join(tmp, 'key.pem'), '-out', join(tmp, 'req.csr')], `a key for ${r.base}`);
    await openssl([
      'x509', '-req', '-in', join(tmp, 'req.csr'), '-CA', r.ca.certFile, '-CAkey', r.ca.keyFile, '-CAcreateserial', '-CAserial', join(tmp, 'ca.srl'),
      '-days', String(days), '-sha256', '-extfile', join(tmp, 'ext.cnf'), '-out', join(tmp, 'cert.pem'),
    ], `the certificate ${target.certFile}`);
    await install(tmp, target);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { ...target, created: true };
}
