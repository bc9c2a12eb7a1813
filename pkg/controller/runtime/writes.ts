import type { Task } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import type { Expectations } from './expectations.ts';

/**
 * The task writes an owning controller makes, each recorded as an expectation first (so the
 * next reconcile waits until the cache shows it) and forgotten again if the write fails.
 */
export async function createOwnedTask(client: Client, exp: Expectations, key: string, task: Task): Promise<void> {
  exp.expect(key, [task.metadata.name]);
  try {
    await client.create(task);
  } catch (e) {
    exp.observed(key, task.metadata.name);
    throw e;
  }
}

/** Asks a task to stop (the scheduler's stop, ECS stopCode ServiceSchedulerInitiated); a task already gone is fine. */
export async function stopOwnedTask(client: Client, exp: Expectations, key: string, ns: string, name: string, reason: string): Promise<void> {
  exp.expect(key, [name]);
  try {
    await client.patch('Task', ns, name, { spec: { desiredStatus: 'STOPPED', stopReason: reason, stopCode: 'ServiceSchedulerInitiated' } });
  } catch (e) {
    exp.observed(key, name);
    if (!isBerthError(e, 'NotFound')) throw e;
  }
}
