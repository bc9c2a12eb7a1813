/**
 * The files `berth up` keeps in its home (`~/.berth`, mode 0700): the admin and bootstrap
 * tokens, the ECS access key, the serving certificate, and the two client files people use:
 * a kubeconfig (`~/.berth/config`, or $BERTH_CONFIG) and AWS shared credentials
 * (`~/.berth/aws-credentials`, profile `berth`). Made once, reused on every later `up`.
 * The apiserver's audit log (`~/.berth/audit.log`) grows there too.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { ADMINS, BOOTSTRAPPERS, newToken, parseTokenFile, type TokenEntry } from '../../apiserver/auth.ts';
import type { UpFiles } from './paths.ts';

export { upFiles, type UpFiles } from './paths.ts';

async function writePrivate(path: string, text: string) {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, text, { mode: 0o600 });
  await chmod(path, 0o600);
}

export interface Credentials {
  admin: TokenEntry;
  bootstrap: TokenEntry;
  tokens: TokenEntry[];
  accessKeyId: string;
  secretAccessKey: string;
}

/** The tokens and access key: read from the home when there, else generated and written. */
export async function ensureCredentials(f: UpFiles): Promise<Credentials> {
  await mkdir(f.home, { recursive: true, mode: 0o700 });
  let tokens: TokenEntry[];
  if (existsSync(f.tokenFile)) {
    tokens = parseTokenFile(await readFile(f.tokenFile, 'utf8'), f.tokenFile);
  } else {
    tokens = [
      { token: newToken(), user: 'admin', uid: '1', groups: [ADMINS] },
      { token: newToken(), user: 'bootstrap', uid: '2', groups: [BOOTSTRAPPERS] },
    ];
    await writePrivate(f.tokenFile, tokens.map((t) => `${t.token},${t.user},${t.uid},"${t.groups.join(',')}"`).join('\n') + '\n');
  }
  const admin = tokens.find((t) => t.groups.includes(ADMINS));
  const bootstrap = tokens.find((t) => t.groups.includes(BOOTSTRAPPERS));
  if (!admin || !bootstrap) throw new Error(`${f.tokenFile}: needs an admin (${ADMINS}) and a bootstrap (${BOOTSTRAPPERS}) token`);
  let accessKeyId: string;
  let secretAccessKey: string;
  if (existsSync(f.accessKeyFile)) {
    [accessKeyId, secretAccessKey] = (await readFile(f.accessKeyFile, 'utf8')).trim().split('\n')[0].split(',');
  } else {
    accessKeyId = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
    secretAccessKey = randomBytes(30).toString('base64url');
    await writePrivate(f.accessKeyFile, `${accessKeyId},${secretAccessKey},admin,"${ADMINS}"\n`);
  }
  return { admin, bootstrap, tokens, accessKeyId, secretAccessKey };
}

/** A kubeconfig both `berth` and `kubectl --kubeconfig` use (TLS: kubectl sends tokens only over TLS). */
export function kubeconfigText(server: string, caPem: string, token: string, namespace = 'default'): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'berth', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [{ name: 'berth-admin', user: { token } }],
    contexts: [{ name: 'berth', context: { cluster: 'berth', user: 'berth-admin', namespace } }],
    'current-context': 'berth',
  });
}

export const awsCredentialsText = (c: Credentials) => `[berth]\naws_access_key_id = ${c.accessKeyId}\naws_secret_access_key = ${c.secretAccessKey}\n`;

export async function writeClientFiles(f: UpFiles, c: Credentials, server: string, caPem: string) {
  await writePrivate(f.kubeconfig, kubeconfigText(server, caPem, c.admin.token));
  await writePrivate(f.awsCredentials, awsCredentialsText(c));
}
