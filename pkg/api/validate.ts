import { createHash } from 'node:crypto';
import { parseEnvFileRef, parseSecretRef } from '../secrets/refs.ts';
import { z } from 'zod';
import { invalid, tooLarge, type FieldCause } from '../errors/errors.ts';
import { API_VERSION, NAME_RE, ObjectMeta, type KindInfo } from './meta.ts';
import { kindByKind } from './kinds.ts';
import type { ContainerDefinition, DaemonTaskDefinitionSpec, TaskDefinitionSpec } from './taskdefinition.ts';

/** Configurable limits. */
export interface Limits {
  /** bytes of a task definition's JSON; ECS enforces 64 KiB today (the 2015 guide said 32 KiB) */
  taskDefinitionBytes: number;
  containersPerTaskDefinition: number;
}
export const DEFAULT_LIMITS: Limits = { taskDefinitionBytes: 64 * 1024, containersPerTaskDefinition: 10 };

/** `spec.containerDefinitions[0].memory` from zod's path. */
export function fieldPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** zod issues as field causes a person can read. */
export function causesFromZod(err: z.ZodError, prefix: string): FieldCause[] {
  const causes: FieldCause[] = [];
  for (const iss of err.issues) {
    if (iss.code === 'unrecognized_keys') {
      const custom = !/^Unrecognized key/.test(iss.message);
      for (const k of iss.keys) {
        causes.push({
          field: fieldPath(prefix, [...iss.path, k]),
          message: custom ? iss.message : `unknown field "${k}"`,
          reason: 'FieldValueNotSupported',
        });
      }
      continue;
    }
    if (iss.code === 'invalid_key') {
      const inner = (iss as { issues?: Array<{ message: string }> }).issues?.[0]?.message ?? iss.message;
      causes.push({ field: fieldPath(prefix, iss.path), message: `key "${String(iss.path[iss.path.length - 1])}": ${inner}`, reason: 'FieldValueInvalid' });
      continue;
    }
    if (iss.code === 'invalid_union') {
      causes.push({ field: fieldPath(prefix, iss.path), message: iss.message, reason: 'FieldValueInvalid' });
      continue;
    }
    let message = iss.message;
    let reason = 'FieldValueInvalid';
    if (iss.code === 'invalid_type' && /received undefined/.test(message)) {
      message = 'is required';
      reason = 'FieldValueRequired';
    } else if (iss.code === 'invalid_type') {
      message = message.replace(/^Invalid input: /, '');
    }
    causes.push({ field: fieldPath(prefix, iss.path), message, reason });
  }
  return causes;
}

/** Parses `value` with `schema`, or throws Invalid naming each field. */
export function parseOrInvalid<S extends z.ZodType>(schema: S, value: unknown, prefix: string, kind: string, name: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw invalid(kind, name, causesFromZod(r.error, prefix));
  return r.data;
}

/**
 * The rules of a task definition that one field's schema cannot see: references between
 * containers and volumes, essential containers, memory, network-mode rules, ports, size.
 */
export function taskDefinitionCauses(
  spec: TaskDefinitionSpec | DaemonTaskDefinitionSpec,
  opts: { daemon?: boolean; limits?: Limits } = {},
): FieldCause[] {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const causes: FieldCause[] = [];
  const add = (field: string, message: string, reason = 'FieldValueInvalid') => causes.push({ field, message, reason });
  const cds = spec.containerDefinitions as ContainerDefinition[];
  const networkMode = opts.daemon ? 'daemon_bridge' : (spec as TaskDefinitionSpec).networkMode;
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  const names = new Map<string, number>();

  const size = Buffer.byteLength(JSON.stringify(spec));
  if (size > limits.taskDefinitionBytes) {
    add('spec', `the task definition is ${size} bytes; the limit is ${limits.taskDefinitionBytes} bytes`);
  }
  if (cds.length > limits.containersPerTaskDefinition) {
    add('spec.containerDefinitions', `at most ${limits.containersPerTaskDefinition} containers are allowed, got ${cds.length}`);
  }
  (spec.volumes ?? []).forEach((v, i) => {
    if ((spec.volumes ?? []).findIndex((o) => o.name === v.name) !== i) add(`spec.volumes[${i}].name`, `duplicate volume name "${v.name}"`, 'FieldValueDuplicate');
  });
  cds.forEach((c, i) => {
    if (names.has(c.name)) add(`spec.containerDefinitions[${i}].name`, `duplicate container name "${c.name}"`, 'FieldValueDuplicate');
    else names.set(c.name, i);
  });
  if (!cds.some((c) => c.essential !== false)) {
    add('spec.containerDefinitions', 'at least one container must be essential');
  }
  const taskMemory = spec.memory !== undefined;
  if (spec.taskRoleArn !== undefined) {
    add('spec.taskRoleArn', 'task IAM roles need the ECS credentials endpoint (169.254.170.2), which berth does not provide: a task with one could not get its credentials', 'FieldValueNotSupported');
  }
  const hostPorts = new Map<string, string>();
  cds.forEach((c, i) => {
    const at = `spec.containerDefinitions[${i}]`;
    if (!taskMemory && c.memory === undefined && c.memoryReservation === undefined) {
      add(`${at}.memory`, `container "${c.name}" needs memory or memoryReservation (or the task definition a task-level memory)`, 'FieldValueRequired');
    }
    if (c.memory !== undefined && c.memoryReservation !== undefined && c.memoryReservation > c.memory) {
      add(`${at}.memoryReservation`, `memoryReservation (${c.memoryReservation}) must not be greater than memory (${c.memory})`);
    }
    (c.links ?? []).forEach((l, j) => {
      const target = l.split(':')[0];
      if (networkMode !== 'bridge') add(`${at}.links[${j}]`, `links are supported only in bridge network mode, not ${networkMode}`);
      else if (!names.has(target) && !cds.some((o) => o.name === target)) add(`${at}.links[${j}]`, `links to container "${target}" which is not defined in this task definition`);
      else if (target === c.name) add(`${at}.links[${j}]`, 'a container cannot link to itself');
    });
    (c.volumesFrom ?? []).forEach((v, j) => {
      if (!cds.some((o) => o.name === v.sourceContainer)) add(`${at}.volumesFrom[${j}].sourceContainer`, `names container "${v.sourceContainer}" which is not defined in this task definition`);
      else if (v.sourceContainer === c.name) add(`${at}.volumesFrom[${j}].sourceContainer`, 'a container cannot take volumes from itself');
    });
    (c.mountPoints ?? []).forEach((m, j) => {
      if (!volumes.has(m.sourceVolume)) add(`${at}.mountPoints[${j}].sourceVolume`, `names volume "${m.sourceVolume}" which is not defined in this task definition's volumes`);
    });
    (c.dependsOn ?? []).forEach((d, j) => {
      const dep = cds.find((o) => o.name === d.containerName);
      if (!dep) add(`${at}.dependsOn[${j}].containerName`, `names container "${d.containerName}" which is not defined in this task definition`);
      else if (dep.name === c.name) add(`${at}.dependsOn[${j}].containerName`, 'a container cannot depend on itself');
      else if (d.condition === 'HEALTHY' && !dep.healthCheck) add(`${at}.dependsOn[${j}].condition`, `HEALTHY needs a healthCheck on container "${dep.name}"`);
      else if (d.condition === 'SUCCESS' || d.condition === 'COMPLETE') {
        if (dep.essential !== false) add(`${at}.dependsOn[${j}].condition`, `${d.condition} needs container "${dep.name}" to be non-essential (it is expected to exit)`);
      }
    });
    (c.portMappings ?? []).forEach((p, j) => {
      const pat = `${at}.portMappings[${j}]`;
      if ((networkMode === 'host' || networkMode === 'awsvpc') && p.hostPort !== undefined && p.hostPort !== 0 && p.hostPort !== p.containerPort) {
        add(`${pat}.hostPort`, `in ${networkMode} network mode hostPort must be empty or equal to containerPort (${p.containerPort})`);
      }
      if (networkMode === 'none') add(pat, 'port mappings are not allowed in none network mode');
      const effective = networkMode === 'bridge' ? p.hostPort : p.containerPort;
      if (effective) {
        const key = `${p.protocol ?? 'tcp'}/${effective}`;
        if (hostPorts.has(key)) add(`${pat}.hostPort`, `host port ${key} is already used by ${hostPorts.get(key)}`, 'FieldValueDuplicate');
        else hostPorts.set(key, `container "${c.name}"`);
      }
    });
    if (opts.daemon && c.linuxParameters && 'devices' in c.linuxParameters) {
      add(`${at}.linuxParameters`, 'daemon task definitions support only capabilities and initProcessEnabled');
    }
    // references to berth Secrets (resolved by the agent at container creation): each must name one
    const ref = (field: string, valueFrom: string) => {
      const r = parseSecretRef(valueFrom);
      if (typeof r === 'string') add(field, r);
    };
    (c.secrets ?? []).forEach((x, j) => ref(`${at}.secrets[${j}].valueFrom`, x.valueFrom));
    (c.logConfiguration?.secretOptions ?? []).forEach((x, j) => ref(`${at}.logConfiguration.secretOptions[${j}].valueFrom`, x.valueFrom));
    if (c.repositoryCredentials) ref(`${at}.repositoryCredentials.credentialsParameter`, c.repositoryCredentials.credentialsParameter);
    (c.environmentFiles ?? []).forEach((f, j) => {
      const r = parseEnvFileRef(f.value);
      if (typeof r !== 'string') add(`${at}.environmentFiles[${j}].value`, r.error);
    });
    if ((c.environmentFiles ?? []).length > 10) add(`${at}.environmentFiles`, 'at most 10 environment files');
    if (c.logConfiguration?.logDriver === 'awsfirelens') {
      add(`${at}.logConfiguration.logDriver`, 'awsfirelens needs a FireLens log router, which berth does not run; use the fluentd driver with a log router container of your own', 'FieldValueNotSupported');
    }
    // what Docker refuses in the task's network mode, refused as ECS refuses it
    if (networkMode === 'awsvpc') {
      for (const f of ['dnsServers', 'dnsSearchDomains', 'extraHosts'] as const) {
        if (c[f]?.length) add(`${at}.${f}`, `${f} is not supported in awsvpc network mode (the task's containers share one network namespace)`, 'FieldValueNotSupported');
      }
    }
    if (c.hostname !== undefined && (networkMode === 'awsvpc' || networkMode === 'host')) {
      add(`${at}.hostname`, `hostname is not supported in ${networkMode} network mode`, 'FieldValueNotSupported');
    }
    (c.systemControls ?? []).forEach((sc, j) => {
      const k = sc.namespace;
      const net = k.startsWith('net.');
      const ipc = /^kernel\.(shm|msg|sem)/.test(k) || k.startsWith('fs.mqueue.');
      if (!net && !ipc) add(`${at}.systemControls[${j}].namespace`, `"${k}" is not a namespaced kernel parameter Docker can set per container (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)`);
      else if (net && networkMode === 'host') add(`${at}.systemControls[${j}].namespace`, `"${k}" cannot be set in host network mode: it would change the host's`);
      else if (ipc && (spec as TaskDefinitionSpec).ipcMode === 'host') add(`${at}.systemControls[${j}].namespace`, `"${k}" cannot be set with ipcMode host: it would change the host's`);
    });
    if (c.linuxParameters && 'maxSwap' in c.linuxParameters && c.linuxParameters.maxSwap !== undefined && c.memory === undefined) {
      add(`${at}.linuxParameters.maxSwap`, 'maxSwap needs the container memory (a hard limit): swap is granted on top of it', 'FieldValueRequired');
    }
    const taskMem = spec.memory !== undefined ? Number(spec.memory) : undefined;
    if (taskMem !== undefined && c.memory !== undefined && c.memory > taskMem) {
      add(`${at}.memory`, `container memory (${c.memory} MiB) must not be greater than the task memory (${taskMem} MiB)`);
    }
    if (taskMem !== undefined && c.memoryReservation !== undefined && c.memoryReservation > taskMem) {
      add(`${at}.memoryReservation`, `memoryReservation (${c.memoryReservation} MiB) must not be greater than the task memory (${taskMem} MiB)`);
    }
  });
  // the whole dependency graph -- dependsOn, links and volumesFrom together -- must have no cycle
  // (ECS dependencygraph.ValidDependencies): mutual links or volumesFrom would wait for each other forever
  const edges = new Map(
    cds.map((c) => [
      c.name,
      [
        ...(c.dependsOn ?? []).map((d) => ({ to: d.containerName, via: 'dependsOn' })),
        ...(c.links ?? []).map((l) => ({ to: l.split(':')[0], via: 'links' })),
        ...(c.volumesFrom ?? []).map((v) => ({ to: v.sourceContainer, via: 'volumesFrom' })),
      ].filter((e) => e.to !== c.name),
    ]),
  );
  const state = new Map<string, 1 | 2>();
  const visit = (n: string, trail: Array<{ name: string; via: string }>): boolean => {
    if (state.get(n) === 2) return false;
    if (state.get(n) === 1) {
      const cycle = trail.slice(trail.findIndex((t) => t.name === n));
      if (cycle.every((t) => t.via === 'dependsOn')) add('spec.containerDefinitions', `dependsOn has a cycle: ${[...cycle.map((t) => t.name), n].join(' -> ')}`);
      else add('spec.containerDefinitions', `the containers wait for each other in a cycle of links, volumesFrom and dependsOn: ${cycle.map((t) => `${t.name} -(${t.via})->`).join(' ')} ${n}`);
      return true;
    }
    state.set(n, 1);
    for (const e of edges.get(n) ?? []) if (edges.has(e.to) && visit(e.to, [...trail, { name: n, via: e.via }])) return true;
    state.set(n, 2);
    return false;
  };
  for (const n of edges.keys()) if (visit(n, [])) break;
  return causes;
}

/**
 * Validates and defaults a whole object of a kind (apiVersion, kind, metadata, spec).
 * Returns the normalized object or throws Invalid with one cause per problem.
 */
export function validateObject(
  obj: unknown,
  opts: { kind?: KindInfo; limits?: Limits; /** name rules: task definitions are `family` or `family:rev` */ allowRevisionName?: boolean } = {},
): { kind: KindInfo; metadata: ObjectMeta & { name: string }; spec: unknown; status?: unknown } {
  const causes: FieldCause[] = [];
  const o = obj as Record<string, unknown>;
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw invalid('object', '', [{ field: '', message: 'the body must be a JSON object', reason: 'FieldValueInvalid' }]);
  }
  const kind = opts.kind ?? (typeof o.kind === 'string' ? kindByKind(o.kind) : undefined);
  if (!kind) {
    throw invalid(String(o.kind ?? 'object'), '', [
      { field: 'kind', message: o.kind === undefined ? 'is required' : `unknown kind "${String(o.kind)}"`, reason: 'FieldValueNotSupported' },
    ]);
  }
  if (o.apiVersion !== undefined && o.apiVersion !== API_VERSION) {
    causes.push({ field: 'apiVersion', message: `must be ${API_VERSION}`, reason: 'FieldValueNotSupported' });
  }
  if (o.kind !== undefined && o.kind !== kind.kind) {
    causes.push({ field: 'kind', message: `must be ${kind.kind}`, reason: 'FieldValueInvalid' });
  }
  for (const k of Object.keys(o)) {
    if (!['apiVersion', 'kind', 'metadata', 'spec', 'status'].includes(k)) causes.push({ field: k, message: `unknown field "${k}"`, reason: 'FieldValueNotSupported' });
  }
  const meta = ObjectMeta.safeParse(o.metadata ?? {});
  let metadata: ObjectMeta = {};
  if (!meta.success) {
    causes.push(...causesFromZod(meta.error, 'metadata'));
    const raw = (o.metadata ?? {}) as Record<string, unknown>;
    metadata = { name: typeof raw.name === 'string' ? raw.name : undefined, generateName: typeof raw.generateName === 'string' ? raw.generateName : undefined };
  } else metadata = meta.data;
  const name = metadata.name ?? '';
  const nameOk = opts.allowRevisionName ? /^[A-Za-z0-9_-]{1,255}(:[1-9][0-9]{0,8})?$/.test(name) : NAME_RE.test(name);
  if (!name && !metadata.generateName) causes.push({ field: 'metadata.name', message: 'is required', reason: 'FieldValueRequired' });
  else if (name && !nameOk) {
    causes.push({ field: 'metadata.name', message: `"${name}" must be 1-255 letters, digits, hyphens (-) and underscores (_)`, reason: 'FieldValueInvalid' });
  }
  // S9: a generated name is the prefix plus 5 characters, so the prefix obeys the name rules
  const gen = metadata.generateName;
  if (gen !== undefined && !name && !/^[A-Za-z0-9_-]{1,250}$/.test(gen)) {
    const shown = `"${gen.slice(0, 64)}${gen.length > 64 ? '...' : ''}"`;
    const message = `${shown} must be 1-250 letters, digits, hyphens (-) and underscores (_) (5 random characters are appended)`;
    causes.push({ field: 'metadata.generateName', message, reason: 'FieldValueInvalid' });
  }
  let spec: unknown;
  if (o.spec === undefined && kind.kind !== 'Cluster' && kind.kind !== 'Lease') {
    causes.push({ field: 'spec', message: 'is required', reason: 'FieldValueRequired' });
  } else {
    const r = kind.spec.safeParse(o.spec ?? {});
    if (!r.success) causes.push(...causesFromZod(r.error, 'spec'));
    else spec = r.data;
  }
  if (spec && (kind.kind === 'TaskDefinition' || kind.kind === 'DaemonTaskDefinition')) {
    causes.push(...taskDefinitionCauses(spec as TaskDefinitionSpec, { daemon: kind.kind === 'DaemonTaskDefinition', limits: opts.limits }));
  }
  if (causes.length > 0) {
    const tooBig = causes.find((c) => c.field === 'spec' && /bytes; the limit/.test(c.message));
    if (tooBig && causes.length === 1) throw tooLarge(`${kind.kind} "${name}": ${tooBig.message}`);
    throw invalid(kind.kind, name, causes);
  }
  return { kind, metadata: { ...metadata, name }, spec, status: o.status };
}

/** Stable hash of a normalized spec: sorted keys, so equal content hashes equal. */
export function contentHash(spec: unknown): string {
  return createHash('sha256').update(stableJson(spec)).digest('hex').slice(0, 32);
}

/**
 * Do two JSON values serialize alike (key order and undefined-valued keys aside)? What
 * `stableJson(a) === stableJson(b)` says, without building either string: the apiserver
 * asks it on every write.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (x[k] === undefined) continue;
    n++;
    if (!sameJson(x[k], y[k])) return false;
  }
  for (const k in y) if (y[k] !== undefined) n--;
  return n === 0;
}

export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
