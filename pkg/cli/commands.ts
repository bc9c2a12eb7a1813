import { Command, CommanderError, Option } from 'commander';
import type { Client } from '../client/client.ts';
import type { CommandContext, CommandModule } from './command.ts';
import { COMMANDS, type CommandEntry } from './cmd/index.ts';

/**
 * The `berth` program: the global flags, then one module per command (cmd/), each its flags ->
 * options -> validate -> run, with the IO and the client injected so every command is tested
 * in-process against a real apiserver. Only the module of the command being run is imported:
 * a command starts without what the others need (the AWS SDK, the store, Docker, the zod
 * schemas). Errors are one sentence on stderr and a non-zero exit; tables look like kubectl's
 * (the server's Table).
 */
export interface IO {
  out(s: string): void;
  err(s: string): void;
  stdin(): Promise<string>;
}

export interface Connection {
  client: Client;
  namespace: string;
}

export interface CliDeps {
  io: IO;
  /** the client for the global flags (--kubeconfig, --context, --server, --token) */
  connect(o: GlobalOptions): Promise<Connection>;
  /** the kubeconfig `berth config` reads and writes (default: --kubeconfig, else berth up's) */
  kubeconfigPath?(given?: string): string;
  version: string;
}

export interface GlobalOptions {
  kubeconfig?: string;
  context?: string;
  server?: string;
  token?: string;
  namespace?: string;
}

/** global options that take a value: skipped when finding which command argv names */
const VALUED = new Set(['--kubeconfig', '--context', '--server', '--token', '-n', '--namespace']);

/** the command argv runs (its first word after the global options); undefined for none or help */
export function commandWord(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return argv[i + 1];
    if (VALUED.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/**
 * The program for argv: every command is listed (name and description, for `--help`), and the
 * one argv runs is registered from its module. `help`, `completion` and no command at all load
 * every module (their output lists every command's arguments and flags).
 */
export async function buildProgram(deps: CliDeps, argv: string[] = []): Promise<Command> {
  const { io } = deps;
  const wire = (c: Command) => c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  const program = wire(new Command('berth'))
    .description('berth: an orchestrator that does what Amazon ECS does, on your own hosts')
    .option('--kubeconfig <file>', 'kubeconfig to use (default $BERTH_CONFIG or ~/.berth/config)')
    .option('--context <name>', 'kubeconfig context')
    .option('--server <url>', 'apiserver URL (overrides the kubeconfig)')
    .option('--token <token>', 'bearer token (overrides the kubeconfig)')
    .option('-n, --namespace <cluster>', 'the cluster (namespace) to work in')
    .showHelpAfterError();
  const descriptions = new Map(COMMANDS.map((c) => [c.name, c.description]));
  const ctx: CommandContext = {
    io,
    deps,
    conn: async (cmd) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const c = await deps.connect(g);
      return { ...c, namespace: g.namespace ?? c.namespace };
    },
    sub: (parent, name) => {
      const c = wire(parent.command(name));
      const d = parent === program ? descriptions.get(name) : undefined;
      return d ? c.description(d) : c;
    },
  };
  const word = commandWord(argv);
  const all = word === undefined || word === 'help' || word === 'completion' || !descriptions.has(word);
  const wanted = all ? COMMANDS : COMMANDS.filter((c) => c.name === word);
  const byName = new Map(COMMANDS.map((c) => [c.name, c]));
  const loaded = new Map<CommandEntry, CommandModule>();
  await Promise.all(wanted.map(async (c) => loaded.set(c, await c.load())));
  const registered = new Set<string>();
  for (const c of COMMANDS) {
    if (registered.has(c.name)) continue;
    // a module registering several commands (run-task, start-task, stop-task) does so once, at the first of them
    const m = [c, ...(c.also ?? []).map((n) => byName.get(n)!)].map((x) => loaded.get(x)).find(Boolean);
    if (m) m.register(program, ctx);
    else wire(program.command(c.name)).description(c.description); // listed by --help, never run: argv names another
    for (const n of m ? [c.name, ...(c.also ?? [])] : [c.name]) registered.add(n);
  }
  program.addOption(new Option('--no-color', 'plain output').hideHelp());
  return program;
}

/** Runs argv; returns the exit code (errors are one sentence on stderr). */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  try {
    const program = await buildProgram(deps, argv);
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    deps.io.err(`error: ${(e as Error).message}\n`);
    return 1;
  }
}
