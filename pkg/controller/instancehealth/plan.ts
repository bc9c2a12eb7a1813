/**
 * Instance health and garbage collection decisions, pure (clock passed in).
 *
 * - An instance whose last heartbeat is older than `heartbeatTimeoutMs` is marked
 *   `agentConnected: false` (jitter below the timeout never trips it).
 * - After a further `lostGraceMs` without a heartbeat, once it is recorded disconnected, its
 *   service and daemon tasks are marked lost: desiredStatus STOPPED with a reason, so
 *   services replace them elsewhere and the agent, when it comes back, stops their
 *   containers.
 * - STOPPED tasks, INACTIVE instances and INACTIVE services are kept describable for
 *   `retentionMs` (one hour, as the ECS Developer Guide says), then deleted.
 */

export interface HealthInstance {
  id: string;
  agentConnected: boolean;
  /** epoch ms of the last heartbeat (registration counts as one) */
  lastHeartbeat: number;
  status: string;
  /** while disconnected: when the disconnect was recorded (epoch ms, the condition AgentConnected=False); unknown for older records */
  disconnectedAt?: number;
}

export interface HealthTask {
  name: string;
  containerInstance?: string;
  desiredStatus: string;
  lastStatus: string;
  /** `service:NAME` / `daemon:NAME` groups and startedBy mark owned tasks */
  owned: boolean;
}

export interface HealthConfig {
  heartbeatTimeoutMs: number;
  lostGraceMs: number;
  /**
   * How long a loss counts as part of the current disruption (default 10 x (timeout + grace)):
   * an instance lost for longer, with nothing left to evict, is history (a host that died
   * last week and was never deregistered), not evidence that most of the cluster is cut off now.
   */
  disruptionWindowMs?: number;
}

export const DEFAULT_HEALTH: HealthConfig = { heartbeatTimeoutMs: 60_000, lostGraceMs: 120_000 };
export const LOST_REASON = 'Container instance is no longer reachable: its agent stopped sending heartbeats';

export interface HealthPlan {
  disconnect: string[];
  /**
   * Recorded disconnected without a recorded time (from before the AgentConnected condition
   * was kept, or its write was lost): record it now, once (R3-3). Until then each controller
   * (re)start counts such an instance as lost from its first sight of it, so a handful of
   * long-dead hosts halted evictions for the disruption window after every failover.
   */
  backfill: string[];
  lost: Array<{ task: string; reason: string; instance: string }>;
  /** most instances look lost at once: that is this controller's staleness more likely than theirs, so nothing is evicted */
  halted?: { lost: number; of: number };
  /** lost instances left out of the 55% rule: lost for longer than the disruption window, with nothing to evict */
  longLost?: number;
}

/** The condition an instance carries while its agent is recorded disconnected (its lastTransitionTime: when). */
export const AGENT_CONNECTED_CONDITION = 'AgentConnected';

/** Kubernetes' node lifecycle controller halts evictions in a zone this disrupted (unhealthyZoneThreshold). */
export const MASS_LOSS_FRACTION = 0.55;

/**
 * - Disconnect: silent past the heartbeat timeout by this controller's own clock.
 * - Backfill: recorded disconnected but not when: the time is recorded now (R3-3).
 * - Lost: silent past timeout + grace AND recorded disconnected (`agentConnected: false`,
 *   which only a disconnect write that won its compare-and-swap, ours or another's, puts
 *   there). A stale cache or a watch that stopped delivering makes every disconnect
 *   conflict, so it can never make an instance lost.
 * - Halt: when more than 55% of the cluster's instances (and at least two) are lost at once,
 *   nothing is evicted (the node lifecycle controller's rule for a disrupted zone). "At
 *   once": an instance lost for longer than the disruption window whose tasks are gone
 *   already (evicted when it was lost) counts neither as lost nor as one of the cluster's;
 *   Kubernetes' dead nodes leave the count when the node or cloud controller deletes them,
 *   berth's stay registered until someone deregisters them. One still holding tasks to
 *   evict keeps counting however old its loss: a disruption that halted evictions keeps
 *   them halted while it lasts.
 */
export function planInstanceHealth(instances: HealthInstance[], tasksOn: (instance: string) => HealthTask[], now: number, cfg: HealthConfig = DEFAULT_HEALTH): HealthPlan {
  const disconnect: string[] = [];
  const backfill: string[] = [];
  const lostInstances: Array<{ id: string; evict: HealthTask[] }> = [];
  const window = cfg.disruptionWindowMs ?? 10 * (cfg.heartbeatTimeoutMs + cfg.lostGraceMs);
  let considered = 0;
  let longLost = 0;
  for (const i of instances) {
    if (i.status === 'INACTIVE') continue;
    const silentFor = now - i.lastHeartbeat;
    if (silentFor > cfg.heartbeatTimeoutMs && i.agentConnected) disconnect.push(i.id);
    if (!i.agentConnected && i.disconnectedAt === undefined) backfill.push(i.id);
    // only a lost instance's tasks are looked at: the healthy path costs one pass over the instances
    if (silentFor <= cfg.heartbeatTimeoutMs + cfg.lostGraceMs || i.agentConnected) {
      considered++;
      continue;
    }
    const evict = tasksOn(i.id).filter((t) => t.owned && t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED');
    // lost since the recorded disconnect (or, for a record without one, since it went silent past the timeout)
    const lostFor = now - (i.disconnectedAt ?? i.lastHeartbeat + cfg.heartbeatTimeoutMs);
    if (lostFor > window && evict.length === 0) {
      longLost++;
      continue;
    }
    considered++;
    lostInstances.push({ id: i.id, evict });
  }
  const extra = longLost ? { longLost } : {};
  if (lostInstances.length >= 2 && lostInstances.length > considered * MASS_LOSS_FRACTION) return { disconnect, backfill, lost: [], halted: { lost: lostInstances.length, of: considered }, ...extra };
  const lost: HealthPlan['lost'] = [];
  for (const { id, evict } of lostInstances) for (const t of evict) lost.push({ task: t.name, reason: LOST_REASON, instance: id });
  return { disconnect, backfill, lost, ...extra };
}

/**
 * What this controller last observed of an instance's heartbeats: the revision of its
 * InstanceLease (agents renew it every heartbeat), the instance's own lastHeartbeat (what an
 * agent from before leases writes every heartbeat), and when, by this controller's clock,
 * either was last seen to change.
 */
export interface Observed {
  lease?: string;
  heartbeat?: string;
  at: number;
}

/**
 * Heartbeats are timed when this controller observes them (like Kubernetes' node lifecycle
 * controller's probeTimestamp), never by the agents' timestamps: an instance first seen
 * counts as heard from now; after that, only a change of its lease's revision or of its
 * instance's lastHeartbeat is a heartbeat. Fields not given (`undefined`) are not looked at:
 * a lease event says nothing of the instance, and an instance event nothing of the lease.
 */
export function observe(prev: Observed | undefined, seen: { lease?: string; heartbeat?: string }, now: number): Observed {
  if (!prev) return { ...seen, at: now };
  const lease = 'lease' in seen ? seen.lease : prev.lease;
  const heartbeat = 'heartbeat' in seen ? seen.heartbeat : prev.heartbeat;
  const changed = lease !== prev.lease || heartbeat !== prev.heartbeat;
  return { lease, heartbeat, at: changed ? now : prev.at };
}

export interface GcObject {
  plural: 'tasks' | 'containerinstances' | 'services' | 'daemons';
  namespace: string;
  name: string;
  /** when it became STOPPED / INACTIVE (epoch ms), or undefined while it is not */
  finishedAt?: number;
}

/** What has been finished for longer than the retention: delete it. */
export const planGc = (objects: GcObject[], now: number, retentionMs = 3_600_000) =>
  objects.filter((o) => o.finishedAt !== undefined && now - o.finishedAt >= retentionMs);
