import { NAME_RE } from '../api/meta.ts';

/**
 * How ECS-shaped references name berth Secrets, and how a secret's values become what a
 * container receives. Pure: table-tested in test/secrets/refs.test.ts.
 *
 * Names. Secrets Manager and SSM names may hold `/`, `.`, `+`, `=`, `@` and `_`; a berth
 * name holds letters, digits, `-` and `_`. A Secret's AWS name is its berth name with each
 * `_XX` (two lowercase hex digits) decoded; an AWS name becomes a berth name by writing
 * every other character as `_XX`: `prod/db.password` is `prod_2fdb_2epassword`.
 */
export function berthSecretName(awsName: string): string {
  return awsName.replace(/[^A-Za-z0-9-]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function awsSecretName(berthName: string): string {
  return berthName.replace(/_([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** the berth names an AWS-style name may be stored under: its encoding, then (a name a person gave berth) itself */
export function candidateNames(awsName: string): string[] {
  const enc = berthSecretName(awsName);
  return NAME_RE.test(awsName) && awsName !== enc ? [enc, awsName] : [enc];
}

export interface SecretRef {
  /** the AWS name (decoded) */
  name: string;
  /** Secrets Manager: the JSON key of the secret's string to take */
  jsonKey?: string;
  versionStage?: string;
  versionId?: string;
  /** what the reference was: for ECS's error wording */
  source: 'asm' | 'ssm' | 'name';
}

/**
 * `secrets[].valueFrom` (and `secretOptions`, `credentialsParameter`):
 * - `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]`
 *   (ECS's form; a NAME of Secrets Manager's own ARNs may end in `-XXXXXX`, its random
 *   suffix, which is dropped when no secret has the full name: see `withoutSuffix`)
 * - `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME` (`parameter/a/b` is the parameter `/a/b`)
 * - a bare name (an SSM parameter in ECS; here any secret).
 * Returns a message when the reference cannot name anything.
 */
export function parseSecretRef(valueFrom: string): SecretRef | string {
  if (!valueFrom) return 'valueFrom is empty';
  if (!valueFrom.startsWith('arn:')) return { name: valueFrom, source: 'name' };
  const parts = valueFrom.split(':');
  if (parts.length < 6) return `"${valueFrom.slice(0, 80)}" is not an ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME or arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)`;
  const service = parts[2];
  if (service === 'secretsmanager') {
    if (parts[5] !== 'secret' || !parts[6]) return `"${valueFrom.slice(0, 80)}": a Secrets Manager ARN reads arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]`;
    if (parts.length > 10) return `"${valueFrom.slice(0, 80)}": too many parts after the secret name (JSON_KEY:VERSION_STAGE:VERSION_ID at most)`;
    const [name, jsonKey, versionStage, versionId] = parts.slice(6);
    return { name, source: 'asm', ...(jsonKey ? { jsonKey } : {}), ...(versionStage ? { versionStage } : {}), ...(versionId ? { versionId } : {}) };
  }
  if (service === 'ssm') {
    const res = parts.slice(5).join(':');
    if (!res.startsWith('parameter/') || res.length === 'parameter/'.length) return `"${valueFrom.slice(0, 80)}": an SSM parameter ARN reads arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`;
    const rest = res.slice('parameter/'.length);
    return { name: rest.includes('/') ? `/${rest}` : rest, source: 'ssm' };
  }
  return `"${valueFrom.slice(0, 80)}": secrets come from Secrets Manager (arn:aws:secretsmanager:...) or SSM (arn:aws:ssm:...), not ${service}`;
}

/** `arn:aws:s3:::BUCKET/KEY.env` -> the AWS name `BUCKET/KEY.env` of the Secret holding the file */
export function parseEnvFileRef(value: string): string | { error: string } {
  const m = /^arn:aws[a-z-]*:s3:::([^/]+)\/(.+)$/.exec(value);
  if (!m) return { error: `"${value.slice(0, 80)}" is not an S3 object ARN (arn:aws:s3:::BUCKET/KEY.env)` };
  if (!m[2].endsWith('.env')) return { error: `"${value.slice(0, 80)}": an environment file must have the .env extension` };
  return `${m[1]}/${m[2]}`;
}

/** the secret's string, as Secrets Manager would return it: its only key `value`, or the JSON object of its keys */
export function secretString(data: Record<string, string>): string {
  const keys = Object.keys(data);
  if (keys.length === 1 && keys[0] === 'value') return data.value;
  return JSON.stringify(data);
}

/** the value a reference asks for (its JSON key taken from the secret's string), or a message */
export function referencedValue(data: Record<string, string>, ref: SecretRef): string | { error: string } {
  const s = secretString(data);
  if (ref.jsonKey === undefined) return s;
  let doc: unknown;
  try {
    doc = JSON.parse(s);
  } catch {
    return { error: `the secret's value is not JSON, so it has no key "${ref.jsonKey}"` };
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || !Object.hasOwn(doc, ref.jsonKey)) return { error: `the secret has no JSON key "${ref.jsonKey}"` };
  const v = (doc as Record<string, unknown>)[ref.jsonKey];
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * An environment file's variables (Docker's `--env-file` syntax, which ECS documents): one
 * `NAME=VALUE` a line, `#` lines and blank lines skipped, nothing unquoted or expanded.
 */
export function parseEnvFile(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+/, '');
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf('=');
    if (i <= 0) continue;
    out.push([line.slice(0, i), line.slice(i + 1)]);
  }
  return out;
}

/** the variables of a Secret used as an environment file: its text (the only key `value`) parsed, or its keys */
export function envFileVariables(data: Record<string, string>): Array<[string, string]> {
  const keys = Object.keys(data);
  if (keys.length === 1 && keys[0] === 'value') return parseEnvFile(data.value);
  return Object.entries(data);
}

interface ContainerRefs {
  secrets?: Array<{ valueFrom: string }>;
  environmentFiles?: Array<{ value: string }>;
  repositoryCredentials?: { credentialsParameter?: string };
  logConfiguration?: { secretOptions?: Array<{ valueFrom: string }> };
}

/** every AWS secret name a task definition's containers reference (what their node may read) */
export function referencedNames(spec: { containerDefinitions?: ContainerRefs[] } | undefined): Set<string> {
  const names = new Set<string>();
  const add = (valueFrom: string) => {
    const r = parseSecretRef(valueFrom);
    if (typeof r !== 'string') names.add(r.name);
  };
  for (const c of spec?.containerDefinitions ?? []) {
    for (const s of c.secrets ?? []) add(s.valueFrom);
    for (const s of c.logConfiguration?.secretOptions ?? []) add(s.valueFrom);
    for (const f of c.environmentFiles ?? []) {
      const n = parseEnvFileRef(f.value);
      if (typeof n === 'string') names.add(n);
    }
    if (c.repositoryCredentials?.credentialsParameter) add(c.repositoryCredentials.credentialsParameter);
  }
  return names;
}

/** may a node that runs tasks of these specs read the berth Secret `berthName`? */
export function referencesSecret(names: Set<string>, berthName: string): boolean {
  for (const n of names) if (candidateNames(n).includes(berthName)) return true;
  return false;
}
