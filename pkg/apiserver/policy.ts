import type { FieldCause } from '../errors/errors.ts';

/**
 * IAM JSON policies (the identity-based policies of the ECS Developer Guide and of AWS IAM),
 * parsed and checked once at load, evaluated as IAM evaluates them:
 *
 *   1. every statement that applies to the request (its Action or NotAction matches the
 *      action, its Resource or NotResource matches the resource, all its Conditions hold)
 *      is found;
 *   2. if any of them is a Deny, the request is denied (an explicit deny wins over any
 *      Allow);
 *   3. otherwise, if any is an Allow, it is allowed;
 *   4. otherwise it is denied by default (an implicit deny).
 *
 * A request naming several resources (DescribeServices of three services) is allowed only
 * when each resource is; an explicit deny of any one denies it.
 *
 * Matching is IAM's: actions case-insensitively with `*` and `?`; resources (ARNs)
 * case-sensitively with `*` and `?` (a `*` may span `:` and `/`); condition keys
 * case-insensitively. An action that takes no resource type is requested on resource `*`,
 * which only a statement with `"Resource": "*"` (or a pattern matching it) covers, as in
 * IAM. Policy variables (`${aws:username}`, `${ecs:cluster}`, the escapes `${*}`, `${?}`,
 * `${$}`) are replaced in Resource and condition values when the policy's Version is
 * 2012-10-17; a variable the request does not carry makes the pattern match nothing.
 *
 * This file is pure: no I/O, no clock. The policy file, the mapping of requests to ECS
 * actions and the composition with berth's built-in groups live elsewhere (policyfile.ts,
 * actions.ts, authz.ts).
 */

export type Effect = 'Allow' | 'Deny';

/** One glob token: a literal character, `*` (any run) or `?` (any one character). */
type Token = string | 0 | 1;
const ANY = 0;
const ONE = 1;

/** A pattern as written, split into literal runs and `${var}` references (2012-10-17 only). */
type Part = { lit: string } | { ref: string } | { esc: string };
interface Pattern {
  source: string;
  parts: Part[];
}

type BaseOp =
  | 'StringEquals'
  | 'StringNotEquals'
  | 'StringEqualsIgnoreCase'
  | 'StringNotEqualsIgnoreCase'
  | 'StringLike'
  | 'StringNotLike'
  | 'ArnEquals'
  | 'ArnLike'
  | 'ArnNotEquals'
  | 'ArnNotLike'
  | 'Bool'
  | 'Null';

const BASE_OPS: ReadonlySet<string> = new Set<BaseOp>([
  'StringEquals',
  'StringNotEquals',
  'StringEqualsIgnoreCase',
  'StringNotEqualsIgnoreCase',
  'StringLike',
  'StringNotLike',
  'ArnEquals',
  'ArnLike',
  'ArnNotEquals',
  'ArnNotLike',
  'Bool',
  'Null',
]);
const NEGATED: ReadonlySet<BaseOp> = new Set<BaseOp>(['StringNotEquals', 'StringNotEqualsIgnoreCase', 'StringNotLike', 'ArnNotEquals', 'ArnNotLike']);

interface Condition {
  /** as written, e.g. `ForAnyValue:StringLikeIfExists` */
  operator: string;
  base: BaseOp;
  ifExists: boolean;
  set?: 'ForAnyValue' | 'ForAllValues';
  /** lower-case (condition keys are case-insensitive) */
  key: string;
  values: Pattern[];
}

export interface Statement {
  sid?: string;
  effect: Effect;
  notAction: boolean;
  actions: Token[][];
  notResource: boolean;
  resources: Pattern[];
  conditions: Condition[];
  /** where it was written, for reasons and can-i: `policy "RunInA" Statement[0] (Sid "Run")` */
  where: string;
}

export interface Policy {
  name: string;
  version: '2012-10-17' | '2008-10-17';
  statements: Statement[];
}

/** What is asked: an action on resources, with the request's condition keys. */
export interface AccessRequest {
  /** `service:Action`, e.g. `ecs:RunTask` */
  action: string;
  /** ARNs, or `*` for an action that takes no resource type; empty means `*` */
  resources: string[];
  /** condition keys (any case) to their values, e.g. `ecs:cluster` -> [cluster ARN] */
  context: Record<string, string[]>;
}

export interface Decision {
  effect: 'Allow' | 'Deny' | 'ImplicitDeny';
  /** the resource the decision is about: the first denied one, or the first one when allowed */
  resource: string;
  /** the statement that decided (an explicit Deny, or the Allow); absent for an implicit deny */
  statement?: string;
}

// ------------------------------------------------------------------------------ matching

function tokens(s: string): Token[] {
  const out: Token[] = [];
  for (const ch of s) out.push(ch === '*' ? ANY : ch === '?' ? ONE : ch);
  return out;
}

/**
 * Wildcard match without regular expressions (no backtracking blow-up whatever a policy
 * writer puts in): the classic two-pointer walk, O(pattern x text) at worst.
 */
function globTokens(p: Token[], text: string): boolean {
  const t = [...text];
  let pi = 0;
  let ti = 0;
  let star = -1;
  let mark = 0;
  while (ti < t.length) {
    const tok = p[pi];
    if (pi < p.length && tok !== ANY && (tok === ONE || tok === t[ti])) {
      pi++;
      ti++;
    } else if (pi < p.length && tok === ANY) {
      star = pi++;
      mark = ti;
    } else if (star >= 0) {
      pi = star + 1;
      ti = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === ANY) pi++;
  return pi === p.length;
}

export function glob(pattern: string, text: string, ignoreCase = false): boolean {
  return ignoreCase ? globTokens(tokens(pattern.toLowerCase()), text.toLowerCase()) : globTokens(tokens(pattern), text);
}

/** The ECS/IAM action pattern match: case-insensitive, `*` and `?`. */
export const actionMatches = (pattern: string, action: string) => glob(pattern, action, true);

function parsePattern(s: string, variables: boolean): Pattern {
  if (!variables || !s.includes('${')) return { source: s, parts: [{ lit: s }] };
  const parts: Part[] = [];
  let rest = s;
  for (;;) {
    const i = rest.indexOf('${');
    if (i < 0) break;
    const j = rest.indexOf('}', i);
    if (j < 0) break;
    if (i > 0) parts.push({ lit: rest.slice(0, i) });
    const inner = rest.slice(i + 2, j).trim();
    if (inner === '*' || inner === '?' || inner === '$') parts.push({ esc: inner });
    else parts.push({ ref: inner.toLowerCase() });
    rest = rest.slice(j + 1);
  }
  if (rest) parts.push({ lit: rest });
  return { source: s, parts };
}

/**
 * The pattern's tokens with variables replaced from the request (literal, never wildcards);
 * undefined when it references a key the request does not carry (or carries several values of).
 */
function resolve(p: Pattern, ctx: Context): Token[] | undefined {
  const out: Token[] = [];
  for (const part of p.parts) {
    if ('lit' in part) out.push(...tokens(part.lit));
    else if ('esc' in part) out.push(...part.esc);
    else {
      const v = ctx.get(part.ref);
      if (!v || v.length !== 1) return undefined;
      out.push(...v[0]);
    }
  }
  return out;
}

function literal(p: Pattern, ctx: Context): string | undefined {
  const t = resolve(p, ctx);
  return t?.map((x) => (x === ANY ? '*' : x === ONE ? '?' : x)).join('');
}

/** ArnLike/ArnEquals: each of the six `:`-separated parts matched on its own (wildcards allowed in each). */
function arnLike(pattern: Token[], value: string): boolean {
  const split = (toks: Token[]): Token[][] => {
    const parts: Token[][] = [[]];
    for (const t of toks) {
      if (t === ':' && parts.length < 6) parts.push([]);
      else parts[parts.length - 1].push(t);
    }
    return parts;
  };
  const pp = split(pattern);
  const vp = split(tokens(value)).map((x) => x.join(''));
  if (pp.length !== 6 || vp.length !== 6) return false;
  return pp.every((p, i) => globTokens(p, vp[i]));
}

type Context = Map<string, string[]>;

function valueMatches(c: Condition, value: string, ctx: Context): boolean {
  const positive = (() => {
    for (const pv of c.values) {
      switch (c.base) {
        case 'StringEquals':
        case 'StringNotEquals': {
          const l = literal(pv, ctx);
          if (l !== undefined && l === value) return true;
          break;
        }
        case 'StringEqualsIgnoreCase':
        case 'StringNotEqualsIgnoreCase': {
          const l = literal(pv, ctx);
          if (l !== undefined && l.toLowerCase() === value.toLowerCase()) return true;
          break;
        }
        case 'StringLike':
        case 'StringNotLike': {
          const t = resolve(pv, ctx);
          if (t && globTokens(t, value)) return true;
          break;
        }
        case 'ArnEquals':
        case 'ArnLike':
        case 'ArnNotEquals':
        case 'ArnNotLike': {
          const t = resolve(pv, ctx);
          if (t && arnLike(t, value)) return true;
          break;
        }
        case 'Bool': {
          const l = literal(pv, ctx);
          if (l !== undefined && l.toLowerCase() === value.toLowerCase()) return true;
          break;
        }
        case 'Null':
          break;
      }
    }
    return false;
  })();
  return NEGATED.has(c.base) ? !positive : positive;
}

function conditionHolds(c: Condition, ctx: Context): boolean {
  const values = ctx.get(c.key);
  const present = values !== undefined && values.length > 0;
  if (c.base === 'Null') {
    const want = c.values.map((v) => literal(v, ctx)?.toLowerCase());
    return want.some((w) => (w === 'true' ? !present : w === 'false' ? present : false));
  }
  if (!present) {
    if (c.ifExists) return true;
    if (c.set === 'ForAllValues') return true;
    if (c.set === 'ForAnyValue') return false;
    return NEGATED.has(c.base);
  }
  if (c.set === 'ForAllValues') return values.every((v) => valueMatches(c, v, ctx));
  if (c.set === 'ForAnyValue') return values.some((v) => valueMatches(c, v, ctx));
  // a plain operator on a key with several values: a positive operator holds when any value
  // matches, a negated one when none matches the positive form (as IAM reads it)
  return NEGATED.has(c.base) ? values.every((v) => valueMatches(c, v, ctx)) : values.some((v) => valueMatches(c, v, ctx));
}

function statementApplies(s: Statement, action: string, resource: string, ctx: Context): boolean {
  const a = s.actions.some((p) => globTokens(p, action));
  if (a === s.notAction) return false;
  const r = s.resources.some((p) => {
    const t = resolve(p, ctx);
    return t !== undefined && globTokens(t, resource);
  });
  if (r === s.notResource) return false;
  return s.conditions.every((c) => conditionHolds(c, ctx));
}

/** IAM's evaluation of identity-based policies (see the file comment). */
export function evaluate(policies: readonly Policy[], req: AccessRequest): Decision {
  const action = req.action.toLowerCase();
  const ctx: Context = new Map(Object.entries(req.context).map(([k, v]) => [k.toLowerCase(), v]));
  const resources = req.resources.length ? req.resources : ['*'];
  let implicit: string | undefined;
  let allowedBy: string | undefined;
  for (const resource of resources) {
    let allow: Statement | undefined;
    for (const p of policies) {
      for (const s of p.statements) {
        if (!statementApplies(s, action, resource, ctx)) continue;
        if (s.effect === 'Deny') return { effect: 'Deny', resource, statement: s.where };
        allow ??= s;
      }
    }
    if (!allow) implicit ??= resource;
    else allowedBy ??= allow.where;
  }
  if (implicit !== undefined) return { effect: 'ImplicitDeny', resource: implicit };
  return { effect: 'Allow', resource: resources[0], statement: allowedBy };
}

// ------------------------------------------------------------------------------- parsing

const STATEMENT_KEYS = new Set(['Sid', 'Effect', 'Action', 'NotAction', 'Resource', 'NotResource', 'Condition', 'Principal', 'NotPrincipal']);
const POLICY_KEYS = new Set(['Version', 'Id', 'Statement']);
const ACTION_RE = /^[A-Za-z0-9-]+:[A-Za-z0-9*?]+$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'a list' : v === null ? 'null' : typeof v);

/**
 * Parses and checks one policy document. Every problem is reported (not only the first),
 * each as a cause whose field names the policy, the statement (and its Sid) and the element,
 * e.g. `policies.RunInA.Statement[1].Effect`.
 */
export function parsePolicy(name: string, doc: unknown, at = `policies.${name}`): { policy?: Policy; causes: FieldCause[] } {
  const causes: FieldCause[] = [];
  const bad = (field: string, message: string) => causes.push({ field, message });
  if (!isObject(doc)) {
    bad(at, `must be a policy document (an object with Version and Statement), got ${show(doc)}`);
    return { causes };
  }
  for (const k of Object.keys(doc)) if (!POLICY_KEYS.has(k)) bad(`${at}.${k}`, 'unknown policy element (a policy has Version, Id and Statement)');
  let version: Policy['version'] = '2008-10-17';
  if (doc.Version !== undefined) {
    if (doc.Version === '2012-10-17' || doc.Version === '2008-10-17') version = doc.Version;
    else bad(`${at}.Version`, `must be "2012-10-17" (or the older "2008-10-17"), got ${show(doc.Version)}`);
  }
  if (doc.Id !== undefined && typeof doc.Id !== 'string') bad(`${at}.Id`, `must be a string, got ${show(doc.Id)}`);
  const raw = doc.Statement;
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  if (list.length === 0) bad(`${at}.Statement`, 'is required: a statement or a list of them');
  const statements: Statement[] = [];
  const sids = new Set<string>();
  list.forEach((st, i) => {
    const sat = `${at}.Statement[${i}]`;
    if (!isObject(st)) {
      bad(sat, `must be an object, got ${show(st)}`);
      return;
    }
    const sid = typeof st.Sid === 'string' ? st.Sid : undefined;
    const label = sid !== undefined ? ` (Sid ${JSON.stringify(sid)})` : '';
    const sbad = (el: string, message: string) => bad(`${sat}.${el}`, `${message}${label}`);
    for (const k of Object.keys(st)) {
      if (!STATEMENT_KEYS.has(k)) sbad(k, 'unknown statement element (Sid, Effect, Action, NotAction, Resource, NotResource, Condition)');
    }
    if (st.Sid !== undefined) {
      if (typeof st.Sid !== 'string' || !/^[A-Za-z0-9]*$/.test(st.Sid)) sbad('Sid', `must be letters and digits, got ${show(st.Sid)}`);
      else if (sids.has(st.Sid)) sbad('Sid', 'is used by another statement of this policy; Sids must be unique');
      else sids.add(st.Sid);
    }
    if (st.Principal !== undefined || st.NotPrincipal !== undefined) {
      const el = st.Principal !== undefined ? 'Principal' : 'NotPrincipal';
      sbad(el, 'is not allowed: berth policies are identity-based (attached to users and groups), which name no principal');
    }
    if (st.Effect !== 'Allow' && st.Effect !== 'Deny') sbad('Effect', `must be "Allow" or "Deny", got ${show(st.Effect)}`);
    const strings = (el: string, v: unknown): string[] | undefined => {
      const arr = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(arr) || arr.length === 0 || !arr.every((x) => typeof x === 'string' && x.length > 0)) {
        sbad(el, `must be a non-empty string or a non-empty list of them, got ${show(v)}`);
        return undefined;
      }
      return arr as string[];
    };
    const pair = (yes: string, no: string): { not: boolean; values?: string[] } => {
      if (st[yes] !== undefined && st[no] !== undefined) {
        sbad(no, `cannot be given together with ${yes}`);
        return { not: false };
      }
      if (st[yes] === undefined && st[no] === undefined) {
        sbad(yes, `is required (or ${no})`);
        return { not: false };
      }
      const not = st[yes] === undefined;
      return { not, values: strings(not ? no : yes, not ? st[no] : st[yes]) };
    };
    const act = pair('Action', 'NotAction');
    for (const a of act.values ?? []) {
      if (a === '*' || ACTION_RE.test(a)) continue;
      sbad(act.not ? 'NotAction' : 'Action', `${JSON.stringify(a)} is not an action: write service:Action, e.g. "ecs:RunTask" or "ecs:Describe*"`);
    }
    const res = pair('Resource', 'NotResource');
    for (const r of res.values ?? []) {
      if (r === '*' || r.startsWith('arn:')) continue;
      sbad(res.not ? 'NotResource' : 'Resource', `${JSON.stringify(r)} is not an ARN: write "*" or an ARN such as "arn:aws:ecs:REGION:ACCOUNT:cluster/NAME"`);
    }
    const conditions: Condition[] = [];
    if (st.Condition !== undefined) {
      if (!isObject(st.Condition)) sbad('Condition', `must be an object of operators, got ${show(st.Condition)}`);
      else {
        for (const [operator, block] of Object.entries(st.Condition)) {
          const m = /^(?:(ForAnyValue|ForAllValues):)?(.+?)(IfExists)?$/.exec(operator);
          const base = m?.[2] ?? '';
          if (!m || !BASE_OPS.has(base) || (base === 'Null' && (m[1] || m[3]))) {
            const known = `berth knows ${[...BASE_OPS].join(', ')}, with ...IfExists and ForAnyValue:/ForAllValues:`;
            sbad(`Condition.${operator}`, `unknown condition operator (${known})`);
            continue;
          }
          if (!isObject(block) || Object.keys(block).length === 0) {
            sbad(`Condition.${operator}`, `must be an object of condition keys to values, got ${show(block)}`);
            continue;
          }
          for (const [key, v] of Object.entries(block)) {
            const arr = Array.isArray(v) ? v : [v];
            if (arr.length === 0 || !arr.every((x) => typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean')) {
              sbad(`Condition.${operator}.${key}`, `must be a value or a non-empty list of values, got ${show(v)}`);
              continue;
            }
            if (!/^[A-Za-z0-9-]+:[A-Za-z0-9/_:.${}-]+$/.test(key)) {
              sbad(`Condition.${operator}.${key}`, 'is not a condition key: write service:key, e.g. "ecs:cluster"');
              continue;
            }
            conditions.push({
              operator,
              base: base as BaseOp,
              ifExists: m[3] === 'IfExists',
              set: m[1] as Condition['set'],
              key: key.toLowerCase(),
              values: arr.map((x) => parsePattern(String(x), version === '2012-10-17')),
            });
          }
        }
      }
    }
    statements.push({
      sid,
      effect: st.Effect as Effect,
      notAction: act.not,
      actions: (act.values ?? []).map((a) => tokens(a.toLowerCase())),
      notResource: res.not,
      resources: (res.values ?? []).map((r) => parsePattern(r, version === '2012-10-17')),
      conditions,
      where: `policy ${JSON.stringify(name)} Statement[${i}]${label}`,
    });
  });
  if (causes.length) return { causes };
  return { policy: { name, version, statements }, causes };
}
