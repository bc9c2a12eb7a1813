import type { Logger } from 'pino';
import { SYSTEM_NAMESPACE } from '../../api/meta.ts';
import type { Lease } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';

/**
 * Leader election on a Lease object, like client-go's leaderelection: every write is a
 * compare-and-swap on the lease's resourceVersion; a candidate only takes a lease over
 * when the record has not changed for a whole lease duration by ITS OWN clock (so no two
 * clocks are compared); the leader renews every retry period and gives up (stops leading)
 * when it could not renew within the renew deadline. On a clean stop the lease is released
 * so a standby takes over at once.
 */
export interface LeaderElectionOptions {
  client: Client;
  name: string;
  identity: string;
  namespace?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void | Promise<void>;
  onStoppedLeading: () => void | Promise<void>;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private observed?: { rv: string; holder?: string; renew?: string; at: number };
  private lastRenew = 0;
  private timer?: NodeJS.Timeout;
  private readonly ns: string;
  private readonly duration: number;
  private readonly deadline: number;
  private readonly retry: number;

  constructor(private readonly o: LeaderElectionOptions) {
    this.ns = o.namespace ?? SYSTEM_NAMESPACE;
    this.duration = o.leaseDurationMs ?? 12_000;
    this.deadline = o.renewDeadlineMs ?? 8_000;
    this.retry = o.retryPeriodMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.leading) {
      this.leading = false;
      await this.o.onStoppedLeading();
      // release: an empty holder lets a standby take over without waiting out the lease
      try {
        await this.o.client.guaranteedUpdate<Lease>('Lease', this.ns, this.o.name, (l) => {
          if (l.spec.holderIdentity !== this.o.identity) return undefined;
          l.spec.holderIdentity = '';
          l.spec.leaseDurationSeconds = 1;
          return l;
        });
      } catch {
        /* the lease expires on its own */
      }
    }
  }

  private schedule() {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.retry);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) {
        this.lastRenew = Date.now();
        if (!this.leading && !this.stopped) {
          this.leading = true;
          this.o.log.info({ lease: this.o.name, identity: this.o.identity }, 'became leader');
          await this.o.onStartedLeading();
        }
      }
    } catch (e) {
      this.o.log.warn({ lease: this.o.name, err: (e as Error).message }, 'lease update failed');
    }
    if (this.leading && Date.now() - this.lastRenew > this.deadline) {
      this.leading = false;
      this.o.log.warn({ lease: this.o.name }, 'lost the lease (could not renew in time); stopping');
      await this.o.onStoppedLeading();
    }
    this.schedule();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const c = this.o.client;
    const now = Date.now();
    const cur = await c.tryGet<Lease>('Lease', this.ns, this.o.name);
    const mine = { holderIdentity: this.o.identity, leaseDurationSeconds: Math.ceil(this.duration / 1000), renewTime: iso(now) };
    if (!cur) {
      try {
        await c.create<Lease>({ apiVersion: 'berth.dev/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.ns }, spec: { ...mine, acquireTime: iso(now), leaseTransitions: 0 } } as Lease);
        return true;
      } catch (e) {
        if (isBerthError(e, 'AlreadyExists') || isBerthError(e, 'Conflict')) return false;
        throw e;
      }
    }
    const rv = cur.metadata.resourceVersion!;
    if (!this.observed || this.observed.rv !== rv) this.observed = { rv, holder: cur.spec.holderIdentity, renew: cur.spec.renewTime, at: now };
    const holder = cur.spec.holderIdentity;
    const heldByOther = holder && holder !== this.o.identity;
    const ttl = (cur.spec.leaseDurationSeconds ?? Math.ceil(this.duration / 1000)) * 1000;
    if (heldByOther && now - this.observed.at < ttl) return false;
    const next: Lease = {
      ...cur,
      spec: {
        ...cur.spec,
        ...mine,
        acquireTime: holder === this.o.identity ? cur.spec.acquireTime : iso(now),
        leaseTransitions: (cur.spec.leaseTransitions ?? 0) + (holder === this.o.identity ? 0 : 1),
      },
    };
    try {
      const out = await c.update(next);
      this.observed = { rv: out.metadata.resourceVersion!, holder: this.o.identity, renew: mine.renewTime, at: now };
      return true;
    } catch (e) {
      if (isBerthError(e, 'Conflict')) return false;
      throw e;
    }
  }
}
