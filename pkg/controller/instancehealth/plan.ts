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
}

export const DEFAULT_HEALTH: HealthConfig = { heartbeatTimeoutMs: 60_000, lostGraceMs: 120_000 };
export const LOST_REASON = 'Container instance is no longer reachable: its agent stopped sending heartbeats';

export interface HealthPlan {
  disconnect: string[];
  lost: Array<{ task: string; reason: string; instance: string }>;
  /** most instances look lost at once: that is this controller's staleness more likely than theirs, so nothing is evicted */
  halted?: { lost: number; of: number };
}

/** Kubernetes' node lifecycle controller halts evictions in a zone this disrupted (unhealthyZoneThreshold). */
export const MASS_LOSS_FRACTION = 0.55;

/**
 * - Disconnect: silent past the heartbeat timeout by this controller's own clock.
 * - Lost: silent past timeout + grace AND recorded disconnected (`agentConnected: false`,
 *   which only a disconnect write that won its compare-and-swap, ours or another's, puts
 *   there). A stale cache or a watch that stopped delivering makes every disconnect
 *   conflict, so it can never make an instance lost.
 * - Halt: when more than 55% of the cluster's instances (and at least two) are lost at once,
 *   nothing is evicted (the node lifecycle controller's rule for a disrupted zone).
 */
export function planInstanceHealth(instances: HealthInstance[], tasksOn: (instance: string) => HealthTask[], now: number, cfg: HealthConfig = DEFAULT_HEALTH): HealthPlan {
  const disconnect: string[] = [];
  const lostInstances: string[] = [];
  let considered = 0;
  for (const i of instances) {
    if (i.status === 'INACTIVE') continue;
    considered++;
    const silentFor = now - i.lastHeartbeat;
    if (silentFor > cfg.heartbeatTimeoutMs && i.agentConnected) disconnect.push(i.id);
    // only a lost instance's tasks are looked at: the healthy path costs one pass over the instances
    if (silentFor <= cfg.heartbeatTimeoutMs + cfg.lostGraceMs || i.agentConnected) continue;
    lostInstances.push(i.id);
  }
  if (lostInstances.length >= 2 && lostInstances.length > considered * MASS_LOSS_FRACTION) return { disconnect, lost: [], halted: { lost: lostInstances.length, of: considered } };
  const lost: HealthPlan['lost'] = [];
  for (const id of lostInstances) {
    for (const t of tasksOn(id)) {
      if (t.owned && t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED') lost.push({ task: t.name, reason: LOST_REASON, instance: id });
    }
  }
  return { disconnect, lost };
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
