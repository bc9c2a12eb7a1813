import { randomUUID } from 'node:crypto';
import type { Service } from '../../api/kinds.ts';
import type { ServiceEvent } from '../../api/resources.ts';
import type { Client } from '../../client/client.ts';

/** ECS keeps a service's newest 100 events. */
export const MAX_EVENTS = 100;

/** The events with `message` added as the newest, unless it is the newest already; at most 100. */
export function withEvent(events: ServiceEvent[] | undefined, message: string, at = new Date().toISOString()): ServiceEvent[] {
  const list = events ?? [];
  if (list[0]?.message === message) return list;
  return [{ id: randomUUID(), createdAt: at, message }, ...list].slice(0, MAX_EVENTS);
}

/** Adds an event to a service's status (newest first, at most 100; the newest is not repeated). */
export async function recordServiceEvent(client: Client, ns: string, name: string, message: string): Promise<void> {
  await client.guaranteedUpdate<Service>(
    'Service',
    ns,
    name,
    (s) => {
      const events = withEvent(s.status?.events, message);
      if (events === s.status?.events) return undefined;
      s.status = { ...s.status!, events };
      return s;
    },
    { status: true },
  );
}
