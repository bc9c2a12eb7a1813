import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { badRequest } from '../errors/errors.ts';
import { EmbeddedStore } from './embedded.ts';
import { EtcdStore } from './etcd.ts';
import type { Store } from './store.ts';

/** TLS to etcd, as kube-apiserver's `--etcd-cafile/--etcd-certfile/--etcd-keyfile` (PEM files). */
export interface EtcdTlsFiles {
  /** the CA that signed the members' serving certificates (default: the system roots) */
  caFile?: string;
  /** a client certificate and its key, for members started with --client-cert-auth */
  certFile?: string;
  keyFile?: string;
}

/** The etcd3 `credentials` from the files: read once, every problem named by its flag. */
export function etcdCredentials(t: EtcdTlsFiles): { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer } | undefined {
  if (!t.caFile && !t.certFile && !t.keyFile) return undefined;
  if (!!t.certFile !== !!t.keyFile) throw badRequest('--etcd-certfile and --etcd-keyfile go together');
  const read = (flag: string, file: string, want: RegExp) => {
    let b: Buffer;
    try {
      b = readFileSync(file);
    } catch (e) {
      throw badRequest(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    if (!want.test(b.toString('latin1'))) throw badRequest(`${flag} ${file}: not a PEM ${want.source.includes('KEY') ? 'private key' : 'certificate'}`);
    return b;
  };
  const cert = /-----BEGIN CERTIFICATE-----/;
  const key = /-----BEGIN (?:EC |RSA )?PRIVATE KEY-----/;
  // without --etcd-cafile the system roots verify the members, as for any TLS client
  const rootCertificate = t.caFile ? read('--etcd-cafile', t.caFile, cert) : Buffer.from(rootCertificates.join('\n'));
  return {
    rootCertificate,
    ...(t.certFile ? { certChain: read('--etcd-certfile', t.certFile, cert), privateKey: read('--etcd-keyfile', t.keyFile!, key) } : {}),
  };
}

/**
 * Opens a store from its spec, as given to `--store`:
 * - `embedded:PATH`: SQLite in the directory PATH (created if missing)
 * - `etcd://host:port[,host:port...]` (or `etcd+https://...` for TLS endpoints; `tls` gives
 *   the CA and the client certificate, and needs etcd+https)
 */
export async function openStore(spec: string, opts: { tls?: EtcdTlsFiles } = {}): Promise<Store> {
  if (spec.startsWith('embedded:')) {
    const dir = spec.slice('embedded:'.length);
    if (!dir) throw badRequest(`--store ${JSON.stringify(spec)}: embedded:PATH needs a directory`);
    return EmbeddedStore.open(dir);
  }
  const m = /^etcd(\+https)?:\/\/(.+)$/.exec(spec);
  if (m) {
    const credentials = opts.tls ? etcdCredentials(opts.tls) : undefined;
    if (credentials && !m[1]) throw badRequest(`--store ${JSON.stringify(spec)}: --etcd-cafile/--etcd-certfile are for TLS endpoints; write etcd+https://...`);
    const scheme = m[1] ? 'https' : 'http';
    const hosts = m[2].split(',').map((h) => h.trim());
    for (const h of hosts) {
      if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(h)) {
        throw badRequest(`--store ${JSON.stringify(spec)}: "${h}" is not host:port`);
      }
    }
    const store = new EtcdStore({ hosts: hosts.map((h) => `${scheme}://${h}`), credentials });
    try {
      await store.currentRevision();
    } catch (e) {
      await store.close();
      throw badRequest(`--store ${JSON.stringify(spec)}: cannot reach etcd: ${(e as Error).message}`);
    }
    return store;
  }
  throw badRequest(
    `--store ${JSON.stringify(spec)}: expected embedded:PATH or etcd://host:port[,host:port...]`,
  );
}
