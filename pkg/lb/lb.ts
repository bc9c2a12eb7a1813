/**
 * berth-lb: one per load balancer host. Runs Debian's HAProxy and keeps it matching the
 * berth objects: a frontend per listener and a backend per target set in the configuration
 * (rewritten, and reloaded, only when listeners or health checks change); targets added,
 * drained and removed through the Runtime API, without reloads; HAProxy's own health
 * checks read back (`show stat`) into each target's state in the target set's status.
 *
 * Level-triggered: every pass compares what the objects ask for with what HAProxy has
 * (`show stat`) and acts on the difference, so a restart of either side heals by itself.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { LoadBalancerObj, TargetGroup } from '../api/kinds.ts';
import { targetGroupName, type HealthCheck, type Target } from '../api/loadbalancing.ts';
import type { Client } from '../client/client.ts';
import { Informer } from '../client/informer.ts';
import { isBerthError } from '../errors/errors.ts';
import { addServerCommand, dataPlaneOf, drainServerCommand, HaproxyProcess, parseShowStat, removeServerCommand, renderConfig, runtimeCommand, serverName, type Backend, type ServerStat } from './haproxy.ts';

export interface LbOptions {
  client: Client;
  log: Logger;
  /** where the configuration, the admin socket and the pid file live */
  dir: string;
  /** the address listeners bind (berth up: 127.0.0.1) */
  bindAddress: string;
  /** serve only these load balancers (default: all) */
  loadBalancers?: string[];
  binary?: string;
  /** how often HAProxy's state is compared and read back, besides every change (default 1 s) */
  syncMs?: number;
}

type Health = Pick<Target, 'state' | 'reason' | 'description'>;

/**
 * A target's ELB state from HAProxy's view of its server (pure). A target starts `initial`
 * (its server is added marked down, so it takes traffic only once the healthy threshold of
 * checks has passed); it is `unhealthy` once it was up and went down, or when it never came
 * up within the unhealthy threshold of checks.
 */
export function targetHealth(stat: ServerStat | undefined, prev: Target, check: HealthCheck, now: number): Health {
  const keep: Health = { state: prev.state, reason: prev.reason, description: prev.description };
  if (!stat || prev.state === 'draining') return keep;
  const s = stat.status;
  if (s.startsWith('UP') || s === 'NOLB' || s === 'no check') return { state: 'healthy' };
  if (!s.startsWith('DOWN')) return keep; // MAINT, DRAIN: ours, not the checks'
  const failed: Health =
    stat.checkStatus === 'L7STS'
      ? { state: 'unhealthy', reason: 'Target.ResponseCodeMismatch', description: `Health checks failed with these codes: [${stat.checkCode}]` }
      : stat.checkStatus === 'L4TOUT' || stat.checkStatus === 'L7TOUT'
        ? { state: 'unhealthy', reason: 'Target.Timeout', description: 'Request timed out' }
        : { state: 'unhealthy', reason: 'Target.FailedHealthChecks', description: stat.checkDesc || 'Health checks failed' };
  if (prev.state === 'healthy' || prev.state === 'unhealthy') return failed;
  const since = prev.registeredAt ? Date.parse(prev.registeredAt) : now;
  const patience = check.unhealthy * check.intervalMs + check.timeoutMs;
  if (stat.checkStatus === 'INI' || stat.checkStatus === '' || / \d+\/\d+$/.test(s) || now - since < patience) return { state: 'initial', reason: 'Elb.InitialHealthChecking', description: 'Initial health checks in progress' };
  return failed;
}

export class LoadBalancerHost {
  private readonly lbs: Informer<LoadBalancerObj>;
  private readonly tgs: Informer<TargetGroup>;
  private readonly haproxy: HaproxyProcess;
  private readonly socket: string;
  private readonly configFile: string;
  private lastConfig = '';
  /** target sets already logged as refused (logged once, not every pass) */
  private refusedLogged = new Set<string>();
  private timer?: NodeJS.Timeout;
  private running = Promise.resolve();
  private queued = false;
  private stopped = false;
  /** the last pass's error, for the log (once per distinct message) */
  private lastError = '';

  constructor(private readonly o: LbOptions) {
    this.lbs = new Informer<LoadBalancerObj>(o.client, 'LoadBalancer', { log: o.log });
    this.tgs = new Informer<TargetGroup>(o.client, 'TargetGroup', { log: o.log });
    this.socket = join(o.dir, 'admin.sock');
    this.configFile = join(o.dir, 'haproxy.cfg');
    this.haproxy = new HaproxyProcess(o.binary ?? 'haproxy', this.configFile, join(o.dir, 'haproxy.pid'));
  }

  /** the haproxy master's pid (tests stop it by pid if the host is killed) */
  get haproxyPid() {
    return this.haproxy.pid;
  }

  async start(): Promise<void> {
    await mkdir(this.o.dir, { recursive: true, mode: 0o700 });
    const kick = () => this.kick();
    for (const inf of [this.lbs, this.tgs] as Array<Informer<LoadBalancerObj | TargetGroup>>) {
      inf.on({ add: kick, update: kick, delete: kick });
      inf.start();
    }
    await Promise.all([this.lbs.waitForSync(), this.tgs.waitForSync()]);
    await this.pass();
    this.timer = setInterval(kick, this.o.syncMs ?? 1_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.lbs.stop();
    this.tgs.stop();
    await this.running.catch(() => undefined);
    await this.haproxy.stop();
  }

  /** one pass at a time; changes meanwhile collapse into one more */
  private kick() {
    if (this.queued || this.stopped || !this.timer) return;
    this.queued = true;
    this.running = this.running.then(async () => {
      this.queued = false;
      if (this.stopped) return;
      try {
        await this.pass();
        this.lastError = '';
      } catch (e) {
        const msg = (e as Error).message;
        if (msg !== this.lastError) this.o.log.warn({ err: msg }, 'load balancer pass failed (retrying)');
        this.lastError = msg;
      }
    });
  }

  private served(): { lbs: LoadBalancerObj[]; tgs: TargetGroup[] } {
    const names = this.o.loadBalancers;
    const lbs = this.lbs.list().filter((l) => !names || names.includes(l.metadata.name));
    const wanted = new Set(lbs.flatMap((l) => l.spec.listeners.flatMap((x) => (x.targetGroupArn ? [targetGroupName(x.targetGroupArn)] : []))));
    return { lbs, tgs: this.tgs.list().filter((t) => wanted.has(t.metadata.name)) };
  }

  private async cmd(line: string): Promise<string> {
    return runtimeCommand(this.socket, line);
  }

  /** the configuration, then each backend's servers, then their health back into the objects */
  private async pass(): Promise<void> {
    const { lbs, tgs } = this.served();
    const dp = dataPlaneOf(
      lbs.map((l) => ({ name: l.metadata.name, spec: l.spec })),
      tgs.map((t) => ({ name: t.metadata.name, spec: t.spec })),
      this.o.bindAddress,
    );
    const config = renderConfig(dp, this.socket);
    for (const r of dp.refused ?? []) if (!this.refusedLogged.has(`${r.kind}/${r.name}`)) this.o.log.warn(r, 'target set not served: it cannot be written into haproxy.cfg');
    this.refusedLogged = new Set((dp.refused ?? []).map((r) => `${r.kind}/${r.name}`));
    if (config !== this.lastConfig) {
      await writeFile(this.configFile, config, { mode: 0o600 });
      if (this.haproxy.running) this.haproxy.reload();
      else this.haproxy.start();
      this.lastConfig = config;
      await this.waitForSocket();
      this.o.log.info({ frontends: dp.frontends.length, backends: dp.backends.length }, 'haproxy configuration applied');
    }
    if (!this.haproxy.running) {
      this.lastConfig = ''; // start it again next pass
      throw new Error(`haproxy exited: ${this.haproxy.output.slice(-1_000)}`);
    }
    let stats = parseShowStat(await this.cmd('show stat'));
    const now = Date.now();
    let changed = false;
    for (const b of dp.backends) {
      const obj = b.ref.kind === 'TargetGroup' ? this.tgs.get(b.ref.name) : this.lbs.get(b.ref.name);
      const targets = obj?.status?.targets ?? [];
      const have = new Map(stats.filter((s) => s.backend === b.name).map((s) => [s.server, s]));
      const want = new Map(targets.map((t) => [serverName(t.id, t.port), t]));
      for (const [name, t] of want) {
        const s = have.get(name);
        if (!s) {
          if (t.state === 'draining') continue; // never served: nothing to drain
          let add: string;
          try {
            add = addServerCommand(b, t.id, t.port, t.state === 'healthy');
          } catch (e) {
            this.o.log.warn({ backend: b.name, target: t.id, err: (e as Error).message }, 'target not served'); // one bad target does not stop the others
            continue;
          }
          await this.expectOk(await this.cmd(add), 'add server');
          changed = true;
        } else if (t.state === 'draining' && s.status !== 'DRAIN' && s.status !== 'MAINT') {
          await this.cmd(drainServerCommand(b.name, name));
          changed = true;
        }
      }
      for (const name of have.keys()) {
        if (want.has(name)) continue;
        await this.cmd(removeServerCommand(b.name, name));
        changed = true;
      }
    }
    if (changed) stats = parseShowStat(await this.cmd('show stat'));
    for (const b of dp.backends) await this.report(b, stats, now);
  }

  private async expectOk(answer: string, what: string) {
    if (/New server registered/.test(answer)) return;
    if (/Already exists/i.test(answer)) return;
    throw new Error(`${what}: ${answer.trim().slice(0, 300)}`);
  }

  /** HAProxy's check results into the target set's status, where they differ */
  private async report(b: Backend, stats: ServerStat[], now: number) {
    const obj = b.ref.kind === 'TargetGroup' ? this.tgs.get(b.ref.name) : this.lbs.get(b.ref.name);
    if (!obj) return;
    const byServer = new Map(stats.filter((s) => s.backend === b.name).map((s) => [s.server, s]));
    const health = (t: Target) => targetHealth(byServer.get(serverName(t.id, t.port)), t, b.check, now);
    const differs = (t: Target) => {
      const h = health(t);
      return h.state !== t.state || h.reason !== t.reason || h.description !== t.description;
    };
    if (!(obj.status?.targets ?? []).some(differs)) return;
    try {
      await this.o.client.guaranteedUpdate<LoadBalancerObj | TargetGroup>(
        b.ref.kind,
        undefined,
        b.ref.name,
        (cur) => {
          let any = false;
          const targets = (cur.status?.targets ?? []).map((t) => {
            if (!differs(t)) return t;
            any = true;
            const h = health(t);
            const next: Target = { ...t, state: h.state };
            delete next.reason;
            delete next.description;
            if (h.reason) next.reason = h.reason;
            if (h.description) next.description = h.description;
            return next;
          });
          if (!any) return undefined;
          cur.status = { ...(cur.status ?? {}), targets } as typeof cur.status;
          return cur;
        },
        { status: true },
      );
    } catch (e) {
      if (!isBerthError(e, 'NotFound')) throw e;
    }
  }

  private async waitForSocket() {
    const until = Date.now() + 10_000;
    // after a reload the old worker may still answer for a moment: wait for one that knows every backend
    const need = [...this.lastConfig.matchAll(/^backend (\S+)/gm)].map((m) => m[1]);
    for (;;) {
      try {
        const stat = await this.cmd('show stat');
        if (need.every((b) => stat.includes(`\n${b},BACKEND,`))) return;
      } catch {
        /* not up yet */
      }
      if (!this.haproxy.running) throw new Error(`haproxy exited: ${this.haproxy.output.slice(-1_000)}`);
      if (Date.now() > until) throw new Error(`haproxy did not answer on ${this.socket} within 10 s: ${this.haproxy.output.slice(-1_000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
