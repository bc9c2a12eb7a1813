import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TargetGroupSpec } from '../../pkg/api/loadbalancing.ts';
import { addServerCommand, dataPlaneOf, renderConfig, runtimeCommand } from '../../pkg/lb/haproxy.ts';
import { endpointOf } from '../../pkg/controller/targets/plan.ts';
import type { Task } from '../../pkg/api/kinds.ts';

/** Review probes for berth-lb's HAProxy configuration. A failing `it` is a finding (its id in the title). */
describe('review R4: load balancing', function () {
  this.timeout(20_000);
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'berth-r4-lb-'))));
  after(async () => rm(dir, { recursive: true, force: true }));

  // a target group whose health check path carries a newline: the rest is HAProxy configuration
  const marker = join(tmpdir(), 'berth-r4-7-ran');
  // (a backend of its own takes the lines berth writes after the path, so the file stays valid)
  const path = `/health\nprogram r4pwn\n    command /bin/sh -c "touch ${marker}"\nbackend r4tail\n    mode http\n    option httpchk\n    http-check send meth GET uri /x`;

  it('R4-7: a TargetGroup health check path cannot carry a newline or a space (it is written into haproxy.cfg)', () => {
    const r = TargetGroupSpec.safeParse({ protocol: 'HTTP', port: 80, healthCheckPath: path });
    expect(r.success, 'the schema takes a path with a newline').to.equal(false);
  });

  it('R4-7: the configuration berth-lb writes holds no section a target group did not ask for (haproxy -c accepts the injected one)', async () => {
    const spec = TargetGroupSpec.parse({ protocol: 'HTTP', port: 80, healthCheckPath: path });
    const cfg = renderConfig(dataPlaneOf([], [{ name: 'web', spec }], '127.0.0.1'), join(dir, 'admin.sock'));
    const file = join(dir, 'haproxy.cfg');
    await writeFile(file, cfg);
    const check = spawnSync('haproxy', ['-W', '-c', '-f', file], { encoding: 'utf8' });
    const injected = cfg.split('\n').some((l) => l.startsWith('program '));
    // valid means the master process would start /bin/sh on the next (re)load
    expect({ injected, valid: check.status === 0 }, check.stdout + check.stderr).to.deep.equal({ injected: false, valid: true });
  });

  it('R4-7: haproxy started as berth-lb starts it (master-worker) does not run a command a target group wrote', async () => {
    rmSync(marker, { force: true });
    const spec = TargetGroupSpec.parse({ protocol: 'HTTP', port: 80, healthCheckPath: path });
    const file = join(dir, 'run.cfg');
    await writeFile(file, renderConfig(dataPlaneOf([], [{ name: 'web', spec }], '127.0.0.1'), join(dir, 'run.sock')));
    const child = spawn('haproxy', ['-W', '-db', '-f', file, '-p', join(dir, 'run.pid')], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      for (let i = 0; i < 30 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      process.kill(child.pid!, 'SIGTERM');
      await exited;
    }
    const ran = existsSync(marker);
    rmSync(marker, { force: true });
    expect(ran, `the health check path ran /bin/sh (it touched ${marker})`).to.equal(false);
  });

  it('R4-8: a path with a space does not make haproxy.cfg invalid (one target group would stop every reload)', async () => {
    const spec = TargetGroupSpec.parse({ protocol: 'HTTP', port: 80, healthCheckPath: '/a b c d e f' });
    const cfg = renderConfig(dataPlaneOf([], [{ name: 'web', spec }], '127.0.0.1'), join(dir, 'admin.sock'));
    const file = join(dir, 'haproxy2.cfg');
    await writeFile(file, cfg);
    const check = spawnSync('haproxy', ['-W', '-c', '-f', file], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).to.equal(0);
  });

  it('R4-9: an awsvpc task\'s address (written by its node) is an IP, so it cannot add Runtime API commands that move another service\'s server', async () => {
    // what a hostile node writes into the status of a task of its own
    const evil = '10.9.9.9:80; set server tg_b/t_127_0_0_1_8080 addr 127.0.0.66 port 9999;';
    const task = { metadata: { name: 't', namespace: 'default' }, spec: {}, status: { attachments: [{ id: 'a', type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: evil }] }] } } as unknown as Task;
    const ep = endpointOf(task, undefined, { networkMode: 'awsvpc', containerDefinitions: [] } as never, 'c', 80);
    const tg = (name: string) => ({ name, spec: TargetGroupSpec.parse({ protocol: 'TCP', port: 80 }) });
    const dp = dataPlaneOf([], [tg('a'), tg('b')], '127.0.0.1');
    const sock = join(dir, 'r9.sock');
    const file = join(dir, 'r9.cfg');
    await writeFile(file, renderConfig(dp, sock));
    const child = spawn('haproxy', ['-W', '-db', '-f', file, '-p', join(dir, 'r9.pid')], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    let state = '';
    try {
      for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
      const [a, b] = dp.backends;
      // service B's healthy target, added as berth-lb adds it
      await runtimeCommand(sock, addServerCommand(b, '127.0.0.1', 8080, true));
      // service A's target from the hostile node's task, added the same way
      if (ep) await runtimeCommand(sock, addServerCommand(a, ep.id, ep.port, true));
      state = await runtimeCommand(sock, 'show servers state tg_b');
    } finally {
      process.kill(child.pid!, 'SIGTERM');
      await exited;
    }
    expect(state, "service B's server now points where the node said").not.to.contain('127.0.0.66');
    expect(ep, 'the address is taken as written').to.equal(undefined);
  });
});
