/**
 * The randomized workload of the multi-apiserver test: seeded, spread over several
 * apiservers, recording what each acknowledged, what each refused, every watch stream and
 * every paginated list, for the checker (check.ts) to hold against the store's own history.
 */

export const MARK = 'test.berth.dev/op';
export const SEL = 'test.berth.dev/sel';
const V = '/apis/berth.dev/v1';

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with its seed */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
    chance: (p: number) => next() < p,
  };
}
export type Rng = ReturnType<typeof prng>;

/** A write the apiserver acknowledged (2xx): it must be in the store's history, exactly once, at `rv`. */
export interface Ack {
  op: number;
  server: number;
  what: string;
  key: string;
  rv: number;
  type: 'put' | 'delete';
  /** a create: the object's uid, and it was created at rv */
  uid?: string;
  /** an update carrying this op's marker annotation: introduced exactly once, at rv */
  marker?: string;
  /** what the stored object at rv must satisfy (a message when it does not) */
  expect?: { path: string[]; value: unknown };
}

/** A create of a name used once that was refused (4xx): the key must never appear. */
export interface Refusal {
  op: number;
  server: number;
  what: string;
  key: string;
  status: number;
  message?: string;
}

export interface Scope {
  plural: string;
  ns?: string;
  /** a label selector `test.berth.dev/sel=yes` */
  selected?: boolean;
}

export interface WatchRecord {
  id: string;
  /** the apiserver the list was read from, and the one the watch runs on */
  listServer: number;
  server: number;
  scope: Scope;
  /** the list's resourceVersion the watch starts from */
  from: number;
  /** the list's items (key -> rv) */
  listed: Map<string, number>;
  events: Array<{ type: string; key: string; rv: number }>;
  bookmarks: number[];
  ended?: string;
  close(): void;
}

export interface ListRecord {
  id: string;
  server: number;
  scope: Scope;
  limit: number;
  pages: Array<{ rv: string; items: Array<{ key: string; rv: number }>; continue?: string }>;
  /** the highest revision acknowledged to this test before the list was asked for (a fresh read is at least there) */
  ackedBefore: number;
  error?: string;
}

/** A family resolved at write time: at least the newest revision registered before the request. */
export interface Resolution {
  op: number;
  server: number;
  what: string;
  family: string;
  resolved: number;
  atLeast: number;
}

export interface Recording {
  acks: Ack[];
  refusals: Refusal[];
  watches: WatchRecord[];
  lists: ListRecord[];
  resolutions: Resolution[];
  /** 5xx answers other than a paused apiserver's time-outs, and writes whose outcome is unknown */
  serverErrors: Array<{ op: number; server: number; what: string; status: number; message: string }>;
  unknown: number;
  ops: number;
}

export const STABLE = ['st0', 'st1'];
export const VOLATILE = ['vo0', 'vo1', 'vo2'];
export const FAMILIES = ['fa', 'fb', 'fc'];
/** daemon task definitions: two on udp/2000, one on tcp/9000 */
export const DTDS: Record<string, string> = { dp1: 'udp/2000', dp2: 'udp/2000', dp3: 'tcp/9000' };

export const resources = (cpu: number, memory: number) => [
  { name: 'CPU', type: 'INTEGER', integerValue: cpu },
  { name: 'MEMORY', type: 'INTEGER', integerValue: memory },
  { name: 'PORTS', type: 'STRINGSET', stringSetValue: ['22'] },
  { name: 'PORTS_UDP', type: 'STRINGSET', stringSetValue: [] },
];
const obj = (kind: string, name: string, spec: unknown, meta: Record<string, unknown> = {}) => ({ apiVersion: 'berth.dev/v1', kind, metadata: { name, ...meta }, spec });
const storeKey = (plural: string, ns: string | undefined, name: string) => `/berth/${plural}/${ns ?? '_'}/${name}`;
const path = (plural: string, ns?: string, name?: string, sub?: string) => `${V}${ns ? `/namespaces/${ns}` : ''}/${plural}${name ? `/${name}` : ''}${sub ? `/${sub}` : ''}`;

export interface Target {
  index: number;
  url: string;
}

type Answer = { status: number; body: any };

/** One request, with a deadline (a paused apiserver never answers): status 0 when it did not answer. */
async function request(t: Target, method: string, p: string, body?: unknown, contentType = 'application/json', timeoutMs = 4000): Promise<Answer> {
  try {
    const res = await fetch(t.url + p, {
      method,
      headers: body !== undefined ? { 'Content-Type': contentType } : {},
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed };
  } catch (e) {
    return { status: 0, body: { message: (e as Error).message } };
  }
}

/** What the workload believes exists (it may be stale: ops on gone objects get 404s, which is fine). */
class Known {
  readonly byCluster = new Map<string, { tasks: Set<string>; bound: Set<string>; services: Set<string>; instances: Set<string>; daemons: Set<string> }>();
  of(ns: string) {
    let k = this.byCluster.get(ns);
    if (!k) this.byCluster.set(ns, (k = { tasks: new Set(), bound: new Set(), services: new Set(), instances: new Set(), daemons: new Set() }));
    return k;
  }
}

export class Workload {
  readonly rec: Recording = { acks: [], refusals: [], watches: [], lists: [], resolutions: [], serverErrors: [], unknown: 0, ops: 0 };
  private readonly known = new Known();
  /** family -> newest revision acknowledged so far */
  private readonly familyMax = new Map<string, number>();
  private ackedMax = 0;
  private opSeq = 0;
  private watchSeq = 0;

  constructor(
    /** prefixes every name this workload makes, so names are never reused across phases */
    private readonly tag: string,
    private readonly targets: Target[],
    private readonly rng: Rng,
    /** a paused apiserver's requests time out: not a server error */
    private readonly paused: () => number | undefined,
  ) {}

  private ack(a: Ack) {
    this.rec.acks.push(a);
    if (a.rv > this.ackedMax) this.ackedMax = a.rv;
  }

  /** the outcome of a request: 2xx is returned, 4xx too (refusals), others are recorded and undefined */
  private judge(op: number, t: Target, what: string, r: Answer): Answer | undefined {
    if (r.status >= 200 && r.status < 500) return r;
    if (r.status === 0 && this.paused() === t.index) {
      this.rec.unknown++;
      return undefined;
    }
    this.rec.unknown++;
    this.rec.serverErrors.push({ op, server: t.index, what, status: r.status, message: String(r.body?.message ?? r.body).slice(0, 300) });
    return undefined;
  }

  private target(): Target {
    return this.rng.pick(this.targets);
  }
  private cluster(): string {
    return this.rng.chance(0.6) ? this.rng.pick(STABLE) : this.rng.pick(VOLATILE);
  }
  private someOf(s: Set<string>): string | undefined {
    if (s.size === 0) return undefined;
    const arr = [...s];
    return arr[this.rng.int(arr.length)];
  }
  private marker(op: number) {
    return `op-${op}-${this.rng.int(1e9)}`;
  }

  /** Creates the fixed part: stable and volatile clusters, families, daemon task definitions. */
  async setup() {
    const t = this.targets[0];
    for (const c of [...STABLE, ...VOLATILE]) await this.must(t, 'POST', path('clusters'), obj('Cluster', c, undefined));
    for (const f of FAMILIES) {
      const r = await this.must(t, 'POST', path('taskdefinitions'), obj('TaskDefinition', f, { containerDefinitions: [{ name: 'app', image: 'busybox:0', memory: 16 }] }));
      // the latest revision (an earlier phase may have registered more)
      this.familyMax.set(f, r.body.status.revision);
    }
    for (const [d, port] of Object.entries(DTDS)) {
      await this.must(t, 'POST', path('daemontaskdefinitions'), obj('DaemonTaskDefinition', d, { containerDefinitions: [{ name: 'a', image: 'busybox', memory: 8 }] }, { annotations: { 'berth.dev/ports': port } }));
    }
    for (const c of STABLE) {
      for (let i = 0; i < 2; i++) {
        const name = `base-${c}-${i}`;
        await this.must(t, 'POST', path('containerinstances', c), obj('ContainerInstance', name, { registeredResources: resources(4096, 4096) }));
        this.known.of(c).instances.add(name);
      }
    }
    // every apiserver has seen the fixed part before the workload starts
    for (const s of this.targets) {
      for (;;) {
        const r = await request(s, 'GET', path('daemontaskdefinitions', undefined, 'dp3:1'));
        const r2 = await request(s, 'GET', path('containerinstances', STABLE[1], `base-${STABLE[1]}-1`));
        if (r.status === 200 && r2.status === 200) break;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }

  private async must(t: Target, method: string, p: string, body?: unknown): Promise<Answer> {
    const r = await request(t, method, p, body, 'application/json', 30_000);
    // the fixed part may be there from an earlier phase
    if (r.status === 409 && method === 'POST') return r;
    if (r.status < 200 || r.status >= 300) throw new Error(`setup ${method} ${p}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    if (r.body?.metadata?.resourceVersion) this.ackedMax = Math.max(this.ackedMax, Number(r.body.metadata.resourceVersion));
    return r;
  }

  /** Runs `ops` operations over `workers` concurrent workers. */
  async run(ops: number, workers: number, onProgress?: (done: number) => Promise<void> | void) {
    let left = ops;
    let done = 0;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (left > 0) {
          left--;
          await this.one();
          done++;
          await onProgress?.(done);
        }
      }),
    );
  }

  private async one() {
    const op = ++this.opSeq;
    this.rec.ops++;
    const ops: Array<[number, () => Promise<void>]> = [
      [6, () => this.createTask(op)],
      [2, () => this.labelTask(op)],
      [2, () => this.stopTask(op)],
      [2, () => this.finishTask(op)],
      [1, () => this.deleteTask(op)],
      [4, () => this.bind(op)],
      [1, () => this.createInstance(op)],
      [1, () => this.drainInstance(op)],
      [1, () => this.connectInstance(op)],
      [0.5, () => this.deleteInstance(op)],
      [2, () => this.createService(op)],
      [2, () => this.updateService(op)],
      [1, () => this.deleteService(op)],
      [2, () => this.registerTd(op)],
      [1, () => this.createDaemon(op)],
      [0.5, () => this.deleteDaemon(op)],
      [0.7, () => this.createCluster(op)],
      [0.7, () => this.deleteCluster(op)],
      [1.5, () => this.paginatedList(op)],
      [0.4, () => this.startWatch()],
    ];
    const total = ops.reduce((s, [w]) => s + w, 0);
    let x = this.rng.next() * total;
    for (const [w, fn] of ops) {
      x -= w;
      if (x <= 0) return fn();
    }
    return ops[0][1]();
  }

  // ------------------------------------------------------------------ tasks

  private async createTask(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = `${this.tag}t${op}`;
    const fam = this.rng.pick(FAMILIES);
    const sel = this.rng.chance(0.5) ? 'yes' : 'no';
    const body = obj('Task', name, { taskDefinition: this.rng.chance(0.5) ? fam : `${fam}:1`, group: 'family:test' }, { labels: { [SEL]: sel } });
    const r = this.judge(op, t, 'create task', await request(t, 'POST', path('tasks', ns), body));
    if (!r) return;
    const key = storeKey('tasks', ns, name);
    if (r.status === 201) {
      this.ack({ op, server: t.index, what: 'create task', key, rv: Number(r.body.metadata.resourceVersion), type: 'put', uid: r.body.metadata.uid });
      this.known.of(ns).tasks.add(name);
    } else this.rec.refusals.push({ op, server: t.index, what: 'create task', key, status: r.status, message: r.body?.message });
  }

  private async patchTask(op: number, what: string, pick: (k: ReturnType<Known['of']>) => string | undefined, patch: (marker: string) => unknown, sub?: string, expect?: Ack['expect']) {
    const t = this.target();
    const ns = this.cluster();
    const name = pick(this.known.of(ns));
    if (!name) return;
    const marker = this.marker(op);
    const r = this.judge(op, t, what, await request(t, 'PATCH', path('tasks', ns, name, sub), patch(marker), 'application/merge-patch+json'));
    if (r?.status === 200) {
      this.ack({ op, server: t.index, what, key: storeKey('tasks', ns, name), rv: Number(r.body.metadata.resourceVersion), type: 'put', ...(sub ? {} : { marker }), ...(expect ? { expect } : {}) });
    }
  }

  private labelTask(op: number) {
    const sel = this.rng.chance(0.5) ? 'yes' : 'no';
    return this.patchTask(op, 'label task', (k) => this.someOf(k.tasks), (m) => ({ metadata: { labels: { [SEL]: sel }, annotations: { [MARK]: m } } }));
  }
  private stopTask(op: number) {
    return this.patchTask(op, 'stop task', (k) => this.someOf(k.tasks), (m) => ({ metadata: { annotations: { [MARK]: m } }, spec: { desiredStatus: 'STOPPED', stopReason: 'test' } }), undefined, { path: ['spec', 'desiredStatus'], value: 'STOPPED' });
  }
  /** an agent's report: the task stopped (which releases its resources) */
  private finishTask(op: number) {
    return this.patchTask(op, 'finish task', (k) => this.someOf(k.bound), () => ({ status: { lastStatus: 'STOPPED', stoppedReason: 'test' } }), 'status', { path: ['status', 'lastStatus'], value: 'STOPPED' });
  }

  private async deleteTask(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const k = this.known.of(ns);
    const name = this.someOf(k.tasks);
    if (!name) return;
    const r = this.judge(op, t, 'delete task', await request(t, 'DELETE', path('tasks', ns, name)));
    if (r?.status === 200) {
      this.ack({ op, server: t.index, what: 'delete task', key: storeKey('tasks', ns, name), rv: Number(r.body.metadata.resourceVersion), type: 'delete' });
      k.tasks.delete(name);
      k.bound.delete(name);
    }
  }

  private async bind(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const k = this.known.of(ns);
    if (k.instances.size === 0 || k.tasks.size === 0) return;
    const tasks = new Set<string>();
    for (let i = 0; i < 1 + this.rng.int(5); i++) tasks.add(this.someOf(k.tasks)!);
    const bindings = [...tasks].map((task) => ({ task, containerInstance: this.someOf(k.instances)! }));
    const r = this.judge(op, t, 'bind', await request(t, 'POST', `${V}/namespaces/${ns}/bindings`, { bindings }));
    if (r?.status !== 200) return;
    for (const b of r.body.results as Array<{ task: string; containerInstance: string; bound: boolean; resourceVersion?: string }>) {
      if (!b.bound) continue;
      k.bound.add(b.task);
      this.ack({ op, server: t.index, what: 'bind', key: storeKey('tasks', ns, b.task), rv: Number(b.resourceVersion), type: 'put', expect: { path: ['spec', 'containerInstance'], value: b.containerInstance } });
    }
  }

  // ------------------------------------------------------------------ instances

  private async createInstance(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = `${this.tag}i${op}`;
    const r = this.judge(op, t, 'create instance', await request(t, 'POST', path('containerinstances', ns), obj('ContainerInstance', name, { registeredResources: resources(2048, 2048) })));
    if (!r) return;
    const key = storeKey('containerinstances', ns, name);
    if (r.status === 201) {
      this.ack({ op, server: t.index, what: 'create instance', key, rv: Number(r.body.metadata.resourceVersion), type: 'put', uid: r.body.metadata.uid });
      this.known.of(ns).instances.add(name);
    } else this.rec.refusals.push({ op, server: t.index, what: 'create instance', key, status: r.status, message: r.body?.message });
  }

  private async drainInstance(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = this.someOf(this.known.of(ns).instances);
    if (!name) return;
    const marker = this.marker(op);
    const status = this.rng.chance(0.5) ? 'DRAINING' : 'ACTIVE';
    const r = this.judge(op, t, 'drain instance', await request(t, 'PATCH', path('containerinstances', ns, name), { metadata: { annotations: { [MARK]: marker } }, spec: { status } }, 'application/merge-patch+json'));
    if (r?.status === 200) this.ack({ op, server: t.index, what: 'drain instance', key: storeKey('containerinstances', ns, name), rv: Number(r.body.metadata.resourceVersion), type: 'put', marker, expect: { path: ['spec', 'status'], value: status } });
  }

  private async connectInstance(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = this.someOf(this.known.of(ns).instances);
    if (!name) return;
    const connected = this.rng.chance(0.7);
    const r = this.judge(op, t, 'connect instance', await request(t, 'PATCH', path('containerinstances', ns, name, 'status'), { status: { agentConnected: connected } }, 'application/merge-patch+json'));
    if (r?.status === 200) this.ack({ op, server: t.index, what: 'connect instance', key: storeKey('containerinstances', ns, name), rv: Number(r.body.metadata.resourceVersion), type: 'put', expect: { path: ['status', 'agentConnected'], value: connected } });
  }

  private async deleteInstance(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const k = this.known.of(ns);
    const name = this.someOf(k.instances);
    if (!name || name.startsWith('base-')) return;
    const r = this.judge(op, t, 'delete instance', await request(t, 'DELETE', path('containerinstances', ns, name)));
    if (r?.status === 200) {
      this.ack({ op, server: t.index, what: 'delete instance', key: storeKey('containerinstances', ns, name), rv: Number(r.body.metadata.resourceVersion), type: 'delete' });
      k.instances.delete(name);
    }
  }

  // ------------------------------------------------------------------ services, task definitions

  private async createService(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = `${this.tag}s${op}`;
    const family = this.rng.pick(FAMILIES);
    const atLeast = this.familyMax.get(family) ?? 0;
    const r = this.judge(op, t, 'create service', await request(t, 'POST', path('services', ns), obj('Service', name, { taskDefinition: family, desiredCount: this.rng.int(3) })));
    if (!r) return;
    const key = storeKey('services', ns, name);
    if (r.status === 201) {
      this.ack({ op, server: t.index, what: 'create service', key, rv: Number(r.body.metadata.resourceVersion), type: 'put', uid: r.body.metadata.uid });
      this.rec.resolutions.push({ op, server: t.index, what: 'create service', family, resolved: Number(String(r.body.status?.taskDefinition ?? r.body.spec.taskDefinition).split(':')[1]), atLeast });
      this.known.of(ns).services.add(name);
    } else this.rec.refusals.push({ op, server: t.index, what: 'create service', key, status: r.status, message: r.body?.message });
  }

  private async updateService(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = this.someOf(this.known.of(ns).services);
    if (!name) return;
    const family = this.rng.pick(FAMILIES);
    const atLeast = this.familyMax.get(family) ?? 0;
    const marker = this.marker(op);
    const r = this.judge(op, t, 'update service', await request(t, 'PATCH', path('services', ns, name), { metadata: { annotations: { [MARK]: marker } }, spec: { taskDefinition: family, desiredCount: this.rng.int(3) } }, 'application/merge-patch+json'));
    if (r?.status !== 200) return;
    this.ack({ op, server: t.index, what: 'update service', key: storeKey('services', ns, name), rv: Number(r.body.metadata.resourceVersion), type: 'put', marker });
    // a service being deleted (its finalize still to come, e.g. sent to the paused apiserver)
    // keeps the revision it runs: it is drained, not moved to newer ones, so it resolves nothing
    if (r.body.metadata.deletionTimestamp) return;
    this.rec.resolutions.push({ op, server: t.index, what: 'update service', family, resolved: Number(String(r.body.status?.taskDefinition ?? r.body.spec.taskDefinition).split(':')[1]), atLeast });
  }

  /** DELETE marks it (the controller finalizer), removing the finalizer then removes it */
  private async deleteFinalized(op: number, plural: string, ns: string, name: string, set: Set<string>) {
    const t = this.target();
    const d = this.judge(op, t, `delete ${plural}`, await request(t, 'DELETE', path(plural, ns, name)));
    if (d?.status !== 200) return;
    const key = storeKey(plural, ns, name);
    this.ack({ op, server: t.index, what: `delete ${plural} (mark)`, key, rv: Number(d.body.metadata.resourceVersion), type: 'put' });
    const t2 = this.target();
    const f = this.judge(op, t2, `finalize ${plural}`, await request(t2, 'PATCH', path(plural, ns, name), { metadata: { finalizers: null } }, 'application/merge-patch+json'));
    if (f?.status === 200) {
      this.ack({ op, server: t2.index, what: `finalize ${plural}`, key, rv: Number(f.body.metadata.resourceVersion), type: 'delete' });
      set.delete(name);
    }
  }

  private async deleteService(op: number) {
    const ns = this.cluster();
    const k = this.known.of(ns);
    const name = this.someOf(k.services);
    if (name) await this.deleteFinalized(op, 'services', ns, name, k.services);
  }

  private async registerTd(op: number) {
    const t = this.target();
    const family = this.rng.pick(FAMILIES);
    const r = this.judge(op, t, 'register', await request(t, 'POST', path('taskdefinitions'), obj('TaskDefinition', family, { containerDefinitions: [{ name: 'app', image: `busybox:${this.rng.int(3)}`, memory: 16 }] })));
    if (!r) return;
    if (r.status === 201) {
      this.ack({ op, server: t.index, what: 'register', key: storeKey('taskdefinitions', undefined, r.body.metadata.name), rv: Number(r.body.metadata.resourceVersion), type: 'put', uid: r.body.metadata.uid });
    }
    if (r.status === 201 || r.status === 200) {
      const rev = Number(r.body.status.revision);
      if (rev > (this.familyMax.get(family) ?? 0)) this.familyMax.set(family, rev);
    }
  }

  // ------------------------------------------------------------------ daemons, clusters

  private async createDaemon(op: number) {
    const t = this.target();
    const ns = this.cluster();
    const name = `${this.tag}d${op}`;
    const r = this.judge(op, t, 'create daemon', await request(t, 'POST', path('daemons', ns), obj('Daemon', name, { daemonTaskDefinition: this.rng.pick(Object.keys(DTDS)) })));
    if (!r) return;
    const key = storeKey('daemons', ns, name);
    if (r.status === 201) {
      this.ack({ op, server: t.index, what: 'create daemon', key, rv: Number(r.body.metadata.resourceVersion), type: 'put', uid: r.body.metadata.uid });
      this.known.of(ns).daemons.add(name);
    } else this.rec.refusals.push({ op, server: t.index, what: 'create daemon', key, status: r.status, message: r.body?.message });
  }

  private async deleteDaemon(op: number) {
    const ns = this.cluster();
    const k = this.known.of(ns);
    const name = this.someOf(k.daemons);
    if (name) await this.deleteFinalized(op, 'daemons', ns, name, k.daemons);
  }

  private async createCluster(op: number) {
    const t = this.target();
    const name = this.rng.pick(VOLATILE);
    const r = this.judge(op, t, 'create cluster', await request(t, 'POST', path('clusters'), obj('Cluster', name, undefined)));
    if (r?.status === 201) this.ack({ op, server: t.index, what: 'create cluster', key: storeKey('clusters', undefined, name), rv: Number(r.body.metadata.resourceVersion), type: 'put', uid: r.body.metadata.uid });
  }

  private async deleteCluster(op: number) {
    const t = this.target();
    const name = this.rng.pick(VOLATILE);
    const r = this.judge(op, t, 'delete cluster', await request(t, 'DELETE', path('clusters', undefined, name)));
    if (r?.status === 200) {
      this.ack({ op, server: t.index, what: 'delete cluster', key: storeKey('clusters', undefined, name), rv: Number(r.body.metadata.resourceVersion), type: 'delete' });
      this.known.byCluster.delete(name);
    }
  }

  // ------------------------------------------------------------------ reads

  private scope(): Scope {
    const plural = this.rng.pick(['tasks', 'tasks', 'services', 'containerinstances']);
    return { plural, ...(this.rng.chance(0.5) ? { ns: this.rng.pick(STABLE) } : {}), ...(plural === 'tasks' && this.rng.chance(0.5) ? { selected: true } : {}) };
  }
  private query(s: Scope, extra: Record<string, string>) {
    const q = new URLSearchParams(extra);
    if (s.selected) q.set('labelSelector', `${SEL}=yes`);
    return `${path(s.plural, s.ns)}?${q}`;
  }

  private async paginatedList(op: number) {
    const t = this.target();
    const scope = this.scope();
    const limit = 2 + this.rng.int(4);
    const l: ListRecord = { id: `list-${op}`, server: t.index, scope, limit, pages: [], ackedBefore: this.ackedMax };
    this.rec.lists.push(l);
    let cont: string | undefined;
    for (let page = 0; page < 200; page++) {
      const r = await request(t, 'GET', this.query(scope, { limit: String(limit), ...(cont ? { continue: cont } : {}) }));
      if (r.status !== 200) {
        l.error = `page ${page}: ${r.status} ${String(r.body?.message ?? '').slice(0, 200)}`;
        if (r.status !== 0 && r.status !== 410) this.judge(op, t, 'list', r);
        return;
      }
      l.pages.push({ rv: r.body.metadata.resourceVersion, continue: r.body.metadata.continue, items: r.body.items.map((o: any) => ({ key: storeKey(scope.plural, o.metadata.namespace, o.metadata.name), rv: Number(o.metadata.resourceVersion) })) });
      cont = r.body.metadata.continue;
      if (!cont) return;
      // let other writes land between pages
      await new Promise((res) => setTimeout(res, this.rng.int(30)));
    }
  }

  /**
   * A list on one apiserver, then a watch from its resourceVersion on the same or another
   * apiserver (an informer failing over does that).
   */
  async startWatch(o: { scope?: Scope; listServer?: number; server?: number } = {}): Promise<void> {
    const scope = o.scope ?? this.scope();
    const ls = this.targets[o.listServer ?? this.rng.int(this.targets.length)];
    const ws = this.targets[o.server ?? (this.rng.chance(0.5) ? ls.index : this.rng.int(this.targets.length))];
    const list = await request(ls, 'GET', this.query(scope, {}));
    if (list.status !== 200) return;
    const from = Number(list.body.metadata.resourceVersion);
    const ac = new AbortController();
    const w: WatchRecord = {
      id: `watch-${++this.watchSeq}`,
      listServer: ls.index,
      server: ws.index,
      scope,
      from,
      listed: new Map(list.body.items.map((i: any) => [storeKey(scope.plural, i.metadata.namespace, i.metadata.name), Number(i.metadata.resourceVersion)])),
      events: [],
      bookmarks: [],
      close: () => ac.abort(),
    };
    this.rec.watches.push(w);
    let res: Response;
    try {
      res = await fetch(ws.url + this.query(scope, { watch: '1', resourceVersion: String(from), allowWatchBookmarks: 'true' }), { signal: ac.signal });
    } catch (e) {
      w.ended = `connect: ${(e as Error).message}`;
      return;
    }
    if (res.status !== 200) {
      w.ended = `status ${res.status}: ${(await res.text()).slice(0, 200)}`;
      return;
    }
    void (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const ev = JSON.parse(line) as { type: string; object: any };
            const rv = Number(ev.object?.metadata?.resourceVersion);
            if (ev.type === 'BOOKMARK') w.bookmarks.push(rv);
            else if (ev.type === 'ERROR') w.ended = `error event: ${JSON.stringify(ev.object).slice(0, 200)}`;
            else w.events.push({ type: ev.type, key: storeKey(scope.plural, ev.object.metadata.namespace, ev.object.metadata.name), rv });
          }
        }
        w.ended ??= 'closed by the server';
      } catch (e) {
        if (!ac.signal.aborted) w.ended = `stream: ${(e as Error).message}`;
      }
    })();
  }

  /** The highest revision a watch has reached (an event or a bookmark). */
  static reached(w: WatchRecord) {
    return Math.max(w.from, w.events.at(-1)?.rv ?? 0, w.bookmarks.at(-1) ?? 0);
  }

  /**
   * Writes one object into every watched scope (a task labelled selected in each stable
   * cluster, a service and an instance there), so every watch has a last event to wait for.
   * Returns the revision each watch must reach.
   */
  async sentinels(tag: string): Promise<(w: WatchRecord) => number> {
    const t = this.targets[0];
    const at = new Map<string, number>();
    for (const ns of STABLE) {
      const writes: Array<[string, unknown]> = [
        ['tasks', obj('Task', `sentinel-${tag}-${ns}`, { taskDefinition: 'fa:1' }, { labels: { [SEL]: 'yes' } })],
        ['services', obj('Service', `sentinel-${tag}-${ns}`, { taskDefinition: 'fa:1', desiredCount: 0 })],
        ['containerinstances', obj('ContainerInstance', `sentinel-${tag}-${ns}`, { registeredResources: resources(1024, 1024) })],
      ];
      for (const [plural, body] of writes) {
        const r = await this.must(t, 'POST', path(plural, ns), body);
        const rv = Number(r.body.metadata.resourceVersion);
        this.ack({ op: 0, server: 0, what: `sentinel ${plural}`, key: storeKey(plural, ns, (body as { metadata: { name: string } }).metadata.name), rv, type: 'put', uid: r.body.metadata.uid });
        at.set(`${plural}/${ns}`, rv);
      }
    }
    return (w) => (w.scope.ns ? at.get(`${w.scope.plural}/${w.scope.ns}`)! : Math.max(...STABLE.map((ns) => at.get(`${w.scope.plural}/${ns}`)!)));
  }
}
