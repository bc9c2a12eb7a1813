import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { container } from 'tsyringe';
import { runCli, type CliDeps, type IO } from '../../pkg/cli/commands.ts';
import { upFiles } from '../../pkg/cli/up/paths.ts';
import { BerthError } from '../../pkg/errors/errors.ts';

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
    kubeconfigPath,
    connect: async (g) => {
      const path = kubeconfigPath(g.kubeconfig);
      if (!g.server && !existsSync(path)) throw new BerthError('BadRequest', `no kubeconfig at ${path}: run \`npx berth up\` first, or pass --kubeconfig FILE or --server URL --token T`);
      if (g.server && !existsSync(path)) {
        const { Client } = await import('../../pkg/client/client.ts');
        return { client: new Client({ server: g.server, token: g.token }), namespace: 'default' };
      }
      const { clientFromKubeconfig } = await import('../../pkg/client/client.ts');
      return clientFromKubeconfig({ path, context: g.context, server: g.server, token: g.token });
    },
  },
});

const code = await runCli(process.argv.slice(2), container.resolve<CliDeps>('CliDeps'));
if (code !== 0) process.exit(code);
