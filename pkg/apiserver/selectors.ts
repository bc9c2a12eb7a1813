import { badRequest } from '../errors/errors.ts';
import { isUnsafeKey, ownValue } from '../api/safepath.ts';

/**
 * Kubernetes label and field selectors.
 * Labels: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, comma-joined (and).
 * Fields: `path=value`, `path==value`, `path!=value`, comma-joined; as in Kubernetes'
 * fields.ParseSelector a comma always separates requirements (parentheses mean nothing)
 * and `\,`, `\=` and `\\` escape inside a value. One parser for the list, the watch and the
 * authorizer (S2: the authorizer split on commas while the list kept `(,...,)` together).
 */

export type Requirement =
  | { key: string; op: 'eq' | 'neq'; values: [string] }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists'; values: [] };

export interface Selector {
  requirements: Requirement[];
  empty: boolean;
}

const MAX_SELECTOR = 4096;
const KEY_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** Splits on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x.length > 0);
}

export function parseLabelSelector(s: string | undefined | null): Selector {
  if (!s) return { requirements: [], empty: true };
  if (s.length > MAX_SELECTOR) throw badRequest(`labelSelector: longer than ${MAX_SELECTOR} characters`);
  const reqs: Requirement[] = [];
  for (const part of splitTop(s)) {
    let m: RegExpExecArray | null;
    if ((m = /^(\S+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(part))) {
      const values = m[3].split(',').map((v) => v.trim()).filter((v) => v !== '');
      checkKey(m[1], 'labelSelector');
      values.forEach((v) => checkValue(v, 'labelSelector'));
      reqs.push({ key: m[1], op: m[2] as 'in' | 'notin', values });
    } else if ((m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part))) {
      checkKey(m[1], 'labelSelector');
      checkValue(m[3], 'labelSelector');
      reqs.push({ key: m[1], op: m[2] === '!=' ? 'neq' : 'eq', values: [m[3]] });
    } else if ((m = /^!\s*(\S+)$/.exec(part))) {
      checkKey(m[1], 'labelSelector');
      reqs.push({ key: m[1], op: 'notexists', values: [] });
    } else if (/^\S+$/.test(part)) {
      checkKey(part, 'labelSelector');
      reqs.push({ key: part, op: 'exists', values: [] });
    } else {
      throw badRequest(`labelSelector: cannot parse "${part}"`);
    }
  }
  return { requirements: reqs, empty: reqs.length === 0 };
}

function checkKey(k: string, what: string) {
  if (isUnsafeKey(k)) throw badRequest(`${what}: "${k}" is not allowed as a label key`);
  if (!KEY_RE.test(k) || k.length > 317) throw badRequest(`${what}: "${k}" is not a valid label key`);
}
function checkValue(v: string, what: string) {
  if (!VALUE_RE.test(v)) throw badRequest(`${what}: "${v}" is not a valid label value`);
}

export function matchesLabels(sel: Selector, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  for (const r of sel.requirements) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        if (!has || v !== r.values[0]) return false;
        break;
      case 'neq':
        if (has && v === r.values[0]) return false;
        break;
      case 'in':
        if (!has || !r.values.includes(v)) return false;
        break;
      case 'notin':
        if (has && r.values.includes(v)) return false;
        break;
      case 'exists':
        if (!has) return false;
        break;
      case 'notexists':
        if (has) return false;
        break;
    }
  }
  return true;
}

export interface FieldRequirement {
  field: string;
  op: 'eq' | 'neq';
  value: string;
}

/** Splits a field selector on unescaped commas; `\\x` stays escaped for the requirement parser. */
function splitFields(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[++i];
    } else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x.length > 0);
}

const unescapeValue = (v: string) => v.replace(/\\(.)/g, '$1');

/** Parses a field selector; `allowed` are the fields this kind can select on. */
export function parseFieldSelector(s: string | undefined | null, allowed: readonly string[]): FieldRequirement[] {
  if (!s) return [];
  if (s.length > MAX_SELECTOR) throw badRequest(`fieldSelector: longer than ${MAX_SELECTOR} characters`);
  const out: FieldRequirement[] = [];
  for (const part of splitFields(s)) {
    const m = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw badRequest(`fieldSelector: cannot parse "${part}"`);
    const field = m[1];
    if (!['metadata.name', 'metadata.namespace', ...allowed].includes(field)) {
      throw badRequest(
        `fieldSelector: "${field}" is not a supported field selector; use one of metadata.name, metadata.namespace${allowed.length ? ', ' + allowed.join(', ') : ''}`,
      );
    }
    const value = m[3];
    if (/[=!]/.test(value.replace(/\\./g, ''))) {
      throw badRequest(`fieldSelector: cannot parse "${part}": a value may not hold an unescaped "=" or "!"`);
    }
    out.push({ field, op: m[2] === '!=' ? 'neq' : 'eq', value: unescapeValue(value) });
  }
  return out;
}

/** The string value of a dotted field path, as field selectors compare it ('' when absent); own keys only. */
export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || isUnsafeKey(p)) return '';
    cur = ownValue(cur, p);
  }
  if (cur === undefined || cur === null) return '';
  return String(cur);
}

export function matchesFields(reqs: FieldRequirement[], obj: unknown): boolean {
  for (const r of reqs) {
    const v = fieldValue(obj, r.field);
    if (r.op === 'eq' ? v !== r.value : v === r.value) return false;
  }
  return true;
}
