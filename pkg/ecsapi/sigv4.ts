import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { csvRecords, type Identity } from '../apiserver/auth.ts';
import { EcsError } from './wire.ts';

/**
 * AWS Signature Version 4, verified the way the AWS SDKs (smithy's SignatureV4) and the AWS
 * CLI sign: canonical request over the signed headers (host with its port, x-amz-date, ...),
 * the URI-escaped normalized path, the sorted query, and the payload hash (or the value of
 * x-amz-content-sha256 when the client sent one); HMAC chain over date, region, service.
 */

/** One line of the access-key file: `accessKeyId,secretAccessKey,user,"group1,group2"`. */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
  user: string;
  groups: string[];
}

export function parseAccessKeyFile(text: string, file = 'access key file'): AccessKey[] {
  const out: AccessKey[] = [];
  for (const rec of csvRecords(text)) {
    const cols = rec.cols.map((c) => c.trim());
    if (cols.length < 2 || !cols[0] || !cols[1]) {
      throw new Error(`${file} line ${rec.line}: expected accessKeyId,secretAccessKey[,user[,"group1,group2"]]`);
    }
    out.push({
      accessKeyId: cols[0],
      secretAccessKey: cols[1],
      user: cols[2] || cols[0],
      groups: (cols[3] ?? '').split(',').map((g) => g.trim()).filter(Boolean),
    });
  }
  return out;
}

export const loadAccessKeyFile = (path: string) => parseAccessKeyFile(readFileSync(path, 'utf8'), path);

/** the service name the SDK signs ECS requests with */
export const SIGNING_SERVICE = 'ecs';
export const MAX_SKEW_MS = 5 * 60 * 1000;

const sha256hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const hmac = (key: Buffer | string, s: string) => createHmac('sha256', key).update(s, 'utf8').digest();

/** encodeURIComponent plus the characters RFC 3986 reserves (as @smithy/util-uri-escape does). */
const escapeUri = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The canonical URI the SDK computes from the request path it sent (normalized, escaped). */
export function canonicalPath(rawPath: string): string {
  const path = safeDecode(rawPath);
  const segs: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segs.pop();
    else segs.push(seg);
  }
  const normalized = `${path.startsWith('/') ? '/' : ''}${segs.join('/')}${segs.length > 0 && path.endsWith('/') ? '/' : ''}`;
  return escapeUri(normalized).replace(/%2F/g, '/');
}

export function canonicalQuery(rawQuery: string): string {
  if (!rawQuery) return '';
  const pairs: Array<[string, string]> = [];
  for (const part of rawQuery.split('&')) {
    if (!part) continue;
    const i = part.indexOf('=');
    const k = safeDecode((i < 0 ? part : part.slice(0, i)).replace(/\+/g, ' '));
    const v = i < 0 ? '' : safeDecode(part.slice(i + 1).replace(/\+/g, ' '));
    if (k.toLowerCase() === 'x-amz-signature') continue;
    pairs.push([escapeUri(k), escapeUri(v)]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

const canonicalValue = (v: string | string[] | undefined) =>
  (Array.isArray(v) ? v.join(',') : (v ?? ''))
    .replace(/[\r\n]/g, ' ')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');

/** 20150830T123600Z -> epoch ms (NaN when malformed) */
export function parseAmzDate(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return Date.parse(s); // an HTTP `Date` header
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

export const amzDate = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

export interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

export function parseAuthorization(header: string): ParsedAuthorization | undefined {
  const m = /^AWS4-HMAC-SHA256\s+(.*)$/s.exec(header.trim());
  if (!m) return undefined;
  const fields: Record<string, string> = {};
  for (const part of m[1].split(',')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    fields[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  const cred = fields.Credential?.split('/');
  if (!cred || cred.length !== 5 || cred[4] !== 'aws4_request' || !fields.SignedHeaders || !fields.Signature) return undefined;
  return {
    accessKeyId: cred[0],
    date: cred[1],
    region: cred[2],
    service: cred[3],
    signedHeaders: fields.SignedHeaders.split(';').map((h) => h.trim().toLowerCase()).filter(Boolean),
    signature: fields.Signature.toLowerCase(),
  };
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

export interface SigV4Request {
  method: string;
  /** path and query as sent on the request line */
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export function canonicalRequest(r: SigV4Request, signedHeaders: string[]): string {
  const q = r.url.indexOf('?');
  const rawPath = q < 0 ? r.url : r.url.slice(0, q);
  const rawQuery = q < 0 ? '' : r.url.slice(q + 1);
  const sorted = [...signedHeaders].sort();
  const given = r.headers['x-amz-content-sha256'];
  const payloadHash = typeof given === 'string' && given ? given : sha256hex(Buffer.from(r.body, 'utf8'));
  return [
    r.method.toUpperCase(),
    canonicalPath(rawPath || '/'),
    canonicalQuery(rawQuery),
    sorted.map((h) => `${h}:${canonicalValue(r.headers[h])}`).join('\n') + '\n',
    sorted.join(';'),
    payloadHash,
  ].join('\n');
}

export function stringToSign(longDate: string, scope: string, canonical: string): string {
  return ['AWS4-HMAC-SHA256', longDate, scope, sha256hex(canonical)].join('\n');
}

/** What the headers alone establish: the key, the signing scope and the date (the body is not read yet). */
export interface CheckedHeaders {
  a: ParsedAuthorization;
  key: AccessKey;
  isoDate: string;
}

/**
 * Everything of a SigV4 check that needs no body: the Authorization header, a known key,
 * the service, the signed headers (host, the date and X-Amz-Target, so no signature can be
 * replayed for another operation: S10) and the clock skew. The ECS front door runs it
 * before it reads the body, so an unauthenticated caller never makes it read one (S5).
 */
export function checkHeaders(r: Pick<SigV4Request, 'url' | 'headers'>, keys: Map<string, AccessKey>, now = Date.now(), service = SIGNING_SERVICE): CheckedHeaders {
  const header = r.headers.authorization;
  if (!header) {
    if (/[?&]X-Amz-Signature=/i.test(r.url)) {
      throw new EcsError('InvalidSignatureException', 'Presigned (query string) requests are not supported by this endpoint; sign the Authorization header.', 403);
    }
    throw new EcsError('MissingAuthenticationTokenException', 'Missing Authentication Token', 400);
  }
  const a = parseAuthorization(header);
  if (!a) {
    throw new EcsError(
      'IncompleteSignatureException',
      `Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters, signed with AWS4-HMAC-SHA256. Authorization=${header.split(' ')[0]}`,
      400,
    );
  }
  const key = keys.get(a.accessKeyId);
  if (!key) throw new EcsError('UnrecognizedClientException', 'The security token included in the request is invalid.', 400);
  if (a.service !== service) {
    throw new EcsError('InvalidSignatureException', `Credential should be scoped to correct service: '${service}'. `, 403);
  }
  if (!a.signedHeaders.includes('host')) throw new EcsError('InvalidSignatureException', "'Host' must be a signed header.", 403);
  if (r.headers['x-amz-target'] !== undefined && !a.signedHeaders.includes('x-amz-target')) {
    throw new EcsError('InvalidSignatureException', "'X-Amz-Target' must be a signed header: the signature has to cover the operation it authorizes.", 403);
  }
  const rawDate = r.headers['x-amz-date'] ?? r.headers.date;
  const longDate = Array.isArray(rawDate) ? rawDate[0] : rawDate;
  if (!longDate || (!a.signedHeaders.includes('x-amz-date') && !a.signedHeaders.includes('date'))) {
    throw new EcsError('IncompleteSignatureException', "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header, signed.", 400);
  }
  const when = parseAmzDate(longDate);
  if (Number.isNaN(when)) throw new EcsError('IncompleteSignatureException', `Date must be in ISO-8601 'basic format'. Got '${longDate}'.`, 400);
  if (when < now - MAX_SKEW_MS) {
    throw new EcsError('InvalidSignatureException', `Signature expired: ${amzDate(when)} is now earlier than ${amzDate(now - MAX_SKEW_MS)} (${amzDate(now)} - 5 min.)`, 403);
  }
  if (when > now + MAX_SKEW_MS) {
    throw new EcsError('InvalidSignatureException', `Signature not yet current: ${amzDate(when)} is still later than ${amzDate(now + MAX_SKEW_MS)} (${amzDate(now)} + 5 min.)`, 403);
  }
  const isoDate = /^\d{8}T\d{6}Z$/.test(longDate) ? longDate : amzDate(when);
  if (a.date !== isoDate.slice(0, 8)) {
    throw new EcsError('InvalidSignatureException', `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${a.date}' != '${isoDate.slice(0, 8)}', from '${longDate}'.`, 403);
  }
  for (const h of a.signedHeaders) {
    if (r.headers[h] === undefined) throw new EcsError('InvalidSignatureException', `The request signature we calculated does not match the signature you provided: signed header '${h}' is missing from the request.`, 403);
  }
  return { a, key, isoDate };
}

/**
 * Verifies a request's SigV4 signature against the known keys; returns the key's identity
 * or throws the error AWS would answer with. `checked`: what checkHeaders already found.
 */
export function verify(r: SigV4Request, keys: Map<string, AccessKey>, now = Date.now(), checked = checkHeaders(r, keys, now)): Identity {
  const { a, key, isoDate } = checked;
  const declared = r.headers['x-amz-content-sha256'];
  if (declared !== undefined) {
    const d = String(declared).toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(d)) {
      throw new EcsError('InvalidSignatureException', `x-amz-content-sha256 "${String(declared)}" is not accepted here: the payload must be signed (its SHA-256 in hex).`, 403);
    }
    if (d !== sha256hex(Buffer.from(r.body, 'utf8'))) {
      throw new EcsError('InvalidSignatureException', 'The provided x-amz-content-sha256 header does not match what was computed.', 403);
    }
  }
  const scope = `${a.date}/${a.region}/${a.service}/aws4_request`;
  const canonical = canonicalRequest(r, a.signedHeaders);
  const expected = createHmac('sha256', signingKey(key.secretAccessKey, a.date, a.region, a.service)).update(stringToSign(isoDate, scope, canonical)).digest();
  const given = /^[0-9a-f]{64}$/.test(a.signature) ? Buffer.from(a.signature, 'hex') : Buffer.alloc(32);
  if (!timingSafeEqual(expected, given) || !/^[0-9a-f]{64}$/.test(a.signature)) {
    throw new EcsError(
      'InvalidSignatureException',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      403,
    );
  }
  return { user: key.user, uid: `accesskey:${key.accessKeyId}`, groups: key.groups };
}
