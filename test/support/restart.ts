import { expect } from 'chai';
import type { Service, Task } from '../../pkg/api/kinds.ts';
import type { Client } from '../../pkg/client/client.ts';
import { eventually } from './fleet.ts';

/**
 * A forced deployment as the world shows it: `restart` is called (by whichever face), then
 * the service must end with only new tasks (none of the ids that ran before) of the same task
 * definition revision, under one new COMPLETED deployment, never above maximumPercent nor
 * below minimumHealthyPercent (sampled every 50 ms).
 */
export async function expectRestart(client: Client, ns: string, name: string, restart: () => Promise<void>, o: { desired: number; desiredBefore?: number; maxPct?: number; minPct?: number; timeoutMs?: number }) {
  const tasks = async () => (await client.list<Task>('Task', ns, { fieldSelector: `spec.group=service:${name}` })).items;
  const live = (ts: Task[]) => ts.filter((t) => t.spec.desiredStatus === 'RUNNING' && t.status?.lastStatus !== 'STOPPED');
  const running = (ts: Task[]) => live(ts).filter((t) => t.status?.lastStatus === 'RUNNING');
  const steady = await eventually(async () => {
    const s = await client.get<Service>('Service', ns, name);
    const r = running(await tasks());
    return s.status?.deployments?.length === 1 && s.status.deployments[0].rolloutState === 'COMPLETED' && r.length === (o.desiredBefore ?? o.desired) && { s, r };
  }, 30_000, `service ${name} steady before the restart`);
  const before = new Set(steady.r.map((t) => t.metadata.name));
  const revision = steady.s.status!.deployments![0].taskDefinition;
  const oldDeployment = steady.s.status!.deployments![0].id;
  let peak = 0;
  let low = Infinity;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const ts = await tasks().catch(() => undefined);
      if (ts) {
        peak = Math.max(peak, live(ts).length + ts.filter((t) => t.spec.desiredStatus === 'STOPPED' && t.status?.lastStatus !== 'STOPPED').length);
        low = Math.min(low, running(ts).length);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    await restart();
    const end = await eventually(async () => {
      const s = await client.get<Service>('Service', ns, name);
      const ts = await tasks();
      const r = running(ts);
      const deps = s.status?.deployments ?? [];
      return deps.length === 1 && deps[0].id !== oldDeployment && deps[0].rolloutState === 'COMPLETED' && r.length === o.desired && live(ts).length === o.desired && r.every((t) => !before.has(t.metadata.name)) && { s, r };
    }, o.timeoutMs ?? 60_000, `service ${name} rolled onto new tasks`);
    expect(end.r.map((t) => t.spec.taskDefinition)).to.deep.equal(Array(o.desired).fill(revision));
    expect(end.s.status!.deployments![0].taskDefinition).to.equal(revision);
    expect(end.s.status!.events!.some((e) => e.message.includes(`(deployment ${end.s.status!.deployments![0].id}) is a forced new deployment of ${revision}`))).to.equal(true);
    return { before, after: end.r, service: end.s, oldDeployment };
  } finally {
    sampling = false;
    await sampler;
    expect(peak, 'tasks RUNNING or PENDING at the peak').to.be.at.most(Math.floor((o.desired * (o.maxPct ?? 200)) / 100));
    expect(low, 'tasks RUNNING at the lowest').to.be.at.least(Math.ceil((o.desired * (o.minPct ?? 100)) / 100));
  }
}
