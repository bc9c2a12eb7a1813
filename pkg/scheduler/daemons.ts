import type { TaskDemand } from '../api/allocation.ts';
import type { Expr } from './query.ts';
import { infeasible, type InstanceView } from './scheduler.ts';

/** A daemon (a Daemon or a DAEMON-strategy service) as placement sees it. */
export interface DaemonClaim {
  /** its task group: `daemon:NAME` or `service:NAME` */
  group: string;
  /** its memberOf constraints, parsed */
  memberOf: Expr[];
  /** its resource demand (undefined while its task definition is unknown: then it holds nothing) */
  demand?: TaskDemand;
}

/** The status an instance gets while it waits for its daemons: it takes no application task. */
export const WAITING_FOR_DAEMONS = 'WAITING_FOR_DAEMONS';

/**
 * Daemons are placed first and their resources are reserved first (ECS's managed daemons
 * documentation): an ACTIVE instance where a daemon belongs and would fit, but has no task of
 * it yet, takes no application task until it does, so application tasks cannot take the room
 * the daemon needs. A daemon that could not fit there anyway (or whose definition is unknown)
 * holds nothing: it must not starve the instance. Marks the held instances; returns their
 * names.
 */
export function holdForDaemons(instances: InstanceView[], daemons: DaemonClaim[]): string[] {
  const held: string[] = [];
  if (!daemons.length) return held;
  for (const v of instances) {
    if (v.status !== 'ACTIVE') continue;
    const waiting = daemons.some((d) => !v.taskGroups.get(d.group) && d.demand && !infeasible(v, { name: d.group, demand: d.demand, group: d.group }, d.memberOf, false));
    if (waiting) {
      v.status = WAITING_FOR_DAEMONS;
      held.push(v.name);
    }
  }
  return held;
}
