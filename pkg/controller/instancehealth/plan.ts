/**
 * Instance health and garbage collection decisions, pure (clock passed in).
 *
 * - An instance whose last heartbeat is older than `heartbeatTimeoutMs` is marked
 *   `agentConnected: false` (jitter below the timeout never trips it).
 * - After a further `lostGraceMs` without a heartbeat, its service and daemon tasks are
 *   marked lost: desiredStatus STOPPED with a reason, so services replace them elsewhere and
 *   the agent, when it comes back, stops their containers.
 * - STOPPED tasks, INACTIVE instances and INACTIVE services are kept describable for
 *   `retentionMs` (one hour, seed 001), then deleted.
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
  lost: Array<{ task: string; reason: string }>;
}

export function planInstanceHealth(instances: HealthInstance[], tasksOn: (instance: string) => HealthTask[], now: number, cfg: HealthConfig = DEFAULT_HEALTH): HealthPlan {
  const disconnect: string[] = [];
  const lost: HealthPlan['lost'] = [];
  for (const i of instances) {
    if (i.status === 'INACTIVE') continue;
    const silentFor = now - i.lastHeartbeat;
    if (silentFor > cfg.heartbeatTimeoutMs && i.agentConnected) disconnect.push(i.id);
    // only a lost instance's tasks are looked at: the healthy path costs one pass over the instances
    if (silentFor <= cfg.heartbeatTimeoutMs + cfg.lostGraceMs) continue;
    for (const t of tasksOn(i.id)) {
      if (t.owned && t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED') lost.push({ task: t.name, reason: LOST_REASON });
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
