import type { Command } from 'commander';
import type { IO } from '../commands.ts';
import { addApiserverCommand } from './apiserver.ts';
import { addCaCommand } from './ca.ts';
import { addClientCommand } from './client.ts';
import { addEtcdCommand } from './etcd.ts';

/** Flags every `berth certs` subcommand shares. */
export interface CommonFlags {
  dir: string;
  days?: string;
  force?: boolean;
}

/**
 * `berth certs`: the certificates of a many-host deployment (deploy/README.md), from one
 * berth CA: the CA itself, the apiservers' serving certificate, the etcd members' server and
 * peer certificates, and client certificates (the apiservers' for etcd, users').
 */
export function buildCertsCommands(program: Command, io: IO): void {
  const certs = program
    .command('certs')
    .description('make the certificates of a many-host deployment: a CA, apiserver, etcd member and client certificates (keys mode 0600; existing files are kept unless --force)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  const sub = (name: string, desc: string) =>
    certs
      .command(name)
      .description(desc)
      .requiredOption('--dir <dir>', 'where the files go (created with mode 0700)')
      .option('--days <n>', 'validity in days')
      .option('--force', 'replace files that exist')
      .exitOverride()
      .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  addCaCommand(sub, io);
  addApiserverCommand(sub, io);
  addEtcdCommand(sub, io);
  addClientCommand(sub, io);
}

export type SubCommand = (name: string, desc: string) => Command;

/** `--days` as a number (the library checks its range). */
export const daysOf = (o: CommonFlags) => (o.days === undefined ? undefined : Number(o.days));

/** `a,b, c` -> ['a', 'b', 'c'] */
export const listOf = (s: string | undefined) => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);

/** One line per outcome: what was written, or that the files were kept. */
export function report(io: IO, r: { certFile: string; keyFile: string; created: boolean }, what: string): void {
  io.out(r.created ? `created ${what}: ${r.certFile} and ${r.keyFile} (mode 0600)\n` : `kept ${what}: ${r.certFile} exists and is kept (--force replaces it)\n`);
}
