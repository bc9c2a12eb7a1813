import type { Command } from 'commander';
import type { CommandContext } from '../command.ts';
import { addTokenCommand } from '../token.ts';

/** `berth token create|list|delete` */
export const register = (program: Command, ctx: CommandContext): void => addTokenCommand(program, ctx.io, ctx.conn);
