/**
 * Debian's HAProxy as berth's data plane: the configuration (a frontend per listener, a
 * backend per target set, no servers: they come and go through the Runtime API), the
 * Runtime API client (one command line per connection on the admin socket), the parsing of
 * `show stat`, and the process (master-worker mode: SIGUSR2 reloads the configuration).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, isIP } from 'node:net';
import { ELB_NAME_RE, healthCheckOfLoadBalancer, healthCheckOfTargetGroup, HTTP_PATH_RE, matcherCodes, MATCHER_RE, targetGroupName, type HealthCheck, type LoadBalancerSpec, type TargetGroupSpec } from '../api/loadbalancing.ts';

export interface Backend {
  /** HAProxy backend name: `tg_NAME` or `elb_NAME` */
  name: string;
  ref: { kind: 'LoadBalancer' | 'TargetGroup'; name: string };
  mode: 'http' | 'tcp';
  check: HealthCheck;
}

export interface Frontend {
  name: string;
  bind: string;
  mode: 'http' | 'tcp';
  backend: string;
}

export interface DataPlane {
  frontends: Frontend[];
  backends: Backend[];
  /** target sets left out because a field could not be written into haproxy.cfg safely (older objects, written before their schema refused it) */
  refused?: Array<{ kind: 'LoadBalancer' | 'TargetGroup'; name: string; reason: string }>;
}

/**
 * Why a target set cannot go into haproxy.cfg (undefined: it can). The schemas refuse these
 * already; this keeps one object written before them from making the whole file invalid
 * (which would stop every reload) or from adding configuration of its own.
 */
function unsafeTargetSet(name: string, check: HealthCheck): string | undefined {
  if (!ELB_NAME_RE.test(name)) return 'its name is not an ELB name';
  if (check.protocol === 'HTTP' && !HTTP_PATH_RE.test(check.path)) return 'its health check path holds characters haproxy.cfg cannot take';
  if (check.protocol === 'HTTP' && !MATCHER_RE.test(check.codes)) return 'its health check matcher is not HTTP codes';
  return undefined;
}

export const backendName = (ref: { kind: 'LoadBalancer' | 'TargetGroup'; name: string }) => `${ref.kind === 'TargetGroup' ? 'tg' : 'elb'}_${ref.name}`;
/** a target's server name in its backend: its address and port */
export const serverName = (id: string, port: number) => `t_${id.replace(/[^A-Za-z0-9]/g, '_')}_${port}`;

const mode = (p: 'HTTP' | 'TCP') => (p === 'HTTP' ? 'http' : 'tcp') as 'http' | 'tcp';

/** What the load balancers and target groups ask of HAProxy (pure). */
export function dataPlaneOf(lbs: Array<{ name: string; spec: LoadBalancerSpec }>, tgs: Array<{ name: string; spec: TargetGroupSpec }>, bindAddress: string): DataPlane {
  const backends = new Map<string, Backend>();
  const frontends: Frontend[] = [];
  const refused: NonNullable<DataPlane['refused']> = [];
  for (const tg of tgs) {
    const ref = { kind: 'TargetGroup' as const, name: tg.name };
    const check = healthCheckOfTargetGroup(tg.spec);
    const bad = unsafeTargetSet(tg.name, check);
    if (bad) refused.push({ ...ref, reason: bad });
    else backends.set(backendName(ref), { name: backendName(ref), ref, mode: mode(tg.spec.protocol), check });
  }
  for (const lb of lbs) {
    const ref = { kind: 'LoadBalancer' as const, name: lb.name };
    const bad = unsafeTargetSet(lb.name, healthCheckOfLoadBalancer(lb.spec));
    if (bad) {
      refused.push({ ...ref, reason: bad });
      continue;
    }
    const own = backendName(ref);
    for (const l of lb.spec.listeners) {
      let backend = own;
      if (l.targetGroupArn) backend = backendName({ kind: 'TargetGroup', name: targetGroupName(l.targetGroupArn) });
      else if (!backends.has(own)) backends.set(own, { name: own, ref, mode: mode(l.instanceProtocol ?? l.protocol), check: healthCheckOfLoadBalancer(lb.spec) });
      const be = backends.get(backend);
      if (!be) continue; // a target group that is gone: the listener waits for it
      frontends.push({ name: `lb_${lb.name}_${l.loadBalancerPort}`, bind: `${bindAddress}:${l.loadBalancerPort}`, mode: be.mode, backend });
    }
  }
  return { frontends, backends: [...backends.values()].sort((a, b) => a.name.localeCompare(b.name)), ...(refused.length ? { refused } : {}) };
}

/** one word of haproxy.cfg: printable, and nothing that quotes, escapes or comments (a Runtime API argument: nor `;`, which separates commands) */
const word = (s: string, command = false): string => {
  if (!/^[!-~]+$/.test(s) || /[#"'\\]/.test(s) || (command && s.includes(';'))) throw new Error(`refusing to write ${JSON.stringify(s.slice(0, 80))} into HAProxy's ${command ? 'Runtime API command' : 'configuration'}`);
  return s;
};

/** The whole configuration file (pure). */
export function renderConfig(dp: DataPlane, socketPath: string): string {
  const lines = [
    '# written by berth-lb: servers are added, drained and removed through the Runtime API',
    'global',
    `    stats socket ${socketPath} mode 600 level admin expose-fd listeners`,
    '    stats timeout 30s',
    '',
    'defaults',
    '    mode http',
    '    timeout connect 3s',
    '    timeout client 60s',
    '    timeout server 60s',
    '    timeout tunnel 1h',
    // a connection refused by a target that just went away is tried on another one
    '    retries 3',
    '    option redispatch 1',
    '',
  ];
  for (const f of dp.frontends) {
    lines.push(`frontend ${word(f.name)}`, `    mode ${f.mode}`, `    bind ${word(f.bind)}`, `    default_backend ${word(f.backend)}`, '');
  }
  for (const b of dp.backends) {
    lines.push(`backend ${word(b.name)}`, `    mode ${b.mode}`, '    balance roundrobin', `    timeout check ${b.check.timeoutMs}ms`);
    if (b.check.protocol === 'HTTP') {
      lines.push('    option httpchk', `    http-check send meth GET uri ${word(b.check.path)}`);
      const codes = matcherCodes(b.check.codes);
      lines.push(codes.length === 1 ? `    http-check expect status ${codes[0]}` : `    http-check expect rstatus ^(${codes.join('|')})$`);
    }
    lines.push('');
  }
  return lines.join('\n') + '\n';
}

/** The Runtime API command that adds a target as a server, checked as its backend says. */
export function addServerCommand(b: Backend, id: string, port: number, startHealthy: boolean): string {
  // the address and port come from a task's status: an address and a port, or no command at all
  if (!isIP(id)) throw new Error(`refusing to add server ${JSON.stringify(id.slice(0, 80))}: not an IP address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`refusing to add server ${id} port ${port}: not a port`);
  const s = `${word(b.name, true)}/${serverName(id, port)}`;
  const c = b.check;
  const add = `add server ${s} ${id.includes(':') ? `[${id}]` : id}:${port} check inter ${c.intervalMs} rise ${c.healthy} fall ${c.unhealthy}${c.port ? ` port ${c.port}` : ''}${startHealthy ? '' : ' weight 0'}`;
  // ELB's `initial`: no traffic until the healthy threshold of checks has passed (a target already known healthy keeps its traffic).
  // Leaving maintenance (`enable server`) sets a checked server's health to up, so it is marked down after that, with
  // weight 0 until then so no request reaches it meanwhile
  return [add, `enable health ${s}`, `enable server ${s}`, ...(startHealthy ? [] : [`set server ${s} health down`, `set server ${s} weight 1`])].join('; ');
}

export const drainServerCommand = (backend: string, server: string) => `set server ${word(backend, true)}/${word(server, true)} state drain`;
export const removeServerCommand = (backend: string, server: string) => `set server ${word(backend, true)}/${word(server, true)} state maint; shutdown sessions server ${backend}/${server}; del server ${backend}/${server}`;

/** One line of `show stat` for a server. */
export interface ServerStat {
  backend: string;
  server: string;
  /** UP, UP 1/2 (going down), DOWN, DOWN 1/2 (going up), NOLB, MAINT, DRAIN, no check */
  status: string;
  checkStatus: string;
  checkCode: string;
  checkDesc: string;
  addr: string;
}

/** `show stat` CSV -> the servers' rows (pure). */
export function parseShowStat(csv: string): ServerStat[] {
  const lines = csv.split('\n').filter((l) => l.trim());
  if (!lines.length || !lines[0].startsWith('# ')) return [];
  const cols = lines[0].slice(2).split(',');
  const at = (name: string) => cols.indexOf(name);
  const i = { px: at('pxname'), sv: at('svname'), status: at('status'), cs: at('check_status'), cc: at('check_code'), cd: at('check_desc'), addr: at('addr') };
  const out: ServerStat[] = [];
  for (const l of lines.slice(1)) {
    const f = l.split(',');
    const sv = f[i.sv];
    if (sv === 'FRONTEND' || sv === 'BACKEND') continue;
    out.push({ backend: f[i.px], server: sv, status: f[i.status] ?? '', checkStatus: f[i.cs] ?? '', checkCode: f[i.cc] ?? '', checkDesc: f[i.cd] ?? '', addr: f[i.addr] ?? '' });
  }
  return out;
}

/** One Runtime API command line (commands separated by `;`): its whole answer. */
export function runtimeCommand(socketPath: string, line: string, timeoutMs = 5_000): Promise<string> {
  // one line: a newline would end it and start commands of its own (arguments are checked as the commands are built)
  if (/[\r\n]/.test(line)) return Promise.reject(new Error('refusing a HAProxy Runtime API command with a line break'));
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let out = '';
    const timer = setTimeout(() => sock.destroy(new Error(`HAProxy Runtime API: no answer to "${line.slice(0, 60)}" in ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.end(`${line}\n`));
    sock.on('data', (d) => (out += d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** The haproxy process, master-worker mode, in the foreground of its own process group. */
export class HaproxyProcess {
  private child?: ChildProcess;
  output = '';
  constructor(
    private readonly binary: string,
    private readonly configFile: string,
    private readonly pidFile: string,
  ) {}

  get pid() {
    return this.child?.pid;
  }

  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    const child = spawn(this.binary, ['-W', '-db', '-f', this.configFile, '-p', this.pidFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-8_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.on('error', (e) => keep(Buffer.from(`${e.message}\n`)));
    // haproxy never outlives this process, however it ends (a forced exit skips stop())
    const onExit = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    };
    process.once('exit', onExit);
    child.once('exit', () => process.removeListener('exit', onExit));
    this.child = child;
  }

  /** reread the configuration (a new worker takes the listeners; the old one finishes its connections) */
  reload(): void {
    if (this.running) this.child!.kill('SIGUSR2');
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
}

/** `haproxy -v`'s version, e.g. [2, 6] */
export async function haproxyVersion(binary: string): Promise<[number, number] | undefined> {
  const out = await new Promise<string>((resolve) => {
    const p = spawn(binary, ['-v']);
    let s = '';
    p.stdout.on('data', (d) => (s += d));
    p.on('error', () => resolve(''));
    p.on('close', () => resolve(s));
  });
  const m = /version (\d+)\.(\d+)/.exec(out);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}
