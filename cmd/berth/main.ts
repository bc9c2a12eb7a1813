import 'reflect-metadata';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { container } from 'tsyringe';
import { clientFromKubeconfig } from '../../pkg/client/client.ts';
import { buildConfigCommands, completionScript } from '../../pkg/cli/config.ts';
import { runCli, type CliDeps, type IO } from '../../pkg/cli/commands.ts';
import { upFiles } from '../../pkg/cli/up/files.ts';
import { onShutdown } from '../../pkg/cmdutil/cmdutil.ts';
import { BerthError, badRequest } from '../../pkg/errors/errors.ts';

const io: IO = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  stdin: async () => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
};

const kubeconfigPath = (given?: string) => given ?? upFiles().kubeconfig;

container.register<CliDeps>('CliDeps', {
  useValue: {
    io,
    version: 'berth v0.1.0',
    connect: async (g) => {
      const path = kubeconfigPath(g.kubeconfig);
      if (!g.server && !existsSync(path)) throw new BerthError('BadRequest', `no kubeconfig at ${path}: run \`npx berth up\` first, or pass --kubeconfig FILE or --server URL --token T`);
      if (g.server && !existsSync(path)) {
        const { Client } = await import('../../pkg/client/client.ts');
        return { client: new Client({ server: g.server, token: g.token }), namespace: 'default' };
      }
      return clientFromKubeconfig({ path, context: g.context, server: g.server, token: g.token });
    },
    extend: (program: Command, deps: CliDeps) => {
      program
        .command('up')
        .description('run berth on this machine: apiserver (embedded store), ECS API, controllers and an agent on the local Docker')
        .option('--listen <host:port>', 'loopback address to serve on', '127.0.0.1:6443')
        .option('--region <region>', 'the region the ECS API answers as', 'us-east-1')
        .option('--no-agent', 'do not run an agent on this machine')
        .option('--runtime <runtime>', 'docker, or hollow for a demo without Docker (containers are simulated)', 'docker')
        .option('--log-level <level>', 'pino level', process.env.BERTH_LOG_LEVEL ?? 'info')
        .action(async (o: { listen: string; region: string; agent: boolean; runtime: string; logLevel: string }) => {
          if (o.runtime !== 'docker' && o.runtime !== 'hollow') throw badRequest(`--runtime ${o.runtime}: choose docker or hollow`);
          // loaded here, not at the top: every other command starts without the store, Docker and pino
          const [{ up }, { upHooks }, { newLogger }] = await Promise.all([import('../../pkg/cli/up/up.ts'), import('../../pkg/cli/up/hooks.ts'), import('../../pkg/log/log.ts')]);
          const log = newLogger({ level: o.logLevel });
          const running = await up({ files: upFiles(), listen: o.listen, region: o.region, agent: o.agent, runtime: o.runtime, log, out: (l) => deps.io.out(l + '\n') }, upHooks({ runtime: o.runtime }));
          onShutdown(log, running.stop);
          await new Promise(() => undefined); // serve until a signal
        });
      buildConfigCommands(program, deps, kubeconfigPath);
      program
        .command('completion')
        .description('print a bash completion script: source <(npx berth completion bash)')
        .argument('[shell]', 'bash', 'bash')
        .action((shell: string) => {
          if (shell !== 'bash') throw badRequest(`completion ${shell}: only bash is supported`);
          deps.io.out(completionScript(program));
        });
    },
  },
});

const code = await runCli(process.argv.slice(2), container.resolve<CliDeps>('CliDeps'));
if (code !== 0) process.exit(code);
