import type { Command } from 'commander';
import type { CommandContext } from '../command.ts';
import { addSecretCommands } from '../secrets.ts';

/** `berth create secret` and `berth secrets reencrypt` */
export const register = (program: Command, ctx: CommandContext): void => addSecretCommands(program, ctx.io, ctx.conn);
