import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import type { Task } from '../../api/kinds.ts';
import { NOMINATED_ANNOTATION } from '../../api/names.ts';
import { taskRevision } from '../../api/resolved.ts';
import { BerthError } from '../../errors/errors.ts';
import { sleep, taskArg, type CommandContext } from '../command.ts';

/** `berth run-task`, `start-task` and `stop-task`: ECS's RunTask, StartTask and StopTask. */
export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'run-task')
    .requiredOption('--task-definition <td>', 'family, family:revision or ARN')
    .option('--count <n>', 'how many (1-10)', '1')
    .option('--group <group>', 'task group')
    .option('--started-by <tag>', 'startedBy')
    .option('--wait', 'wait until the tasks are placed and print where')
    .action(async (o: { taskDefinition: string; count: string; group?: string; startedBy?: string; wait?: boolean }, cmd: Command) => {
      const count = Number(o.count);
      if (!Number.isInteger(count) || count < 1 || count > 10) throw new BerthError('BadRequest', `--count ${o.count}: must be 1 to 10 (as in ECS RunTask)`);
      const { client, namespace } = await ctx.conn(cmd);
      const made: Task[] = [];
      for (let i = 0; i < count; i++) {
        made.push(await client.create<Task>({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: randomUUID().replace(/-/g, ''), namespace }, spec: { taskDefinition: o.taskDefinition, desiredStatus: 'RUNNING', ...(o.group ? { group: o.group } : {}), ...(o.startedBy ? { startedBy: o.startedBy } : {}) } } as unknown as Task));
      }
      for (const t of made) {
        let cur = t;
        if (o.wait) {
          const until = Date.now() + 30_000;
          while (!cur.spec.containerInstance && Date.now() < until) {
            await sleep(200);
            cur = await client.get<Task>('Task', namespace, t.metadata.name);
          }
        }
        ctx.io.out(`task/${t.metadata.name} created (${taskRevision(t)})${cur.spec.containerInstance ? ` on ${cur.spec.containerInstance}` : ''}\n`);
      }
    });

  ctx
    .sub(program, 'start-task')
    .requiredOption('--task-definition <td>')
    .requiredOption('--container-instances <ids...>', 'one task per instance (at most 10)')
    .action(async (o: { taskDefinition: string; containerInstances: string[] }, cmd: Command) => {
      if (o.containerInstances.length > 10) throw new BerthError('BadRequest', 'at most 10 container instances (as in ECS StartTask)');
      const { client, namespace } = await ctx.conn(cmd);
      for (const ci of o.containerInstances) {
        // nominated for its instance: the placement controller leaves it to this binding (C13)
        const metadata = { name: randomUUID().replace(/-/g, ''), namespace, annotations: { [NOMINATED_ANNOTATION]: ci } };
        const spec = { taskDefinition: o.taskDefinition, desiredStatus: 'RUNNING', startedBy: 'berth start-task' };
        const t = await client.create<Task>({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata, spec } as unknown as Task);
        const r = (await client.bind(namespace, [{ task: t.metadata.name, containerInstance: ci }])).results[0];
        if (!r.bound) {
          await client.patch('Task', namespace, t.metadata.name, { spec: { desiredStatus: 'STOPPED', stopReason: `could not start on ${ci}: ${r.detail ?? r.reason}` } });
          throw new BerthError('BadRequest', `cannot start ${o.taskDefinition} on ${ci}: ${r.reason} ${r.detail ?? ''}`.trim());
        }
        ctx.io.out(`task/${t.metadata.name} started on ${ci}\n`);
      }
    });

  ctx
    .sub(program, 'stop-task')
    .argument('<task>')
    .option('--reason <text>', 'why', 'Task stopped by berth stop-task')
    .action(async (task: string, o: { reason: string }, cmd: Command) => {
      const name = taskArg(task);
      const { client, namespace } = await ctx.conn(cmd);
      await client.patch('Task', namespace, name, { spec: { desiredStatus: 'STOPPED', stopReason: o.reason, stopCode: 'UserInitiated' } });
      ctx.io.out(`task/${name} stopping\n`);
    });
}
