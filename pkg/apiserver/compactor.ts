import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/log.ts';
import type { Store } from '../store/store.ts';

/** The compactor's record; its modRevision is the election's clock. Outside /berth/, so no object reads it. */
export const COMPACT_KEY = '/berth-meta/compact';

export const DEFAULT_COMPACTION_INTERVAL_MS = 60_000;
export const DEFAULT_COMPACTION_RETENTION_MS = 5 * 60_000;

export interface CompactorOptions {
  /** how often to try (ms); 0 turns the compactor off */
  intervalMs?: number;
  /** history kept: compaction goes up to the revision the store had this long ago (ms) */
  retentionMs?: number;
  now?: () => number;
}

/**
 * Compacts the store's history (both backends), keeping about `retention` of it, as
 * kube-apiserver's compactor does for etcd (k8s.io/apiserver `etcd3/compact.go`).
 *
 * One apiserver at a time, elected through the store itself: every tick each apiserver
 * notes the store's current revision (so it knows which revision was current `retention`
 * ago), then tries a compare-and-swap of `/berth-meta/compact` against the modRevision it
 * last saw there. Exactly one of several racing apiservers wins a round; a loser learns the
 * key's new modRevision and tries again next tick, so the winner of the last round keeps
 * winning while it lives, and another takes over within two intervals of its death. Only
 * the winner compacts. An apiserver compacts only revisions it saw `retention` ago, so a
 * fresh one waits that long before its first compaction.
 *
 * Watches and continue tokens from before the compacted revision get 410 Gone and relist.
 */
export class Compactor {
  private readonly id = randomUUID();
  private readonly intervalMs: number;
  private readonly retentionMs: number;
  private readonly now: () => number;
  /** (time, revision) samples, oldest first; only the newest one older than the retention is kept of the old ones */
  private samples: Array<{ at: number; rev: number }> = [];
  private knownMod = 0;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  /** rounds this apiserver won (it compacted, or had nothing old enough yet) */
  wins = 0;
  /** the highest revision this apiserver compacted to */
  compactedTo = 0;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    opts: CompactorOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_COMPACTION_INTERVAL_MS;
    this.retentionMs = opts.retentionMs ?? DEFAULT_COMPACTION_RETENTION_MS;
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    if (this.intervalMs <= 0 || this.timer) return;
    const loop = () => {
      this.timer = setTimeout(() => {
        this.running = this.tick()
          .catch((e) => this.log.warn({ err: (e as Error).message }, 'compaction failed; trying again next interval'))
          .finally(() => {
            this.running = undefined;
            if (!this.stopped) loop();
          });
      }, this.intervalMs);
      this.timer.unref();
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One round: sample the revision, try to win the round, and compact when won. */
  async tick(): Promise<void> {
    const now = this.now();
    this.samples.push({ at: now, rev: await this.store.currentRevision() });
    const cutoff = now - this.retentionMs;
    let target = 0;
    let firstYoung = this.samples.length;
    for (let i = 0; i < this.samples.length; i++) {
      if (this.samples[i].at <= cutoff) target = this.samples[i].rev;
      else {
        firstYoung = i;
        break;
      }
    }
    // keep the newest old sample (the next target until a newer one ages) and the young ones
    this.samples = this.samples.slice(Math.max(0, firstYoung - 1));
    const r = await this.store.txn(
      [{ key: COMPACT_KEY, modRevision: this.knownMod }],
      [{ type: 'put', key: COMPACT_KEY, value: JSON.stringify({ holder: this.id, at: new Date(now).toISOString(), revision: target }) }],
    );
    if (!r.succeeded) {
      this.knownMod = (await this.store.get(COMPACT_KEY))?.modRevision ?? 0;
      return;
    }
    this.knownMod = r.revision;
    this.wins++;
    if (target > 0 && target > (await this.store.compactedRevision())) {
      await this.store.compact(target);
      this.compactedTo = Math.max(this.compactedTo, target);
      this.log.info({ revision: target }, 'compacted the store history');
    }
  }
}
