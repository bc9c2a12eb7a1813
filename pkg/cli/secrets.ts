import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { BerthError } from '../errors/errors.ts';
import { parseEnvFile } from '../secrets/refs.ts';
import type { Connection, IO } from './commands.ts';

/**
 * `berth create secret NAME --from-literal K=V | --from-file K=PATH | --from-env-file PATH`
 * (kubectl's flags) and `berth secrets reencrypt`. `get secrets` and `delete secret` are
 * the generic commands: a secret's values are never printed by them.
 */
const collect = (v: string, prev: string[] = []) => [...prev, v];

export interface SecretCreateOptions {
  fromLiteral?: string[];
  fromFile?: string[];
  fromEnvFile?: string[];
  type?: string;
  description?: string;
}

const KEY_RE = /^[A-Za-z0-9._-]{1,253}$/;

/** The data of a secret from the flags, in the order given (a key given twice is refused). */
export async function secretData(o: SecretCreateOptions, read: (path: string) => Promise<string> = (p) => readFile(p, 'utf8')): Promise<Record<string, string>> {
  const data: Record<string, string> = {};
  const put = (flag: string, k: string, v: string) => {
    if (!KEY_RE.test(k)) throw new BerthError('BadRequest', `${flag}: "${k.slice(0, 40)}" is not a valid key (letters, digits, ".", "_", "-")`);
    if (Object.hasOwn(data, k)) throw new BerthError('BadRequest', `${flag}: key "${k}" is given twice`);
    data[k] = v;
  };
  for (const l of o.fromLiteral ?? []) {
    const i = l.indexOf('=');
    if (i <= 0) throw new BerthError('BadRequest', `--from-literal: expected KEY=VALUE, got "${l.split('=')[0].slice(0, 40)}..."`);
    put('--from-literal', l.slice(0, i), l.slice(i + 1));
  }
  for (const f of o.fromFile ?? []) {
    const i = f.indexOf('=');
    const path = i > 0 ? f.slice(i + 1) : f;
    const key = i > 0 ? f.slice(0, i) : (path.split('/').pop() ?? path);
    put('--from-file', key, await read(path));
  }
  for (const f of o.fromEnvFile ?? []) for (const [k, v] of parseEnvFile(await read(f))) put('--from-env-file', k, v);
  if (!Object.keys(data).length) throw new BerthError('BadRequest', 'give the values: --from-literal KEY=VALUE, --from-file [KEY=]PATH or --from-env-file PATH');
  return data;
}

export function addSecretCommands(program: Command, io: IO, conn: (cmd: Command) => Promise<Connection>): void {
  const out = (c: Command) => c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  const create = out(program.command('create').description('create an object from flags (secrets)'));
  out(
    create
      .command('secret')
      .description('create a secret (values encrypted by the apiserver; never printed back)')
      .argument('<name>', 'the secret name (an AWS name such as prod/db is written prod_2fdb)')
      .option('--from-literal <KEY=VALUE>', 'a key and its value (repeatable)', collect)
      .option('--from-file <[KEY=]PATH>', "a file's contents under KEY (default: the file's name; repeatable)", collect)
      .option('--from-env-file <PATH>', 'every NAME=VALUE line of an env file as a key (repeatable)', collect)
      .option('--type <type>', 'Opaque, EnvFile or RegistryAuth', 'Opaque')
      .option('--description <text>', 'what it is for')
      .action(async (name: string, o: SecretCreateOptions, cmd: Command) => {
        const data = await secretData(o);
        const { client } = await conn(cmd);
        const spec = { type: o.type, data, ...(o.description ? { description: o.description } : {}) };
        await client.create({ apiVersion: 'berth.dev/v1', kind: 'Secret', metadata: { name }, spec });
        io.out(`secret/${name} created\n`);
      }),
  );
  const secrets = out(program.command('secrets').description('secret store maintenance'));
  out(
    secrets
      .command('reencrypt')
      .description("re-encrypt every secret under the first key of the apiserver's --encryption-key-file (after adding a key first)")
      .action(async (_o: unknown, cmd: Command) => {
        const { client } = await conn(cmd);
        const r = await client.request<{ rewritten: string[]; total: number; keys: string[] }>('POST', '/apis/berth.dev/v1/secretsreencrypt');
        io.out(`${r.rewritten.length} of ${r.total} secret(s) re-encrypted under key "${r.keys[0]}"${r.keys.length > 1 ? `; no secret needs keys ${r.keys.slice(1).join(', ')} now` : ''}\n`);
      }),
  );
}
