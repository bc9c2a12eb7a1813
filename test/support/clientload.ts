/**
 * Test support: a client workload through the load balancer that can tell afterwards whether
 * an acknowledged request was lost or a request was applied twice. Several workers, each in a
 * loop of three kinds of operation, each operation with an id:
 *
 * - create: a Cluster named after the operation (a name used once), with the id in an
 *   annotation. An answer the client cannot read (connection cut, 5xx) is retried with the
 *   same name; "already exists" then is the first attempt's success if the object carries
 *   the id. Afterwards: every acknowledged create exists, every refused one does not.
 * - update: the id appended to a list in one counter object per worker, compare-and-swap on
 *   its resourceVersion (GET, PUT). After an unreadable answer or a conflict the client reads
 *   the list again: the id in it means the earlier attempt was applied. Afterwards: every
 *   acknowledged id is in the list exactly once, and no id is in it twice.
 * - runTask (with an ECS client): RunTask with clientToken = the id and startedBy = the id;
 *   an unreadable answer is retried with the same token. Afterwards: each acknowledged token
 *   has exactly one task (the one its answer named, bound where it said), no token has two,
 *   and RunTask again with the token answers the same task.
 *
 * Also measured: the longest time any worker went without a successful request (clients
 * failing over), and how many answers were 5xx or unreadable.
 */
import { RunTaskCommand, type ECSClient } from '@aws-sdk/client-ecs';
import type { Cluster, Task } from '../../pkg/api/kinds.ts';
import { Client } from '../../pkg/client/client.ts';
import { isBerthError } from '../../pkg/errors/errors.ts';
import type { Topology } from './topology.ts';

const OP = 'test.berth.dev/op';
const OPS = 'test.berth.dev/ops';

type Outcome = 'acked' | 'refused' | 'unknown';

interface OpRecord {
  id: string;
  kind: 'create' | 'update' | 'runTask';
  worker: number;
  outcome: Outcome;
  attempts: number;
  /** runTask: the task its answer named, and where */
  task?: string;
  instance?: string;
  status?: string;
}

export interface LoadResult {
  ops: { create: number; update: number; runTask: number };
  outcomes: Record<Outcome, number>;
  /** answers that were 5xx or could not be read (the requests were retried) */
  unreadable: number;
  /** unreadable answers by face and status */
  status5xx: Record<string, number>;
  /** answers that were internal errors: a 500 of the resource API, an unexplained ServerException of the ECS API */
  internalErrors: string[];
  maxGapS: number;
  lost: string[];
  twice: string[];
  refusedButApplied: string[];
  /** runTask: a retry with the token answered another task */
  tokenMismatch: string[];
}

export interface LoadOptions {
  prefix: string;
  workers?: number;
  /** the ECS client for runTask operations (none: no runTask) */
  ecs?: ECSClient;
  taskDefinition?: string;
  /** one operation in this many is a runTask (default 5) */
  runTaskEvery?: number;
  /** pause between a worker's operations, ms */
  pauseMs?: number;
  /** the client's per-request timeout (default 10 s) */
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** a refusal the server meant (4xx), not one the client cannot read (5xx, a cut connection, a timeout) */
const definite = (e: unknown) => (isBerthError(e) && e.status >= 400 && e.status < 500 && e.reason !== 'TooManyRequests') || (e as { refused?: boolean }).refused === true;

export class ClientLoad {
  private readonly records: OpRecord[] = [];
  private stopping = false;
  private running: Promise<void>[] = [];
  private lastSuccess: number[] = [];
  private maxGap = 0;
  private unreadable = 0;
  private readonly status5xx = new Map<string, number>();
  private readonly internalErrors: string[] = [];
  private readonly client: Client;
  private seq = 0;

  constructor(
    private readonly t: Topology,
    private readonly o: LoadOptions,
  ) {
    this.client = new Client({ server: t.url, token: t.adminToken, ca: t.caPem, timeoutMs: o.timeoutMs ?? 10_000, userAgent: 'berth-fault-load' });
  }

  private ok(w: number) {
    const now = Date.now();
    this.maxGap = Math.max(this.maxGap, now - this.lastSuccess[w]);
    this.lastSuccess[w] = now;
  }

  private failed(e: unknown) {
    this.unreadable++;
    const ecs = (e as { face?: string }).face === 'ecs';
    const status = isBerthError(e) ? e.status : (e as { status?: number }).status;
    const k = `${ecs ? 'ecs' : 'k8s'} ${status ?? 'no answer'}`;
    this.status5xx.set(k, (this.status5xx.get(k) ?? 0) + 1);
    // a 500 of the resource API, or the ECS face's answer for an error it does not know: a defect
    // (the ECS face answers an unavailable store as ServerException too, with what happened)
    if ((!ecs && status === 500) || (e as { internal?: boolean }).internal) this.internalErrors.push(`${k}: ${(e as Error).message.slice(0, 200)}`);
  }

  async start(): Promise<void> {
    const n = this.o.workers ?? 4;
    for (let w = 0; w < n; w++) {
      await this.client.create({ apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: this.counterName(w), annotations: { [OPS]: '[]' } } });
      this.lastSuccess[w] = Date.now();
    }
    this.running = Array.from({ length: n }, (_, w) => this.worker(w));
  }

  /** ends the loops (each finishes its operation, retries included) */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }

  private counterName(w: number) {
    return `${this.o.prefix}-ctr-${w}`;
  }

  private async worker(w: number): Promise<void> {
    let i = 0;
    while (!this.stopping) {
      const id = `${this.o.prefix}-${w}-${this.seq++}`;
      const every = this.o.runTaskEvery ?? 5;
      const kind = this.o.ecs && i % every === every - 1 ? 'runTask' : i % 2 === 0 ? 'create' : 'update';
      i++;
      const rec: OpRecord = { id, kind, worker: w, outcome: 'unknown', attempts: 0 };
      this.records.push(rec);
      if (kind === 'create') await this.create(w, rec);
      else if (kind === 'update') await this.update(w, rec);
      else await this.runTask(w, rec);
      await sleep(this.o.pauseMs ?? 50);
    }
  }

  /** the same request again until the answer can be read (at most `max` attempts, with backoff) */
  private async retrying<T>(rec: OpRecord, w: number, fn: (attempt: number) => Promise<T>, max = 40): Promise<T | undefined> {
    for (let attempt = 0; attempt < max; attempt++) {
      rec.attempts++;
      try {
        const v = await fn(attempt);
        this.ok(w);
        return v;
      } catch (e) {
        if (definite(e)) throw e;
        this.failed(e);
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 4)));
      }
    }
    return undefined;
  }

  private async create(w: number, rec: OpRecord) {
    const body: Cluster = { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: rec.id, annotations: { [OP]: rec.id } }, spec: {} };
    try {
      const done = await this.retrying(rec, w, async (attempt) => {
        try {
          return await this.client.create(body);
        } catch (e) {
          // a retry that meets the object: the first attempt made it (if it carries our id)
          if (attempt > 0 && isBerthError(e, 'AlreadyExists')) {
            const cur = await this.client.get<Cluster>('Cluster', undefined, rec.id);
            if (cur.metadata.annotations?.[OP] === rec.id) return cur;
          }
          throw e;
        }
      });
      rec.outcome = done ? 'acked' : 'unknown';
    } catch (e) {
      rec.outcome = 'refused';
      rec.status = (e as Error).message;
    }
  }

  private async update(w: number, rec: OpRecord) {
    const name = this.counterName(w);
    let ambiguous = false;
    for (let attempt = 0; attempt < 40; attempt++) {
      rec.attempts++;
      let cur: Cluster;
      try {
        cur = await this.client.get<Cluster>('Cluster', undefined, name);
      } catch (e) {
        this.failed(e);
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 4)));
        continue;
      }
      const ops = JSON.parse(cur.metadata.annotations?.[OPS] ?? '[]') as string[];
      if (ambiguous && ops.includes(rec.id)) {
        // an earlier attempt whose answer was lost (or refused as a conflict) was applied
        rec.outcome = 'acked';
        this.ok(w);
        return;
      }
      const next = { ...cur, metadata: { ...cur.metadata, annotations: { ...cur.metadata.annotations, [OPS]: JSON.stringify([...ops, rec.id]) } } };
      try {
        await this.client.update(next);
        rec.outcome = 'acked';
        this.ok(w);
        return;
      } catch (e) {
        if (isBerthError(e, 'Conflict')) {
          ambiguous = true; // a resend of a write that committed meets its own revision
          continue;
        }
        if (definite(e)) {
          rec.outcome = 'refused';
          rec.status = (e as Error).message;
          return;
        }
        this.failed(e);
        ambiguous = true;
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 4)));
      }
    }
  }

  private async runTask(w: number, rec: OpRecord) {
    const ecs = this.o.ecs!;
    const input = { cluster: 'default', taskDefinition: this.o.taskDefinition!, count: 1, clientToken: rec.id, startedBy: rec.id.slice(-36) };
    try {
      const out = await this.retrying(rec, w, async () => {
        try {
          return await ecs.send(new RunTaskCommand(input));
        } catch (e) {
          const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (status && status >= 400 && status < 500 && status !== 429) {
            rec.status = `${status} ${(e as Error).name}`;
            throw Object.assign(new Error((e as Error).message), { refused: true });
          }
          throw Object.assign(new Error((e as Error).message), { status, face: 'ecs', internal: /An internal error occurred/.test((e as Error).message) });
        }
      });
      if (!out) return;
      if (out.tasks?.length) {
        rec.outcome = 'acked';
        rec.task = out.tasks[0].taskArn!.split('/').pop();
        rec.instance = out.tasks[0].containerInstanceArn?.split('/').pop();
      } else {
        rec.outcome = 'refused';
        rec.status = JSON.stringify(out.failures);
      }
    } catch (e) {
      if ((e as { refused?: boolean }).refused) rec.outcome = 'refused';
      else throw e;
    }
  }

  /** Reads the final state (through the load balancer) and holds each operation to its outcome. */
  async verify(): Promise<LoadResult> {
    const r: LoadResult = {
      ops: { create: 0, update: 0, runTask: 0 },
      outcomes: { acked: 0, refused: 0, unknown: 0 },
      unreadable: this.unreadable,
      status5xx: Object.fromEntries(this.status5xx),
      internalErrors: [...this.internalErrors],
      maxGapS: Math.round(this.maxGap / 100) / 10,
      lost: [],
      twice: [],
      refusedButApplied: [],
      tokenMismatch: [],
    };
    const clusters = new Map((await this.client.list<Cluster>('Cluster', undefined)).items.map((c) => [c.metadata.name, c]));
    const tasks = this.o.ecs ? (await this.client.list<Task>('Task', 'default')).items : [];
    const byStarter = new Map<string, Task[]>();
    for (const x of tasks) if (x.spec.startedBy) byStarter.set(x.spec.startedBy, [...(byStarter.get(x.spec.startedBy) ?? []), x]);
    const counters = new Map<number, string[]>();
    for (const rec of this.records) {
      r.ops[rec.kind]++;
      r.outcomes[rec.outcome]++;
      if (rec.kind === 'create') {
        const c = clusters.get(rec.id);
        if (rec.outcome === 'acked' && c?.metadata.annotations?.[OP] !== rec.id) r.lost.push(`create ${rec.id} was acknowledged and is not in the store`);
        if (rec.outcome === 'refused' && c) r.refusedButApplied.push(`create ${rec.id} was refused (${rec.status}) and exists`);
      } else if (rec.kind === 'update') {
        if (!counters.has(rec.worker)) counters.set(rec.worker, JSON.parse(clusters.get(this.counterName(rec.worker))?.metadata.annotations?.[OPS] ?? '[]') as string[]);
        const ops = counters.get(rec.worker)!;
        const n = ops.filter((x) => x === rec.id).length;
        if (rec.outcome === 'acked' && n === 0) r.lost.push(`update ${rec.id} was acknowledged and is not in the list`);
        if (n > 1) r.twice.push(`update ${rec.id} is in the list ${n} times`);
        if (rec.outcome === 'refused' && n > 0) r.refusedButApplied.push(`update ${rec.id} was refused (${rec.status}) and applied`);
      } else {
        const mine = byStarter.get(rec.id.slice(-36)) ?? [];
        if (mine.length > 1) r.twice.push(`runTask ${rec.id} started ${mine.length} tasks: ${mine.map((x) => x.metadata.name).join(',')}`);
        if (rec.outcome === 'acked') {
          if (!mine.some((x) => x.metadata.name === rec.task)) r.lost.push(`runTask ${rec.id} answered task ${rec.task}, which is not in the store`);
          const x = mine.find((y) => y.metadata.name === rec.task);
          if (x && x.spec.containerInstance !== rec.instance) r.lost.push(`runTask ${rec.id}: task ${rec.task} is bound to ${x.spec.containerInstance}, the answer said ${rec.instance}`);
          // the same token again: the same task
          const again = await this.o.ecs!.send(new RunTaskCommand({ cluster: 'default', taskDefinition: this.o.taskDefinition!, count: 1, clientToken: rec.id, startedBy: rec.id.slice(-36) }));
          const sameTask = again.tasks?.[0]?.taskArn?.split('/').pop();
          if (sameTask !== rec.task) r.tokenMismatch.push(`runTask ${rec.id}: a retry with the token answered ${sameTask ?? JSON.stringify(again.failures)}, first ${rec.task}`);
        }
        if (rec.outcome === 'refused' && mine.length) r.refusedButApplied.push(`runTask ${rec.id} was refused (${rec.status}) and started ${mine.length} task(s)`);
      }
    }
    // nothing in the counters that was never attempted, or attempted by another worker
    for (const [w, ops] of counters) {
      const mine = new Set(this.records.filter((x) => x.kind === 'update' && x.worker === w).map((x) => x.id));
      for (const op of ops) if (!mine.has(op)) r.twice.push(`counter ${w} holds ${op}, which its worker never sent`);
    }
    return r;
  }

  close(): void {
    this.client.close();
  }
}
