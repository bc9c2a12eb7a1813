import type { Command } from 'commander';
import { BerthError } from '../../errors/errors.ts';
import { taskArg, type CommandContext } from '../command.ts';

/** `berth logs TASK [-c CONTAINER] [-f] [--tail N]`: served by the agent of the task's instance. */
interface LogsOptions {
  task: string;
  container?: string;
  follow: boolean;
  tail?: string;
}

export function register(program: Command, ctx: CommandContext): void {
  ctx
    .sub(program, 'logs')
    .argument('<task>', 'task id (or task/ID)')
    .option('-c, --container <name>', 'the container (default: the first)')
    .option('-f, --follow', 'keep printing new lines')
    .option('--tail <lines>', 'only the last N lines')
    .action(async (task: string, f: { container?: string; follow?: boolean; tail?: string }, cmd: Command) => {
      const o: LogsOptions = { task: taskArg(task), container: f.container, follow: !!f.follow, tail: f.tail };
      if (o.tail !== undefined && !/^\d+$/.test(o.tail)) throw new BerthError('BadRequest', `--tail ${o.tail}: must be a number of lines`);
      const { client, namespace } = await ctx.conn(cmd);
      const ac = new AbortController();
      if (o.follow) process.once('SIGINT', () => ac.abort());
      const res = await client.stream(`${client.path('Task', namespace, o.task)}/log`, { container: o.container, follow: o.follow ? 'true' : undefined, tailLines: o.tail }, ac.signal);
      try {
        for await (const chunk of res) ctx.io.out((chunk as Buffer).toString('utf8'));
      } catch (e) {
        if ((e as Error).name !== 'AbortError') throw e;
      }
    });
}
