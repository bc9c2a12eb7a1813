import { invalidParameter } from './wire.ts';

/**
 * Reading ECS request members. The AWS SDK does not check required members or types; the
 * server does, with the messages AWS's validation layer uses.
 */

export type Input = Record<string, unknown>;

const typeName = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);

export function required(name: string): never {
  throw invalidParameter(`1 validation error detected: Value null at '${name}' failed to satisfy constraint: Member must not be null`);
}

export function str(i: Input, name: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
  const v = i[name];
  if (v === undefined || v === null) return opts.required ? required(name) : undefined;
  if (typeof v !== 'string') throw invalidParameter(`${name} must be a string (got ${typeName(v)})`);
  if (opts.required && v.trim() === '') throw invalidParameter(`${name} cannot be empty.`);
  if (opts.max !== undefined && v.length > opts.max) throw invalidParameter(`${name} must be at most ${opts.max} characters long.`);
  return v;
}

export function int(i: Input, name: string, opts: { required?: boolean; min?: number; max?: number; message?: string } = {}): number | undefined {
  const v = i[name];
  if (v === undefined || v === null) return opts.required ? required(name) : undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidParameter(`${name} must be a whole number (got ${typeName(v)})`);
  if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    throw invalidParameter(opts.message ?? `${name} must be between ${opts.min ?? '-'} and ${opts.max ?? '-'} (got ${v}).`);
  }
  return v;
}

export function bool(i: Input, name: string): boolean | undefined {
  const v = i[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalidParameter(`${name} must be true or false (got ${typeName(v)})`);
  return v;
}

export function list<T = unknown>(i: Input, name: string, opts: { required?: boolean; min?: number; max?: number } = {}): T[] | undefined {
  const v = i[name];
  if (v === undefined || v === null) return opts.required ? required(name) : undefined;
  if (!Array.isArray(v)) throw invalidParameter(`${name} must be a list (got ${typeName(v)})`);
  if (opts.min !== undefined && v.length < opts.min) throw invalidParameter(`${name} must have at least ${opts.min} item${opts.min === 1 ? '' : 's'}.`);
  if (opts.max !== undefined && v.length > opts.max) throw invalidParameter(`${name} can have at most ${opts.max} items (got ${v.length}).`);
  return v as T[];
}

export function strList(i: Input, name: string, opts: { required?: boolean; min?: number; max?: number } = {}): string[] | undefined {
  const v = list(i, name, opts);
  if (!v) return undefined;
  v.forEach((x, k) => {
    if (typeof x !== 'string' || !x) throw invalidParameter(`${name}[${k}] must be a non-empty string`);
  });
  return v as string[];
}

export function obj(i: Input, name: string, opts: { required?: boolean } = {}): Input | undefined {
  const v = i[name];
  if (v === undefined || v === null) return opts.required ? required(name) : undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalidParameter(`${name} must be an object (got ${typeName(v)})`);
  return v as Input;
}

export function oneOf<T extends string>(i: Input, name: string, values: readonly T[]): T | undefined {
  const v = str(i, name);
  if (v === undefined) return undefined;
  if (!values.includes(v as T)) throw invalidParameter(`${name} must be one of ${values.join(', ')} (got "${v}").`);
  return v as T;
}

/** Members berth does not implement: refused when given a value, so nothing is silently dropped. */
export function unsupported(i: Input, names: string[]) {
  for (const n of names) {
    const v = i[n];
    if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) continue;
    throw invalidParameter(`${n} is not supported by berth.`);
  }
}

/**
 * Paging over a sorted list: `nextToken` names the last key handed out, so a page is stable
 * while items come and go.
 */
export function paginate<T>(items: T[], keyOf: (t: T) => string, i: Input, opts: { defaultMax: number; max: number; desc?: boolean }): { page: T[]; nextToken?: string } {
  const maxResults = int(i, 'maxResults', { min: 1, max: opts.max, message: `maxResults must be between 1 and ${opts.max}.` }) ?? opts.defaultMax;
  const token = str(i, 'nextToken');
  let after: string | undefined;
  if (token) {
    try {
      const d = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { after?: unknown };
      if (typeof d.after !== 'string') throw new Error('no key');
      after = d.after;
    } catch {
      throw invalidParameter('Invalid nextToken.');
    }
  }
  const dir = opts.desc ? -1 : 1;
  const sorted = [...items].sort((a, b) => dir * (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
  const rest = after === undefined ? sorted : sorted.filter((t) => (opts.desc ? keyOf(t) < after! : keyOf(t) > after!));
  const page = rest.slice(0, maxResults);
  const more = rest.length > maxResults;
  return { page, ...(more ? { nextToken: Buffer.from(JSON.stringify({ after: keyOf(page[page.length - 1]) })).toString('base64url') } : {}) };
}
