import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SignatureV4 } from '@smithy/signature-v4';
import { ecsFrontDoor, type AccessKey } from '../../pkg/ecsapi/ecsapi.ts';
import type { Store } from '../../pkg/store/store.ts';
import type { Keyring } from '../../pkg/secrets/keyring.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { startControlPlane, type Running } from '../support/fleet.ts';

/** A real apiserver (embedded or etcd store) with the ECS front door, and SDK clients for it. */
export interface EcsTestServer {
  api: TestApiServer;
  /** the access-key file (CSV, as `berth up` writes it) the front door reads */
  keyFile: string;
  admin: AccessKey;
  viewer: AccessKey;
  /** an ECSClient as the admin (no retries, so errors surface at once) */
  client(o?: { key?: { accessKeyId: string; secretAccessKey: string }; endpoint?: string; maxAttempts?: number; systemClockOffset?: number }): ECSClient;
  /** a raw request, signed by the SDK's own signer (@smithy/signature-v4) */
  raw(target: string, body: string, o?: { sign?: boolean; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; body: any }>;
  stop(): Promise<void>;
}

export const newKey = (user: string, groups: string[]): AccessKey => ({
  accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
  secretAccessKey: randomBytes(30).toString('base64url'),
  user,
  groups,
});

/** node:crypto in the shape the smithy signer wants */
export class Sha256 {
  private h;
  constructor(secret?: unknown) {
    this.h = secret ? createHmac('sha256', Buffer.from(secret as Uint8Array)) : createHash('sha256');
  }
  update(d: string | Uint8Array) {
    this.h.update(typeof d === 'string' ? Buffer.from(d, 'utf8') : Buffer.from(d));
  }
  async digest() {
    return new Uint8Array(this.h.digest());
  }
}

/** the AWS SDK's own SigV4 signer (@smithy/signature-v4) for service ecs */
export const sdkSigner = (key: { accessKeyId: string; secretAccessKey: string }, region: string) =>
  new SignatureV4({ credentials: key, region, service: 'ecs', sha256: Sha256 as never });

export async function startEcsServer(opts: { store?: 'embedded' | 'etcd'; inactiveRetentionMs?: number; wrapStore?: (s: Store) => Store; keyring?: Keyring; deploymentWaitMs?: number } = {}): Promise<EcsTestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-ecs-'));
  const admin = newKey('ecs-admin', ['berth:admins']);
  const viewer = newKey('ecs-viewer', ['berth:viewers']);
  // the admin key comes from a file in `berth up`'s format; the viewer key from the options
  const keyFile = join(dir, 'access-keys.csv');
  await writeFile(keyFile, `${admin.accessKeyId},${admin.secretAccessKey},${admin.user},"${admin.groups.join(',')}"\n`, { mode: 0o600 });
  const api = await startApiServer({
    store: opts.store,
    inactiveRetentionMs: opts.inactiveRetentionMs,
    wrapStore: opts.wrapStore,
    ...(opts.keyring ? { build: { keyring: opts.keyring } } : {}),
    frontDoors: (parts) => [ecsFrontDoor(parts, { accessKeyFile: keyFile, keys: [viewer], region: 'us-east-1', deploymentWaitMs: opts.deploymentWaitMs })],
  });
  const clients: ECSClient[] = [];
  const signer = sdkSigner(admin, 'us-east-1');
  return {
    api,
    keyFile,
    admin,
    viewer,
    client(o = {}) {
      const c = new ECSClient({
        endpoint: o.endpoint ?? api.url,
        region: 'us-east-1',
        credentials: o.key ?? admin,
        maxAttempts: o.maxAttempts ?? 1,
        ...(o.systemClockOffset !== undefined ? { systemClockOffset: o.systemClockOffset } : {}),
      });
      clients.push(c);
      return c;
    },
    async raw(target, body, o = {}) {
      const url = new URL(api.url);
      let headers: Record<string, string> = {
        host: url.host,
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': target,
        ...o.headers,
      };
      if (o.sign !== false) {
        const signed = await signer.sign({ method: 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: '/', query: {}, headers, body });
        headers = signed.headers as Record<string, string>;
      }
      const { host: _host, ...sendable } = headers;
      void _host;
      const res = await fetch(api.url + '/', { method: 'POST', headers: sendable, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, headers: res.headers, body: parsed };
    },
    async stop() {
      for (const c of clients) c.destroy();
      await api.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** ECS's totalResources for RegisterContainerInstance. */
export const resources = (cpu: number, memory: number, ports: string[] = ['22', '2375', '2376', '51678'], udp: string[] = []) => [
  { name: 'CPU', type: 'INTEGER', integerValue: cpu },
  { name: 'MEMORY', type: 'INTEGER', integerValue: memory },
  { name: 'PORTS', type: 'STRINGSET', stringSetValue: ports },
  { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: udp },
];

/** Runs `fn` and returns what it threw (fails when it did not throw). */
export async function thrown(fn: () => Promise<unknown>): Promise<any> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, got none');
}

/** The ECS front door beside the real controllers and two hollow agents (2 vCPU, 1 GiB each): the SDK drives a working berth. */
export async function startEcsControlPlane(opts: Parameters<typeof startEcsServer>[0] = {}): Promise<{ s: EcsTestServer; ecs: ECSClient; cp: Running; stop(): Promise<void> }> {
  // with controllers, CreateService/UpdateService answer with their deployment, as under berth up
  const s = await startEcsServer({ deploymentWaitMs: 10_000, ...opts });
  try {
    const cp = await startControlPlane(s.api, 2, { fleet: { memoryMiB: 1024, cpus: 2 } });
    return {
      s,
      ecs: s.client(),
      cp,
      stop: async () => {
        await cp.stop();
        await s.stop();
      },
    };
  } catch (e) {
    await s.stop();
    throw e;
  }
}
