import type { Command } from 'commander';
import type { Service } from '../../api/kinds.ts';
import { restartRequest, serviceTaskDefinition } from '../../api/resolved.ts';
import { BerthError } from '../../errors/errors.ts';
import { serviceArg, sleep, type CommandContext } from '../command.ts';

/** `berth rollout status|undo|restart service/NAME`: follow, roll back or force a service deployment. */
export function register(program: Command, ctx: CommandContext): void {
  const rollout = ctx.sub(program, 'rollout');
  ctx
    .sub(rollout, 'status')
    .description('follow a service rollout until it is steady (exit 0) or failed (exit 1)')
    .argument('<service>')
    .option('--timeout <seconds>', 'give up after this long', '600')
    .action(async (svc: string, f: { timeout: string }, cmd: Command) => {
      const seconds = Number(f.timeout);
      if (!Number.isFinite(seconds) || seconds < 0) throw new BerthError('BadRequest', `--timeout ${f.timeout}: must be a number of seconds`);
      await status(ctx, cmd, serviceArg(svc), seconds, f.timeout);
    });
  ctx
    .sub(rollout, 'undo')
    .description('roll a service back to the task definition of its previous deployment (or the previous revision)')
    .argument('<service>')
    .action(async (svc: string, _f: unknown, cmd: Command) => {
      const name = serviceArg(svc);
      const { client, namespace } = await ctx.conn(cmd);
      const s = await client.get<Service>('Service', namespace, name);
      const cur = serviceTaskDefinition(s);
      let prev = s.status?.deployments?.find((d) => d.status !== 'PRIMARY' && d.taskDefinition !== cur)?.taskDefinition;
      if (!prev) {
        const [family, rev] = cur.split(':');
        const revs = (await client.listAll('TaskDefinition', undefined, { fieldSelector: `status.family=${family}` })).items.map((t) => Number(t.metadata.name.split(':')[1])).filter((r) => r < Number(rev));
        if (!revs.length) throw new BerthError('BadRequest', `service/${name} runs ${cur}; there is no earlier revision to go back to`);
        prev = `${family}:${Math.max(...revs)}`;
      }
      await client.patch('Service', namespace, name, { spec: { taskDefinition: prev } });
      ctx.io.out(`service/${name} rolled back to ${prev}\n`);
    });
  ctx
    .sub(rollout, 'restart')
    .description('start a new deployment of the service\'s task definition: every task is replaced (images pulled again), within its deployment bounds')
    .argument('<service>')
    .action(async (svc: string, _f: unknown, cmd: Command) => {
      const name = serviceArg(svc);
      const { client, namespace } = await ctx.conn(cmd);
      const s = await client.get<Service>('Service', namespace, name);
      await client.patch('Service', namespace, name, { metadata: { resourceVersion: s.metadata.resourceVersion }, spec: { restartedAt: restartRequest(s.spec.restartedAt) } });
      ctx.io.out(`service/${name} restarted\n`);
    });
}

/** done when ECS would say so: the PRIMARY deployment COMPLETED (its tasks healthy, none older left) */
async function status(ctx: CommandContext, cmd: Command, name: string, seconds: number, given: string): Promise<void> {
  const { client, namespace } = await ctx.conn(cmd);
  const deadline = Date.now() + seconds * 1000;
  let last = '';
  for (;;) {
    const s = await client.get<Service>('Service', namespace, name);
    const primary = s.status?.deployments?.find((d) => d.status === 'PRIMARY');
    const others = (s.status?.deployments ?? []).filter((d) => d.status !== 'PRIMARY');
    const desired = s.spec.desiredCount ?? 0;
    const observed = (s.status?.observedGeneration ?? 0) >= (s.metadata.generation ?? 1);
    if (observed && primary?.rolloutState === 'FAILED') throw new BerthError('BadRequest', `service/${name} rollout failed: ${primary.rolloutStateReason ?? ''}`);
    if (observed && primary?.rolloutState === 'COMPLETED' && primary.runningCount >= desired && others.every((d) => d.runningCount === 0) && (s.status?.runningCount ?? 0) === desired) {
      ctx.io.out(`service/${name} successfully rolled out (${primary.taskDefinition}, ${desired} running)\n`);
      return;
    }
    const line = primary ? `Waiting for service/${name} rollout to finish: ${primary.runningCount} of ${desired} updated tasks running${others.length ? `, ${others.reduce((n, d) => n + d.runningCount, 0)} old still running` : ''}...` : `Waiting for service/${name} to start its deployment...`;
    if (line !== last) ctx.io.out(line + '\n');
    last = line;
    if (Date.now() > deadline) throw new BerthError('Timeout', `service/${name} did not finish rolling out within ${given} s`);
    await sleep(500);
  }
}
