import { randomUUID } from 'node:crypto';
import type { Task } from '../../api/kinds.ts';
import { API_VERSION } from '../../api/meta.ts';
import { CONTROLLER_FINALIZER } from '../../apiserver/admission.ts';
import type { Client } from '../../client/client.ts';
import { isBerthError } from '../../errors/errors.ts';
import type { Expectations } from './expectations.ts';

/**
 * Did a write certainly not happen? Only when the apiserver answered with a refusal (a 4xx:
 * invalid, conflict, forbidden, the lease fence, too many requests), the client refused to
 * send it (a term no longer valid: LeaseLost), or the client never sent it (no connection
 * was ever made: `notSent`, R3-5). A timeout, an aborted request (the term ended while it
 * was in flight), a connection lost or a 5xx may have committed: its answer was lost, not
 * its write (review R2-7).
 */
export const certainlyNotWritten = (e: unknown): boolean => isBerthError(e) && ((e.status >= 400 && e.status < 500) || e.details.notSent === true);

/**
 * The task writes an owning controller makes, each recorded as an expectation first (so the
 * next reconcile waits until the cache shows it). A create that was certainly refused is
 * forgotten again; one whose outcome is unknown stays expected until the cache shows the
 * task or the expectation's TTL passes (client-go's expectations), so the next reconcile
 * does not create a second one meanwhile while the cache lags (R2-7). The TTL counts from
 * the failure, when the write stopped being in flight, not from the request (R3-1).
 */
export async function createOwnedTask(client: Pick<Client, 'create'>, exp: Expectations, key: string, task: Task): Promise<void> {
  exp.expect(key, [task.metadata.name]);
  try {
    await client.create(task);
  } catch (e) {
    if (certainlyNotWritten(e)) exp.observed(key, task.metadata.name);
    else exp.restart(key); // in flight until now: the TTL counts from here (R3-1)
    throw e;
  }
}

/** A JSON patch `test` that did not hold (the object was not in the state the patch required). */
const testFailed = (e: unknown) => isBerthError(e, 'Invalid') && !!e.details.causes?.some((c) => c.message.startsWith('test failed'));

/**
 * Asks a task to stop, unless it was asked already: one JSON patch that tests `desiredStatus
 * RUNNING` first, so an earlier stop (a user's StopTask, say) keeps its reason and code. A
 * task already gone, or already stopping, is fine (false: nothing was written).
 */
export async function stopTask(client: Client, ns: string, name: string, reason: string, stopCode: Task['spec']['stopCode'] | null = 'ServiceSchedulerInitiated'): Promise<boolean> {
  try {
    await client.patch(
      'Task',
      ns,
      name,
      [
        { op: 'test', path: '/spec/desiredStatus', value: 'RUNNING' },
        { op: 'replace', path: '/spec/desiredStatus', value: 'STOPPED' },
        { op: 'add', path: '/spec/stopReason', value: reason },
        ...(stopCode ? [{ op: 'add', path: '/spec/stopCode', value: stopCode }] : []),
      ],
      { type: 'json' },
    );
    return true;
  } catch (e) {
    if (!isBerthError(e, 'NotFound') && !testFailed(e)) throw e;
    return false;
  }
}

/** `stopTask` for a task an owner watches: expected first, forgotten if the write fails. */
export async function stopOwnedTask(client: Client, exp: Expectations, key: string, ns: string, name: string, reason: string): Promise<void> {
  exp.expect(key, [name]);
  try {
    // nothing written (gone, or stopping already): no event will show it, so nothing is awaited
    if (!(await stopTask(client, ns, name, reason))) exp.observed(key, name);
  } catch (e) {
    exp.observed(key, name);
    throw e;
  }
}

export interface OwnerRef {
  kind: 'Service' | 'Daemon';
  name: string;
  uid: string;
}

/** A new task owned by a Service or Daemon: generated name, owner label and controller reference. */
export function ownedTask(ns: string, owner: OwnerRef, spec: Task['spec'], annotations?: Record<string, string>): Task {
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

/** The task's controller reference (`controller: true`), if it has one (metav1.GetControllerOf). */
export const controllerOf = (t: { metadata: { ownerReferences?: Array<{ kind: string; name: string; uid: string; controller?: boolean }> } }) => t.metadata.ownerReferences?.find((r) => r.controller);

/**
 * Explicit adoption (ReplicaSet's ClaimPods): an orphan task becomes the owner's only after
 * a fresh read of the owner shows it still exists under the same uid and is not being
 * deleted (the cache may be stale), and only through a write conditional on the task's
 * version (it may have been claimed meanwhile). Returns whether the task is now the owner's.
 */
export async function adoptTask(client: Client, ns: string, owner: OwnerRef, task: Task): Promise<boolean> {
  const fresh = await client.tryGet(owner.kind, ns, owner.name);
  if (!fresh || fresh.metadata.uid !== owner.uid || fresh.metadata.deletionTimestamp) return false;
  try {
    await client.patch('Task', ns, task.metadata.name, {
      metadata: {
        resourceVersion: task.metadata.resourceVersion,
        labels: { [`berth.dev/${owner.kind.toLowerCase()}`]: owner.name },
        ownerReferences: [...(task.metadata.ownerReferences ?? []), { apiVersion: API_VERSION, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true }],
      },
    });
    return true;
  } catch (e) {
    if (isBerthError(e, 'Conflict') || isBerthError(e, 'NotFound')) return false;
    throw e;
  }
}

/**
 * Everything an owner ran is gone: drop the controller's finalizer so the delete completes.
 * A read-modify-write at the version read (client-go's RetryOnConflict): only our finalizer
 * goes, so a finalizer another actor added meanwhile is kept, and the owner stays until
 * that actor is done.
 */
export async function dropControllerFinalizer(client: Client, kind: 'Service' | 'Daemon', ns: string, obj: { metadata: { name: string; uid?: string } }): Promise<void> {
  try {
    await client.guaranteedUpdate<{ apiVersion?: string; kind?: string; metadata: { name: string; uid?: string; finalizers?: string[]; deletionTimestamp?: string } }>(kind, ns, obj.metadata.name, (cur) => {
      // another object under the name, or not being deleted any more: not ours to finish
      if (cur.metadata.uid !== obj.metadata.uid || !cur.metadata.deletionTimestamp) return undefined;
      if (!cur.metadata.finalizers?.includes(CONTROLLER_FINALIZER)) return undefined;
      cur.metadata.finalizers = cur.metadata.finalizers.filter((f) => f !== CONTROLLER_FINALIZER);
      return cur;
    });
  } catch (e) {
    if (!isBerthError(e, 'NotFound')) throw e; // gone already
  }
}
