import { badRequest } from '../errors/errors.ts';
import { EmbeddedStore } from './embedded.ts';
import { EtcdStore } from './etcd.ts';
import type { Store } from './store.ts';

/**
 * Opens a store from its spec, as given to `--store`:
 * - `embedded:PATH`: SQLite in the directory PATH (created if missing)
 * - `etcd://host:port[,host:port...]` (or `etcd+https://...` for TLS endpoints)
 */
export async function openStore(spec: string): Promise<Store> {
  if (spec.startsWith('embedded:')) {
    const dir = spec.slice('embedded:'.length);
    if (!dir) throw badRequest(`--store ${JSON.stringify(spec)}: embedded:PATH needs a directory`);
    return EmbeddedStore.open(dir);
  }
  const m = /^etcd(\+https)?:\/\/(.+)$/.exec(spec);
  if (m) {
    const scheme = m[1] ? 'https' : 'http';
    const hosts = m[2].split(',').map((h) => h.trim());
    for (const h of hosts) {
      if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(h)) {
        throw badRequest(`--store ${JSON.stringify(spec)}: "${h}" is not host:port`);
      }
    }
    const store = new EtcdStore({ hosts: hosts.map((h) => `${scheme}://${h}`) });
    try {
      await store.currentRevision();
    } catch (e) {
      await store.close();
      throw badRequest(`--store ${JSON.stringify(spec)}: cannot reach etcd: ${(e as Error).message}`);
    }
    return store;
  }
  throw badRequest(
    `--store ${JSON.stringify(spec)}: expected embedded:PATH or etcd://host:port[,host:port...]`,
  );
}
