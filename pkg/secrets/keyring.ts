import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { badRequest, BerthError } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';

/**
 * Encryption of secret values at rest: AES-256-GCM under keys read from the apiserver's
 * `--encryption-key-file` (Kubernetes' EncryptionConfiguration aescbc/aesgcm providers,
 * simplified). The file holds one key per line, `ID:BASE64` (32 bytes); `#` starts a
 * comment. The first key encrypts, every key decrypts; an envelope names the key that sealed
 * it, so a key can be added first, the secrets re-encrypted, and the old key dropped.
 *
 * An envelope is `berth:v1:ID:BASE64(iv | ciphertext | tag)`. The additional authenticated
 * data is the secret's name and key, so a ciphertext moved to another secret or key fails.
 */
export const ENVELOPE_PREFIX = 'berth:v1:';
const KEY_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;

export interface KeyringKey {
  id: string;
  key: Buffer;
}

export class Keyring {
  private path?: string;
  /** where a reload that failed during a read is told (the reader gets a generic error) */
  log?: Logger;

  constructor(private keys: KeyringKey[]) {
    if (!keys.length) throw badRequest('an encryption key file needs at least one key');
  }

  /** the ids of the keys, the one that encrypts first */
  get ids(): string[] {
    return this.keys.map((k) => k.id);
  }

  /**
   * Reads the key file again (a key added or dropped): before a re-encryption, and when an
   * envelope names a key this apiserver does not know yet (another apiserver sealed it with
   * a key added to the file since this one started). A file that does not parse is kept out.
   */
  reload(): boolean {
    if (!this.path) return false;
    this.keys = Keyring.fromFile(this.path).keys;
    return true;
  }

  /**
   * A reload on a read: a file that does not parse (an editor rewriting it during a rotation)
   * keeps the keys already read, and its error (the file's path and line) goes to the log,
   * not to the reader (a task's stoppedReason).
   */
  private reloadKeeping(): boolean {
    try {
      return this.reload();
    } catch (e) {
      this.log?.warn({ err: (e as Error).message }, 'the encryption key file does not parse: the keys read before are kept');
      return false;
    }
  }

  /** the key that encrypts */
  get primary(): string {
    return this.keys[0].id;
  }

  static parse(text: string, source = 'the encryption key file'): Keyring {
    const keys: KeyringKey[] = [];
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const at = `${source} line ${i + 1}`;
      const idx = line.indexOf(':');
      const id = idx > 0 ? line.slice(0, idx) : '';
      if (!KEY_ID_RE.test(id)) throw badRequest(`${at}: expected ID:BASE64KEY with an id of 1-32 letters, digits, "-" or "_"`);
      const key = Buffer.from(line.slice(idx + 1), 'base64');
      if (key.length !== 32) throw badRequest(`${at}: key "${id}" is ${key.length} bytes; AES-256 needs 32 (base64 of 32 random bytes)`);
      if (keys.some((k) => k.id === id)) throw badRequest(`${at}: key id "${id}" is given twice`);
      keys.push({ id, key });
    });
    return new Keyring(keys);
  }

  static fromFile(path: string): Keyring {
    const k = Keyring.parse(readFileSync(path, 'utf8'), path);
    k.path = path;
    return k;
  }

  /** a new key file with one random key (berth up makes one under its data dir) */
  static ensureFile(path: string): Keyring {
    if (!existsSync(path)) writeFileSync(path, newKeyLine(), { mode: 0o600 });
    return Keyring.fromFile(path);
  }

  encrypt(plain: string, aad: string): string {
    const k = this.keys[0];
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', k.key, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return `${ENVELOPE_PREFIX}${k.id}:${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64')}`;
  }

  decrypt(envelope: string, aad: string): string {
    const parsed = parseEnvelope(envelope);
    if (!parsed) throw new BerthError('InternalError', 'a stored secret value is not an encrypted envelope');
    let k = this.keys.find((x) => x.id === parsed.keyId);
    if (!k && this.reloadKeeping()) k = this.keys.find((x) => x.id === parsed.keyId);
    if (!k) throw new BerthError('InternalError', `a stored secret value is sealed with key "${parsed.keyId}", which the encryption key file no longer holds`);
    const raw = Buffer.from(parsed.body, 'base64');
    if (raw.length < 28) throw new BerthError('InternalError', 'a stored secret value is truncated');
    const d = createDecipheriv('aes-256-gcm', k.key, raw.subarray(0, 12));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(raw.subarray(raw.length - 16));
    try {
      return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8');
    } catch {
      throw new BerthError('InternalError', `a stored secret value does not authenticate under key "${k.id}"`);
    }
  }
}

export function parseEnvelope(s: string): { keyId: string; body: string } | undefined {
  if (!s.startsWith(ENVELOPE_PREFIX)) return undefined;
  const rest = s.slice(ENVELOPE_PREFIX.length);
  const i = rest.indexOf(':');
  if (i <= 0) return undefined;
  return { keyId: rest.slice(0, i), body: rest.slice(i + 1) };
}

/** a line for a key file: a fresh random key, its id from the date */
export function newKeyLine(id = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}${randomBytes(2).toString('hex')}`): string {
  return `${id}:${randomBytes(32).toString('base64')}\n`;
}
