import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { invalid, type FieldCause } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';
import { parsePolicy, type Policy } from './policy.ts';

/**
 * The policy file (`--policy-file`, JSON or YAML): named IAM policy documents, and which
 * users and groups they are attached to.
 *
 *     policies:
 *       RunInA: { Version: "2012-10-17", Statement: [ ... ] }
 *       ReadAll: { ... }
 *     users:
 *       alice: [RunInA]
 *     groups:
 *       ops: [ReadAll, RunInA]
 *
 * A user's policies are those attached to the user name and to each of its groups (the
 * groups of its token or access key, berth's built-in groups included). The whole file is
 * checked at load; a problem names the policy, statement and element.
 */

export interface Attachable {
  user: string;
  groups: readonly string[];
}

const TOP_KEYS = new Set(['policies', 'users', 'groups']);

/** Parsed policies and attachments; the policies that apply to an identity, memoized. */
export class PolicySet {
  static readonly EMPTY = new PolicySet(new Map(), new Map(), new Map());
  private readonly memo = new Map<string, Policy[]>();
  constructor(
    readonly policies: ReadonlyMap<string, Policy>,
    private readonly users: ReadonlyMap<string, string[]>,
    private readonly groups: ReadonlyMap<string, string[]>,
  ) {}

  get size() {
    return this.policies.size;
  }

  /** the policies attached to the user and its groups, each once, in file order */
  forIdentity(id: Attachable): Policy[] {
    const key = `${id.user}\u0000${id.groups.join('\u0000')}`;
    let out = this.memo.get(key);
    if (out) return out;
    const names = new Set([...(this.users.get(id.user) ?? []), ...id.groups.flatMap((g) => this.groups.get(g) ?? [])]);
    out = [...this.policies.values()].filter((p) => names.has(p.name));
    if (this.memo.size > 10_000) this.memo.clear();
    this.memo.set(key, out);
    return out;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses and checks a policy file's text; throws Invalid naming every problem. */
export function parsePolicyFile(text: string, file = 'policy file'): PolicySet {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw invalid('PolicyFile', file, [{ field: '(file)', message: `is neither JSON nor YAML: ${(e as Error).message}` }]);
  }
  const causes: FieldCause[] = [];
  if (!isObject(doc)) throw invalid('PolicyFile', file, [{ field: '(file)', message: 'must be a mapping with policies, users and groups' }]);
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k)) causes.push({ field: k, message: 'unknown key (a policy file has policies, users and groups)' });
  const policies = new Map<string, Policy>();
  if (doc.policies !== undefined && !isObject(doc.policies)) causes.push({ field: 'policies', message: 'must map policy names to IAM policy documents' });
  for (const [name, body] of Object.entries(isObject(doc.policies) ? doc.policies : {})) {
    if (!/^[\w+=,.@-]{1,128}$/.test(name)) {
      causes.push({ field: `policies.${name}`, message: 'a policy name is 1-128 letters, digits and +=,.@_-' });
      continue;
    }
    const r = parsePolicy(name, body);
    causes.push(...r.causes);
    if (r.policy) policies.set(name, r.policy);
  }
  const attach = (what: 'users' | 'groups') => {
    const out = new Map<string, string[]>();
    const v = doc[what];
    if (v === undefined) return out;
    if (!isObject(v)) {
      causes.push({ field: what, message: `must map ${what === 'users' ? 'user' : 'group'} names to lists of policy names` });
      return out;
    }
    for (const [who, list] of Object.entries(v)) {
      const names = typeof list === 'string' ? [list] : list;
      if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
        causes.push({ field: `${what}.${who}`, message: 'must be a list of policy names' });
        continue;
      }
      names.forEach((n, i) => {
        const known = isObject(doc.policies) && Object.hasOwn(doc.policies, n);
        if (!known) causes.push({ field: `${what}.${who}[${i}]`, message: `policy ${JSON.stringify(n)} is not defined under policies` });
      });
      out.set(who, names as string[]);
    }
    return out;
  };
  const users = attach('users');
  const groups = attach('groups');
  if (causes.length) throw invalid('PolicyFile', file, causes);
  return new PolicySet(policies, users, groups);
}

export const loadPolicyFile = (path: string) => parsePolicyFile(readFileSync(path, 'utf8'), path);

/** Where the authorizer gets the policies in force. */
export interface PolicySource {
  current(): PolicySet;
}

export const NO_POLICIES: PolicySource = { current: () => PolicySet.EMPTY };

/**
 * A policy file kept current: loaded at start (a broken file fails the start, naming the
 * problem), then re-read when it changes (its size or mtime, polled, so an editor's
 * rename-into-place is seen too; a short debounce lets a writer finish). A broken new
 * version keeps the policies in force and logs the error; the next good version replaces them.
 */
export class PolicyFile implements PolicySource {
  private set: PolicySet;
  private digest: string;
  private timer?: NodeJS.Timeout;
  private watching = false;

  constructor(
    readonly path: string,
    private readonly log: Logger,
    private readonly opts: { intervalMs?: number; debounceMs?: number } = {},
  ) {
    const text = readFileSync(path, 'utf8');
    this.set = parsePolicyFile(text, path);
    this.digest = hash(text);
  }

  current(): PolicySet {
    return this.set;
  }

  start(): this {
    if (this.watching) return this;
    this.watching = true;
    watchFile(this.path, { interval: this.opts.intervalMs ?? 1000, persistent: false }, this.onChange);
    this.log.info({ file: this.path, policies: this.set.size }, 'policies loaded');
    return this;
  }

  private readonly onChange = (cur: Stats, prev: Stats) => {
    if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload(), this.opts.debounceMs ?? 100);
    this.timer.unref();
  };

  /** Re-reads the file now; true when new policies are in force. */
  reload(): boolean {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      this.log.error({ file: this.path, err: (e as Error).message }, 'policy file unreadable; the policies in force stay');
      return false;
    }
    const d = hash(text);
    if (d === this.digest) return false;
    try {
      this.set = parsePolicyFile(text, this.path);
      this.digest = d;
      this.log.info({ file: this.path, policies: this.set.size }, 'policies reloaded');
      return true;
    } catch (e) {
      this.log.error({ file: this.path, err: (e as Error).message }, 'policy file rejected; the policies in force stay');
      return false;
    }
  }

  stop() {
    clearTimeout(this.timer);
    if (this.watching) unwatchFile(this.path, this.onChange);
    this.watching = false;
  }
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex');
