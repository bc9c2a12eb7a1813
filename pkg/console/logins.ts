import { randomBytes } from 'node:crypto';
import { hashToken, type Identity } from '../apiserver/auth.ts';

/** console session tokens start with this, so a person (and a log scrubber) can tell them apart */
export const SESSION_PREFIX = 'berth-console.';

export interface ConsoleLoginOptions {
  /** how long a one-time login code may be exchanged (default 10 minutes) */
  codeTtlMs?: number;
  /** how long a console session lasts (default 12 hours) */
  sessionTtlMs?: number;
  now?: () => number;
}

interface Entry {
  identity: Identity;
  expires: number;
}

/**
 * The console's one-time login codes and the sessions they open, in this apiserver's memory.
 * `berth up` issues a code for its admin identity and prints a link with the code in the URL
 * fragment (browsers never send a fragment, so no server or proxy log sees it). The console
 * posts the code once; it is spent, and a session token of its own is returned: the
 * long-lived admin token never reaches the browser. Codes and sessions are stored hashed.
 */
export class ConsoleLogins {
  private readonly codes = new Map<string, Entry>();
  private readonly sessions = new Map<string, Entry>();
  private readonly codeTtlMs: number;
  private readonly sessionTtlMs: number;
  private readonly now: () => number;

  constructor(o: ConsoleLoginOptions = {}) {
    this.codeTtlMs = o.codeTtlMs ?? 10 * 60_000;
    this.sessionTtlMs = o.sessionTtlMs ?? 12 * 3_600_000;
    this.now = o.now ?? Date.now;
  }

  /** a code that opens one session as `identity` */
  issueCode(identity: Identity): string {
    this.sweep();
    const code = randomBytes(32).toString('base64url');
    this.codes.set(hashToken(code), { identity, expires: this.now() + this.codeTtlMs });
    return code;
  }

  /** spends the code: a session token and when it expires, or undefined (unknown, spent or expired) */
  exchange(code: string): { token: string; user: string; expiresAt: string } | undefined {
    const h = hashToken(code);
    const e = this.codes.get(h);
    this.codes.delete(h);
    if (!e || e.expires <= this.now()) return undefined;
    const token = SESSION_PREFIX + randomBytes(32).toString('base64url');
    const expires = this.now() + this.sessionTtlMs;
    this.sessions.set(hashToken(token), { identity: e.identity, expires });
    return { token, user: e.identity.user, expiresAt: new Date(expires).toISOString() };
  }

  /** the identity of a live session token */
  authenticate(token: string): Identity | undefined {
    if (!token.startsWith(SESSION_PREFIX)) return undefined;
    const h = hashToken(token);
    const e = this.sessions.get(h);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.sessions.delete(h);
      return undefined;
    }
    return e.identity;
  }

  /** logs out: true when the token was a live session */
  revoke(token: string): boolean {
    return this.sessions.delete(hashToken(token));
  }

  private sweep() {
    const now = this.now();
    for (const m of [this.codes, this.sessions]) for (const [k, e] of m) if (e.expires <= now) m.delete(k);
  }
}
