import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { badRequest, forbidden } from '../errors/errors.ts';
import { storeKey } from '../api/meta.ts';
import type { AccessRequest } from './policy.ts';
import type { WatchCache } from './watchcache.ts';

export interface Identity {
  user: string;
  uid?: string;
  groups: string[];
  /** node identities: the instance they are bound to */
  node?: { cluster: string; instance: string };
}

export const ADMINS = 'berth:admins';
export const VIEWERS = 'berth:viewers';
export const BOOTSTRAPPERS = 'berth:bootstrappers';
export const NODES = 'berth:nodes';

export interface TokenEntry {
  token: string;
  user: string;
  uid: string;
  groups: string[];
}

/**
 * The credential files' CSV: one record a line, `#` comments and blank lines skipped, a
 * quoted field may hold commas (`"group1,group2"`). Fields are returned as written.
 */
export function csvRecords(text: string): Array<{ line: number; cols: string[] }> {
  const out: Array<{ line: number; cols: string[] }> = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const l = raw.trim();
    if (!l || l.startsWith('#')) return;
    const cols: string[] = [];
    let cur = '';
    let quoted = false;
    for (const ch of l) {
      if (ch === '"') quoted = !quoted;
      else if (ch === ',' && !quoted) {
        cols.push(cur);
        cur = '';
      } else cur += ch;
    }
    cols.push(cur);
    out.push({ line: i + 1, cols });
  });
  return out;
}

/** One CSV line: `token,user,uid,"group1,group2"` (Kubernetes' static token file format). */
export function parseTokenFile(text: string, file = 'token file'): TokenEntry[] {
  const out: TokenEntry[] = [];
  for (const { line, cols } of csvRecords(text)) {
    if (cols.length < 3 || !cols[0] || !cols[1]) {
      throw badRequest(`${file} line ${line}: expected token,user,uid[,"group1,group2"]`);
    }
    out.push({ token: cols[0], user: cols[1], uid: cols[2], groups: (cols[3] ?? '').split(',').map((g) => g.trim()).filter(Boolean) });
  }
  return out;
}

export const loadTokenFile = (path: string) => parseTokenFile(readFileSync(path, 'utf8'), path);

export const hashToken = (t: string) => createHash('sha256').update(t).digest('hex');
export const newToken = () => randomBytes(24).toString('base64url');

/** Where node credentials live: only their hash is stored. */
export const credentialKey = (tokenHash: string) => storeKey('nodecredentials', undefined, tokenHash);

export interface NodeCredential {
  cluster: string;
  instance: string;
  createdAt: string;
}

/**
 * Bearer-token authentication: static tokens from the token file, plus node credentials
 * issued at registration (stored hashed, read through the watch cache so every apiserver
 * knows them).
 */
export class TokenAuthenticator {
  private readonly byHash = new Map<string, TokenEntry>();
  constructor(
    entries: TokenEntry[],
    private readonly cache: WatchCache,
  ) {
    for (const e of entries) this.byHash.set(hashToken(e.token), e);
  }

  authenticate(header: string | undefined): Identity | undefined {
    if (!header) return undefined;
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return undefined;
    const h = hashToken(m[1]);
    const e = this.byHash.get(h);
    if (e && timingSafeEqual(Buffer.from(hashToken(e.token)), Buffer.from(h))) {
      return { user: e.user, uid: e.uid, groups: e.groups };
    }
    const cred = this.cache.get(credentialKey(h)) as unknown as NodeCredential | undefined;
    if (cred) {
      return {
        user: `system:node:${cred.cluster}:${cred.instance}`,
        groups: [NODES],
        node: { cluster: cred.cluster, instance: cred.instance },
      };
    }
    return undefined;
  }
}

export interface RequestAttributes {
  verb: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'logs';
  /** the plural, or a non-resource path */
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** the request's field selector (node identities must scope lists/watches to themselves) */
  fieldSelector?: string;
  path: string;
  /**
   * the IAM action the request performs, when its face names one (the ECS face: the
   * operation's action and resources); the resource API's is derived from the attributes
   * above (actions.ts)
   */
  action?: AccessRequest;
  /** a create's object, as sent (the action of creating a task names its task definition) */
  object?: unknown;
}

/** The one pluggable authorization decision point. Throws Forbidden with a reason. */
export interface Authorizer {
  authorize(id: Identity, attrs: RequestAttributes): void;
}

const READS = new Set(['get', 'list', 'watch']);

/**
 * berth's built-in authorizer: admins everything, viewers read, bootstrappers register
 * instances, nodes only what is bound to their instance. (IAM-style policies plug in here
 * in the security issue.)
 */
export class DefaultAuthorizer implements Authorizer {
  constructor(private readonly cache: WatchCache) {}

  authorize(id: Identity, a: RequestAttributes): void {
    const deny = (why: string) => {
      throw forbidden(`${id.user} cannot ${a.verb} ${a.resource ?? a.path}${a.subresource ? '/' + a.subresource : ''}${a.name ? ` "${a.name}"` : ''}${a.namespace ? ` in cluster "${a.namespace}"` : ''}: ${why}`, { why });
    };
    if (id.groups.includes(ADMINS)) return;
    if (id.groups.includes(VIEWERS) && READS.has(a.verb)) return;
    if (!a.resource) {
      if (a.verb === 'get') return; // discovery, openapi, version
      return deny('not allowed');
    }
    if (id.groups.includes(BOOTSTRAPPERS)) {
      if (a.resource === 'containerinstances' && a.verb === 'create' && !a.subresource) return;
      if (a.resource === 'clusters' && a.verb === 'get') return;
    }
    if (id.node) return this.node(id.node, a, deny);
    deny('no rule allows it');
  }

  private node(n: { cluster: string; instance: string }, a: RequestAttributes, deny: (why: string) => never): void {
    if (a.namespace !== undefined && a.namespace !== n.cluster) deny(`a node of cluster "${n.cluster}" may not touch another cluster`);
    switch (a.resource) {
      case 'clusters':
        if (a.verb === 'get' && a.name === n.cluster) return;
        break;
      case 'containerinstances':
        if (a.name !== n.instance) deny('a node may only read and write its own container instance');
        if (READS.has(a.verb)) return;
        if ((a.verb === 'update' || a.verb === 'patch') && a.subresource === 'status') return;
        deny('a node may write only the status of its container instance');
        break;
      case 'tasks': {
        if (a.verb === 'list' || a.verb === 'watch') {
          const want = `spec.containerInstance=${n.instance}`;
          const sel = (a.fieldSelector ?? '').split(',').map((s) => s.trim().replace('==', '='));
          if (sel.includes(want)) return;
          deny(`a node must list and watch tasks with fieldSelector ${want}`);
        }
        const t = a.name ? this.cache.get(storeKey('tasks', n.cluster, a.name)) : undefined;
        const bound = (t as { spec?: { containerInstance?: string } } | undefined)?.spec?.containerInstance;
        if (bound !== n.instance) deny('the task is not bound to this node');
        if (a.verb === 'get' || a.verb === 'logs') return;
        if ((a.verb === 'update' || a.verb === 'patch') && a.subresource === 'status') return;
        deny('a node may write only the status of its tasks');
        break;
      }
      case 'taskdefinitions':
      case 'daemontaskdefinitions': {
        if (a.verb !== 'get' || !a.name) break;
        const field = a.resource === 'taskdefinitions' ? 'taskDefinition' : 'daemonTaskDefinition';
        const tasks = this.cache.list('tasks', n.cluster, { field: 'spec.containerInstance', value: n.instance });
        if (tasks.some(([, t]) => (t as { spec?: Record<string, string> }).spec?.[field] === a.name)) return;
        deny('no task bound to this node references it');
        break;
      }
    }
    deny('not allowed for a node identity');
  }
}

/** Dev mode (no token file): everyone is an admin. Loopback only, enforced by the caller. */
export class AllowAll implements Authorizer {
  authorize(): void {}
}
