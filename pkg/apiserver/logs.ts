import http from 'node:http';
import { isIP } from 'node:net';
import type { ServerResponse } from 'node:http';
import { GROUP, VERSION, storeKey } from '../api/meta.ts';
import type { ContainerInstance, Task } from '../api/kinds.ts';
import { badGateway, badRequest, notFound, unavailable } from '../errors/errors.ts';
import { cidrList, inList, isLoopback, normalizeAddress } from './listener.ts';
import type { Registry } from './registry.ts';
import type { ApiRequest } from './server.ts';

/**
 * Where the logs proxy may never go, whatever an instance registered from: link-local
 * (169.254.169.254 is the cloud metadata service), the cloud providers' other metadata and
 * wire-server addresses, unspecified, multicast and broadcast.
 */
const NEVER = cidrList(
  ['0.0.0.0/8', '169.254.0.0/16', '100.100.100.200/32', '168.63.129.16/32', '224.0.0.0/4', '255.255.255.255/32', '::/128', 'fe80::/10', 'ff00::/8', 'fd00:ec2::254/128'],
  'logs',
);

/** An agent's logs endpoint: exactly `http://IPv4:port` or `http://[IPv6]:port`. */
export function parseLogsEndpoint(endpoint: string): { host: string; port: number } | string {
  const m = /^http:\/\/(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\]):(\d{1,5})$/.exec(endpoint);
  if (!m) return `"${endpoint.slice(0, 100)}" must be http://IP:PORT (an IP address, no host name, path, query, fragment or user)`;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (isIP(host) !== (m[1] ? 4 : 6)) return `"${host}" is not an IP address`;
  if (port < 1 || port > 65535) return `port ${port} is out of range`;
  return { host: normalizeAddress(host), port };
}

/**
 * Why the apiserver must not fetch this endpoint for an instance that registered from
 * `registered` (undefined when it may). The endpoint must be on the registered address (any
 * loopback address when the instance registered over loopback, as `berth up`'s agent does),
 * and never in the NEVER ranges.
 */
export function logsEndpointProblem(endpoint: string, registered: string | undefined): string | undefined {
  const p = parseLogsEndpoint(endpoint);
  if (typeof p === 'string') return p;
  if (inList(NEVER, p.host)) return `${p.host} is a link-local, metadata, multicast or unspecified address`;
  if (!registered) return 'the instance has no registered address (it registered before berth recorded one); it gets one at its next heartbeat';
  const reg = normalizeAddress(registered);
  if (isLoopback(reg) ? !isLoopback(p.host) : p.host !== reg) return `must be on the address the instance registered from (${reg}), not ${p.host}`;
  return undefined;
}

export interface LogsProxyOptions {
  /** to connect and get the answer's headers */
  connectTimeoutMs?: number;
  /** between chunks of a log that is not followed */
  idleTimeoutMs?: number;
}

/**
 * GET /apis/berth.dev/v1/namespaces/CLUSTER/tasks/NAME/log?container=C&follow=true&tailLines=N
 * (Kubernetes' pods/log): proxied to the agent of the task's instance, which serves the
 * container's Docker logs at the endpoint it reported, with the secret only the apiserver
 * sees. Needs the `logs` verb (admins; viewers only read objects; nodes never).
 *
 * S3: the endpoint is the agent's own (on the address the instance registered from,
 * checked here again and at admission); the request is built from the parsed address, not
 * the endpoint string; no redirect is followed; an answer that is not the log stream is
 * never shown (a 502 with a message of our own); connecting and idling are timed out.
 */
export function logsRoute(registry: Registry, o: LogsProxyOptions = {}) {
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  const idleTimeoutMs = o.idleTimeoutMs ?? 60_000;
  const re = new RegExp(`^/apis/${GROUP.replace('.', '\\.')}/${VERSION}/namespaces/([^/]+)/tasks/([^/]+)/log$`);
  return async (r: ApiRequest, res: ServerResponse): Promise<boolean> => {
    const m = re.exec(r.path);
    if (!m) return false;
    if (r.method !== 'GET') throw badRequest('task logs accept only GET');
    const [cluster, name] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
    r.authorize({ verb: 'logs', resource: 'tasks', subresource: 'log', namespace: cluster, name });
    await registry.fresh();
    const task = registry.cache.get(storeKey('tasks', cluster, name)) as unknown as Task | undefined;
    if (!task) throw notFound('tasks', name);
    const instance = task.spec.containerInstance;
    if (!instance) throw badRequest(`task "${name}" is not placed on an instance yet: no logs`);
    const ci = registry.cache.get(storeKey('containerinstances', cluster, instance)) as unknown as ContainerInstance | undefined;
    const logs = ci?.status?.logs;
    if (!logs?.token) throw unavailable(`the agent of container instance "${instance}" does not serve logs (start it with BERTH_LOGS_LISTEN)`);
    const problem = logsEndpointProblem(logs.endpoint, ci?.status?.registeredAddress);
    const target = parseLogsEndpoint(logs.endpoint);
    if (problem || typeof target === 'string') {
      throw badGateway(`the logs endpoint of container instance "${instance}" is refused: ${problem ?? target}`);
    }
    const q = new URLSearchParams({ task: name });
    const container = r.query.get('container');
    const names = (task.status?.containers ?? []).map((c) => c.name);
    if (container) {
      if (names.length && !names.includes(container)) throw notFound('containers', container, `task ${name} has no container named ${container}; it has ${names.join(', ')}`);
      q.set('container', container);
    }
    const follow = r.query.get('follow') === 'true';
    if (follow) q.set('follow', 'true');
    const tail = r.query.get('tailLines');
    if (tail !== null) {
      if (!/^\d{1,9}$/.test(tail)) throw badRequest(`tailLines: "${tail}" is not a number of lines`);
      q.set('tail', tail);
    }
    const gone = () => badGateway(`the agent of container instance "${instance}" did not serve the logs of task "${name}"`);
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        up.destroy();
        reject(e);
      };
      const up = http.request(
        { host: target.host, port: target.port, method: 'GET', path: `/v1/logs?${q}`, headers: { Authorization: `Bearer ${logs.token}` }, timeout: connectTimeoutMs },
        (ur) => {
          const code = ur.statusCode ?? 0;
          const type = String(ur.headers['content-type'] ?? '');
          if (code !== 200 || !/^text\/plain\b/.test(type)) {
            ur.resume();
            if (code === 404) {
              const what = `task "${name}"${container ? ` container "${container}"` : ''}`;
              fail(notFound('tasks', name, `the agent of container instance "${instance}" has no logs of ${what}: the task is not running there, or its containers were cleaned up`));
            } else fail(gone());
            return;
          }
          settled = true;
          up.setTimeout(follow ? 0 : idleTimeoutMs, () => up.destroy());
          res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Transfer-Encoding': 'chunked' });
          ur.pipe(res);
          ur.on('end', () => resolve());
          ur.on('error', () => {
            res.end();
            resolve();
          });
          res.on('close', () => {
            ur.destroy();
            resolve();
          });
        },
      );
      up.on('timeout', () => fail(badGateway(`the agent of container instance "${instance}" did not answer within ${Math.round(connectTimeoutMs / 1000)} s`)));
      up.on('error', () => fail(badGateway(`cannot reach the agent of container instance "${instance}"`)));
      up.end();
    });
    return true;
  };
}
