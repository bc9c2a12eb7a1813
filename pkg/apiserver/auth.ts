import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { badRequest, forbidden, unauthorized } from '../errors/errors.ts';
import { storeKey } from '../api/meta.ts';
import { taskRevision } from '../api/resources.ts';
import type { Task } from '../api/kinds.ts';
import { BOOTSTRAP_TOKEN_RE, bootstrapTokenKey, type BootstrapTokenRecord } from './bootstraptokens.ts';
import type { FieldRequirement } from './selectors.ts';
import type { AccessRequest } from './policy.ts';
import type { WatchCache } from './watchcache.ts';
import { candidateNames, referencedNames } from '../secrets/refs.ts';

export interface Identity {
  user: string;
  uid?: string;
  groups: string[];
  /** node identities: the instance they are bound to */
  node?: { cluster: string; instance: string };
  /** bootstrap tokens (`berth token create`): the one cluster they may register instances in */
  bootstrap?: { tokenId: string; cluster: string };
}

export const ADMINS = 'berth:admins';
export const VIEWERS = 'berth:viewers';
export const BOOTSTRAPPERS = 'berth:bootstrappers';
export const NODES = 'berth:nodes';
/** may read /metrics (besides admins) */
export const METRICS = 'berth:metrics';

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
/** instance -> the hash of its credential, so deregistration can revoke it (S4) */
export const credentialIndexKey = (cluster: string, instance: string) => storeKey('nodecredentials.byinstance', cluster, instance);

export interface NodeCredential {
  cluster: string;
  instance: string;
  createdAt: string;
}

/**
 * Bearer-token authentication: static tokens from the token file, bootstrap tokens
 * (`ID.SECRET`, created with `berth token create`, scoped to a cluster, optionally
 * expiring), and node credentials issued at registration (revoked at deregistration). The
 * last two are stored hashed and read through the watch cache, so every apiserver knows
 * them.
 */
export class TokenAuthenticator {
  private readonly byHash = new Map<string, TokenEntry>();
  /** more bearer tokens (the console's sessions), asked after the static tokens */
  private readonly sources: Array<(token: string) => Identity | undefined> = [];
  constructor(
    entries: TokenEntry[],
    private readonly cache: WatchCache,
    private readonly now: () => number = Date.now,
  ) {
    for (const e of entries) this.byHash.set(hashToken(e.token), e);
  }

  /** The caller, or undefined when the header carries no known token; throws Unauthorized for an expired bootstrap token. */
  authenticate(header: string | undefined): Identity | undefined {
    if (!header) return undefined;
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return undefined;
    const h = hashToken(m[1]);
    const e = this.byHash.get(h);
    if (e) return { user: e.user, uid: e.uid, groups: e.groups };
    for (const source of this.sources) {
      const id = source(m[1]);
      if (id) return id;
    }
    const bt = BOOTSTRAP_TOKEN_RE.exec(m[1]);
    if (bt) return this.bootstrapToken(bt[1], bt[2]);
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

  /** accept the tokens another part issues (the console's sessions) */
  addSource(source: (token: string) => Identity | undefined): void {
    this.sources.push(source);
  }

  private bootstrapToken(id: string, secret: string): Identity | undefined {
    const rec = this.cache.get(bootstrapTokenKey(id)) as BootstrapTokenRecord | undefined;
    if (!rec) return undefined;
    const want = Buffer.from(rec.secretHash, 'hex');
    const got = Buffer.from(hashToken(secret), 'hex');
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    if (rec.expiration && Date.parse(rec.expiration) <= this.now()) throw unauthorized(`Unauthorized: bootstrap token "${id}" expired at ${rec.expiration}`);
    return { user: `system:bootstrap:${id}`, groups: [BOOTSTRAPPERS], bootstrap: { tokenId: id, cluster: rec.cluster } };
  }
}

export interface RequestAttributes {
  verb: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'logs';
  /** the plural, or a non-resource path */
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** the request's field selector as given (for messages and audit) */
  fieldSelector?: string;
  /**
   * the field selector as the list or watch will run it, parsed once by the server (S2:
   * authorization decides on what runs, never on a second reading of the string)
   */
  fieldRequirements?: FieldRequirement[];
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
/** resources only admins read (viewers read every kind, not these) */
const ADMIN_ONLY = new Set(['bootstraptokens']);

/**
 * berth's built-in authorizer: admins everything, viewers read, `/metrics` for admins and
 * the metrics group (S8), bootstrappers register instances (a bootstrap token only in its
 * cluster: S7), nodes only what is bound to their instance (S2). Policies compose with it.
 */
export class DefaultAuthorizer implements Authorizer {
  constructor(private readonly cache: WatchCache) {}

  authorize(id: Identity, a: RequestAttributes): void {
    const deny = (why: string) => {
      throw forbidden(`${id.user} cannot ${a.verb} ${a.resource ?? a.path}${a.subresource ? '/' + a.subresource : ''}${a.name ? ` "${a.name}"` : ''}${a.namespace ? ` in cluster "${a.namespace}"` : ''}: ${why}`, { why });
    };
    if (id.groups.includes(ADMINS)) return;
    if (!a.resource && a.path === '/metrics') {
      if (a.verb === 'get' && id.groups.includes(METRICS)) return;
      return deny(`metrics are for ${ADMINS} and ${METRICS}`);
    }
    if (id.groups.includes(VIEWERS) && READS.has(a.verb) && !(a.resource && ADMIN_ONLY.has(a.resource)) && !revealsSecret(a)) return;
    if (!a.resource) {
      if (a.verb === 'get') return; // discovery, openapi, version
      return deny('not allowed');
    }
    if (id.groups.includes(BOOTSTRAPPERS)) {
      const scope = id.bootstrap?.cluster;
      if (a.resource === 'containerinstances' && a.verb === 'create' && !a.subresource) {
        if (scope === undefined || a.namespace === scope) return;
        return deny(`bootstrap token "${id.bootstrap!.tokenId}" registers instances only in cluster "${scope}"`);
      }
      if (a.resource === 'clusters' && a.verb === 'get' && (scope === undefined || a.name === scope)) return;
      // an agent whose node credential was refused asks whether its instance still exists (a
      // 404 means it was deregistered, and it may register anew): one named instance, no list
      if (a.resource === 'containerinstances' && a.verb === 'get' && a.name && !a.subresource && (scope === undefined || a.namespace === scope)) return;
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
        if (a.verb === 'get') return;
        if ((a.verb === 'update' || a.verb === 'patch') && a.subresource === 'status') return;
        deny('a node may write only the status of its container instance');
        break;
      case 'instanceleases':
        // its heartbeat: node restriction checks the name and holder of what it creates
        if (a.name !== undefined && a.name !== n.instance) deny('a node may only read and renew the lease of its own container instance');
        if (a.subresource) deny('a node writes only the spec of its instance lease');
        if (a.verb === 'create' || (a.name && (a.verb === 'get' || a.verb === 'update' || a.verb === 'patch'))) return;
        deny('a node may only create, read and renew the lease of its own container instance');
        break;
      case 'tasks': {
        if (a.verb === 'list' || a.verb === 'watch') {
          const want = `spec.containerInstance=${n.instance}`;
          if (a.namespace !== n.cluster) deny(`a node lists and watches tasks only in its cluster "${n.cluster}", with fieldSelector ${want}`);
          const onInstance = (a.fieldRequirements ?? []).filter((r) => r.field === 'spec.containerInstance');
          if (onInstance.length === 1 && onInstance[0].op === 'eq' && onInstance[0].value === n.instance) return;
          deny(`a node must list and watch tasks with exactly one requirement on spec.containerInstance: ${want}`);
        }
        if (a.verb === 'logs') deny('a node does not read logs through the apiserver');
        const t = a.name ? this.cache.get(storeKey('tasks', n.cluster, a.name)) : undefined;
        const bound = (t as { spec?: { containerInstance?: string } } | undefined)?.spec?.containerInstance;
        if (bound !== n.instance) deny('the task is not bound to this node');
        if (a.verb === 'get') return;
        if ((a.verb === 'update' || a.verb === 'patch') && a.subresource === 'status') return;
        deny('a node may write only the status of its tasks');
        break;
      }
      case 'secrets': {
        // the values of the secrets a task bound to this node references, one by one: no list,
        // no watch, no secret another node's task needs
        if (a.verb !== 'get' || a.subresource !== 'value' || !a.name) break;
        if (this.boundSecretNames(n).has(a.name)) return;
        deny('no task bound to this node references this secret');
        break;
      }
      case 'taskdefinitions':
      case 'daemontaskdefinitions': {
        if (a.verb !== 'get' || !a.name) break;
        // the revision a bound task runs (status.taskDefinition: its spec may name the family)
        const daemon = a.resource === 'daemontaskdefinitions';
        const tasks = this.cache.list('tasks', n.cluster, { field: 'spec.containerInstance', value: n.instance });
        if (tasks.some(([, o]) => {
          const t = o as unknown as Task;
          return !!t.spec && (t.spec.daemonTaskDefinition !== undefined) === daemon && taskRevision(t) === a.name;
        })) return;
        deny('no task bound to this node references it');
        break;
      }
      case 'endpoints':
        // service discovery: the agent answers its containers' DNS queries for the services of its own cluster
        if (a.namespace !== n.cluster) deny(`a node reads endpoints only in its cluster "${n.cluster}"`);
        if (READS.has(a.verb) && !a.subresource) return;
        deny('a node only reads endpoints');
        break;
    }
    deny('not allowed for a node identity');
  }

  /** the berth names of every secret the tasks bound to this node reference (through their task definitions) */
  private boundSecretNames(n: { cluster: string; instance: string }): Set<string> {
    const out = new Set<string>();
    for (const [, t] of this.cache.list('tasks', n.cluster, { field: 'spec.containerInstance', value: n.instance })) {
      const task = t as unknown as Task;
      const td = task.spec?.taskDefinition ? this.cache.get(storeKey(task.spec.daemonTaskDefinition ? 'daemontaskdefinitions' : 'taskdefinitions', undefined, taskRevision(task))) : undefined;
      for (const name of referencedNames((td as { spec?: Parameters<typeof referencedNames>[0] } | undefined)?.spec)) {
        for (const c of candidateNames(name)) out.add(c);
      }
    }
    return out;
  }
}

/** reading a secret's clear values (or re-encrypting them): admins, and a node for its tasks' secrets */
const revealsSecret = (a: RequestAttributes) => a.resource === 'secrets' && (a.subresource === 'value' || a.subresource === 'reencrypt');

/** Dev mode (no token file): everyone is an admin. Loopback only, enforced by the caller. */
export class AllowAll implements Authorizer {
  authorize(): void {}
}
