/**
 * Test support: the bad-input corpus of the resource API (test/apiserver/badinput.test.ts runs
 * it against one apiserver; the fault suite's R9 sends it through the load balancer while
 * etcd loses its leader). Each case says the status it must get and a word the message must
 * contain; every one is refused, so none may write anything.
 */
export const V = '/apis/berth.dev/v1';
export const NS = `${V}/namespaces/default`;
/** the task definition the corpus's cases refer to (good:1 must exist) */
export const td = { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'good' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64 }] } };

export interface BadInputCase {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  raw?: string;
  contentType?: string;
  status: number;
  /** text the message must contain (names what is wrong) */
  says: string;
}

const big = 'x'.repeat(4 * 1024 * 1024);
export const cases: BadInputCase[] = [
  { name: 'malformed JSON', method: 'POST', path: `${V}/taskdefinitions`, raw: '{"apiVersion": "berth.dev/v1", "kind":', status: 400, says: 'JSON' },
  { name: 'malformed YAML', method: 'POST', path: `${V}/taskdefinitions`, raw: 'kind: [unclosed', contentType: 'application/yaml', status: 400, says: 'YAML' },
  { name: 'a body that is not an object', method: 'POST', path: `${V}/taskdefinitions`, raw: '[1,2]', status: 400, says: 'JSON object' },
  { name: 'wrong content type', method: 'POST', path: `${V}/taskdefinitions`, raw: 'hello', contentType: 'text/plain', status: 415, says: 'text/plain' },
  { name: 'strategic merge patch', method: 'PATCH', path: `${V}/taskdefinitions/good`, body: {}, contentType: 'application/strategic-merge-patch+json', status: 415, says: 'merge-patch' },
  { name: 'a body over the limit', method: 'POST', path: `${V}/taskdefinitions`, raw: JSON.stringify({ ...td, metadata: { name: 'huge', annotations: { a: big } } }), status: 413, says: 'limit' },
  { name: 'an unknown kind', method: 'GET', path: `${V}/widgets`, status: 404, says: 'widgets' },
  { name: 'an unknown version', method: 'GET', path: '/apis/berth.dev/v9/clusters', status: 404, says: 'v9' },
  { name: 'an unknown group', method: 'GET', path: '/apis/apps/v1/deployments', status: 404, says: 'apps' },
  // FZ1 (found by the fuzzer): a name that is not valid percent-encoding was a URIError, a 500
  { name: 'FZ1: a name that is not valid percent-encoding', method: 'POST', path: `${V}/clusters/%`, body: {}, status: 400, says: 'percent-encoding' },
  { name: 'FZ1: the same on a get', method: 'GET', path: `${V}/clusters/%zz`, status: 400, says: 'percent-encoding' },
  { name: 'FZ1: the same in the logs route', method: 'GET', path: `${NS}/tasks/%E0%A4%A/log`, status: 400, says: 'percent-encoding' },
  { name: 'FZ1: the same in the bindings route', method: 'POST', path: `${V}/namespaces/%/bindings`, body: { bindings: [] }, status: 400, says: 'percent-encoding' },
  { name: 'kind in the body disagrees with the path', method: 'POST', path: `${V}/taskdefinitions`, body: { ...td, kind: 'Service' }, status: 422, says: 'kind' },
  { name: 'wrong apiVersion', method: 'POST', path: `${V}/taskdefinitions`, body: { ...td, apiVersion: 'v1' }, status: 422, says: 'apiVersion' },
  { name: 'an invalid name', method: 'POST', path: `${V}/clusters`, body: { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'Bad Name!' } }, status: 422, says: 'metadata.name' },
  { name: 'a missing name', method: 'POST', path: `${V}/clusters`, body: { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: {} }, status: 422, says: 'metadata.name' },
  { name: 'wrong namespace in the body', method: 'POST', path: `${NS}/tasks`, body: { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 't', namespace: 'other' }, spec: { taskDefinition: 'good' } }, status: 400, says: 'namespace' },
  { name: 'a namespace on a global kind', method: 'POST', path: `${V}/clusters`, body: { apiVersion: 'berth.dev/v1', kind: 'Cluster', metadata: { name: 'c', namespace: 'x' } }, status: 400, says: 'namespace' },
  { name: 'a namespace that is not a cluster', method: 'POST', path: `${V}/namespaces/nosuch/tasks`, body: { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 't' }, spec: { taskDefinition: 'good' } }, status: 404, says: 'nosuch' },
  { name: 'an unknown field', method: 'POST', path: `${V}/taskdefinitions`, body: { ...td, spec: { ...td.spec, colour: 'red' } }, status: 422, says: 'colour' },
  { name: 'a bad enum in a container', method: 'POST', path: `${V}/taskdefinitions`, body: { ...td, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64, portMappings: [{ containerPort: 80, protocol: 'sctp' }] }] } }, status: 422, says: 'spec.containerDefinitions[0].portMappings[0].protocol' },
  { name: 'a stale resourceVersion', method: 'PUT', path: `${V}/taskdefinitions/good:1`, body: { ...td, metadata: { name: 'good:1', resourceVersion: '1' } }, status: 409, says: 'good' },
  { name: 'an update without resourceVersion', method: 'PUT', path: `${V}/taskdefinitions/good:1`, body: { ...td, metadata: { name: 'good:1' } }, status: 422, says: 'resourceVersion' },
  { name: 'a huge label selector', method: 'GET', path: `${NS}/tasks?labelSelector=${'a'.repeat(20000)}%3Db`, status: 400, says: 'selector' },
  { name: 'a broken label selector', method: 'GET', path: `${NS}/tasks?labelSelector=a%20in%20(b`, status: 400, says: 'selector' },
  { name: 'an unsupported field selector', method: 'GET', path: `${NS}/tasks?fieldSelector=spec.image%3Dx`, status: 400, says: 'spec.image' },
  { name: 'a bad limit', method: 'GET', path: `${NS}/tasks?limit=-3`, status: 400, says: 'limit' },
  { name: 'a forged continue token', method: 'GET', path: `${NS}/tasks?limit=1&continue=garbage`, status: 400, says: 'continue' },
  { name: 'a non-numeric resourceVersion', method: 'GET', path: `${NS}/tasks?watch=1&resourceVersion=abc`, status: 400, says: 'resourceVersion' },
  { name: 'a JSON patch that is not a list', method: 'PATCH', path: `${V}/clusters/default`, body: { op: 'add' }, contentType: 'application/json-patch+json', status: 400, says: 'patch' },
  { name: 'a JSON patch to a missing path', method: 'PATCH', path: `${V}/clusters/default`, body: [{ op: 'replace', path: '/spec/nothing/here', value: 1 }], contentType: 'application/json-patch+json', status: 422, says: '/spec/nothing' },
  { name: 'a patch that makes the object invalid', method: 'PATCH', path: `${V}/clusters/default`, body: { spec: { settings: [{ name: 'containerInsights', value: 'maybe' }] } }, contentType: 'application/merge-patch+json', status: 422, says: 'spec.settings' },
  { name: 'a binding with no bindings', method: 'POST', path: `${NS}/bindings`, body: { bindings: [] }, status: 422, says: 'bindings' },
  { name: 'a binding naming an unknown field', method: 'POST', path: `${NS}/bindings`, body: { bindings: [{ task: 'a', containerInstance: 'b', when: 'now' }] }, status: 422, says: 'when' },
  { name: 'task statuses with no statuses', method: 'POST', path: `${NS}/taskstatuses`, body: { statuses: [] }, status: 422, says: 'statuses' },
  { name: 'a task status that is not an object', method: 'POST', path: `${NS}/taskstatuses`, body: { statuses: [{ task: 'a', status: 'RUNNING' }] }, status: 422, says: 'statuses[0].status' },
  { name: 'a task with a bad desiredStatus', method: 'POST', path: `${NS}/tasks`, body: { apiVersion: 'berth.dev/v1', kind: 'Task', metadata: { name: 'bad' }, spec: { taskDefinition: 'good', desiredStatus: 'PAUSED' } }, status: 422, says: 'desiredStatus' },
  { name: 'a service without taskDefinition', method: 'POST', path: `${NS}/services`, body: { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 's' }, spec: { desiredCount: 1 } }, status: 422, says: 'taskDefinition' },
  { name: 'a negative desiredCount', method: 'POST', path: `${NS}/services`, body: { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 's' }, spec: { taskDefinition: 'good', desiredCount: -1 } }, status: 422, says: 'desiredCount' },
  { name: 'a daemon task definition with a forbidden parameter', method: 'POST', path: `${V}/daemontaskdefinitions`, body: { apiVersion: 'berth.dev/v1', kind: 'DaemonTaskDefinition', metadata: { name: 'd' }, spec: { containerDefinitions: [{ name: 'c', image: 'busybox', memory: 64, links: ['x'] }] } }, status: 422, says: 'links' },
];
