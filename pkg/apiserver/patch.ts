import { badRequest, invalid } from '../errors/errors.ts';
import { findUnsafeKey, isPlainObject as isObj, isUnsafeKey, ownValue, unsafeKeyMessage } from '../api/safepath.ts';

type Json = unknown;

/**
 * RFC 7386 JSON merge patch. A key that could reach a prototype (`__proto__`,
 * `constructor`, `prototype`) anywhere in the patch is refused before anything is applied
 * (S1), and the target is read by own keys only.
 */
export function mergePatch(target: Json, patch: Json): Json {
  const bad = findUnsafeKey(patch);
  if (bad) throw badRequest(unsafeKeyMessage(bad, 'the merge patch'));
  return merge(target, patch);
}

function merge(target: Json, patch: Json): Json {
  if (!isObj(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = merge(ownValue(out, k), v);
  }
  return out;
}

interface Operation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

/**
 * An RFC 6901 pointer as tokens; a token that could reach a prototype is refused here, so
 * no walker below ever sees one (S1).
 */
function parsePointer(p: string, field: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw badRequest(`${field}: "${p}" is not a JSON pointer (it must start with "/")`);
  const tokens = p
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const bad = tokens.find(isUnsafeKey);
  if (bad !== undefined) throw badRequest(`${field}: the path "${p}" holds the token "${bad}"; the tokens __proto__, constructor and prototype are not allowed`);
  return tokens;
}

/** One step of a walk: array elements by index, object members by own key only. */
function step(cur: unknown, t: string): unknown {
  if (Array.isArray(cur)) return /^(0|[1-9][0-9]*)$/.test(t) ? cur[Number(t)] : undefined;
  return isObj(cur) ? ownValue(cur, t) : undefined;
}

function parent(doc: unknown, tokens: string[], path: string): [unknown, string] {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    cur = step(cur, t);
    if (cur === undefined) throw invalid('patch', '', [{ field: path, message: `path "${path}" does not exist` }]);
  }
  return [cur, tokens[tokens.length - 1]];
}

function get(doc: unknown, tokens: string[], path: string): unknown {
  let cur = doc;
  for (const t of tokens) {
    cur = step(cur, t);
    if (cur === undefined) throw invalid('patch', '', [{ field: path, message: `path "${path}" does not exist` }]);
  }
  return cur;
}

function arrayIndex(arr: unknown[], t: string, path: string, forAdd: boolean): number {
  if (forAdd && t === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(t)) throw invalid('patch', '', [{ field: path, message: `"${t}" is not an array index` }]);
  const i = Number(t);
  if (i > arr.length || (!forAdd && i >= arr.length)) throw invalid('patch', '', [{ field: path, message: `index ${i} is out of range` }]);
  return i;
}

function add(doc: unknown, tokens: string[], value: unknown, path: string): unknown {
  if (tokens.length === 0) return value;
  const [p, last] = parent(doc, tokens, path);
  if (Array.isArray(p)) p.splice(arrayIndex(p, last, path, true), 0, value);
  else if (isObj(p)) p[last] = value;
  else throw invalid('patch', '', [{ field: path, message: `cannot add at "${path}"` }]);
  return doc;
}

function remove(doc: unknown, tokens: string[], path: string): unknown {
  if (tokens.length === 0) throw invalid('patch', '', [{ field: path, message: 'cannot remove the whole document' }]);
  const [p, last] = parent(doc, tokens, path);
  if (Array.isArray(p)) p.splice(arrayIndex(p, last, path, false), 1);
  else if (isObj(p) && Object.hasOwn(p, last)) delete p[last];
  else throw invalid('patch', '', [{ field: path, message: `path "${path}" does not exist` }]);
  return doc;
}

const deepEqual = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** RFC 6902 JSON patch; a failing `test` or a bad path is an error and changes nothing. */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw badRequest('a JSON patch must be an array of operations');
  let doc = structuredClone(target);
  ops.forEach((raw, i) => {
    const o = raw as Operation;
    const field = `patch[${i}]`;
    if (!isObj(o) || typeof o.op !== 'string' || typeof o.path !== 'string') {
      throw badRequest(`${field}: each operation needs "op" and "path"`);
    }
    const tokens = parsePointer(o.path, `${field}.path`);
    const badValue = findUnsafeKey(o.value);
    if (badValue) throw badRequest(unsafeKeyMessage(badValue, `${field}.value`));
    switch (o.op) {
      case 'add':
        doc = add(doc, tokens, structuredClone(o.value), o.path);
        break;
      case 'remove':
        doc = remove(doc, tokens, o.path);
        break;
      case 'replace':
        get(doc, tokens, o.path);
        doc = tokens.length === 0 ? structuredClone(o.value) : add(remove(doc, tokens, o.path), tokens, structuredClone(o.value), o.path);
        break;
      case 'move': {
        if (typeof o.from !== 'string') throw badRequest(`${field}: move needs "from"`);
        const from = parsePointer(o.from, `${field}.from`);
        const v = get(doc, from, o.from);
        doc = add(remove(doc, from, o.from), tokens, v, o.path);
        break;
      }
      case 'copy': {
        if (typeof o.from !== 'string') throw badRequest(`${field}: copy needs "from"`);
        const v = structuredClone(get(doc, parsePointer(o.from, `${field}.from`), o.from));
        doc = add(doc, tokens, v, o.path);
        break;
      }
      case 'test':
        if (!deepEqual(get(doc, tokens, o.path), o.value)) {
          throw invalid('patch', '', [{ field: o.path, message: `test failed: the value at "${o.path}" differs` }]);
        }
        break;
      default:
        throw badRequest(`${field}: unknown op "${String((o as { op: unknown }).op)}"`);
    }
  });
  return doc;
}

/**
 * Does a write's body set `spec.<field>` (a PUT's body or a merge patch names it; a JSON
 * patch writes to it or to the whole spec), and to what, as given: what the request names,
 * as an ECS call names a member (UpdateService's `taskDefinition`). A body of the wrong shape
 * sets nothing here; the write refuses it.
 */
export function specFieldSet(type: 'put' | 'merge' | 'json', body: unknown, field: string): { set: boolean; value?: unknown } {
  if (type !== 'json') {
    const spec = isObj(body) ? ownValue(body, 'spec') : undefined;
    return isObj(spec) && Object.hasOwn(spec, field) ? { set: true, value: spec[field] } : { set: false };
  }
  if (!Array.isArray(body)) return { set: false };
  let out: { set: boolean; value?: unknown } = { set: false };
  const at = (p: unknown) => (typeof p === 'string' ? p.split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')) : []);
  for (const op of body as Operation[]) {
    if (!isObj(op) || op.op === 'test') continue;
    const t = at(op.path);
    const whole = t.length === 1 && t[0] === '';
    const atSpec = t.length === 2 && t[0] === '' && t[1] === 'spec';
    // the value an op writes, when it says (a move or copy takes it from elsewhere)
    const written = op.op === 'add' || op.op === 'replace' ? op.value : undefined;
    if (t.length === 3 && t[0] === '' && t[1] === 'spec' && t[2] === field) out = { set: true, value: written };
    else if (whole || atSpec) {
      // the whole spec (or document) written: the field is what it holds
      const spec = whole ? (isObj(written) ? ownValue(written, 'spec') : undefined) : written;
      out = { set: true, value: isObj(spec) ? ownValue(spec, field) : undefined };
    }
  }
  return out;
}
