import type { Command } from 'commander';
import type { CommandContext } from '../command.ts';
import { buildConfigCommands } from '../config.ts';
import { upFiles } from '../up/paths.ts';

/** `berth config view|current-context|get-contexts|use-context` of the kubeconfig berth uses */
export const register = (program: Command, ctx: CommandContext): void => buildConfigCommands(program, ctx.deps, ctx.deps.kubeconfigPath ?? ((given) => given ?? upFiles().kubeconfig));
