/**
 * The agent's configuration: the ECS container agent's environment variables (as the ECS
 * agent's README lists them) with their defaults, read from the environment and an
 * `ecs.config`-style file (KEY=VALUE lines, `#` comments). Precedence: environment > file >
 * default. A bad value throws a BerthError naming the variable and the value.
 */
import fs from 'node:fs';
import { z } from 'zod';
import { invalid } from '../errors/errors.ts';

/** Parse a Go-style duration ("3h", "30s", "1h30m", "250ms", "1.5h") to milliseconds. */
export function parseDuration(s: string): number {
  const text = s.trim();
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  while ((m = re.exec(text)) !== null) {
    total += parseFloat(m[1]) * unit[m[2]];
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== text.length) throw new Error(`invalid duration "${s}" (expected e.g. 30s, 5m, 3h)`);
  return Math.round(total);
}

const durationMs = z.string().transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const bool = z.string().transform((v, ctx) => {
  const t = v.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(t)) return true;
  if (['false', '0', 'no', ''].includes(t)) return false;
  ctx.addIssue({ code: 'custom', message: `"${v}" is not a boolean (true or false)` });
  return z.NEVER;
});

const jsonOf = <T extends z.ZodType>(schema: T) =>
  z.string().transform((v, ctx): z.infer<T> => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `"${v}" is not valid JSON` });
      return z.NEVER;
    }
    const r = schema.safeParse(parsed);
    if (!r.success) {
      ctx.addIssue({ code: 'custom', message: `"${v}": ${r.error.issues.map((i) => i.message).join('; ')}` });
      return z.NEVER;
    }
    return r.data as z.infer<T>;
  });

const portNum = z.number().int().min(0).max(65535);
const portList = jsonOf(z.array(portNum, { error: 'must be a JSON array of port numbers' }));
const intStr = (min = 0) =>
  z.string().transform((v, ctx) => {
    const n = Number(v.trim());
    if (!/^-?\d+$/.test(v.trim()) || n < min) {
      ctx.addIssue({ code: 'custom', message: `"${v}" is not an integer >= ${min}` });
      return z.NEVER;
    }
    return n;
  });
const portRange = z.string().transform((v, ctx) => {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2]) : NaN;
  if (!m || lo < 1 || hi > 65535 || lo > hi) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a port range like 49153-65535` });
    return z.NEVER;
  }
  return { from: lo, to: hi };
});
const url = z.string().transform((v, ctx) => {
  if (v === '') return '';
  try {
    new URL(v);
    return v;
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a URL` });
    return z.NEVER;
  }
});
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.string().transform((v, ctx): T[number] => {
    const t = v.trim().toLowerCase();
    if ((values as readonly string[]).includes(t)) return t as T[number];
    ctx.addIssue({ code: 'custom', message: `"${v}" must be one of ${values.join(', ')}` });
    return z.NEVER;
  });

/** A comma-separated list ("a:1, b:2"). */
const csv = z.string().transform((v) =>
  v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);

/** Default dynamic host port range: the kernel's ephemeral range when readable, else Docker's. */
function defaultPortRange(): string {
  try {
    const [a, b] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    if (a && b) return `${a}-${b}`;
  } catch {
    /* not Linux */
  }
  return '49153-65535';
}

/** variable -> [schema of the raw string, default raw string (undefined: absent)] */
const vars = {
  ECS_CLUSTER: [z.string().min(1, { error: 'must not be empty' }), 'default'],
  ECS_RESERVED_PORTS: [portList, '[22, 2375, 2376, 51678, 51679]'],
  ECS_RESERVED_PORTS_UDP: [portList, '[]'],
  ECS_RESERVED_MEMORY: [intStr(0), '0'],
  ECS_DATADIR: [z.string(), '/data/'],
  ECS_CHECKPOINT: [bool, undefined],
  ECS_LOGLEVEL: [oneOf(['crit', 'error', 'warn', 'info', 'debug', 'trace']), 'info'],
  ECS_LOGFILE: [z.string(), ''],
  ECS_LOG_OUTPUT_FORMAT: [oneOf(['logfmt', 'json']), 'logfmt'],
  ECS_ENGINE_AUTH_TYPE: [oneOf(['docker', 'dockercfg', '']), ''],
  ECS_ENGINE_AUTH_DATA: [z.string(), ''],
  DOCKER_HOST: [z.string().min(1), 'unix:///var/run/docker.sock'],
  ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION: [durationMs, '3h'],
  ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION_JITTER: [durationMs, '0'],
  ECS_CONTAINER_STOP_TIMEOUT: [durationMs, '30s'],
  ECS_CONTAINER_START_TIMEOUT: [durationMs, '3m'],
  ECS_CONTAINER_CREATE_TIMEOUT: [durationMs, '4m'],
  ECS_IMAGE_PULL_TIMEOUT: [durationMs, '2h'],
  ECS_IMAGE_PULL_INACTIVITY_TIMEOUT: [durationMs, '1m'],
  ECS_DISABLE_PRIVILEGED: [bool, 'false'],
  ECS_AVAILABLE_LOGGING_DRIVERS: [jsonOf(z.array(z.string(), { error: 'must be a JSON array of driver names' })), '["json-file","none"]'],
  ECS_INSTANCE_ATTRIBUTES: [jsonOf(z.record(z.string(), z.string(), { error: 'must be a JSON object of string values' })), '{}'],
  ECS_CONTAINER_INSTANCE_TAGS: [jsonOf(z.record(z.string(), z.string(), { error: 'must be a JSON object of string values' })), '{}'],
  ECS_DYNAMIC_HOST_PORT_RANGE: [portRange, undefined],
  ECS_IMAGE_PULL_BEHAVIOR: [oneOf(['default', 'always', 'once', 'prefer-cached']), 'default'],
  ECS_BACKEND_HOST: [url, ''],
  ECS_INTROSPECTION_PORT: [intStr(0), '51678'],
  ECS_DISABLE_IMAGE_CLEANUP: [bool, 'false'],
  ECS_IMAGE_CLEANUP_INTERVAL: [durationMs, '30m'],
  ECS_IMAGE_MINIMUM_CLEANUP_AGE: [durationMs, '1h'],
  NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE: [durationMs, '1h'],
  ECS_NUM_IMAGES_DELETE_PER_CYCLE: [intStr(-1_000_000), '5'],
  ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP: [bool, 'false'],
  ECS_EXCLUDE_UNTRACKED_IMAGE: [csv, ''],
  /** berth: images no cleanup removes (the ECS agent takes this list from ECS_EXCLUDE_UNTRACKED_IMAGE) */
  ECS_IMAGE_CLEANUP_EXCLUDE: [csv, ''],
  ECS_EXCLUDE_IPV6_PORTBINDING: [bool, 'true'],
  ECS_ENABLE_TASK_CPU_MEM_LIMIT: [bool, 'true'],
  ECS_CGROUP_PATH: [z.string().min(1), '/sys/fs/cgroup'],
  ECS_CGROUP_CPU_PERIOD: [durationMs, '100ms'],
  ECS_TASK_PIDS_LIMIT: [intStr(-1_000_000), undefined],
  ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT: [bool, 'false'],
  ECS_SELINUX_CAPABLE: [bool, 'false'],
  ECS_APPARMOR_CAPABLE: [bool, 'false'],
  ECS_INSTANCE_TYPE: [z.string(), ''],
  ECS_AVAILABILITY_ZONE: [z.string(), ''],
  ECS_INSTANCE_ID: [z.string(), ''],
  BERTH_BOOTSTRAP_TOKEN: [z.string(), ''],
  BERTH_RUNTIME: [oneOf(['docker', 'hollow']), 'docker'],
  /** host:port the agent serves container logs on, for the apiserver (empty: no logs) */
  BERTH_LOGS_LISTEN: [z.string().regex(/^$|^[^\s:]+:\d+$/, { error: 'must be HOST:PORT' }), ''],
  /** CA bundle (PEM file) that signed the apiserver's certificate (empty: the system roots) */
  BERTH_CA_FILE: [z.string(), ''],
  /** the address other hosts and the apiserver reach this host at (empty: the local address of the connection to ECS_BACKEND_HOST) */
  BERTH_HOST_IP: [z.string().regex(/^$|^\d{1,3}(\.\d{1,3}){3}$|^[0-9a-fA-F:]+$/, { error: 'must be an IPv4 or IPv6 address' }), ''],
  /** berth: no service discovery DNS server (containers keep Docker's resolvers) */
  ECS_DISABLE_SERVICE_DISCOVERY_DNS: [bool, 'false'],
  /** berth: the address the DNS server listens on (port 53) and containers are given (empty: the Docker bridge's gateway) */
  ECS_SERVICE_DISCOVERY_DNS_ADDRESS: [z.string().regex(/^$|^\d{1,3}(\.\d{1,3}){3}$/, { error: 'must be an IPv4 address' }), ''],
  /** berth: where the host's resolvers are read from, for the names outside berth.internal */
  ECS_SERVICE_DISCOVERY_DNS_RESOLV_CONF: [z.string().min(1), '/etc/resolv.conf'],
} as const satisfies Record<string, readonly [z.ZodType, string | undefined]>;

export type AgentVariable = keyof typeof vars;
export const AGENT_VARIABLES = Object.keys(vars) as AgentVariable[];

export type ImagePullBehavior = 'default' | 'always' | 'once' | 'prefer-cached';

export interface AgentConfig {
  cluster: string;
  reservedPorts: number[];
  reservedPortsUdp: number[];
  /** MiB */
  reservedMemory: number;
  dataDir: string;
  checkpoint: boolean;
  logLevel: 'crit' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  logFile: string;
  logOutputFormat: 'logfmt' | 'json';
  engineAuthType: 'docker' | 'dockercfg' | '';
  engineAuthData: string;
  dockerHost: string;
  /** all durations in milliseconds */
  taskCleanupWaitMs: number;
  containerStopTimeoutMs: number;
  containerStartTimeoutMs: number;
  containerCreateTimeoutMs: number;
  imagePullTimeoutMs: number;
  imagePullInactivityTimeoutMs: number;
  disablePrivileged: boolean;
  availableLoggingDrivers: string[];
  instanceAttributes: Record<string, string>;
  containerInstanceTags: Record<string, string>;
  dynamicHostPortRange: { from: number; to: number };
  imagePullBehavior: ImagePullBehavior;
  backendHost: string;
  introspectionPort: number;
  disableImageCleanup: boolean;
  imageCleanupIntervalMs: number;
  imageMinimumCleanupAgeMs: number;
  nonEcsImageMinimumCleanupAgeMs: number;
  numImagesDeletePerCycle: number;
  enableUntrackedImageCleanup: boolean;
  /** images no cleanup removes (ECS_EXCLUDE_UNTRACKED_IMAGE, ECS_IMAGE_CLEANUP_EXCLUDE) */
  imageCleanupExclude: string[];
  /** ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION_JITTER */
  taskCleanupWaitJitterMs: number;
  /** ECS_EXCLUDE_IPV6_PORTBINDING */
  excludeIpv6PortBinding: boolean;
  /** ECS_ENABLE_TASK_CPU_MEM_LIMIT */
  taskCpuMemLimit: boolean;
  cgroupPath: string;
  cgroupCpuPeriodMs: number;
  /** ECS_TASK_PIDS_LIMIT (undefined: unlimited) */
  taskPidsLimit?: number;
  pullDependentUpfront: boolean;
  selinuxCapable: boolean;
  apparmorCapable: boolean;
  /** ECS_INSTANCE_TYPE / ECS_AVAILABILITY_ZONE (the environment or the config file) */
  instanceType: string;
  availabilityZone: string;
  /** values ECS ignores or clamps, as it logs them */
  warnings: string[];
  /** berth: a fixed instance id (else generated and checkpointed) */
  instanceId: string;
  bootstrapToken: string;
  runtime: 'docker' | 'hollow';
  logsListen: string;
  caFile: string;
  hostIp: string;
  /** service discovery DNS: off, the listen address (empty: the Docker bridge gateway), the upstreams' resolv.conf */
  dnsDisabled: boolean;
  dnsAddress: string;
  dnsResolvConf: string;
}

/** Parse an `ecs.config`-style file: KEY=VALUE lines, `#` comments, optional `export`, optional quotes. */
export function parseEnvFile(text: string, fileName = 'ecs.config'): Record<string, string> {
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(line);
    if (!m) throw invalid('AgentConfig', fileName, [{ field: `${fileName}:${i + 1}`, message: `expected KEY=VALUE, got "${raw}"` }]);
    let value = m[2].trim();
    if ((value.startsWith('"') && value.endsWith('"') && value.length >= 2) || (value.startsWith("'") && value.endsWith("'") && value.length >= 2)) {
      value = value.slice(1, -1);
    }
    out[m[1]] = value;
  });
  return out;
}

export interface LoadOptions {
  /** the environment (default process.env) */
  env?: Record<string, string | undefined>;
  /** path of an ecs.config-style file; missing file is an error only when given explicitly */
  file?: string;
  /** file contents given directly (tests) */
  fileContents?: Record<string, string>;
}

/** Load the agent's configuration. Throws BerthError(Invalid) naming every bad variable. */
export function loadAgentConfig(opts: LoadOptions = {}): AgentConfig {
  const env = opts.env ?? process.env;
  let fileVals: Record<string, string> = opts.fileContents ?? {};
  if (opts.file) {
    let text: string;
    try {
      text = fs.readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw invalid('AgentConfig', opts.file, [{ field: 'configFile', message: `cannot read ${opts.file}: ${(e as Error).message}` }]);
    }
    fileVals = { ...fileVals, ...parseEnvFile(text, opts.file) };
  }
  const raw = (k: AgentVariable): string | undefined => {
    const e = env[k];
    if (e !== undefined && e !== '') return e;
    if (fileVals[k] !== undefined && fileVals[k] !== '') return fileVals[k];
    return undefined;
  };
  const causes: { field: string; message: string }[] = [];
  const val: Record<string, unknown> = {};
  for (const k of AGENT_VARIABLES) {
    const [schema, def] = vars[k] as readonly [z.ZodType, string | undefined];
    const given = raw(k);
    const input = given ?? (k === 'ECS_DYNAMIC_HOST_PORT_RANGE' ? defaultPortRange() : def);
    if (input === undefined) continue;
    const r = schema.safeParse(input);
    if (r.success) val[k] = r.data;
    else causes.push({ field: k, message: `invalid value "${input}": ${r.error.issues.map((i) => i.message).join('; ')}` });
  }
  if (causes.length) {
    throw invalid('AgentConfig', 'environment', causes, `invalid agent configuration: ${causes.map((c) => `${c.field}: ${c.message}`).join('; ')}`);
  }
  const dataDirGiven = raw('ECS_DATADIR') !== undefined;
  // the ECS agent's bounds (agent/config/config.go validateAndOverrideBounds, parse.go)
  const warnings: string[] = [];
  const num = (k: AgentVariable) => val[k] as number;
  if (val.ECS_ENGINE_AUTH_DATA) {
    try {
      const d = JSON.parse(val.ECS_ENGINE_AUTH_DATA as string) as unknown;
      if (!d || typeof d !== 'object' || Array.isArray(d)) throw new Error('not an object');
    } catch {
      causes.push({ field: 'ECS_ENGINE_AUTH_DATA', message: 'is not a JSON object of registry -> credentials' });
    }
  }
  const atLeastOrRefuse = (k: AgentVariable, min: number, text: string) => {
    if (num(k) < min) causes.push({ field: k, message: `invalid value "${raw(k)}": must be at least ${text}` });
  };
  atLeastOrRefuse('ECS_CONTAINER_STOP_TIMEOUT', 1000, '1s');
  atLeastOrRefuse('ECS_CONTAINER_START_TIMEOUT', 45_000, '45s');
  if (causes.length) {
    throw invalid('AgentConfig', 'environment', causes, `invalid agent configuration: ${causes.map((c) => `${c.field}: ${c.message}`).join('; ')}`);
  }
  const atLeast = (k: AgentVariable, min: number, fallback: number, what: string): number => {
    const v = num(k);
    if (v >= min) return v;
    warnings.push(`${k}=${raw(k)} is below the minimum of ${what}; using ${fallbackText(k, fallback)}`);
    return fallback;
  };
  const fallbackText = (k: AgentVariable, v: number) => (k === 'ECS_NUM_IMAGES_DELETE_PER_CYCLE' ? String(v) : `${v} ms`);
  const createTimeout = atLeast('ECS_CONTAINER_CREATE_TIMEOUT', 60_000, 60_000, '1m');
  const cleanupWait = atLeast('ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION', 1000, 3 * 3600_000, '1s');
  const inactivity = atLeast('ECS_IMAGE_PULL_INACTIVITY_TIMEOUT', 60_000, 60_000, '1m');
  const cleanupInterval = atLeast('ECS_IMAGE_CLEANUP_INTERVAL', 10 * 60_000, 30 * 60_000, '10m');
  const perCycle = atLeast('ECS_NUM_IMAGES_DELETE_PER_CYCLE', 1, 5, '1');
  let period = num('ECS_CGROUP_CPU_PERIOD');
  if (period < 8 || period > 100) {
    warnings.push(`ECS_CGROUP_CPU_PERIOD=${raw('ECS_CGROUP_CPU_PERIOD')} is outside 8ms-100ms; using 100ms`);
    period = 100;
  }
  let pids = val.ECS_TASK_PIDS_LIMIT as number | undefined;
  if (pids !== undefined && (pids < 1 || pids > 4_194_304)) {
    warnings.push(`ECS_TASK_PIDS_LIMIT=${pids} is outside 1-4194304; no pids limit`);
    pids = undefined;
  }
  return {
    cluster: val.ECS_CLUSTER as string,
    reservedPorts: val.ECS_RESERVED_PORTS as number[],
    reservedPortsUdp: val.ECS_RESERVED_PORTS_UDP as number[],
    reservedMemory: val.ECS_RESERVED_MEMORY as number,
    dataDir: val.ECS_DATADIR as string,
    // true if ECS_DATADIR is explicitly set, false otherwise (the ECS agent's README)
    checkpoint: (val.ECS_CHECKPOINT as boolean | undefined) ?? dataDirGiven,
    logLevel: val.ECS_LOGLEVEL as AgentConfig['logLevel'],
    logFile: val.ECS_LOGFILE as string,
    logOutputFormat: val.ECS_LOG_OUTPUT_FORMAT as AgentConfig['logOutputFormat'],
    engineAuthType: val.ECS_ENGINE_AUTH_TYPE as AgentConfig['engineAuthType'],
    engineAuthData: val.ECS_ENGINE_AUTH_DATA as string,
    dockerHost: val.DOCKER_HOST as string,
    taskCleanupWaitMs: cleanupWait,
    taskCleanupWaitJitterMs: num('ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION_JITTER'),
    containerStopTimeoutMs: num('ECS_CONTAINER_STOP_TIMEOUT'),
    containerStartTimeoutMs: num('ECS_CONTAINER_START_TIMEOUT'),
    containerCreateTimeoutMs: createTimeout,
    imagePullTimeoutMs: num('ECS_IMAGE_PULL_TIMEOUT'),
    imagePullInactivityTimeoutMs: inactivity,
    disablePrivileged: val.ECS_DISABLE_PRIVILEGED as boolean,
    availableLoggingDrivers: val.ECS_AVAILABLE_LOGGING_DRIVERS as string[],
    instanceAttributes: val.ECS_INSTANCE_ATTRIBUTES as Record<string, string>,
    containerInstanceTags: val.ECS_CONTAINER_INSTANCE_TAGS as Record<string, string>,
    dynamicHostPortRange: val.ECS_DYNAMIC_HOST_PORT_RANGE as { from: number; to: number },
    imagePullBehavior: val.ECS_IMAGE_PULL_BEHAVIOR as ImagePullBehavior,
    backendHost: val.ECS_BACKEND_HOST as string,
    introspectionPort: val.ECS_INTROSPECTION_PORT as number,
    disableImageCleanup: val.ECS_DISABLE_IMAGE_CLEANUP as boolean,
    imageCleanupIntervalMs: cleanupInterval,
    imageMinimumCleanupAgeMs: num('ECS_IMAGE_MINIMUM_CLEANUP_AGE'),
    nonEcsImageMinimumCleanupAgeMs: num('NON_ECS_IMAGE_MINIMUM_CLEANUP_AGE'),
    numImagesDeletePerCycle: perCycle,
    enableUntrackedImageCleanup: val.ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP as boolean,
    imageCleanupExclude: [...new Set([...(val.ECS_EXCLUDE_UNTRACKED_IMAGE as string[]), ...(val.ECS_IMAGE_CLEANUP_EXCLUDE as string[])])],
    excludeIpv6PortBinding: val.ECS_EXCLUDE_IPV6_PORTBINDING as boolean,
    taskCpuMemLimit: val.ECS_ENABLE_TASK_CPU_MEM_LIMIT as boolean,
    cgroupPath: val.ECS_CGROUP_PATH as string,
    cgroupCpuPeriodMs: period,
    ...(pids !== undefined ? { taskPidsLimit: pids } : {}),
    pullDependentUpfront: val.ECS_PULL_DEPENDENT_CONTAINERS_UPFRONT as boolean,
    selinuxCapable: val.ECS_SELINUX_CAPABLE as boolean,
    apparmorCapable: val.ECS_APPARMOR_CAPABLE as boolean,
    instanceType: val.ECS_INSTANCE_TYPE as string,
    availabilityZone: val.ECS_AVAILABILITY_ZONE as string,
    warnings,
    instanceId: val.ECS_INSTANCE_ID as string,
    bootstrapToken: val.BERTH_BOOTSTRAP_TOKEN as string,
    runtime: val.BERTH_RUNTIME as AgentConfig['runtime'],
    logsListen: val.BERTH_LOGS_LISTEN as string,
    caFile: val.BERTH_CA_FILE as string,
    hostIp: val.BERTH_HOST_IP as string,
    dnsDisabled: val.ECS_DISABLE_SERVICE_DISCOVERY_DNS as boolean,
    dnsAddress: val.ECS_SERVICE_DISCOVERY_DNS_ADDRESS as string,
    dnsResolvConf: val.ECS_SERVICE_DISCOVERY_DNS_RESOLV_CONF as string,
  };
}

/** ECS_LOGLEVEL -> pino level ("crit" is pino's "fatal"). */
export const pinoLevel = (l: AgentConfig['logLevel']): string => (l === 'crit' ? 'fatal' : l);
