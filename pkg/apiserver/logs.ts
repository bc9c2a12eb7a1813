import http from 'node:http';
import type { ServerResponse } from 'node:http';
import { GROUP, VERSION, storeKey } from '../api/meta.ts';
import type { ContainerInstance, Task } from '../api/kinds.ts';
import { badRequest, notFound, unavailable } from '../errors/errors.ts';
import type { Registry } from './registry.ts';
import type { ApiRequest } from './server.ts';

/**
 * GET /apis/berth.dev/v1/namespaces/CLUSTER/tasks/NAME/log?container=C&follow=true&tailLines=N
 * (Kubernetes' pods/log): proxied to the agent of the task's instance, which serves the
 * container's Docker logs at the endpoint it reported, with the secret only the apiserver
 * sees. Needs the `logs` verb (admins; viewers only read objects).
 */
export function logsRoute(registry: Registry) {
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
    if (!task.spec.containerInstance) throw badRequest(`task "${name}" is not placed on an instance yet: no logs`);
    const ci = registry.cache.get(storeKey('containerinstances', cluster, task.spec.containerInstance)) as unknown as ContainerInstance | undefined;
    const logs = ci?.status?.logs;
    if (!logs?.token) throw unavailable(`the agent of container instance "${task.spec.containerInstance}" does not serve logs (start it with BERTH_LOGS_LISTEN)`);
    const q = new URLSearchParams({ task: name });
    const container = r.query.get('container');
    if (container) q.set('container', container);
    if (r.query.get('follow') === 'true') q.set('follow', 'true');
    const tail = r.query.get('tailLines');
    if (tail !== null) {
      if (!/^\d+$/.test(tail)) throw badRequest(`tailLines: "${tail}" is not a number of lines`);
      q.set('tail', tail);
    }
    await new Promise<void>((resolve, reject) => {
      const up = http.get(`${logs.endpoint}/v1/logs?${q}`, { headers: { Authorization: `Bearer ${logs.token}` } }, (ur) => {
        if ((ur.statusCode ?? 500) >= 300) {
          const chunks: Buffer[] = [];
          ur.on('data', (c: Buffer) => chunks.push(c));
          ur.on('end', () => {
            const msg = Buffer.concat(chunks).toString('utf8').trim();
            reject(ur.statusCode === 404 ? notFound('tasks', name, msg) : unavailable(`the agent answered ${ur.statusCode}: ${msg}`));
          });
          return;
        }
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Transfer-Encoding': 'chunked' });
        ur.pipe(res);
        ur.on('end', () => resolve());
        res.on('close', () => {
          ur.destroy();
          resolve();
        });
      });
      up.on('error', (e) => reject(unavailable(`cannot reach the agent of container instance "${task.spec.containerInstance}" at ${logs.endpoint}: ${e.message}`)));
    });
    return true;
  };
}
