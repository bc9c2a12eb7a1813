import { randomUUID } from 'node:crypto';
import type { Task } from '../../api/kinds.ts';
import { API_VERSION } from '../../api/meta.ts';
import { CONTROLLER_FINALIZER } from '../../apiserver/admission.ts';
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

/** A new task owned by a Service or Daemon: generated name, owner label and controller reference. */
export function ownedTask(ns: string, owner: { kind: 'Service' | 'Daemon'; name: string; uid: string }, spec: Task['spec'], annotations?: Record<string, string>): Task {
  return {
    apiVersion: API_VERSION,
    kind: 'Task',
    metadata: {
      name: randomUUID().replace(/-/g, ''),
      namespace: ns,
      labels: { [`berth.dev/${owner.kind.toLowerCase()}`]: owner.name },
      ...(annotations ? { annotations } : {}),
      ownerReferences: [{ apiVersion: API_VERSION, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true }],
    },
    spec,
  } as Task;
}

/** Everything an owner ran is gone: drop the controller's finalizer so the delete completes. */
export async function dropControllerFinalizer(client: Client, kind: 'Service' | 'Daemon', ns: string, obj: { metadata: { name: string; finalizers?: string[] } }): Promise<void> {
  const finalizers = (obj.metadata.finalizers ?? []).filter((f) => f !== CONTROLLER_FINALIZER);
  await client.patch(kind, ns, obj.metadata.name, { metadata: { finalizers } }).catch((e) => {
    if (!isBerthError(e, 'NotFound')) throw e; // gone already
  });
}
