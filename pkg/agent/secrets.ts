import type { ContainerDefinition } from '../api/taskdefinition.ts';
import type { Client } from '../client/client.ts';
import { isBerthError, RuntimeError } from '../errors/errors.ts';
import { candidateNames, envFileVariables, parseEnvFileRef, parseSecretRef, referencedValue, type SecretRef } from '../secrets/refs.ts';
import type { RegistryAuth, ResolvedSecrets } from './runtime/runtime.ts';

/**
 * What a container takes from berth Secrets, read by the agent with its node identity at
 * container creation (the apiserver lets a node read only the secrets its tasks reference).
 * Nothing read here is kept: it goes into the Docker create call and is dropped.
 */
export interface SecretReader {
  /** the values of the secret with this AWS name; throws NotFound or Forbidden */
  read(awsName: string): Promise<Record<string, string>>;
}

/** a reader through the apiserver's `secrets/NAME/value` subresource */
export function apiSecretReader(client: () => Client): SecretReader {
  return {
    async read(awsName) {
      let last: unknown;
      for (const name of candidateNames(awsName)) {
        try {
          const o = await client().request<{ spec: { data?: Record<string, string> } }>('GET', `/apis/berth.dev/v1/secrets/${encodeURIComponent(name)}/value`);
          return o.spec.data ?? {};
        } catch (e) {
          last = e;
          if (!isBerthError(e, 'NotFound')) throw e;
        }
      }
      throw last;
    },
  };
}

const PREFIX = 'unable to pull secrets or registry auth: execution resource retrieval failed';

/** ECS's words for a secret it could not read (the agent's asm/ssm resource errors) */
function failure(ref: SecretRef | undefined, valueFrom: string, why: string): RuntimeError {
  const where =
    ref?.source === 'ssm' || ref?.source === 'name'
      ? `unable to retrieve secrets from ssm: invalid parameters: ${ref.name}: ${why}`
      : `unable to retrieve secret from asm: failed to fetch secret ${valueFrom} from secrets manager: ${why}`;
  return new RuntimeError('ResourceInitializationError', `${PREFIX}: ${where}`, { stopsTask: true });
}

function readFailure(e: unknown): string {
  if (isBerthError(e, 'NotFound')) return "ResourceNotFoundException: Secrets Manager can't find the specified secret.";
  if (isBerthError(e, 'Forbidden')) return 'AccessDeniedException: this instance may not read the secret';
  return (e as Error).message;
}

async function value(reader: SecretReader, valueFrom: string, jsonKey?: string): Promise<string> {
  const parsed = parseSecretRef(valueFrom);
  if (typeof parsed === 'string') throw failure(undefined, valueFrom, parsed);
  const ref = jsonKey === undefined ? parsed : { ...parsed, jsonKey };
  if (ref.versionId !== undefined || (ref.versionStage !== undefined && ref.versionStage !== 'AWSCURRENT')) {
    throw failure(ref, valueFrom, 'ResourceNotFoundException: berth keeps only the current version of a secret (AWSCURRENT)');
  }
  let data: Record<string, string>;
  try {
    data = await reader.read(ref.name);
  } catch (e) {
    throw failure(ref, valueFrom, readFailure(e));
  }
  const v = referencedValue(data, ref);
  if (typeof v !== 'string') throw failure(ref, valueFrom, v.error);
  return v;
}

/** a container's secrets, environment files and log secret options, resolved (or a ResourceInitializationError) */
export async function resolveContainerSecrets(def: ContainerDefinition, reader: SecretReader): Promise<ResolvedSecrets | undefined> {
  const files = def.environmentFiles ?? [];
  const secrets = def.secrets ?? [];
  const opts = def.logConfiguration?.secretOptions ?? [];
  if (!files.length && !secrets.length && !opts.length) return undefined;
  const envFiles: Array<[string, string]> = [];
  for (const f of files) {
    const name = parseEnvFileRef(f.value);
    if (typeof name !== 'string') throw new RuntimeError('ResourceInitializationError', `failed to download env files: ${name.error}`, { stopsTask: true });
    try {
      envFiles.push(...envFileVariables(await reader.read(name)));
    } catch (e) {
      const why = isBerthError(e, 'NotFound') ? 'NoSuchKey: The specified key does not exist.' : readFailure(e);
      throw new RuntimeError('ResourceInitializationError', `failed to download env files: ${f.value}: ${why}`, { stopsTask: true });
    }
  }
  const resolved: ResolvedSecrets = { envFiles, secrets: [], logOptions: {} };
  for (const s of secrets) resolved.secrets.push([s.name, await value(reader, s.valueFrom)]);
  for (const s of opts) resolved.logOptions[s.name] = await value(reader, s.valueFrom);
  return resolved;
}

/**
 * repositoryCredentials.credentialsParameter -> registry auth: a secret with `username` and
 * `password` (ECS's Secrets Manager format, as JSON or as keys).
 */
export async function registryAuth(reader: SecretReader, parameter: string, image: string): Promise<RegistryAuth> {
  const username = await value(reader, parameter, 'username');
  const password = await value(reader, parameter, 'password');
  const host = image.split('/')[0];
  return { username, password, ...(host.includes('.') || host.includes(':') ? { serveraddress: host } : {}) };
}
