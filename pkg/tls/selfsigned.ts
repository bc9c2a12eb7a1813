import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { internal } from '../errors/errors.ts';

const run = promisify(execFile);

export interface CertFiles {
  certFile: string;
  keyFile: string;
  /** PEM of the certificate (it is its own CA): goes into a kubeconfig's certificate-authority-data */
  certPem: string;
}

/**
 * A self-signed serving certificate for loopback (127.0.0.1, ::1, localhost), made once with
 * the openssl CLI and kept in `dir` (key mode 0600). kubectl sends bearer tokens only over
 * TLS (kubernetes/kubectl#744), so even the loopback dev server speaks HTTPS to it.
 */
export async function ensureSelfSignedCert(dir: string, extraNames: string[] = []): Promise<CertFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'serving.crt');
  const keyFile = join(dir, 'serving.key');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const san = ['IP:127.0.0.1', 'IP:::1', 'DNS:localhost', ...extraNames.map((n) => (/^[\d.:]+$/.test(n) ? `IP:${n}` : `DNS:${n}`))];
    try {
      await run('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-days', '3650', '-subj', '/CN=berth-apiserver', '-addext', `subjectAltName=${san.join(',')}`,
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-keyout', keyFile, '-out', certFile,
      ], { umask: 0o077 } as never);
    } catch (e) {
      throw internal(`could not create a self-signed certificate with openssl in ${dir}: ${(e as Error).message}`);
    }
  }
  return { certFile, keyFile, certPem: await readFile(certFile, 'utf8') };
}
