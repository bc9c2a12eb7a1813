import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { SYSTEM_NAMESPACE } from '../../api/meta.ts';
import type { Lease } from '../../api/kinds.ts';
import { FENCE_HEADER, fenceHeader } from '../../apiserver/fence.ts';
import { isAbort, type Client } from '../../client/client.ts';
import { isBerthError, leaseLost } from '../../errors/errors.ts';
import type { Term } from './controller.ts';

/**
 * Leader election on a Lease object, like client-go's leaderelection, with leadership made
 * a precondition of every write:
 *
 * - Every lease write is a compare-and-swap on the lease's resourceVersion. A candidate
 *   takes a lease over only when the record has not changed for a whole lease duration by
 *   ITS OWN clock, counted from when its read of the record RETURNED (so no two clocks are
 *   compared, and a slow read never makes a lease look older than it is).
 * - Each renewal runs under the renew deadline (client-go's `context.WithTimeout(ctx,
 *   RenewDeadline)`): a renewal that hangs is aborted, and the leader steps down once
 *   `renewDeadline` has passed since it SENT its last successful renewal, whether or not
 *   the request ever answers. `renewDeadline < leaseDuration`, so it has stopped before any
 *   follower can take over.
 * - A term (`onStartedLeading(term)`) carries a client whose writes (1) are refused locally
 *   once the renew deadline has passed, (2) carry the lease fence (`Berth-Lease-Fence`: the
 *   revision of the write that acquired the lease), which the apiserver compares in the
 *   write's own txn, so a deposed leader's write can never land after another acquired the
 *   lease, and (3) are aborted when the term ends. A write refused for its fence ends the
 *   term at once (`term.lost`).
 * - On a clean stop the lease is released so a standby takes over at once.
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
  /** the clock (epoch ms); injectable for tests */
  now?: () => number;
  onStartedLeading: (term: LeadershipTerm) => void | Promise<void>;
  onStoppedLeading: (reason: string) => void | Promise<void>;
}

export interface LeadershipTerm extends Term {
  /** the fence this term's writes carry: NS/LEASE=REVISION */
  fence: string;
  /** the lease is certainly still ours: renewed within the renew deadline, by this process's clock */
  valid(): boolean;
  lost(why: string): void;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private observed?: { rv: string; at: number };
  /** when the last successful acquire/renew was SENT */
  private renewedAt = 0;
  private timer?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private term?: { ac: AbortController; term: LeadershipTerm; fenceRev: string };
  private loop?: Promise<void>;
  /** aborts the lease request in flight when the elector stops */
  private readonly halt = new AbortController();
  private wake?: () => void;
  private readonly ns: string;
  private readonly duration: number;
  private readonly deadline: number;
  private readonly retry: number;
  private readonly now: () => number;

  constructor(private readonly o: LeaderElectionOptions) {
    this.ns = o.namespace ?? SYSTEM_NAMESPACE;
    this.duration = o.leaseDurationMs ?? 12_000;
    this.deadline = o.renewDeadlineMs ?? 8_000;
    this.retry = o.retryPeriodMs ?? 2_000;
    this.now = o.now ?? Date.now;
    if (!(this.deadline < this.duration)) throw new Error(`leader election ${o.name}: the renew deadline (${this.deadline} ms) must be shorter than the lease duration (${this.duration} ms)`);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.halt.abort();
    this.wake?.();
    await this.loop;
    if (this.leading) {
      await this.stepDown('stopping');
      // release: an empty holder lets a standby take over without waiting out the lease (and moves the fence)
      try {
        await this.o.client.scoped({ signal: AbortSignal.timeout(this.deadline) }).guaranteedUpdate<Lease>('Lease', this.ns, this.o.name, (l) => {
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

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.attempt();
      if (this.stopped) return;
      await new Promise<void>((r) => {
        this.wake = r;
        this.timer = setTimeout(r, this.retry);
        this.timer.unref?.();
      });
    }
  }

  /** One acquire or renew, bounded: a renewal never outlives the renew deadline. */
  private async attempt(): Promise<void> {
    const budget = this.leading ? this.renewedAt + this.deadline - this.now() : this.deadline;
    if (budget <= 0) return this.stepDown('could not renew within the renew deadline');
    try {
      const r = await this.tryAcquireOrRenew(AbortSignal.any([AbortSignal.timeout(budget), this.halt.signal]));
      if (!r) {
        if (this.leading) await this.stepDown('another holder took the lease');
        return;
      }
      // an answer that arrived after the deadline is no renewal: the term may already have ended
      if (this.now() - r.sentAt >= this.deadline) return this.stepDown('could not renew within the renew deadline');
      this.renewedAt = r.sentAt;
      this.armWatchdog();
      if (!this.leading && !this.stopped) await this.startTerm(r.rv);
    } catch (e) {
      this.o.log.warn({ lease: this.o.name, err: isAbort(e) ? `no answer within ${budget} ms` : (e as Error).message }, 'lease update failed');
      if (this.leading && this.now() - this.renewedAt >= this.deadline) await this.stepDown('could not renew within the renew deadline');
    }
  }

  /** Steps down when the renew deadline passes without a renewal, even if the request in flight never returns. */
  private armWatchdog() {
    if (this.watchdog) clearTimeout(this.watchdog);
    const at = this.renewedAt + this.deadline;
    this.watchdog = setTimeout(() => {
      if (this.leading && this.now() >= this.renewedAt + this.deadline) void this.stepDown('could not renew within the renew deadline');
    }, Math.max(0, at - this.now()));
    this.watchdog.unref?.();
  }

  private async startTerm(rv: string): Promise<void> {
    const ac = new AbortController();
    // every request in flight listens to the term's signal: dozens at once are normal
    setMaxListeners(0, ac.signal);
    const fence = fenceHeader(this.ns, this.o.name, rv);
    const valid = () => this.leading && this.term?.ac === ac && this.now() < this.renewedAt + this.deadline;
    const client = this.o.client.scoped({
      signal: ac.signal,
      headers: { [FENCE_HEADER]: fence },
      beforeWrite: () => {
        if (!valid()) throw leaseLost(`not sending the write: the lease ${this.ns}/${this.o.name} is no longer held by ${this.o.identity}`);
      },
    });
    const term: LeadershipTerm = {
      client,
      signal: ac.signal,
      revision: rv,
      fence,
      valid,
      lost: (why) => {
        if (this.term?.ac === ac) void this.stepDown(why);
      },
    };
    this.term = { ac, term, fenceRev: rv };
    this.leading = true;
    this.o.log.info({ lease: this.o.name, identity: this.o.identity, fence }, 'became leader');
    await this.o.onStartedLeading(term);
  }

  private async stepDown(reason: string): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    if (this.watchdog) clearTimeout(this.watchdog);
    const t = this.term;
    this.term = undefined;
    t?.ac.abort();
    if (reason === 'stopping') this.o.log.info({ lease: this.o.name, identity: this.o.identity }, 'stepping down');
    else this.o.log.warn({ lease: this.o.name, identity: this.o.identity, reason }, 'lost the lease; stopping');
    await this.o.onStoppedLeading(reason);
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<{ rv: string; sentAt: number } | undefined> {
    const c = this.o.client.scoped({ signal });
    const cur = await c.tryGet<Lease>('Lease', this.ns, this.o.name);
    // observed when the answer arrived: a slow read must not make the lease look older than it is
    const seenAt = this.now();
    const mine = { holderIdentity: this.o.identity, leaseDurationSeconds: Math.ceil(this.duration / 1000), renewTime: iso(seenAt) };
    if (!cur) {
      try {
        const sentAt = this.now();
        const out = await c.create<Lease>({ apiVersion: 'berth.dev/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.ns }, spec: { ...mine, acquireTime: iso(seenAt), leaseTransitions: 0 } } as Lease);
        this.observed = { rv: out.metadata.resourceVersion!, at: this.now() };
        return { rv: out.metadata.resourceVersion!, sentAt };
      } catch (e) {
        if (isBerthError(e, 'AlreadyExists') || isBerthError(e, 'Conflict')) return undefined;
        throw e;
      }
    }
    const rv = cur.metadata.resourceVersion!;
    if (!this.observed || this.observed.rv !== rv) this.observed = { rv, at: seenAt };
    const holder = cur.spec.holderIdentity;
    const heldByOther = !!holder && holder !== this.o.identity;
    // a record naming this identity that this process does not lead under (a previous life) is taken like any other
    const ttl = (cur.spec.leaseDurationSeconds ?? Math.ceil(this.duration / 1000)) * 1000;
    if (heldByOther && seenAt - this.observed.at < ttl) return undefined;
    const next: Lease = {
      ...cur,
      spec: {
        ...cur.spec,
        ...mine,
        // a new acquireTime (and holder) moves the apiserver's fence: only renewals keep it
        acquireTime: this.leading ? cur.spec.acquireTime : iso(seenAt),
        leaseTransitions: (cur.spec.leaseTransitions ?? 0) + (holder === this.o.identity ? 0 : 1),
      },
    };
    try {
      const sentAt = this.now();
      const out = await c.update(next);
      this.observed = { rv: out.metadata.resourceVersion!, at: this.now() };
      // a renewal keeps the term's fence; an acquisition's fence is this write's revision
      return { rv: this.leading && this.term ? this.term.fenceRev : out.metadata.resourceVersion!, sentAt };
    } catch (e) {
      if (isBerthError(e, 'Conflict')) return undefined;
      throw e;
    }
  }
}
