import type { Command } from 'commander';
import { KIND_NAME_LIST, namesOf, type KindNames } from '../api/names.ts';
import { BerthError } from '../errors/errors.ts';
import type { CliDeps, Connection, IO } from './commands.ts';

/**
 * What a command module gets: the IO, the injected dependencies, and the connection for the
 * global flags. Each command is a module of its own under cmd/ (kubectl's shape: its flags,
 * the options they make, validated before anything is sent, then run), imported only when that
 * command runs, so a command starts without what the others need.
 */
export interface CommandContext {
  io: IO;
  deps: CliDeps;
  /** the connection for the global flags (and -n) of the command being run */
  conn(cmd: Command): Promise<Connection>;
  /** a subcommand of `parent` wired to the IO, with the description the command table gives */
  sub(parent: Command, name: string): Command;
}

/** A command module: registers its command (and any subcommands) on the program. */
export interface CommandModule {
  register(program: Command, ctx: CommandContext): void;
}

/** The kind a person names (`services`, `svc`, `service.berth.dev`), or a clear error listing them. */
export function kindOf(word: string): KindNames {
  const k = namesOf(word);
  if (!k) throw new BerthError('BadRequest', `unknown resource type "${word}"; known: ${KIND_NAME_LIST.map((x) => `${x.plural}${x.shortNames.length ? ` (${x.shortNames.join(', ')})` : ''}`).join(', ')}`);
  return k;
}

/** `service/web` or (`service`, `web`) */
export function target(a: string, b?: string): { kind: KindNames; name?: string } {
  if (a.includes('/')) {
    const [k, n] = a.split('/', 2);
    return { kind: kindOf(k), name: n };
  }
  return { kind: kindOf(a), name: b };
}

/** `service/web`, `services/web`, `svc/web` or `web` -> `web` */
export const serviceArg = (arg: string) => arg.replace(/^(service|services|svc)\//, '');
/** `task/ID`, `tasks/ID`, `tk/ID` or `ID` -> `ID` */
export const taskArg = (arg: string) => arg.replace(/^(task|tasks|tk)\//, '');

export const TABLE_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io, application/json';
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** a whole number of at least `min` from a flag, or a BadRequest naming the flag */
export function wholeNumber(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER, why = ''): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new BerthError('BadRequest', `${flag} ${v}: ${why || `must be a whole number, ${min} or more`}`);
  return n;
}
