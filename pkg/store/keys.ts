import { badRequest } from '../errors/errors.ts';

/** The smallest key greater than every key with this prefix (etcd's range_end). */
export function prefixEnd(prefix: string): string {
  if (prefix === '') return '\uffff';
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

interface ContinueToken {
  /** revision the list is consistent at */
  r: number;
  /** the next key to read (inclusive) */
  k: string;
  /** the prefix, so a token is not reused for another list */
  p: string;
}

export function encodeContinue(revision: number, nextKey: string, prefix = ''): string {
  const t: ContinueToken = { r: revision, k: nextKey, p: prefix };
  return Buffer.from(JSON.stringify(t)).toString('base64url');
}

export function decodeContinue(token: string, prefix: string): { revision: number; nextKey: string } {
  let t: ContinueToken;
  try {
    t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw badRequest('continue: the continue token is not valid');
  }
  if (typeof t?.r !== 'number' || typeof t.k !== 'string' || !t.k.startsWith(prefix)) {
    throw badRequest('continue: the continue token is not valid for this list');
  }
  return { revision: t.r, nextKey: t.k };
}
