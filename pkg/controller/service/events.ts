import { randomUUID } from 'node:crypto';
import type { Service } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';

const MAX_EVENTS = 100;

/** Adds an event to a service's status (newest first, at most 100; the newest is not repeated). */
export async function recordServiceEvent(client: Client, ns: string, name: string, message: string): Promise<void> {
  await client.guaranteedUpdate<Service>(
    'Service',
    ns,
    name,
    (s) => {
      const events = s.status?.events ?? [];
      if (events[0]?.message === message) return undefined;
      s.status = { ...s.status!, events: [{ id: randomUUID(), createdAt: new Date().toISOString(), message }, ...events].slice(0, MAX_EVENTS) };
      return s;
    },
    { status: true },
  );
}
