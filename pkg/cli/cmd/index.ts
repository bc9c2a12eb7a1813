import type { CommandModule } from '../command.ts';

/**
 * Every `berth` command: its name, the line `berth --help` shows, and the module that defines
 * it, imported only when the command runs (or for `help` and `completion`, which need them all).
 */
export interface CommandEntry {
  name: string;
  description: string;
  load(): Promise<CommandModule>;
  /** more names the module registers (run-task also brings start-task and stop-task) */
  also?: string[];
}

export const COMMANDS: CommandEntry[] = [
  { name: 'apply', description: 'create or update resources from manifests (YAML or JSON; berth manifests or ECS JSON)', load: () => import('./apply.ts') },
  { name: 'diff', description: "show what apply would change (a dry run on the server, so defaults and revisions are the server's)", load: () => import('./diff.ts') },
  { name: 'get', description: 'list resources, or show one', load: () => import('./get.ts') },
  { name: 'describe', description: 'show a resource in detail (services: deployments and events; instances: resources and tasks)', load: () => import('./describe.ts') },
  { name: 'delete', description: 'delete resources by name or from manifests (a task definition family: every revision is deregistered)', load: () => import('./delete.ts') },
  { name: 'logs', description: "print the logs of a task's container (served by the agent of its instance)", load: () => import('./logs.ts') },
  { name: 'scale', description: "set a service's desired count", load: () => import('./scale.ts') },
  { name: 'rollout', description: 'follow, undo or restart a service deployment', load: () => import('./rollout.ts') },
  { name: 'run-task', description: 'run tasks of a task definition once (placed by the scheduler)', load: () => import('./tasks.ts'), also: ['start-task', 'stop-task'] },
  { name: 'start-task', description: 'start a task on chosen container instances (no scheduler)', load: () => import('./tasks.ts'), also: ['run-task', 'stop-task'] },
  { name: 'stop-task', description: 'stop a task', load: () => import('./tasks.ts'), also: ['run-task', 'start-task'] },
  { name: 'drain', description: 'set a container instance to DRAINING: its service tasks move elsewhere, no new tasks land', load: () => import('./drain.ts') },
  { name: 'version', description: 'print the client and server versions', load: () => import('./version.ts') },
  { name: 'certs', description: 'make the certificates of a many-host deployment: a CA, apiserver, etcd member and client certificates (keys mode 0600; existing files are kept unless --force)', load: () => import('./certs.ts') },
  { name: 'token', description: 'bootstrap tokens: create, list and delete the tokens agents register with', load: () => import('./token.ts') },
  { name: 'create', description: 'create an object from flags (secrets)', load: () => import('./secrets.ts'), also: ['secrets'] },
  { name: 'secrets', description: 'secret store maintenance', load: () => import('./secrets.ts'), also: ['create'] },
  { name: 'up', description: 'run berth on this machine: apiserver (embedded store), ECS API, controllers and an agent on the local Docker', load: () => import('./up.ts') },
  { name: 'config', description: 'show and switch kubeconfig contexts', load: () => import('./config.ts') },
  { name: 'completion', description: 'print a bash completion script: source <(npx berth completion bash)', load: () => import('./completion.ts') },
];
