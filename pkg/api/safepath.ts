/**
 * The one place that decides which client-supplied keys and path tokens may be applied to
 * an object. Every walker of a client path (JSON patch pointers, merge patch keys, field
 * selector paths, label keys) and every parser of client JSON goes through here, so an
 * object built from a request never reaches `Object.prototype` and never gains inherited
 * keys (review finding S1: `add /__proto__/x` polluted every object of the apiserver).
 */

/** keys that reach a prototype when assigned (`o[k] = v`) or read (`o[k]`) */
export const UNSAFE_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export const isUnsafeKey = (k: string): boolean => UNSAFE_KEYS.has(k);

export const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `o[k]` only when `k` is an own key of `o` (never an inherited one). */
export function ownValue(o: unknown, k: string): unknown {
  if (typeof o !== 'object' || o === null) return undefined;
  return Object.hasOwn(o, k) ? (o as Record<string, unknown>)[k] : undefined;
}

/** How a path to a value reads in an error: `spec.containerDefinitions[0].x`. */
export function describePath(path: ReadonlyArray<string | number>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out || '(the top level)';
}

/**
 * The path of the first key in `value` (at any depth) that may not be applied, or
 * undefined when there is none. Iterative, so a deeply nested body cannot overflow the
 * stack; `maxDepth` bounds what a client may nest.
 */
export function findUnsafeKey(value: unknown, maxDepth = 512): { path: Array<string | number>; key: string; tooDeep?: boolean } | undefined {
  const stack: Array<{ v: unknown; path: Array<string | number> }> = [{ v: value, path: [] }];
  while (stack.length) {
    const { v, path } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (path.length > maxDepth) return { path, key: '', tooDeep: true };
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], path: [...path, i] });
      continue;
    }
    for (const k of Object.keys(v)) {
      if (isUnsafeKey(k)) return { path: [...path, k], key: k };
      stack.push({ v: (v as Record<string, unknown>)[k], path: [...path, k] });
    }
  }
  return undefined;
}

/** The message for a refused key, naming where it was found. */
export function unsafeKeyMessage(found: { path: Array<string | number>; key: string; tooDeep?: boolean }, where: string): string {
  if (found.tooDeep) return `${where} is nested too deeply (more than 512 levels, at ${describePath(found.path.slice(0, 8))}...)`;
  return `${where} holds the key "${found.key}" at ${describePath(found.path)}; the keys __proto__, constructor and prototype are not allowed`;
}

/**
 * JSON.parse for client input: throws `SyntaxError` on bad JSON and `UnsafeKeyError` on a
 * refused key anywhere in the document (JSON.parse itself makes `__proto__` an own key, but
 * any later spread, assignment or merge of the result would follow it to the prototype).
 */
export class UnsafeKeyError extends Error {
  constructor(
    message: string,
    readonly path: Array<string | number>,
  ) {
    super(message);
    this.name = 'UnsafeKeyError';
  }
}

export function assertSafeKeys(value: unknown, where: string): void {
  const found = findUnsafeKey(value);
  if (found) throw new UnsafeKeyError(unsafeKeyMessage(found, where), found.path);
}

export function parseClientJson(text: string, where = 'the request body'): unknown {
  const v: unknown = JSON.parse(text);
  assertSafeKeys(v, where);
  return v;
}
