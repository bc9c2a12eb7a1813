import type { Command } from 'commander';
import { BerthError } from '../errors/errors.ts';
import type { CliDeps } from './commands.ts';

/** `berth config`: contexts of the kubeconfig, through @kubernetes/client-node's KubeConfig. */
export function buildConfigCommands(program: Command, deps: CliDeps, path: (given?: string) => string): void {
  const load = async (cmd: Command) => {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const file = path((cmd.optsWithGlobals() as { kubeconfig?: string }).kubeconfig);
    const kc = new KubeConfig();
    try {
      kc.loadFromFile(file);
    } catch (e) {
      throw new BerthError('BadRequest', `cannot read the kubeconfig ${file}: ${(e as Error).message}`);
    }
    return { kc, file };
  };
  const config = program.command('config').description('show and switch kubeconfig contexts');
  config
    .command('view')
    .description('print the kubeconfig (tokens redacted)')
    .action(async (_o: unknown, cmd: Command) => {
      const { kc } = await load(cmd);
      const doc = JSON.parse(kc.exportConfig()) as { users?: Array<{ user?: { token?: string } }> };
      for (const u of doc.users ?? []) if (u.user?.token) u.user.token = 'REDACTED';
      const { stringify } = await import('yaml');
      deps.io.out(stringify(doc));
    });
  config
    .command('current-context')
    .action(async (_o: unknown, cmd: Command) => {
      const { kc } = await load(cmd);
      deps.io.out(`${kc.getCurrentContext()}\n`);
    });
  config
    .command('get-contexts')
    .action(async (_o: unknown, cmd: Command) => {
      const { kc } = await load(cmd);
      const cur = kc.getCurrentContext();
      deps.io.out(['CURRENT   NAME   CLUSTER   NAMESPACE', ...kc.getContexts().map((c) => `${c.name === cur ? '*' : ' '}         ${c.name}   ${c.cluster}   ${c.namespace ?? ''}`)].join('\n') + '\n');
    });
  config
    .command('use-context')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { kc, file } = await load(cmd);
      if (!kc.getContexts().some((c) => c.name === name)) throw new BerthError('BadRequest', `no context named "${name}" in ${file}`);
      kc.setCurrentContext(name);
      const { writeFile } = await import('node:fs/promises');
      await writeFile(file, kc.exportConfig(), { mode: 0o600 });
      deps.io.out(`Switched to context "${name}".\n`);
    });
}

/** A bash completion script for the program's commands and resource kinds. */
export function completionScript(program: Command): string {
  const cmds = program.commands.map((c) => c.name()).join(' ');
  return `# berth bash completion: source <(npx berth completion bash)
_berth() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=( $(compgen -W "${cmds}" -- "$cur") ); return; fi
  case "\${COMP_WORDS[1]}" in
    get|describe|delete) COMPREPLY=( $(compgen -W "clusters containerinstances ci taskdefinitions td tasks tk services svc daemons daemontaskdefinitions leases" -- "$cur") );;
  esac
}
complete -F _berth berth
`;
}
