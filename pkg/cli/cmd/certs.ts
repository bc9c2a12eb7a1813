import type { Command } from 'commander';
import { buildCertsCommands } from '../certs/certs.ts';
import type { CommandContext } from '../command.ts';

/** `berth certs ca|apiserver|etcd|client` */
export const register = (program: Command, ctx: CommandContext): void => buildCertsCommands(program, ctx.io);
