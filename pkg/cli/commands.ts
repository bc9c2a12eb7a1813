import { randomUUID } from 'node:crypto';
import { Command, CommanderError, Option } from 'commander';

import { kindByName, KINDS } from '../api/kinds.ts';
import { NOMINATED_ANNOTATION, type KindInfo } from '../api/meta.ts';
import type { ContainerInstance, Service, Task } from '../api/kinds.ts';
import { restartRequest, serviceTaskDefinition, taskRevision } from '../api/resources.ts';
import { targetSetOf, type Target } from '../api/loadbalancing.ts';
import type { AnyObj, Client } from '../client/client.ts';
import { BerthError, isBerthError } from '../errors/errors.ts';
import { readManifests, type Manifest } from './manifests.ts';
import { stringify } from 'yaml';
import { describeLines, parseOutput, renderObjects, renderTable, type Table } from './printers.ts';
import { buildCertsCommands } from './certs/certs.ts';
import { addTokenCommand } from './token.ts';
import { addSecretCommands } from './secrets.ts';

/**
 * The `berth` commands: flags -> options -> validate -> run, with the IO and the client
 * injected so every command is tested in-process against a real apiserver. Errors are one
 * sentence on stderr and a non-zero exit; tables look like kubectl's (the server's Table).
 */
export interface IO {
  out(s: string): void;
  err(s: string): void;
  stdin(): Promise<string>;
}

export interface Connection {
  client: Client;
  namespace: string;
}

export interface CliDeps {
  io: IO;
  /** the client for the global flags (--kubeconfig, --context, --server, --token) */
  connect(o: GlobalOptions): Promise<Connection>;
  /** commands that need more than the API (up, config) plug in here */
  extend?(program: Command, deps: CliDeps): void;
  version: string;
}

export interface GlobalOptions {
  kubeconfig?: string;
  context?: string;
  server?: string;
  token?: string;
  namespace?: string;
}

const TABLE_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io, application/json';

function kindOf(word: string): KindInfo {
  const k = kindByName(word);
  if (!k) throw new BerthError('BadRequest', `unknown resource type "${word}"; known: ${KINDS.map((x) => `${x.plural}${x.shortNames.length ? ` (${x.shortNames.join(', ')})` : ''}`).join(', ')}`);
  return k;
}

/** `service/web` or (`service`, `web`) */
function target(a: string, b?: string): { kind: KindInfo; name?: string } {
  if (a.includes('/')) {
    const [k, n] = a.split('/', 2);
    return { kind: kindOf(k), name: n };
  }
  return { kind: kindOf(a), name: b };
}

const ref = (m: AnyObj) => `${String(m.kind).toLowerCase()}/${m.metadata.name}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A line diff (LCS) with `+`, `-` and two-space context lines. */
export function lineDiff(a: string, b: string): string[] {
  const x = a ? a.trimEnd().split('\n') : [];
  const y = b ? b.trimEnd().split('\n') : [];
  const n = x.length;
  const m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      out.push(`  ${x[i++]}`);
      j++;
    } else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) out.push(`+ ${y[j++]}`);
    else out.push(`- ${x[i++]}`);
  }
  return out;
}

/** Stable JSON of a spec for "did anything change" decisions. */
/** `service/web`, `services/web`, `svc/web` or `web` -> `web` */
const serviceArg = (arg: string) => arg.replace(/^(service|services|svc)\//, '');
const stable = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x));

export async function applyOne(client: Client, m: Manifest, ns: string, dryRun: boolean): Promise<string> {
  const r = m.resource as AnyObj;
  const kind = kindOf(r.kind ?? '');
  const namespace = kind.namespaced ? (r.metadata?.namespace ?? ns) : undefined;
  const name = r.metadata?.name;
  if (!name) throw new BerthError('BadRequest', `${m.source}: metadata.name is required`);
  const body: AnyObj = { ...r, apiVersion: 'berth.dev/v1', kind: kind.kind, metadata: { ...r.metadata, name, ...(namespace ? { namespace } : {}) } };
  delete body.status;
  const q = dryRun ? { dryRun: 'All' } : undefined;
  const suffix = dryRun ? ' (dry run)' : '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await client.tryGet(kind, namespace, name);
    if (!cur) {
      const out = await client.request<AnyObj>('POST', client.path(kind, namespace), body, { query: q });
      return `${kind.singular}/${out.metadata.name} created${suffix}`;
    }
    const next = { ...body, metadata: { ...cur.metadata, labels: body.metadata.labels ?? cur.metadata.labels, annotations: body.metadata.annotations ?? cur.metadata.annotations } };
    try {
      const out = await client.request<AnyObj>('PUT', client.path(kind, namespace, name), next, { query: q });
      if (kind.immutableSpec) {
        // a task definition family: a changed spec registers the next revision
        const rev = (o: AnyObj) => (o.status?.family ? `${o.status.family}:${o.status.revision}` : o.metadata.name);
        return rev(out) !== rev(cur) ? `${kind.singular}/${rev(out)} created${suffix}` : `${kind.singular}/${rev(out)} unchanged`;
      }
      // what the user writes (spec, labels, annotations) decides, not the status admission may move along
      // with the write (a service following its family to a revision registered a moment before)
      const own = (o: AnyObj) => stable({ spec: o.spec, labels: o.metadata.labels ?? {}, annotations: o.metadata.annotations ?? {} });
      if (own(out) === own(cur)) return `${kind.singular}/${out.metadata.name} unchanged`;
      return `${kind.singular}/${out.metadata.name} configured${suffix}`;
    } catch (e) {
      if (!isBerthError(e, 'Conflict')) throw e;
    }
  }
  throw new BerthError('Conflict', `${kind.singular}/${name} kept changing while being applied; try again`);
}

function serviceDescribe(s: Service, tasks: Task[]): string[] {
  const st = s.status;
  const lines = [
    `Name:                ${s.metadata.name}`,
    `Cluster:             ${s.metadata.namespace}`,
    `ARN:                 ${st?.serviceArn ?? ''}`,
    `Status:              ${st?.status ?? ''}`,
    `Task Definition:     ${serviceTaskDefinition(s)}`,
    `Scheduling:          ${s.spec.schedulingStrategy}`,
    `Desired/Running/Pending: ${s.spec.desiredCount ?? 0}/${st?.runningCount ?? 0}/${st?.pendingCount ?? 0}`,
    `Deployment Config:   minimumHealthyPercent=${s.spec.deploymentConfiguration?.minimumHealthyPercent} maximumPercent=${s.spec.deploymentConfiguration?.maximumPercent}${s.spec.deploymentConfiguration?.deploymentCircuitBreaker?.enable ? ' circuitBreaker' + (s.spec.deploymentConfiguration.deploymentCircuitBreaker.rollback ? '+rollback' : '') : ''}`,
    `Placement:           ${(s.spec.placementStrategy ?? [{ type: 'spread', field: 'instanceId' }]).map((p) => `${p.type}${p.field ? `(${p.field})` : ''}`).join(', ')}${s.spec.placementConstraints?.length ? '; ' + s.spec.placementConstraints.map((c) => `${c.type}${c.expression ? ` ${c.expression}` : ''}`).join(', ') : ''}`,
    'Deployments:',
  ];
  const deps = st?.deployments ?? [];
  if (!deps.length) lines.push('  <none>');
  else
    lines.push(
      ...renderTable({
        columnDefinitions: [{ name: 'Id' }, { name: 'Status' }, { name: 'Task-Definition' }, { name: 'Desired' }, { name: 'Running' }, { name: 'Pending' }, { name: 'Failed' }, { name: 'Rollout' }],
        rows: deps.map((d) => ({ cells: [d.id, d.status, d.taskDefinition, d.desiredCount, d.runningCount, d.pendingCount, d.failedTasks, d.rolloutState] })),
      })
        .trimEnd()
        .split('\n')
        .map((l) => '  ' + l),
    );
  const live = tasks.filter((t) => t.status?.lastStatus !== 'STOPPED');
  lines.push(`Tasks:               ${live.length} live, ${tasks.length - live.length} stopped`);
  lines.push('Events (newest first):');
  const ev = (st?.events ?? []).slice(0, 10);
  if (!ev.length) lines.push('  <none>');
  for (const e of ev) lines.push(`  ${e.createdAt}  ${e.message}`);
  return lines;
}

/** `describe service`: the targets of its tasks in each load balancer or target group, and their health */
async function serviceTargetLines(client: Client, s: Service): Promise<string[]> {
  const lbs = s.spec.loadBalancers ?? [];
  if (!lbs.length) return [];
  const lines = ['Load Balancers:'];
  for (const e of lbs) {
    const ref = targetSetOf(e);
    if (!ref) continue;
    const obj = await client.tryGet<AnyObj>(ref.kind, undefined, ref.name);
    const targets = ((obj?.status as { targets?: Target[] } | undefined)?.targets ?? []).filter((t) => t.service === `${s.metadata.namespace}/${s.metadata.name}`);
    lines.push(`  ${ref.kind === 'TargetGroup' ? 'target group' : 'load balancer'} ${ref.name} -> ${e.containerName}:${e.containerPort}${obj ? '' : ' (not found)'}`);
    lines.push('  Targets:');
    if (!targets.length) lines.push('    <none>');
    else
      lines.push(
        ...renderTable({
          columnDefinitions: [{ name: 'Target' }, { name: 'Task' }, { name: 'State' }, { name: 'Reason' }],
          rows: targets.map((t) => ({ cells: [`${t.id}:${t.port}`, t.task.slice(t.task.indexOf('/') + 1), t.state, t.reason ?? ''] })),
        })
          .trimEnd()
          .split('\n')
          .map((l) => '    ' + l),
      );
  }
  return lines;
}

function instanceDescribe(ci: ContainerInstance, tasks: Task[]): string[] {
  const res = (list: ContainerInstance['spec']['registeredResources'], n: string) => {
    const r = list?.find((x) => x.name === n);
    return r ? (r.type === 'STRINGSET' ? (r.stringSetValue ?? []).join(',') || '<none>' : String(r.integerValue ?? r.longValue ?? r.doubleValue)) : '<none>';
  };
  const lines = [
    `Name:                ${ci.metadata.name}`,
    `Cluster:             ${ci.metadata.namespace}`,
    `ARN:                 ${ci.status?.containerInstanceArn ?? ''}`,
    `Status:              ${ci.spec.status}`,
    `Agent Connected:     ${ci.status?.agentConnected ?? false}`,
    `Last Heartbeat:      ${ci.status?.lastHeartbeat ?? '<none>'}`,
    `Host:                ${ci.spec.hostname ?? '<none>'}`,
    `Versions:            agent ${ci.status?.versionInfo?.agentVersion ?? '?'}, docker ${ci.status?.versionInfo?.dockerVersion ?? '?'}`,
    'Resources:           registered        remaining',
  ];
  for (const n of ['CPU', 'MEMORY', 'PORTS', 'PORTS_UDP']) lines.push(`  ${n.padEnd(18)}${res(ci.spec.registeredResources, n).padEnd(18)}${res(ci.status?.remainingResources, n)}`);
  lines.push('Attributes:');
  for (const a of ci.spec.attributes ?? []) lines.push(`  ${a.name}${a.value !== undefined ? `=${a.value}` : ''}`);
  const live = tasks.filter((t) => t.status?.lastStatus !== 'STOPPED');
  lines.push(`Tasks (${live.length} live):`);
  for (const t of live) lines.push(`  ${t.metadata.name}  ${taskRevision(t)}  ${t.status?.lastStatus ?? ''}  ${t.spec.group ?? ''}`);
  return lines;
}

export function buildProgram(deps: CliDeps): Command {
  const { io } = deps;
  const program = new Command('berth')
    .description('berth: an orchestrator that does what Amazon ECS does, on your own hosts')
    .option('--kubeconfig <file>', 'kubeconfig to use (default $BERTH_CONFIG or ~/.berth/config)')
    .option('--context <name>', 'kubeconfig context')
    .option('--server <url>', 'apiserver URL (overrides the kubeconfig)')
    .option('--token <token>', 'bearer token (overrides the kubeconfig)')
    .option('-n, --namespace <cluster>', 'the cluster (namespace) to work in')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showHelpAfterError();
  const conn = async (cmd: Command) => {
    const g = cmd.optsWithGlobals() as GlobalOptions;
    const c = await deps.connect(g);
    return { ...c, namespace: g.namespace ?? c.namespace };
  };
  const sub = (name: string, desc: string) => program.command(name).description(desc).exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });

  sub('apply', 'create or update resources from manifests (YAML or JSON; berth manifests or ECS JSON)')
    .requiredOption('-f, --filename <path...>', 'file, directory or - for stdin')
    .option('--dry-run', 'show what would happen, change nothing')
    .action(async (o: { filename: string[]; dryRun?: boolean }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const ms = await readManifests(o.filename, io.stdin);
      const errors: string[] = [];
      for (const m of ms) {
        try {
          io.out(`${await applyOne(client, m, namespace, !!o.dryRun)}\n`);
        } catch (e) {
          errors.push(`${m.source}: ${(e as Error).message}`);
        }
      }
      if (errors.length) throw new BerthError('BadRequest', errors.join('\n'));
    });

  sub('diff', 'show what apply would change (a dry run on the server, so defaults and revisions are the server\'s)')
    .requiredOption('-f, --filename <path...>', 'file, directory or - for stdin')
    .action(async (o: { filename: string[] }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      let changed = false;
      for (const m of await readManifests(o.filename, io.stdin)) {
        const r = m.resource as AnyObj;
        const kind = kindOf(r.kind ?? '');
        const ns = kind.namespaced ? (r.metadata?.namespace ?? namespace) : undefined;
        const cur = await client.tryGet(kind, ns, r.metadata.name);
        const body: AnyObj = { ...r, apiVersion: 'berth.dev/v1', kind: kind.kind, metadata: { ...(cur?.metadata ?? {}), ...r.metadata, ...(ns ? { namespace: ns } : {}) } };
        delete body.status;
        const next = cur
          ? await client.request<AnyObj>('PUT', client.path(kind, ns, r.metadata.name), body, { query: { dryRun: 'All' } })
          : await client.request<AnyObj>('POST', client.path(kind, ns), body, { query: { dryRun: 'All' } });
        const view = (x: AnyObj | undefined) => (x ? stringify({ metadata: { labels: x.metadata.labels, annotations: x.metadata.annotations }, spec: x.spec }) : '');
        const lines = lineDiff(view(cur), view(next));
        if (!lines.some((l) => l.startsWith('+') || l.startsWith('-'))) continue;
        changed = true;
        io.out(`--- ${kind.singular}/${cur ? (cur.status?.family ? `${cur.status.family}:${cur.status.revision}` : cur.metadata.name) : '(new)'}\n+++ ${kind.singular}/${next.status?.family ? `${next.status.family}:${next.status.revision}` : next.metadata.name}\n`);
        io.out(lines.join('\n') + '\n');
      }
      if (!changed) io.out('no differences\n');
    });

  sub('get', 'list resources, or show one')
    .argument('<kind>', 'e.g. services (svc), tasks (tk), taskdefinitions (td), containerinstances (ci), clusters')
    .argument('[name]')
    .option('-o, --output <format>', 'wide, json, yaml or name')
    .option('-l, --selector <labels>', 'label selector')
    .option('--field-selector <fields>', 'field selector, e.g. status.lastStatus=RUNNING')
    .option('-A, --all-namespaces', 'every cluster')
    .option('-w, --watch', 'after listing, print changes as they happen')
    .action(async (kindWords: string, name: string | undefined, o: { output?: string; selector?: string; fieldSelector?: string; allNamespaces?: boolean; watch?: boolean }, cmd: Command) => {
      // `get loadbalancers,targetgroups`: each kind in turn
      for (const kindWord of kindWords.split(',').filter(Boolean)) await (async () => {
      const { client, namespace } = await conn(cmd);
      const t = target(kindWord, name);
      const fmt = parseOutput(o.output);
      const ns = t.kind.namespaced && !o.allNamespaces ? namespace : undefined;
      const query = { labelSelector: o.selector, fieldSelector: o.fieldSelector };
      const path = t.kind.namespaced && !ns ? `/apis/berth.dev/v1/${t.kind.plural}` : client.path(t.kind, ns, t.name);
      if (fmt === 'table' || fmt === 'wide') {
        const table = await client.request<Table>('GET', path, undefined, { query, accept: TABLE_ACCEPT });
        if (!table.rows?.length && !t.name) io.err(`No resources found${ns ? ` in ${ns} cluster` : ''}.\n`);
        else io.out(renderTable(table, { wide: fmt === 'wide', namespace: t.kind.namespaced && !ns }));
      } else if (t.name) {
        io.out(renderObjects([await client.get(t.kind, ns, t.name)], fmt, true));
      } else {
        io.out(renderObjects((await client.listAll(t.kind, ns, query)).items, fmt, false));
      }
      if (o.watch) {
        const ac = new AbortController();
        process.once('SIGINT', () => ac.abort());
        const start = (await client.list(t.kind, ns, { ...query, limit: 1 })).resourceVersion;
        for await (const ev of client.watch(t.kind, ns, { ...query, resourceVersion: start, signal: ac.signal })) {
          if (ev.type === 'BOOKMARK' || ev.type === 'ERROR') continue;
          if (t.name && ev.object.metadata.name !== t.name) continue;
          if (ev.type === 'DELETED' || fmt === 'name') {
            io.out(`${ev.type === 'DELETED' ? 'deleted ' : ''}${t.kind.singular}/${ev.object.metadata.name}\n`);
            continue;
          }
          if (fmt === 'json' || fmt === 'yaml') io.out(renderObjects([ev.object], fmt, true));
          else {
            const one = await client.request<Table>('GET', client.path(t.kind, ev.object.metadata.namespace, ev.object.metadata.name), undefined, { accept: TABLE_ACCEPT }).catch(() => undefined);
            if (one) io.out(renderTable(one, { wide: fmt === 'wide', noHeaders: true }));
          }
        }
      }
      })();
    });

  sub('describe', 'show a resource in detail (services: deployments and events; instances: resources and tasks)')
    .argument('<kind>')
    .argument('[name]')
    .action(async (kindWord: string, name: string | undefined, _o: unknown, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const t = target(kindWord, name);
      const ns = t.kind.namespaced ? namespace : undefined;
      const objs = t.name ? [await client.get(t.kind, ns, t.name)] : (await client.listAll(t.kind, ns)).items;
      const blocks: string[] = [];
      for (const obj of objs) {
        if (t.kind.kind === 'Service') {
          const tasks = (await client.listAll<Task>('Task', ns, { fieldSelector: `spec.group=service:${obj.metadata.name}` })).items;
          blocks.push([...serviceDescribe(obj as unknown as Service, tasks), ...(await serviceTargetLines(client, obj as unknown as Service))].join('\n'));
        } else if (t.kind.kind === 'ContainerInstance') {
          const tasks = (await client.listAll<Task>('Task', ns, { fieldSelector: `spec.containerInstance=${obj.metadata.name}` })).items;
          blocks.push(instanceDescribe(obj as unknown as ContainerInstance, tasks).join('\n'));
        } else blocks.push(describeLines({ name: obj.metadata.name, namespace: obj.metadata.namespace, labels: obj.metadata.labels, annotations: obj.metadata.annotations, created: obj.metadata.creationTimestamp, spec: obj.spec, status: obj.status }).join('\n'));
      }
      io.out(blocks.join('\n\n') + '\n');
    });

  sub('delete', 'delete resources by name or from manifests (a task definition family: every revision is deregistered)')
    .argument('[kind]')
    .argument('[names...]')
    .option('-f, --filename <path...>', 'delete what these manifests name')
    .action(async (kindWord: string | undefined, names: string[], o: { filename?: string[] }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const targets: Array<{ kind: KindInfo; name: string; ns?: string }> = [];
      if (o.filename) for (const m of await readManifests(o.filename, io.stdin)) {
        const k = kindOf(m.resource.kind);
        targets.push({ kind: k, name: m.resource.metadata.name!, ns: k.namespaced ? (m.resource.metadata.namespace ?? namespace) : undefined });
      }
      if (kindWord) {
        const t = target(kindWord, names[0]);
        const all = kindWord.includes('/') ? [t.name!, ...names] : names;
        if (!all.length) throw new BerthError('BadRequest', `name which ${t.kind.plural} to delete`);
        for (const n of all) targets.push({ kind: t.kind, name: n, ns: t.kind.namespaced ? namespace : undefined });
      }
      if (!targets.length) throw new BerthError('BadRequest', 'give KIND NAME or -f FILE');
      const errors: string[] = [];
      for (const t of targets) {
        try {
          await client.delete(t.kind, t.ns, t.name);
          io.out(`${t.kind.singular}/${t.name} deleted\n`);
        } catch (e) {
          errors.push(`${t.kind.singular}/${t.name}: ${(e as Error).message}`);
        }
      }
      if (errors.length) throw new BerthError('BadRequest', errors.join('\n'));
    });

  sub('logs', 'print the logs of a task\'s container (served by the agent of its instance)')
    .argument('<task>', 'task id (or task/ID)')
    .option('-c, --container <name>', 'the container (default: the first)')
    .option('-f, --follow', 'keep printing new lines')
    .option('--tail <lines>', 'only the last N lines')
    .action(async (task: string, o: { container?: string; follow?: boolean; tail?: string }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const name = task.replace(/^(task|tasks|tk)\//, '');
      if (o.tail !== undefined && !/^\d+$/.test(o.tail)) throw new BerthError('BadRequest', `--tail ${o.tail}: must be a number of lines`);
      const ac = new AbortController();
      if (o.follow) process.once('SIGINT', () => ac.abort());
      const res = await client.stream(`${client.path('Task', namespace, name)}/log`, { container: o.container, follow: o.follow ? 'true' : undefined, tailLines: o.tail }, ac.signal);
      try {
        for await (const chunk of res) io.out((chunk as Buffer).toString('utf8'));
      } catch (e) {
        if ((e as Error).name !== 'AbortError') throw e;
      }
    });

  sub('scale', 'set a service\'s desired count')
    .argument('<service>', 'service/NAME or NAME')
    .requiredOption('--replicas <n>', 'the desired count')
    .action(async (svc: string, o: { replicas: string }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const n = Number(o.replicas);
      if (!Number.isInteger(n) || n < 0) throw new BerthError('BadRequest', `--replicas ${o.replicas}: must be a whole number, 0 or more`);
      const name = serviceArg(svc);
      await client.patch('Service', namespace, name, { spec: { desiredCount: n } });
      io.out(`service/${name} scaled to ${n}\n`);
    });

  const rollout = sub('rollout', 'follow or undo a service deployment');
  rollout
    .command('status')
    .description('follow a service rollout until it is steady (exit 0) or failed (exit 1)')
    .argument('<service>')
    .option('--timeout <seconds>', 'give up after this long', '600')
    .exitOverride()
    .action(async (svc: string, o: { timeout: string }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const name = serviceArg(svc);
      const deadline = Date.now() + Number(o.timeout) * 1000;
      let last = '';
      for (;;) {
        const s = await client.get<Service>('Service', namespace, name);
        const primary = s.status?.deployments?.find((d) => d.status === 'PRIMARY');
        const others = (s.status?.deployments ?? []).filter((d) => d.status !== 'PRIMARY');
        const desired = s.spec.desiredCount ?? 0;
        const observed = (s.status?.observedGeneration ?? 0) >= (s.metadata.generation ?? 1);
        if (observed && primary?.rolloutState === 'FAILED') throw new BerthError('BadRequest', `service/${name} rollout failed: ${primary.rolloutStateReason ?? ''}`);
        // done when ECS would say so: the PRIMARY deployment COMPLETED (its tasks healthy, none older left)
        if (observed && primary?.rolloutState === 'COMPLETED' && primary.runningCount >= desired && others.every((d) => d.runningCount === 0) && (s.status?.runningCount ?? 0) === desired) {
          io.out(`service/${name} successfully rolled out (${primary.taskDefinition}, ${desired} running)\n`);
          return;
        }
        const line = primary ? `Waiting for service/${name} rollout to finish: ${primary.runningCount} of ${desired} updated tasks running${others.length ? `, ${others.reduce((n, d) => n + d.runningCount, 0)} old still running` : ''}...` : `Waiting for service/${name} to start its deployment...`;
        if (line !== last) io.out(line + '\n');
        last = line;
        if (Date.now() > deadline) throw new BerthError('Timeout', `service/${name} did not finish rolling out within ${o.timeout} s`);
        await sleep(500);
      }
    });
  rollout
    .command('undo')
    .description('roll a service back to the task definition of its previous deployment (or the previous revision)')
    .argument('<service>')
    .exitOverride()
    .action(async (svc: string, _o: unknown, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const name = serviceArg(svc);
      const s = await client.get<Service>('Service', namespace, name);
      const cur = serviceTaskDefinition(s);
      let prev = s.status?.deployments?.find((d) => d.status !== 'PRIMARY' && d.taskDefinition !== cur)?.taskDefinition;
      if (!prev) {
        const [family, rev] = cur.split(':');
        const revs = (await client.listAll('TaskDefinition', undefined, { fieldSelector: `status.family=${family}` })).items.map((t) => Number(t.metadata.name.split(':')[1])).filter((r) => r < Number(rev));
        if (!revs.length) throw new BerthError('BadRequest', `service/${name} runs ${cur}; there is no earlier revision to go back to`);
        prev = `${family}:${Math.max(...revs)}`;
      }
      await client.patch('Service', namespace, name, { spec: { taskDefinition: prev } });
      io.out(`service/${name} rolled back to ${prev}\n`);
    });

  rollout
    .command('restart')
    .description('start a new deployment of the service\'s task definition: every task is replaced (images pulled again), within its deployment bounds')
    .argument('<service>')
    .exitOverride()
    .action(async (svc: string, _o: unknown, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const name = serviceArg(svc);
      const s = await client.get<Service>('Service', namespace, name);
      await client.patch('Service', namespace, name, { metadata: { resourceVersion: s.metadata.resourceVersion }, spec: { restartedAt: restartRequest(s.spec.restartedAt) } });
      io.out(`service/${name} restarted\n`);
    });

  sub('run-task', 'run tasks of a task definition once (placed by the scheduler)')
    .requiredOption('--task-definition <td>', 'family, family:revision or ARN')
    .option('--count <n>', 'how many (1-10)', '1')
    .option('--group <group>', 'task group')
    .option('--started-by <tag>', 'startedBy')
    .option('--wait', 'wait until the tasks are placed and print where')
    .action(async (o: { taskDefinition: string; count: string; group?: string; startedBy?: string; wait?: boolean }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const count = Number(o.count);
      if (!Number.isInteger(count) || count < 1 || count > 10) throw new BerthError('BadRequest', `--count ${o.count}: must be 1 to 10 (as in ECS RunTask)`);
      const made: Task[] = [];
      for (let i = 0; i < count; i++) {
        made.push(await client.create<Task>({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: randomUUID().replace(/-/g, ''), namespace }, spec: { taskDefinition: o.taskDefinition, desiredStatus: 'RUNNING', ...(o.group ? { group: o.group } : {}), ...(o.startedBy ? { startedBy: o.startedBy } : {}) } } as unknown as Task));
      }
      for (const t of made) {
        let cur = t;
        if (o.wait) {
          const until = Date.now() + 30_000;
          while (!cur.spec.containerInstance && Date.now() < until) {
            await sleep(200);
            cur = await client.get<Task>('Task', namespace, t.metadata.name);
          }
        }
        io.out(`task/${t.metadata.name} created (${taskRevision(t)})${cur.spec.containerInstance ? ` on ${cur.spec.containerInstance}` : ''}\n`);
      }
    });

  sub('start-task', 'start a task on chosen container instances (no scheduler)')
    .requiredOption('--task-definition <td>')
    .requiredOption('--container-instances <ids...>', 'one task per instance (at most 10)')
    .action(async (o: { taskDefinition: string; containerInstances: string[] }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      if (o.containerInstances.length > 10) throw new BerthError('BadRequest', 'at most 10 container instances (as in ECS StartTask)');
      for (const ci of o.containerInstances) {
        // nominated for its instance: the placement controller leaves it to this binding (C13)
        const metadata = { name: randomUUID().replace(/-/g, ''), namespace, annotations: { [NOMINATED_ANNOTATION]: ci } };
        const spec = { taskDefinition: o.taskDefinition, desiredStatus: 'RUNNING', startedBy: 'berth start-task' };
        const t = await client.create<Task>({ apiVersion: 'berth.dev/v1', kind: 'Task', metadata, spec } as unknown as Task);
        const r = (await client.bind(namespace, [{ task: t.metadata.name, containerInstance: ci }])).results[0];
        if (!r.bound) {
          await client.patch('Task', namespace, t.metadata.name, { spec: { desiredStatus: 'STOPPED', stopReason: `could not start on ${ci}: ${r.detail ?? r.reason}` } });
          throw new BerthError('BadRequest', `cannot start ${o.taskDefinition} on ${ci}: ${r.reason} ${r.detail ?? ''}`.trim());
        }
        io.out(`task/${t.metadata.name} started on ${ci}\n`);
      }
    });

  sub('stop-task', 'stop a task')
    .argument('<task>')
    .option('--reason <text>', 'why', 'Task stopped by berth stop-task')
    .action(async (task: string, o: { reason: string }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const name = task.replace(/^(task|tasks|tk)\//, '');
      await client.patch('Task', namespace, name, { spec: { desiredStatus: 'STOPPED', stopReason: o.reason, stopCode: 'UserInitiated' } });
      io.out(`task/${name} stopping\n`);
    });

  sub('drain', 'set a container instance to DRAINING: its service tasks move elsewhere, no new tasks land')
    .argument('<instance>')
    .option('--undo', 'set it back to ACTIVE')
    .action(async (ci: string, o: { undo?: boolean }, cmd: Command) => {
      const { client, namespace } = await conn(cmd);
      const name = ci.replace(/^(containerinstance|containerinstances|ci)\//, '');
      await client.patch('ContainerInstance', namespace, name, { spec: { status: o.undo ? 'ACTIVE' : 'DRAINING' } });
      io.out(`containerinstance/${name} ${o.undo ? 'active' : 'draining'}\n`);
    });

  sub('version', 'print the client and server versions')
    .action(async (_o: unknown, cmd: Command) => {
      io.out(`Client Version: ${deps.version}\n`);
      try {
        const { client } = await conn(cmd);
        const v = await client.request<{ gitVersion?: string }>('GET', '/version');
        io.out(`Server Version: ${v.gitVersion ?? JSON.stringify(v)}\n`);
      } catch (e) {
        io.err(`Server: ${(e as Error).message}\n`);
      }
    });

  buildCertsCommands(program, io);
  addTokenCommand(program, io, conn);
  addSecretCommands(program, io, conn);
  deps.extend?.(program, deps);
  program.addOption(new Option('--no-color', 'plain output').hideHelp());
  return program;
}

/** Runs argv; returns the exit code (errors are one sentence on stderr). */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  const program = buildProgram(deps);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    deps.io.err(`error: ${(e as Error).message}\n`);
    return 1;
  }
}

