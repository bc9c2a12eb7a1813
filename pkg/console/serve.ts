import type { IncomingMessage, ServerResponse } from 'node:http';
import { BerthError, badRequest, tooLarge, unauthorized } from '../errors/errors.ts';
import type { Bundle } from './bundle.ts';
import type { ConsoleLogins } from './logins.ts';

/**
 * Nothing but berth's own files: no inline script or style, no other origin, no frames. The
 * console's requests go to this same origin (the API, watches, logs).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

/** the session exchange's body: small, a JSON object with the code */
const SESSION_BODY_LIMIT = 4096;

async function readSmallBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const c of req) {
    text += c;
    if (text.length > SESSION_BODY_LIMIT) throw tooLarge(`the body is over ${SESSION_BODY_LIMIT} bytes`);
  }
  return text;
}

function json(res: ServerResponse, code: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(code, { ...SECURITY_HEADERS, 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * `/ui/`: the console's files, which hold no data and are served to anyone (what they show
 * comes from the API, with the user's token), and `/ui/session`, which spends a one-time
 * login code for a session token (POST) or ends a session (DELETE). Every other path under
 * /ui/ is the app's own page (a shared link to a service opens on that service). Returns
 * false for a path it does not serve; throws BerthErrors for the caller to answer.
 */
export function consoleRoute(bundle: () => Promise<Bundle>, logins: ConsoleLogins) {
  return async (req: IncomingMessage, res: ServerResponse, method: string, path: string): Promise<boolean> => {
    if (path !== '/ui' && !path.startsWith('/ui/')) return false;
    if (path === '/ui/session') {
      if (method === 'POST') {
        const text = await readSmallBody(req);
        let code: unknown;
        try {
          code = (JSON.parse(text) as { code?: unknown })?.code;
        } catch {
          throw badRequest('the body must be JSON: {"code": "..."}');
        }
        if (typeof code !== 'string' || !code) throw badRequest('code: a one-time login code is required');
        const s = logins.exchange(code);
        if (!s) throw unauthorized('Unauthorized: the login code is unknown, already used or expired; run berth up again for a new link, or log in with a token');
        json(res, 201, s);
        return true;
      }
      if (method === 'DELETE') {
        const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
        json(res, 200, { revoked: m ? logins.revoke(m[1]) : false });
        return true;
      }
      throw new BerthError('MethodNotAllowed', '/ui/session accepts POST (a login code) and DELETE (log out)');
    }
    if (method !== 'GET' && method !== 'HEAD') throw new BerthError('MethodNotAllowed', 'the console serves files: GET only');
    if (path === '/ui') {
      res.writeHead(308, { Location: '/ui/' });
      res.end();
      return true;
    }
    const b = await bundle();
    const rel = path.slice('/ui/'.length);
    const asset = rel.startsWith('assets/') ? b.files.get(rel) : b.files.get('index.html');
    if (!asset) {
      res.writeHead(404, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache' });
      res.end(`no console asset ${rel}\n`);
      return true;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': asset.type,
      'Content-Length': asset.body.length,
      // hashed names are immutable; the page itself is revalidated every time so a new build is picked up
      'Cache-Control': asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    res.end(method === 'HEAD' ? undefined : asset.body);
    return true;
  };
}

export type ConsoleRoute = ReturnType<typeof consoleRoute>;
