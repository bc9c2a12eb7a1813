/**
 * Small readers of the objects that need no schema (so a CLI command can use them without
 * building the zod schemas): what a spec resolved to, and the value that asks for a restart.
 */

/** The revision a service runs: status.taskDefinition (spec.taskDefinition for a service stored before it existed). */
export const serviceTaskDefinition = (s: { spec: { taskDefinition: string }; status?: { taskDefinition?: string } }): string => s.status?.taskDefinition ?? s.spec.taskDefinition;

/** The revision a task runs: status.taskDefinition (the spec's, resolved, for a task stored before it existed). */
export const taskRevision = (t: { spec: { taskDefinition: string; daemonTaskDefinition?: string }; status?: { taskDefinition?: string } }): string =>
  t.status?.taskDefinition ?? t.spec.daemonTaskDefinition ?? t.spec.taskDefinition;

/** The daemon task definition revision a daemon runs: status.taskDefinition (spec.daemonTaskDefinition for a daemon stored before it existed). */
export const daemonRevision = (d: { spec: { daemonTaskDefinition: string }; status?: { taskDefinition?: string } }): string => d.status?.taskDefinition ?? d.spec.daemonTaskDefinition;

/** A new spec.restartedAt: the time, never the value the service already has (two requests in one millisecond are two). */
export function restartRequest(current: string | undefined, now = new Date()): string {
  let t = now.getTime();
  while (new Date(t).toISOString() === current) t++;
  return new Date(t).toISOString();
}
