/**
 * berth's web console: plain TypeScript, no framework. Every page is a function of live
 * collections (list + watch); a change re-renders the page. Actions go through the API
 * with the user's token and show the API's own message when refused.
 */
import { ApiError, Collection, headers, lines, refusal, request, resourcePath, session, whenUnauthorized, type Obj } from './api.ts';
import { diffLines } from './diff.ts';
import { ago, badge, h, table } from './dom.ts';

const app = document.getElementById('app')!;
const flash = h('div', { id: 'flash', role: 'alert', 'aria-live': 'assertive' });
const main = h('main', { id: 'main', tabindex: '-1' });

// ---------------------------------------------------------------- navigation

const url = (path: string) => `/ui${path}`;
const link = (path: string, text: string, attrs: Record<string, string> = {}) => h('a', { href: url(path), ...attrs }, text);

function navigate(to: string) {
  // a message belongs to the page it was shown on
  flash.replaceChildren();
  history.pushState(null, '', to);
  route();
}

document.addEventListener('click', (e) => {
  const a = (e.target as Element).closest?.('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const href = a.getAttribute('href') ?? '';
  if (!href.startsWith('/ui/')) return;
  e.preventDefault();
  navigate(href);
});
window.addEventListener('popstate', () => route());

// ---------------------------------------------------------------- messages

function showError(e: unknown) {
  const message = e instanceof ApiError ? e.message : (e as Error).message;
  flash.replaceChildren(h('div', { class: 'error' }, h('strong', {}, e instanceof ApiError ? `Refused (${e.status}): ` : 'Error: '), h('span', { class: 'message' }, message), h('button', { class: 'link', onclick: () => flash.replaceChildren(), 'aria-label': 'dismiss' }, '×')));
}

function showDone(message: string) {
  flash.replaceChildren(h('div', { class: 'done' }, message));
}

/** a modal confirmation (a native dialog: Escape cancels, focus stays inside; Enter confirms, its button first) */
function confirmAction(title: string, body: Node[], ok: string): Promise<FormData | undefined> {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog' }, h('h2', {}, title), ...body, h('div', { class: 'buttons' }, h('button', { value: 'ok', type: 'submit', class: 'primary' }, ok), h('button', { value: 'cancel', type: 'submit', formnovalidate: true }, 'Cancel')));
    const dialog = h('dialog', { 'aria-label': title }, form);
    document.body.appendChild(dialog);
    dialog.addEventListener('close', () => {
      const data = dialog.returnValue === 'ok' ? new FormData(form) : undefined;
      dialog.remove();
      resolve(data);
    });
    dialog.showModal();
  });
}

async function act(what: string, fn: () => Promise<unknown>) {
  try {
    await fn();
    showDone(what);
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------- pages

interface Page {
  title: string;
  watches: Collection[];
  render(): Array<Node | string>;
  /** streams a page holds besides its watches (a followed log) */
  stop?(): void;
}

let current: Page | undefined;
let scheduled = false;

function render() {
  scheduled = false;
  if (!current) return;
  // keep the keyboard focus on the same control across a re-render
  const focusKey = (document.activeElement as HTMLElement | null)?.dataset?.k;
  const loading = current.watches.find((w) => !w.ready && !w.error);
  const failing = current.watches.find((w) => w.error);
  main.replaceChildren(
    ...(failing ? [h('p', { class: 'warn' }, `${failing.plural}: ${failing.error} (retrying)`)] : []),
    ...(loading ? [h('p', { class: 'empty' }, 'loading…')] : current.render()),
  );
  if (focusKey) (main.querySelector(`[data-k="${CSS.escape(focusKey)}"]`) as HTMLElement | null)?.focus();
}

const schedule = () => {
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(render);
  }
};

function mount(page: Page) {
  current?.watches.forEach((w) => w.stop());
  current?.stop?.();
  current = page;
  document.title = `${page.title} · berth`;
  page.watches.forEach((w) => w.onChange(schedule).start());
  render();
}

const watch = (plural: string, ns?: string) => new Collection(plural, ns);

const clusterNav = (c: string, here: string) =>
  h(
    'nav',
    { class: 'tabs', 'aria-label': `cluster ${c}` },
    (
      [
        ['services', 'Services'],
        ['tasks', 'Tasks'],
        ['instances', 'Container instances'],
        ['daemons', 'Daemons'],
      ] as const
    ).map(([p, t]) => link(`/clusters/${encodeURIComponent(c)}/${p}`, t, p === here ? { 'aria-current': 'page' } : {})),
  );

const pendingStates = new Set(['PROVISIONING', 'PENDING', 'ACTIVATING']);

function clustersPage(): Page {
  const clusters = watch('clusters');
  const instances = watch('containerinstances');
  const services = watch('services');
  const tasks = watch('tasks');
  const count = (c: Collection, ns: string, pred: (o: Obj) => boolean) => c.list.filter((o) => o.metadata.namespace === ns && pred(o)).length;
  return {
    title: 'Clusters',
    watches: [clusters, instances, services, tasks],
    render: () => [
      h('h1', {}, 'Clusters'),
      table(
        ['Cluster', 'Status', 'Instances', 'Services', 'Running tasks', 'Pending tasks'],
        clusters.list.map((c) => {
          const n = c.metadata.name;
          return [
            link(`/clusters/${encodeURIComponent(n)}/services`, n),
            badge(c.status?.status),
            h('span', { 'data-count': 'instances' }, count(instances, n, (i) => i.status?.status !== 'INACTIVE')),
            h('span', { 'data-count': 'services' }, count(services, n, (s) => (s.status?.status ?? 'ACTIVE') === 'ACTIVE')),
            h('span', { 'data-count': 'running' }, count(tasks, n, (t) => t.status?.lastStatus === 'RUNNING')),
            h('span', { 'data-count': 'pending' }, count(tasks, n, (t) => pendingStates.has(t.status?.lastStatus ?? 'PROVISIONING'))),
          ];
        }),
        'no clusters',
      ),
    ],
  };
}

const serviceGroup = (name: string) => `service:${name}`;
/** the revision a service runs: the one its spec resolved to (status); the spec may name a bare family */
const runsRevision = (s: Obj): string => s.status?.taskDefinition ?? s.spec.taskDefinition;

function servicesPage(c: string): Page {
  const services = watch('services', c);
  return {
    title: `Services · ${c}`,
    watches: [services],
    render: () => [
      h('h1', {}, `Cluster ${c}`),
      clusterNav(c, 'services'),
      table(
        ['Service', 'Status', 'Task definition', 'Desired', 'Running', 'Pending', 'Rollout'],
        services.list.map((s) => {
          const primary = s.status?.deployments?.find((d: { status: string }) => d.status === 'PRIMARY');
          return [link(`/clusters/${encodeURIComponent(c)}/services/${encodeURIComponent(s.metadata.name)}`, s.metadata.name), badge(s.status?.status), runsRevision(s), s.spec.desiredCount ?? 0, s.status?.runningCount ?? 0, s.status?.pendingCount ?? 0, badge(primary?.rolloutState)];
        }),
        'no services in this cluster',
      ),
    ],
  };
}

interface Deployment {
  id: string;
  status: string;
  taskDefinition: string;
  desiredCount: number;
  pendingCount: number;
  runningCount: number;
  failedTasks: number;
  rolloutState?: string;
  rolloutStateReason?: string;
  createdAt: string;
  circuitBreaker?: { status: string; threshold: number };
}

async function previousRevision(s: Obj): Promise<string | undefined> {
  const cur: string = runsRevision(s);
  const prev = (s.status?.deployments as Deployment[] | undefined)?.find((d) => d.status !== 'PRIMARY' && d.taskDefinition !== cur)?.taskDefinition;
  if (prev) return prev;
  const [family, rev] = cur.split(':');
  const list = await request<{ items: Obj[] }>('GET', `${resourcePath('taskdefinitions')}?fieldSelector=${encodeURIComponent(`status.family=${family}`)}`);
  const revs = list.items.map((t) => Number(t.metadata.name.split(':')[1])).filter((r) => r < Number(rev));
  return revs.length ? `${family}:${Math.max(...revs)}` : undefined;
}

function servicePage(c: string, name: string): Page {
  const services = watch('services', c);
  const tasks = watch('tasks', c);
  const path = resourcePath('services', c, name);
  const scale = async (s: Obj) => {
    const data = await confirmAction(`Scale ${name}`, [h('label', {}, 'Desired tasks ', h('input', { name: 'count', type: 'number', min: 0, required: true, value: s.spec.desiredCount ?? 0, autofocus: true }))], 'Scale');
    if (!data) return;
    const n = Number(data.get('count'));
    await act(`${name} scaled to ${n}`, () => request('PATCH', path, { spec: { desiredCount: n } }));
  };
  const rollback = async (s: Obj) => {
    let prev: string | undefined;
    try {
      prev = await previousRevision(s);
    } catch (e) {
      return showError(e);
    }
    if (!prev) return showError(new Error(`${name} runs ${runsRevision(s)}; there is no earlier revision to go back to`));
    const to = prev;
    if (!(await confirmAction(`Roll back ${name}`, [h('p', {}, `Deploy ${to} in place of ${runsRevision(s)}?`)], 'Roll back'))) return;
    await act(`${name} rolling back to ${to}`, () => request('PATCH', path, { spec: { taskDefinition: to } }));
  };
  // a forced deployment: a new spec.restartedAt (as `berth rollout restart` writes) replaces every task with a new one of the same revision
  const forceDeployment = async (s: Obj) => {
    if (!(await confirmAction(`Force a new deployment of ${name}`, [h('p', {}, `Replace every task of ${name} with a new one of ${runsRevision(s)}, within its deployment bounds?`)], 'Force new deployment'))) return;
    let t = Date.now();
    while (new Date(t).toISOString() === s.spec.restartedAt) t++;
    await act(`${name}: new deployment of ${runsRevision(s)}`, () => request('PATCH', path, { metadata: { resourceVersion: s.metadata.resourceVersion }, spec: { restartedAt: new Date(t).toISOString() } }));
  };
  return {
    title: `${name} · ${c}`,
    watches: [services, tasks],
    render: () => {
      const s = services.get(name);
      if (!s) return [h('h1', {}, name), clusterNav(c, 'services'), h('p', { class: 'empty' }, `no service ${name} in cluster ${c}`)];
      const deployments = (s.status?.deployments ?? []) as Deployment[];
      const primary = deployments.find((d) => d.status === 'PRIMARY');
      const breaker = s.spec.deploymentConfiguration?.deploymentCircuitBreaker;
      const events = [...((s.status?.events ?? []) as Array<{ id: string; createdAt: string; message: string }>)].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
      const steady = events.findIndex((e) => /steady state/.test(e.message));
      const placement = events.slice(0, steady < 0 ? events.length : steady).find((e) => /unable to place/i.test(e.message));
      const mine = tasks.list.filter((t) => t.spec.group === serviceGroup(name) && t.status?.lastStatus !== 'STOPPED');
      return [
        h('h1', {}, `Service ${name}`, ' ', badge(s.status?.status)),
        clusterNav(c, 'services'),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Desired'),
          h('dd', { 'data-testid': 'desired' }, s.spec.desiredCount ?? 0),
          h('dt', {}, 'Running'),
          h('dd', { 'data-testid': 'running' }, s.status?.runningCount ?? 0),
          h('dt', {}, 'Pending'),
          h('dd', { 'data-testid': 'pending' }, s.status?.pendingCount ?? 0),
          h('dt', {}, 'Task definition'),
          h('dd', {}, link(`/taskdefinitions/${encodeURIComponent(runsRevision(s).split(':')[0])}`, runsRevision(s))),
          h('dt', {}, 'Circuit breaker'),
          h('dd', { 'data-testid': 'breaker' }, !breaker?.enable ? 'off' : `${primary?.circuitBreaker?.status ?? 'on'}${breaker.rollback ? ', rolls back' : ''}${primary?.circuitBreaker ? ` (${primary.failedTasks} of ${primary.circuitBreaker.threshold} failed)` : ''}`),
        ),
        h(
          'div',
          { class: 'actions' },
          h('button', { 'data-k': 'scale', onclick: () => void scale(s) }, 'Scale…'),
          h('button', { 'data-k': 'rollback', onclick: () => void rollback(s) }, 'Roll back…'),
          h('button', { 'data-k': 'force', onclick: () => void forceDeployment(s) }, 'Force new deployment…'),
        ),
        placement ? h('p', { class: 'warn', 'data-testid': 'placement' }, `Tasks cannot be placed: ${placement.message}`) : '',
        h('h2', {}, 'Deployments'),
        table(
          ['Deployment', 'Status', 'Task definition', 'Rollout', 'Progress', 'Failed'],
          deployments.map((d) => [
            h('code', {}, d.id.replace(/^ecs-svc\//, '')),
            badge(d.status),
            d.taskDefinition,
            h('span', {}, badge(d.rolloutState), d.rolloutStateReason ? h('small', { class: 'reason' }, ` ${d.rolloutStateReason}`) : ''),
            h('span', { class: 'progress' }, h('progress', { max: Math.max(1, d.desiredCount), value: Math.min(d.runningCount, d.desiredCount), 'aria-label': `${d.id} progress`, 'data-testid': `progress-${d.status}`, 'data-state': d.rolloutState ?? '' }), ` ${d.runningCount}/${d.desiredCount} running${d.pendingCount ? `, ${d.pendingCount} pending` : ''}`),
            d.failedTasks,
          ]),
          'no deployment yet',
        ),
        h('h2', {}, 'Tasks'),
        taskTable(c, mine),
        h('h2', {}, 'Events'),
        h('ol', { class: 'events', 'data-testid': 'events' }, events.slice(0, 50).map((e) => h('li', {}, h('time', { datetime: e.createdAt, title: e.createdAt }, ago(e.createdAt)), ' ', e.message))),
      ];
    },
  };
}

const taskId = (t: Obj) => t.metadata.name;

function taskTable(c: string, list: Obj[]) {
  return table(
    ['Task', 'Last', 'Desired', 'Task definition', 'Instance', 'Started', 'Stop reason'],
    list.map((t) => [
      link(`/clusters/${encodeURIComponent(c)}/tasks/${encodeURIComponent(taskId(t))}`, taskId(t).slice(0, 12), { title: taskId(t) }),
      badge(t.status?.lastStatus),
      t.spec.desiredStatus,
      runsRevision(t),
      t.spec.containerInstance ? link(`/clusters/${encodeURIComponent(c)}/instances/${encodeURIComponent(t.spec.containerInstance)}`, t.spec.containerInstance.slice(0, 12)) : 'not placed',
      ago(t.status?.startedAt),
      t.status?.stoppedReason ?? t.spec.stopReason ?? '',
    ]),
    'no tasks',
  );
}

function tasksPage(c: string): Page {
  const tasks = watch('tasks', c);
  return {
    title: `Tasks · ${c}`,
    watches: [tasks],
    render: () => {
      const list = tasks.list.sort((a, b) => Number(a.status?.lastStatus === 'STOPPED') - Number(b.status?.lastStatus === 'STOPPED'));
      return [h('h1', {}, `Cluster ${c}`), clusterNav(c, 'tasks'), taskTable(c, list)];
    },
  };
}

const TIMELINE = ['PROVISIONING', 'PENDING', 'ACTIVATING', 'RUNNING', 'DEACTIVATING', 'STOPPING', 'DEPROVISIONING', 'STOPPED'];

function taskPage(c: string, name: string): Page {
  const tasks = watch('tasks', c);
  const logPre = h('pre', { class: 'logs', 'data-testid': 'logs', tabindex: '0', 'aria-label': 'log' });
  let logCtrl: AbortController | undefined;
  let logFor = '';
  const follow = async (container: string) => {
    logCtrl?.abort();
    logCtrl = new AbortController();
    logFor = container;
    logPre.replaceChildren();
    schedule();
    try {
      const res = await fetch(`${resourcePath('tasks', c, name)}/log?container=${encodeURIComponent(container)}&follow=true&tailLines=200`, { headers: headers(), signal: logCtrl.signal });
      if (!res.ok) {
        logPre.append(`(${res.status}) ${(await refusal(res)).message}\n`);
        return;
      }
      for await (const l of lines(res)) {
        logPre.append(`${l}\n`);
        logPre.scrollTop = logPre.scrollHeight;
      }
      logPre.append('— end of log —\n');
    } catch (e) {
      if ((e as Error).name !== 'AbortError') logPre.append(`(${(e as Error).message})\n`);
    }
  };
  const stop = async () => {
    if (!(await confirmAction('Stop task', [h('p', {}, `Stop task ${name}?`)], 'Stop task'))) return;
    await act(`task ${name} stopping`, () => request('PATCH', resourcePath('tasks', c, name), { spec: { desiredStatus: 'STOPPED', stopReason: `Stopped from the console by ${session.user ?? 'a user'}`, stopCode: 'UserInitiated' } }));
  };
  return {
    title: `Task ${name.slice(0, 12)} · ${c}`,
    watches: [tasks],
    stop: () => logCtrl?.abort(),
    render: () => {
      const t = tasks.get(name);
      if (!t) return [h('h1', {}, `Task ${name}`), clusterNav(c, 'tasks'), h('p', { class: 'empty' }, `no task ${name} in cluster ${c}`)];
      const last: string = t.status?.lastStatus ?? 'PROVISIONING';
      const at = TIMELINE.indexOf(last);
      const times: Record<string, string | undefined> = { PENDING: t.status?.pullStartedAt, RUNNING: t.status?.startedAt, STOPPING: t.status?.stoppingAt, STOPPED: t.status?.stoppedAt };
      const containers = (t.status?.containers ?? []) as Array<{ name: string; image?: string; lastStatus: string; exitCode?: number; reason?: string; healthStatus?: string; networkBindings?: Array<{ bindIP?: string; containerPort: number; hostPort: number; protocol: string }> }>;
      return [
        h('h1', {}, `Task ${name}`, ' ', badge(last)),
        clusterNav(c, 'tasks'),
        h('ol', { class: 'timeline', 'aria-label': 'status timeline' }, TIMELINE.map((s, i) => h('li', { class: i < at ? 'past' : i === at ? 'now' : 'future', ...(i === at ? { 'aria-current': 'step' } : {}) }, s, times[s] && i <= at ? h('small', {}, ` ${ago(times[s])}`) : ''))),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Task definition'),
          h('dd', {}, runsRevision(t)),
          h('dt', {}, 'Desired'),
          h('dd', {}, t.spec.desiredStatus),
          h('dt', {}, 'Group'),
          h('dd', {}, t.spec.group ?? ''),
          h('dt', {}, 'Instance'),
          h('dd', {}, t.spec.containerInstance ? link(`/clusters/${encodeURIComponent(c)}/instances/${encodeURIComponent(t.spec.containerInstance)}`, t.spec.containerInstance) : 'not placed'),
          h('dt', {}, 'Stop reason'),
          h('dd', {}, [t.status?.stopCode, t.status?.stoppedReason ?? t.spec.stopReason].filter(Boolean).join(': ') || '—'),
        ),
        h('div', { class: 'actions' }, t.spec.desiredStatus !== 'STOPPED' ? h('button', { 'data-k': 'stop', onclick: () => void stop() }, 'Stop task…') : ''),
        h('h2', {}, 'Containers'),
        table(
          ['Container', 'Image', 'Status', 'Exit code', 'Health', 'Reason', 'Network bindings', 'Logs'],
          containers.map((k) => [
            k.name,
            h('code', {}, k.image ?? ''),
            badge(k.lastStatus),
            k.exitCode ?? '',
            badge(k.healthStatus),
            k.reason ?? '',
            (k.networkBindings ?? []).map((b) => `${b.bindIP ?? '0.0.0.0'}:${b.hostPort}→${b.containerPort}/${b.protocol}`).join(', '),
            h('button', { 'data-k': `logs-${k.name}`, onclick: () => void follow(k.name), ...(logFor === k.name ? { 'aria-pressed': 'true' } : {}) }, logFor === k.name ? 'Following' : 'Follow logs'),
          ]),
          'no containers reported yet',
        ),
        logFor ? h('section', {}, h('h2', {}, `Logs of ${logFor}`), logPre) : '',
      ];
    },
  };
}

type Resource = { name: string; integerValue?: number; stringSetValue?: string[] };
const resource = (list: Resource[] | undefined, n: string) => list?.find((r) => r.name === n);

function usageBar(label: string, registered?: number, remaining?: number, unit = '') {
  if (registered === undefined) return h('span', {}, '—');
  const used = registered - (remaining ?? registered);
  return h('span', { class: 'bar' }, h('meter', { min: 0, max: Math.max(1, registered), value: used, high: registered * 0.9, 'aria-label': `${label} used` }), ` ${used} of ${registered}${unit} used`);
}

function instancesPage(c: string, only?: string): Page {
  const instances = watch('containerinstances', c);
  const setState = async (i: Obj, to: 'DRAINING' | 'ACTIVE') => {
    const n = i.metadata.name;
    const verb = to === 'DRAINING' ? 'Drain' : 'Activate';
    if (!(await confirmAction(`${verb} instance`, [h('p', {}, to === 'DRAINING' ? `Drain ${n}? Its service tasks are replaced elsewhere and no new task is placed on it.` : `Set ${n} back to ACTIVE?`)], verb))) return;
    await act(`${n} is ${to}`, () => request('PATCH', resourcePath('containerinstances', c, n), { spec: { status: to } }));
  };
  return {
    title: `Container instances · ${c}`,
    watches: [instances],
    render: () => {
      const list = instances.list.filter((i) => !only || i.metadata.name === only);
      return [
        h('h1', {}, only ? `Container instance ${only}` : `Cluster ${c}`),
        clusterNav(c, 'instances'),
        ...(only && !list.length ? [h('p', { class: 'empty' }, `no container instance ${only} in cluster ${c}`)] : []),
        h(
          'div',
          { class: 'cards' },
          list.map((i) => {
            const reg = i.spec.registeredResources as Resource[] | undefined;
            const rem = i.status?.remainingResources as Resource[] | undefined;
            const draining = i.spec.status === 'DRAINING';
            // what the operator asked for shows at once; the agent's own status otherwise
            const status: string = draining ? 'DRAINING' : (i.status?.status ?? i.spec.status);
            const ports = resource(rem, 'PORTS')?.stringSetValue ?? [];
            return h(
              'article',
              { class: 'card', 'data-instance': i.metadata.name, 'aria-label': `instance ${i.metadata.name}` },
              h('h2', {}, link(`/clusters/${encodeURIComponent(c)}/instances/${encodeURIComponent(i.metadata.name)}`, i.spec.hostname ?? i.metadata.name), ' ', h('span', { 'data-testid': 'instance-status' }, badge(status)), ' ', badge(i.status?.agentConnected ? 'CONNECTED' : 'DISCONNECTED')),
              h('p', {}, h('code', {}, i.metadata.name)),
              h(
                'dl',
                { class: 'facts' },
                h('dt', {}, 'CPU'),
                h('dd', {}, usageBar('CPU', resource(reg, 'CPU')?.integerValue, resource(rem, 'CPU')?.integerValue, ' units')),
                h('dt', {}, 'Memory'),
                h('dd', {}, usageBar('memory', resource(reg, 'MEMORY')?.integerValue, resource(rem, 'MEMORY')?.integerValue, ' MiB')),
                h('dt', {}, 'Ports in use'),
                h('dd', {}, ports.length ? ports.join(', ') : 'none'),
                h('dt', {}, 'Tasks'),
                h('dd', {}, `${i.status?.runningTasksCount ?? 0} running, ${i.status?.pendingTasksCount ?? 0} pending`),
                h('dt', {}, 'Agent'),
                h('dd', {}, `${i.status?.versionInfo?.agentVersion ?? '?'}, last heartbeat ${ago(i.status?.lastHeartbeat) || 'never'}`),
              ),
              only ? h('h3', {}, 'Attributes') : '',
              only ? table(['Name', 'Value'], ((i.spec.attributes ?? []) as Array<{ name: string; value?: string }>).map((a) => [a.name, a.value ?? '']), 'no attributes') : '',
              h('div', { class: 'actions' }, draining ? h('button', { 'data-k': `activate-${i.metadata.name}`, onclick: () => void setState(i, 'ACTIVE') }, 'Activate…') : h('button', { 'data-k': `drain-${i.metadata.name}`, onclick: () => void setState(i, 'DRAINING') }, 'Drain…')),
            );
          }),
        ),
        list.length || only ? '' : h('p', { class: 'empty' }, 'no container instances'),
      ];
    },
  };
}

function daemonsPage(c: string): Page {
  const daemons = watch('daemons', c);
  return {
    title: `Daemons · ${c}`,
    watches: [daemons],
    render: () => [
      h('h1', {}, `Cluster ${c}`),
      clusterNav(c, 'daemons'),
      table(
        ['Daemon', 'Status', 'Task definition', 'Desired', 'Running', 'Pending', 'Updated', 'Latest event'],
        daemons.list.map((d) => [d.metadata.name, badge(d.status?.status), d.status?.taskDefinition ?? d.spec.daemonTaskDefinition, d.status?.desiredCount ?? 0, d.status?.runningCount ?? 0, d.status?.pendingCount ?? 0, d.status?.updatedCount ?? 0, d.status?.events?.[0]?.message ?? '']),
        'no daemons in this cluster',
      ),
    ],
  };
}

/** a target group ARN (`...:targetgroup/NAME/ID`) or name -> NAME */
const targetGroupLabel = (a: string) => /:targetgroup\/([^/]+)/.exec(a)?.[1] ?? a;

/** load balancers and target groups (cluster-scoped, as ELB's are): listeners, health checks, and each target's ELB state */
function loadBalancingPage(): Page {
  const lbs = watch('loadbalancers');
  const tgs = watch('targetgroups');
  const targets = (o: Obj) =>
    table(
      ['Target', 'Port', 'State', 'Reason', 'Task', 'Service'],
      ((o.status?.targets ?? []) as Array<{ id: string; port: number; state: string; reason?: string; task: string; service: string }>).map((t) => {
        const [c, task] = t.task.split('/');
        const [, svc] = t.service.split('/');
        return [t.id, t.port, badge(t.state), t.reason ?? '', link(`/clusters/${encodeURIComponent(c)}/tasks/${encodeURIComponent(task)}`, task), link(`/clusters/${encodeURIComponent(c)}/services/${encodeURIComponent(svc)}`, svc)];
      }),
      'no targets registered',
    );
  return {
    title: 'Load balancing',
    watches: [lbs, tgs],
    render: () => [
      h('h1', {}, 'Load balancing'),
      h('h2', {}, 'Target groups'),
      ...(tgs.list.length
        ? tgs.list.flatMap((g) => [
            h('h3', {}, g.metadata.name, ' ', h('span', { class: 'muted' }, `${g.spec.protocol} :${g.spec.port} · health ${g.spec.healthCheckPath ?? '/'} · deregistration delay ${g.spec.deregistrationDelaySeconds ?? 300} s`)),
            h('div', { 'data-testid': `targets-${g.metadata.name}` }, targets(g)),
          ])
        : [h('p', { class: 'empty' }, 'no target groups')]),
      h('h2', {}, 'Load balancers'),
      ...(lbs.list.length
        ? lbs.list.flatMap((l) => [
            h('h3', {}, l.metadata.name, ' ', h('span', { class: 'muted' }, ((l.spec.listeners ?? []) as Array<{ protocol?: string; loadBalancerPort: number; targetGroupArn?: string; instancePort?: number }>).map((x) => `${x.protocol ?? ''} :${x.loadBalancerPort} → ${x.targetGroupArn ? targetGroupLabel(x.targetGroupArn) : `:${x.instancePort ?? ''}`}`).join(', '))),
            h('div', { 'data-testid': `targets-${l.metadata.name}` }, targets(l)),
          ])
        : [h('p', { class: 'empty' }, 'no load balancers')]),
    ],
  };
}

const family = (t: Obj) => t.status?.family ?? t.metadata.name.split(':')[0];
const revision = (t: Obj) => Number(t.metadata.name.split(':')[1]);

function taskDefinitionsPage(): Page {
  const tds = watch('taskdefinitions');
  return {
    title: 'Task definitions',
    watches: [tds],
    render: () => {
      const families = new Map<string, Obj[]>();
      for (const t of tds.list) families.set(family(t), [...(families.get(family(t)) ?? []), t]);
      return [
        h('h1', {}, 'Task definitions'),
        table(
          ['Family', 'Revisions', 'Latest', 'Status'],
          [...families].map(([f, list]) => {
            const latest = list.reduce((a, b) => (revision(b) > revision(a) ? b : a));
            return [link(`/taskdefinitions/${encodeURIComponent(f)}`, f), list.length, revision(latest), badge(latest.status?.status)];
          }),
          'no task definitions',
        ),
      ];
    },
  };
}

function familyPage(f: string): Page {
  const tds = watch('taskdefinitions');
  const q = new URLSearchParams(location.search);
  return {
    title: `Task definition ${f}`,
    watches: [tds],
    render: () => {
      const list = tds.list.filter((t) => family(t) === f).sort((a, b) => revision(b) - revision(a));
      if (!list.length) return [h('h1', {}, f), h('p', { class: 'empty' }, `no task definition family ${f}`)];
      const a = Number(q.get('a') ?? revision(list[Math.min(1, list.length - 1)]));
      const b = Number(q.get('b') ?? revision(list[0]));
      const pick = (name: 'a' | 'b', value: number) =>
        h(
          'select',
          {
            name,
            'aria-label': name === 'a' ? 'left revision' : 'right revision',
            onchange: (e: Event) => {
              q.set(name, (e.target as HTMLSelectElement).value);
              history.replaceState(null, '', `${location.pathname}?${q}`);
              schedule();
            },
          },
          list.map((t) => h('option', { value: revision(t), selected: revision(t) === value }, `revision ${revision(t)}`)),
        );
      const text = (r: number) => JSON.stringify(list.find((t) => revision(t) === r)?.spec ?? {}, null, 2).split('\n');
      const rows = diffLines(text(a), text(b));
      return [
        h('h1', {}, `Task definition ${f}`),
        table(
          ['Revision', 'Status', 'Registered', 'Containers'],
          list.map((t) => [revision(t), badge(t.status?.status), ago(t.metadata.creationTimestamp), ((t.spec.containerDefinitions ?? []) as Array<{ name: string; image: string }>).map((k) => `${k.name} (${k.image})`).join(', ')]),
        ),
        h('h2', {}, 'Compare revisions'),
        h('p', { class: 'actions' }, pick('a', a), ' with ', pick('b', b)),
        h(
          'div',
          { class: 'scroll' },
          h(
            'table',
            { class: 'diff', 'aria-label': `revision ${a} and revision ${b}` },
            h('tbody', {}, rows.map((r) => h('tr', { class: r.op }, h('td', { class: 'l' }, h('code', {}, r.left ?? '')), h('td', { class: 'r' }, h('code', {}, r.right ?? ''))))),
          ),
        ),
      ];
    },
  };
}

// ---------------------------------------------------------------- login

async function exchangeCode(code: string) {
  const res = await fetch('/ui/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) });
  const body = (await res.json()) as { token?: string; user?: string; message?: string };
  if (!res.ok || !body.token) throw new ApiError(res.status, body.message ?? 'the login code was refused');
  session.set(body.token, body.user ?? 'admin');
}

/** who a token is, by the API itself (a self subject review) */
async function whoAmI(token: string): Promise<string> {
  const res = await fetch('/apis/authentication.k8s.io/v1/selfsubjectreviews', { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }) });
  const body = (await res.json()) as { status?: { userInfo?: { username?: string } }; message?: string };
  if (!res.ok) throw new ApiError(res.status, body.message ?? 'the token was refused');
  return body.status?.userInfo?.username ?? 'unknown';
}

function loginPage(): Page {
  const submit = async (e: Event) => {
    e.preventDefault();
    const token = String(new FormData(e.target as HTMLFormElement).get('token') ?? '').trim();
    try {
      const user = await whoAmI(token);
      session.set(token, user);
      flash.replaceChildren();
      navigate(sessionStorage.getItem('berth.console.next') ?? url('/'));
    } catch (err) {
      showError(err);
    }
  };
  return {
    title: 'Log in',
    watches: [],
    render: () => [
      h('h1', {}, 'Log in to berth'),
      h(
        'form',
        { class: 'login', onsubmit: (e: Event) => void submit(e) },
        h('label', { for: 'token' }, 'Token'),
        h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, autofocus: true }),
        h('button', { type: 'submit', class: 'primary' }, 'Log in'),
        h('p', { class: 'hint' }, 'A bearer token from the token file, or open the one-time link berth up prints. The token is kept for this tab only.'),
      ),
    ],
  };
}

// ---------------------------------------------------------------- shell and routes

function header() {
  const user = session.user;
  return h(
    'header',
    {},
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    link('/', 'berth', { class: 'brand' }),
    h('nav', { 'aria-label': 'main' }, link('/', 'Clusters'), link('/taskdefinitions', 'Task definitions'), link('/loadbalancing', 'Load balancing')),
    user
      ? h(
          'span',
          { class: 'user' },
          h('span', { 'data-testid': 'user' }, user),
          ' ',
          h(
            'button',
            {
              class: 'link',
              onclick: async () => {
                await fetch('/ui/session', { method: 'DELETE', headers: { Authorization: `Bearer ${session.token}` } }).catch(() => undefined);
                session.clear();
                navigate(url('/login'));
              },
            },
            'Log out',
          ),
        )
      : '',
  );
}

function pageFor(path: string): Page {
  const p = path.replace(/^\/ui/, '').replace(/\/+$/, '') || '/';
  const parts = p.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'login') return loginPage();
  if (parts[0] === 'taskdefinitions') return parts[1] ? familyPage(parts[1]) : taskDefinitionsPage();
  if (parts[0] === 'loadbalancing') return loadBalancingPage();
  if (parts[0] === 'clusters' && parts[1]) {
    const c = parts[1];
    switch (parts[2]) {
      case 'tasks':
        return parts[3] ? taskPage(c, parts[3]) : tasksPage(c);
      case 'instances':
        return instancesPage(c, parts[3]);
      case 'daemons':
        return daemonsPage(c);
      case 'services':
      case undefined:
        return parts[3] ? servicePage(c, parts[3]) : servicesPage(c);
    }
  }
  return clustersPage();
}

function route() {
  if (!session.token && !location.pathname.startsWith('/ui/login')) {
    sessionStorage.setItem('berth.console.next', location.pathname + location.search);
    history.replaceState(null, '', url('/login'));
  }
  app.replaceChildren(header(), flash, main);
  mount(pageFor(location.pathname));
}

whenUnauthorized(() => {
  session.clear();
  showError(new ApiError(401, 'your session ended: log in again'));
  sessionStorage.setItem('berth.console.next', location.pathname + location.search);
  history.replaceState(null, '', url('/login'));
  route();
});

async function start() {
  // the one-time link: #code=… (a fragment never reaches a server or its logs), spent once
  const code = new URLSearchParams(location.hash.slice(1)).get('code');
  if (code) {
    history.replaceState(null, '', location.pathname + location.search);
    try {
      await exchangeCode(code);
    } catch (e) {
      session.clear();
      route();
      showError(e);
      return;
    }
  }
  route();
}

void start();
