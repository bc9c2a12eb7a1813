import { API_VERSION } from '../api/meta.ts';
import { humanAge } from './table.ts';
import { matchesFields, parseFieldSelector } from './selectors.ts';
import type { Obj, WatchCache } from './watchcache.ts';

/**
 * Kubernetes Events (core/v1, what `kubectl describe` and `kubectl events` read) of what the
 * controllers report: the events of services and daemons (ECS's messages: deployments, steady
 * states, placement failures, tasks started and stopped) and the stop of each task, with
 * involvedObject naming the object they are about. They are a view of the records the objects
 * keep, not objects of their own: bounded as those are (a service keeps its newest 100 events,
 * a stopped task lives until it is collected), so the store does not grow with them.
 */
export interface K8sEvent {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { name: string; namespace: string; resourceVersion: string; creationTimestamp: string; uid: string };
  involvedObject: { apiVersion: string; kind: string; name: string; namespace: string; uid?: string; resourceVersion?: string };
  reason: string;
  message: string;
  type: 'Normal' | 'Warning';
  source: { component: string };
  reportingComponent: string;
  reportingInstance: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
  eventTime: null;
}

/** the fields `kubectl describe` and `kubectl events --for` select events on */
export const EVENT_FIELDS = [
  'involvedObject.kind',
  'involvedObject.name',
  'involvedObject.namespace',
  'involvedObject.uid',
  'involvedObject.apiVersion',
  'involvedObject.resourceVersion',
  'involvedObject.fieldPath',
  'reason',
  'type',
  'reportingComponent',
];

/** ECS's service event messages, as a reason and a type */
const REASONS: Array<[RegExp, string, 'Normal' | 'Warning']> = [
  [/unable to place/, 'FailedPlacement', 'Warning'],
  [/deployment failed/, 'DeploymentFailed', 'Warning'],
  [/rolling back/, 'RollingBack', 'Warning'],
  [/steady state/, 'SteadyState', 'Normal'],
  [/has started/, 'TasksStarted', 'Normal'],
  [/has stopped/, 'TasksStopped', 'Normal'],
  [/deployment .* completed|primary deployment/, 'Deployment', 'Normal'],
];

function classify(message: string): { reason: string; type: 'Normal' | 'Warning' } {
  for (const [re, reason, type] of REASONS) if (re.test(message)) return { reason, type };
  return { reason: 'ServiceEvent', type: 'Normal' };
}

const FAILED_STOPS = new Set(['TaskFailedToStart', 'EssentialContainerExited']);

function event(o: Obj, kind: string, id: string, at: string, message: string, reason: string, type: 'Normal' | 'Warning', component: string): K8sEvent {
  const m = o.metadata as { name: string; namespace?: string; uid?: string; resourceVersion?: string };
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${m.name}.${id}`, namespace: m.namespace!, resourceVersion: m.resourceVersion ?? '0', creationTimestamp: at, uid: `${m.uid ?? m.name}.${id}` },
    involvedObject: { apiVersion: API_VERSION, kind, name: m.name, namespace: m.namespace!, ...(m.uid ? { uid: m.uid } : {}), ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}) },
    reason,
    message,
    type,
    source: { component },
    reportingComponent: component,
    reportingInstance: '',
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
    eventTime: null,
  };
}

/**
 * The view at one cache revision, per namespace: every events watch reads it each second, so it
 * is built once per change for all of them, not once per watcher (callers do not mutate it).
 */
const views = new WeakMap<WatchCache, { revision: number; byNamespace: Map<string | undefined, K8sEvent[]> }>();

/** The events of one namespace (every namespace when undefined), oldest first. */
export function eventsOf(cache: WatchCache, namespace: string | undefined): K8sEvent[] {
  const revision = cache.revision as number | undefined;
  if (revision === undefined) return buildEvents(cache, namespace);
  let view = views.get(cache);
  if (!view || view.revision !== revision) views.set(cache, (view = { revision, byNamespace: new Map() }));
  let out = view.byNamespace.get(namespace);
  if (!out) view.byNamespace.set(namespace, (out = buildEvents(cache, namespace)));
  return out;
}

const byCode = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function buildEvents(cache: WatchCache, namespace: string | undefined): K8sEvent[] {
  const out: K8sEvent[] = [];
  for (const [plural, kind, component] of [
    ['services', 'Service', 'service-controller'],
    ['daemons', 'Daemon', 'daemon-controller'],
  ] as const) {
    for (const [, o] of cache.list(plural, namespace)) {
      for (const e of ((o.status as { events?: Array<{ id: string; createdAt: string; message: string }> } | undefined)?.events ?? [])) {
        const { reason, type } = classify(e.message);
        out.push(event(o, kind, e.id, e.createdAt, e.message, reason, type, component));
      }
    }
  }
  for (const [, t] of cache.list('tasks', namespace)) {
    const st = t.status as { lastStatus?: string; stoppedAt?: string; stoppedReason?: string; stopCode?: string } | undefined;
    if (st?.lastStatus !== 'STOPPED' || !st.stoppedAt) continue;
    const failed = st.stopCode !== undefined && FAILED_STOPS.has(st.stopCode);
    out.push(event(t, 'Task', 'stopped', st.stoppedAt, `Task stopped: ${st.stoppedReason ?? 'no reason given'}`, st.stopCode ?? 'Stopped', failed ? 'Warning' : 'Normal', 'berth-agent'));
  }
  return out.sort((a, b) => byCode(a.lastTimestamp, b.lastTimestamp) || byCode(a.metadata.name, b.metadata.name));
}

/** The events a list asks for (its field selector; a 400 naming a field it cannot select on). */
export function selectEvents(cache: WatchCache, namespace: string | undefined, fieldSelector: string | undefined): K8sEvent[] {
  const reqs = parseFieldSelector(fieldSelector, EVENT_FIELDS);
  return eventsOf(cache, namespace).filter((e) => matchesFields(reqs, e));
}

/** The Table kubectl prints events from (kube's columns: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE). */
export function eventTable(events: K8sEvent[], resourceVersion: string, includeObject: 'Object' | 'Metadata' | 'None' = 'Object') {
  const col = (name: string, priority = 0) => ({ name, type: 'string', format: name === 'Name' ? 'name' : '', description: name, priority });
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: [col('Last Seen'), col('Type'), col('Reason'), col('Object'), col('Source', 1), col('Message'), col('Count', 1), col('Name', 1)],
    rows: events.map((e) => ({
      cells: [humanAge(e.lastTimestamp), e.type, e.reason, `${e.involvedObject.kind.toLowerCase()}/${e.involvedObject.name}`, e.source.component, e.message, e.count, e.metadata.name],
      ...(includeObject === 'None' ? {} : { object: includeObject === 'Metadata' ? { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: e.metadata } : e }),
    })),
  };
}
