import { runCli, type CliDeps } from '../../pkg/cli/commands.ts';
import type { Client } from '../../pkg/client/client.ts';

/**
 * `berth ARGS...` in-process against a client (read when the command runs, so a suite may
 * connect in `before`): the exit code and what it wrote to stdout and stderr.
 */
export function cliRunner(client: () => Client, namespace = 'default') {
  return async (...argv: string[]): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const deps: CliDeps = {
      io: { out: (s) => void (out += s), err: (s) => void (err += s), stdin: async () => '' },
      version: 'test',
      connect: async () => ({ client: client(), namespace }),
    };
    const code = await runCli(argv, deps);
    return { code, out, err };
  };
}
