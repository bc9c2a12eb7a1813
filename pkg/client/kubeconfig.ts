import { isAbsolute, join } from 'node:path';
import { parse } from 'yaml';
import { BerthError } from '../errors/errors.ts';

/**
 * The part of a kubeconfig the berth client uses (server, CA, bearer token, namespace of one
 * context), read without @kubernetes/client-node: loading that package costs a CLI start
 * about a second. Relative file paths in it are relative to the kubeconfig's directory, as
 * kubectl reads them. `opts.server` (--server) stands in for the cluster's server.
 */
export interface KubeconfigTarget {
  server: string;
  ca?: string;
  token?: string;
  insecureSkipTlsVerify?: boolean;
  namespace: string;
}

interface Named<T> {
  name?: string;
  [k: string]: T | string | undefined;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

export function resolveKubeconfig(text: string, dir: string, opts: { context?: string; server?: string; readFile: (path: string) => string }): KubeconfigTarget {
  let doc: any;
  try {
    doc = parse(text);
  } catch (e) {
    throw new BerthError('BadRequest', `the kubeconfig is not YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object') throw new BerthError('BadRequest', 'the kubeconfig is empty');
  const find = <T>(list: unknown, name: string | undefined, field: string): T | undefined => {
    if (!name || !Array.isArray(list)) return undefined;
    const e = (list as Array<Named<T>>).find((x) => x && x.name === name);
    return e?.[field] as T | undefined;
  };
  const contextName = opts.context ?? str(doc['current-context']);
  if (!contextName) throw new BerthError('BadRequest', 'the kubeconfig has no current-context: pass --context');
  const ctx = find<Record<string, unknown>>(doc.contexts, contextName, 'context');
  if (!ctx) throw new BerthError('BadRequest', `the kubeconfig has no context "${contextName}"`);
  const cluster = find<Record<string, unknown>>(doc.clusters, str(ctx.cluster), 'cluster') ?? {};
  const user = find<Record<string, unknown>>(doc.users, str(ctx.user), 'user') ?? {};
  const server = opts.server ?? str(cluster.server);
  if (!server) throw new BerthError('BadRequest', `the kubeconfig has no server for context "${contextName}"`);
  const file = (p: string) => opts.readFile(isAbsolute(p) ? p : join(dir, p));
  const caData = str(cluster['certificate-authority-data']);
  const caFile = str(cluster['certificate-authority']);
  const ca = caData ? Buffer.from(caData, 'base64').toString('utf8') : caFile ? file(caFile) : undefined;
  const tokenFile = str(user.tokenFile);
  const provider = user['auth-provider'] as { config?: Record<string, unknown> } | undefined;
  const token = str(user.token) ?? (tokenFile ? file(tokenFile).trim() : undefined) ?? str(provider?.config?.['access-token']);
  return { server, ca, token, insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true || undefined, namespace: str(ctx.namespace) ?? 'default' };
}
