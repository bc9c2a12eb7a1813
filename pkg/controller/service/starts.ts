/**
 * When this controller saw each task start (review R2-9). The 40 s healthy rule and the
 * circuit breaker's stages compare a task's start with the controller's clock; the agent's
 * `status.startedAt` is stamped by the agent's clock, and an agent 40 s behind would make new
 * tasks healthy the moment they run (old ones stopped too early), one ahead would keep them
 * unhealthy (a rollout stalls). So a start counts from when this controller observed it
 * (the informer delivering a new `startedAt`), as instance health counts heartbeats from
 * `heardAt`. A start this process did not see happen (it was listed already started, at
 * process start or after a failover) counts from the agent's time, but never from later than
 * the controller's clock when it was first seen, and never from before the task existed (its
 * `metadata.creationTimestamp`, the apiserver's clock: a task cannot start before it is
 * created, R3-4). An agent behind can then make such a start count early by at most the time
 * from the task's creation to its start, and only for one term.
 */
export class ObservedStarts {
  /** task key -> the agent's startedAt it was seen with, and the controller's time it counts from */
  private readonly seen = new Map<string, { agent: number; at: number }>();
  constructor(private readonly now: () => number = Date.now) {}

  /**
   * A task as the informer delivers it: `agent` its status.startedAt, `before` the previous
   * version's (`undefined` also when there was no previous version: first seen), `created`
   * its metadata.creationTimestamp.
   */
  observe(key: string, agent: number | undefined, before: number | undefined, firstSeen: boolean, created?: number): void {
    if (agent === undefined) return;
    if (this.seen.get(key)?.agent === agent) return;
    const now = this.now();
    // a start we saw happen counts from now; one that was there already, from its time but within [created, now]
    this.seen.set(key, { agent, at: !firstSeen && before !== agent ? now : this.bounded(agent, created, now) });
  }

  /** A start's agent time, no earlier than the task's creation and no later than now. */
  private bounded(agent: number, created: number | undefined, now: number): number {
    return Math.min(created !== undefined && !Number.isNaN(created) ? Math.max(agent, created) : agent, now);
  }

  /** When the task's current run started, by the controller's clock (undefined: it never started). */
  startedAt(key: string, agent: number | undefined, created?: number): number | undefined {
    if (agent === undefined) return undefined;
    const s = this.seen.get(key);
    if (s && s.agent === agent) return s.at;
    // not delivered to us yet (the cache is read before handlers run): first seen now, and kept so it stays put
    const at = this.bounded(agent, created, this.now());
    this.seen.set(key, { agent, at });
    return at;
  }

  forget(key: string): void {
    this.seen.delete(key);
  }

  get size(): number {
    return this.seen.size;
  }
}
