import type { Command } from 'commander';
import { parseDuration } from '../agent/config.ts';
import type { BootstrapTokenView } from '../apiserver/bootstraptokens.ts';
import { BerthError } from '../errors/errors.ts';
import type { Connection, IO } from './commands.ts';
import { renderTable } from './printers.ts';

/**
 * `berth token create|list|delete`: bootstrap tokens, as `kubeadm token` manages
 * Kubernetes': an agent started with BERTH_BOOTSTRAP_TOKEN=ID.SECRET registers its host as
 * a container instance of the token's cluster (and of no other), until the token expires or
 * is deleted. The secret is printed once, by create.
 */

const PATH = '/apis/berth.dev/v1/bootstraptokens';

export interface TokenCreateOptions {
  cluster: string;
  ttl?: string;
  description?: string;
  maxInstances?: string;
}

/** validate(): the request body for the server, or a message a person understands */
export function tokenCreateBody(o: TokenCreateOptions): { cluster: string; ttlSeconds?: number; description?: string; maxInstances?: number } {
  if (!o.cluster) throw new BerthError('BadRequest', '--cluster is required: a bootstrap token registers instances in one cluster');
  let ttlSeconds: number | undefined;
  if (o.ttl !== undefined && o.ttl !== '0') {
    let ms: number;
    try {
      ms = parseDuration(o.ttl);
    } catch {
      throw new BerthError('BadRequest', `--ttl ${o.ttl}: expected a duration such as 30m, 24h or 168h (0: never expires)`);
    }
    if (ms < 1000) throw new BerthError('BadRequest', `--ttl ${o.ttl}: at least 1s`);
    ttlSeconds = Math.round(ms / 1000);
  }
  let maxInstances: number | undefined;
  if (o.maxInstances !== undefined) {
    maxInstances = Number(o.maxInstances);
    if (!/^\d+$/.test(o.maxInstances) || !Number.isSafeInteger(maxInstances) || maxInstances < 1) {
      const why = `--max-instances ${o.maxInstances}: expected how many instances may register with the token, a whole number of at least 1`;
      throw new BerthError('BadRequest', why);
    }
  }
  return {
    cluster: o.cluster,
    ...(ttlSeconds ? { ttlSeconds } : {}),
    ...(o.description ? { description: o.description } : {}),
    ...(maxInstances !== undefined ? { maxInstances } : {}),
  };
}

/** the table `berth token list` prints */
export function tokenTable(items: BootstrapTokenView[]): string {
  return renderTable({
    columnDefinitions: [{ name: 'Id' }, { name: 'Cluster' }, { name: 'Expires' }, { name: 'Registered' }, { name: 'Description' }, { name: 'Created' }],
    rows: items.map((t) => ({
      cells: [
        t.metadata.name,
        t.spec.cluster,
        t.status.expired ? `expired (${t.spec.expiration})` : (t.spec.expiration ?? 'never'),
        t.spec.maxInstances !== undefined ? `${t.status.registrations ?? 0}/${t.spec.maxInstances}` : 'no limit',
        t.spec.description,
        t.metadata.creationTimestamp,
      ],
    })),
  });
}

export function addTokenCommand(program: Command, io: IO, conn: (cmd: Command) => Promise<Connection>): void {
  const out = (c: Command) => c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  const token = out(program.command('token').description('bootstrap tokens: create, list and delete the tokens agents register with'));
  out(
    token
      .command('create')
      .description('create a bootstrap token for one cluster and print it (ID.SECRET, shown only now)')
      .requiredOption('--cluster <cluster>', 'the cluster instances registering with it join (and no other)')
      .option('--ttl <duration>', 'how long it is valid, e.g. 24h (default: never expires)')
      .option('--description <text>', 'what it is for')
      .option('--max-instances <n>', 'how many instances may register with it (each registration counts, deregistering gives none back; default: no limit)')
      .action(async (o: TokenCreateOptions, cmd: Command) => {
        const body = tokenCreateBody(o);
        const { client } = await conn(cmd);
        const t = await client.request<BootstrapTokenView>('POST', PATH, body);
        io.out(`${t.status.token}\n`);
        const until = t.spec.expiration ? `, valid until ${t.spec.expiration}` : ', never expires';
        const budget = t.spec.maxInstances !== undefined ? `, for ${t.spec.maxInstances} instance(s)` : '';
        const how = `start agents with BERTH_BOOTSTRAP_TOKEN=<the token above> ECS_CLUSTER=${t.spec.cluster}`;
        io.err(`bootstrap token ${t.metadata.name} for cluster "${t.spec.cluster}"${until}${budget}: ${how}\n`);
      }),
  );
  out(
    token
      .command('list')
      .description('list bootstrap tokens (their secrets are never shown again)')
      .action(async (_o: unknown, cmd: Command) => {
        const { client } = await conn(cmd);
        const list = await client.request<{ items: BootstrapTokenView[] }>('GET', PATH);
        if (!list.items.length) io.err('No bootstrap tokens.\n');
        else io.out(tokenTable(list.items));
      }),
  );
  out(
    token
      .command('delete')
      .description('delete bootstrap tokens: agents can no longer register with them (registered instances keep their own credentials)')
      .argument('<ids...>', 'token ids (the part before the dot), or whole tokens')
      .action(async (ids: string[], _o: unknown, cmd: Command) => {
        const { client } = await conn(cmd);
        const errors: string[] = [];
        for (const raw of ids) {
          const id = raw.split('.')[0];
          try {
            await client.request('DELETE', `${PATH}/${encodeURIComponent(id)}`);
            io.out(`bootstrap token ${id} deleted\n`);
          } catch (e) {
            errors.push(`${id}: ${(e as Error).message}`);
          }
        }
        if (errors.length) throw new BerthError('BadRequest', errors.join('\n'));
      }),
  );
}
