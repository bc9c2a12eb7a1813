import type { ECSClient } from '@aws-sdk/client-ecs';
import { expect } from 'chai';
import fc from 'fast-check';
import type { Service, TaskDefinition } from '../../pkg/api/kinds.ts';
import { cases as corpus, td as goodTd } from '../support/badinput.ts';
import { ClientLoad } from '../support/clientload.ts';
import type { EtcdMember } from '../support/etcdcluster.ts';
import { describeTruth, dockerVsStore, httpsCall, live, runScenario, since, sleep, storeIntegrity, tasksOf, truthOk, type Reply, type Scenario } from '../support/faultsuite.ts';
import { eventually } from '../support/fleet.ts';
import { describeCase, fuzzCase, type FuzzCase } from '../support/fuzz.ts';
import { ecsClient, registerTaskDefinition } from '../support/hostsapi.ts';
import { startTopology, type Topology } from '../support/topology.ts';
import { sdkSigner } from '../ecsapi/support.ts';

/**
 * R1 and R9 on the namespace topology (three hosts, two apiservers behind
 * HAProxy, two controller-managers, three TLS etcd members):
 *
 * - R1: the etcd leader SIGKILLed while three services roll to a new task definition (each
 *   with its own deployment bounds), and started again 25 s later; meanwhile a client
 *   workload writes through the load balancer (creates, compare-and-swap updates, RunTask
 *   with client tokens; test/support/clientload.ts). Guaranteed: the deployments finish
 *   within the stated time, never more than maximumPercent live nor fewer than
 *   minimumHealthyPercent RUNNING (the checker judges the bounds through the deployment:
 *   losing etcd's leader is no reason to break them), no acknowledged write lost, none
 *   applied twice, the store's records consistent afterwards.
 * - R9: while etcd has no leader (and after), the bad-input corpus of the security work
 *   (test/support/badinput.ts) and a seeded sample of the fuzzer's requests (test/support/fuzz.ts,
 *   as admin, viewer, the bootstrap token, anyone and a stranger) through the load balancer.
 *   Guaranteed: every corpus case gets its 4xx (or 503/504 while etcd has no leader: the
 *   answers berth documents for an unavailable store); no fuzz case gets a 5xx outside that
 *   window (the fuzzer's own two exceptions aside); nothing is half-written (the corpus's
 *   targets do not exist or are unchanged; the store's records agree with each other).
 */
const DEPLOY_S = 300;
/** how long after a new leader the apiservers may still answer 503/504 (their etcd clients reconnect) */
const LEADERLESS_SLACK_S = 10;
const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20261218);
const FUZZ_CASES = Number(process.env.R9_FUZZ_CASES ?? 300);

const webSpec = (rev: number) => ({
  containerDefinitions: [{
    name: 'web', image: 'busybox', memory: 16, cpu: 32, portMappings: [{ containerPort: 8080, hostPort: 0 }],
    environment: [{ name: 'REVISION', value: String(rev) }],
    command: ['sh', '-c', 'echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp'],
  }],
});

const SERVICES = [
  { name: 'r1-a', desiredCount: 3, deploymentConfiguration: { maximumPercent: 200, minimumHealthyPercent: 100 } },
  { name: 'r1-b', desiredCount: 2, deploymentConfiguration: { maximumPercent: 150, minimumHealthyPercent: 50 } },
  { name: 'r1-c', desiredCount: 3, deploymentConfiguration: { maximumPercent: 100, minimumHealthyPercent: 66 } },
];

describe('fault scenarios R1 (the etcd leader SIGKILLed during a rolling deployment of 3 services) and R9 (the bad-input corpus and a fuzzer sample through the load balancer meanwhile)', function () {
  this.timeout(900_000);
  let t: Topology;
  let ecs: ECSClient;
  /** R9 runs inside R1 (it starts when the leader dies); its own test waits for it */
  let r9: Promise<void> | undefined;
  /** when etcd had no leader: R9's 503/504 are allowed inside it */
  const leaderless = { from: 0, to: Infinity };

  before(async function () {
    this.timeout(400_000);
    t = await startTopology({ hosts: 3 });
    ecs = ecsClient(t);
    for (const s of SERVICES) await registerTaskDefinition(t, s.name, webSpec(1));
    await registerTaskDefinition(t, 'r1-job', { containerDefinitions: [{ name: 'job', image: 'busybox', memory: 8, command: ['sleep', '3'] }] });
    // the corpus's cases refer to good:1
    await t.client.create(goodTd as TaskDefinition);
    for (const s of SERVICES) {
      await t.client.create({
        apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: s.name, namespace: 'default' },
        spec: { taskDefinition: `${s.name}:1`, desiredCount: s.desiredCount, deploymentConfiguration: s.deploymentConfiguration },
      });
    }
    await eventually(async () => (await Promise.all(SERVICES.map((s) => settled(s.name, s.desiredCount, 1)))).every(Boolean), 300_000, 'the three services at their desired count on revision 1');
  });
  after(async function () {
    this.timeout(120_000);
    await r9?.catch(() => undefined);
    ecs?.destroy();
    await t?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed' && t) console.error(t.logs(2500));
  });

  /** a service done deploying revision `rev`: one deployment, `n` RUNNING tasks all of that revision, nothing else live */
  async function settled(name: string, n: number, rev: number): Promise<boolean> {
    const svc = await t.client.get<Service>('Service', 'default', name);
    if (svc.status?.deployments?.length !== 1) return false;
    const mine = (await tasksOf(t)).filter((x) => live(x) && x.spec.group === `service:${name}`);
    return mine.length === n && mine.every((x) => x.status?.lastStatus === 'RUNNING' && Number(x.spec.taskDefinition.split(':')[1]) === rev);
  }

  it('R1: the etcd leader SIGKILLed during a rolling deployment of 3 services (and started again): the deployments finish within their bounds, no acknowledged write lost or applied twice', async () => {
    await runScenario('R1', t, async (s) => {
      const load = new ClientLoad(t, { prefix: 'r1', workers: 3, ecs, taskDefinition: 'r1-job', runTaskEvery: 6, pauseMs: 100 });
      await load.start();
      let killed: EtcdMember | undefined;
      try {
        // the rolling deployment: revision 2 of every service's task definition
        for (const svc of SERVICES) await registerTaskDefinition(t, svc.name, webSpec(2));
        for (const svc of SERVICES) await t.client.patch('Service', 'default', svc.name, { spec: { taskDefinition: `${svc.name}:2` } });
        const progress = await eventually(async () => {
          const svcs = await Promise.all(SERVICES.map((x) => t.client.get<Service>('Service', 'default', x.name)));
          const rolling = svcs.filter((x) => (x.status?.deployments?.length ?? 0) > 1).map((x) => x.metadata.name);
          return rolling.length ? rolling : undefined;
        }, 120_000, 'a deployment under way');
        // --- the fault: etcd's leader SIGKILLed
        const prep = await prepareBadInput();
        const leader = await t.etcd.leader();
        const tKill = Date.now();
        leaderless.from = tKill;
        await leader.kill('SIGKILL');
        killed = leader;
        r9 = runScenario('R9', t, (s9) => badInput(s9, prep), { sample: false });
        const newLeader = await t.etcd.leader();
        const electedS = since(tKill);
        leaderless.to = Date.now() + LEADERLESS_SLACK_S * 1000;
        s.injected.etcdLeaderKilled = { member: leader.name, newLeader: newLeader.name, newLeaderAfterS: electedS, rollingAtKill: progress };
        await sleep(Math.max(0, 25_000 - (Date.now() - tKill)));
        await leader.restart();
        s.injected.etcdLeaderKilled = { ...(s.injected.etcdLeaderKilled as object), restartedAfterS: since(tKill) };
        killed = undefined;
        await t.etcd.healthy(60_000);
        // --- converged: every service on revision 2, Docker agreeing with the store
        await eventually(async () => (await Promise.all(SERVICES.map((x) => settled(x.name, x.desiredCount, 2)))).every(Boolean), DEPLOY_S * 1000, 'the three services at their desired count on revision 2');
        s.converged('deploymentsDone', tKill, DEPLOY_S);
        await eventually(async () => {
          const truth = await dockerVsStore(t);
          if (!truthOk(truth)) throw new Error(describeTruth(truth));
          return true;
        }, 120_000, 'Docker agreeing with the store');
      } finally {
        await load.stop();
        if (killed && !killed.running) await killed.restart().catch(() => undefined);
      }
      // --- the client workload: nothing acknowledged lost, nothing applied twice
      const r = await load.verify();
      load.close();
      s.facts.clients = { ops: r.ops, outcomes: r.outcomes, unreadableAnswers: r.unreadable, byStatus: r.status5xx, maxGapS: r.maxGapS };
      s.checker.note('writes.acknowledgedLost', r.lost.length, 0, r.lost.slice(0, 3).join('; '));
      s.checker.note('writes.appliedTwice', r.twice.length, 0, r.twice.slice(0, 3).join('; '));
      s.checker.note('writes.refusedButApplied', r.refusedButApplied.length, 0, r.refusedButApplied.slice(0, 3).join('; '));
      s.checker.note('runTask.tokenAnsweredAnotherTask', r.tokenMismatch.length, 0, r.tokenMismatch.slice(0, 3).join('; '));
      s.checker.note('clients.internalErrors', r.internalErrors.length, 0, r.internalErrors.slice(0, 3).join('; '));
      s.checker.note('clients.maxGapS', r.maxGapS, 60, `a worker went ${r.maxGapS} s without a successful request`);
      const integrity = await storeIntegrity(t);
      s.checker.note('store.inconsistentRecords', integrity.length, 0, integrity.slice(0, 3).join('; '));
    });
  });

  // ------------------------------------------------------------------------------------ R9

  const inWindow = (at: number) => at >= leaderless.from && at <= leaderless.to;

  /** a fuzz case as its identity sends it, through the load balancer */
  async function sendFuzz(c: FuzzCase): Promise<Reply> {
    const token = { admin: t.adminToken, viewer: t.viewerToken, bootstrap: t.bootstrapToken, stranger: 'not-a-token-this-server-knows' }[c.who as string];
    if (c.face === 'k8s') {
      return httpsCall(t, c.method, c.path, {
        headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(c.contentType ? { 'Content-Type': c.contentType } : {}) },
        body: c.body !== undefined && c.method !== 'GET' && c.method !== 'HEAD' ? c.body : undefined,
      });
    }
    const url = new URL(t.url);
    let headers: Record<string, string> = { host: url.host, 'content-type': c.contentType ?? 'application/x-amz-json-1.1', 'x-amz-target': `AmazonEC2ContainerServiceV20141113.${c.op}` };
    const key = c.who === 'admin' ? t.accessKey : c.who === 'viewer' ? t.viewerAccessKey : undefined;
    if (key) {
      const signed = await sdkSigner(key, 'us-east-1').sign({ method: 'POST', protocol: 'https:', hostname: url.hostname, port: Number(url.port), path: '/', query: {}, headers, body: c.body });
      headers = signed.headers as Record<string, string>;
    } else if (token) headers.authorization = `Bearer ${token}`;
    return httpsCall(t, 'POST', '/', { headers, body: c.body });
  }

  interface R9Prep {
    goodBefore: string | undefined;
    clusterSpecBefore: string;
    sample: FuzzCase[];
  }

  /** what R9 needs before the fault: the fuzzer's sample, and the corpus's targets as they were */
  /** a registration that could land in R1's cluster: ECS RegisterContainerInstance (no cluster is `default`), a POST or PUT of its instances */
  const registersInDefault = (c: FuzzCase): boolean =>
    c.face === 'ecs' ? c.op === 'RegisterContainerInstance' : /^(POST|PUT)$/.test(c.method) && c.path.includes('/namespaces/default/containerinstances');

  async function prepareBadInput(): Promise<R9Prep> {
    // the identities this topology has (the fuzzer's nodes and alice belong to its own fixture)
    const who = new Set(['admin', 'viewer', 'bootstrap', 'anonymous', 'stranger']);
    return {
      goodBefore: (await t.client.get<TaskDefinition>('TaskDefinition', undefined, 'good:1')).metadata.resourceVersion,
      clusterSpecBefore: JSON.stringify((await t.client.get('Cluster', undefined, 'default')).spec ?? {}),
      // without the cases that register a container instance in R1's cluster: such an instance has no
      // agent, takes R1's tasks until instance health declares it lost (minutes), and R1 would measure that
      sample: fc
        .sample(fuzzCase, { seed: FUZZ_SEED, numRuns: FUZZ_CASES * 3 })
        .filter((c) => who.has(c.who) && !registersInDefault(c))
        .slice(0, FUZZ_CASES),
    };
  }

  async function badInput(s: Scenario, prep: R9Prep): Promise<void> {
    const admin = { Authorization: `Bearer ${t.adminToken}` };
    const { goodBefore, clusterSpecBefore, sample } = prep;
    const wrong: string[] = [];
    const fuzz5xx: string[] = [];
    const counts = { corpus: 0, corpusUnavailable: 0, fuzz: 0, fuzzUnavailable: 0, fuzzNotSent: 0, inWindow: 0 };
    const statuses = new Map<string, number>();
    let rounds = 0;
    // the corpus, again and again while etcd has no leader (twice at least), two senders
    const corpusSender = async () => {
      for (let pass = 0; pass < 2 || inWindow(Date.now()); pass++) {
        for (const c of corpus) {
          const at = Date.now();
          if (inWindow(at)) counts.inWindow++;
          counts.corpus++;
          const r = await httpsCall(t, c.method, c.path, {
            headers: { ...admin, ...(c.raw !== undefined || c.body !== undefined ? { 'Content-Type': c.contentType ?? 'application/json' } : {}) },
            body: c.raw ?? (c.body === undefined ? undefined : JSON.stringify(c.body)),
          });
          const text = `${r.body?.message ?? ''} ${JSON.stringify(r.body?.details ?? '')}`.toLowerCase();
          if ((r.status === 503 || r.status === 504) && inWindow(at)) counts.corpusUnavailable++;
          else if (r.status !== c.status || r.body?.kind !== 'Status' || !text.includes(c.says.toLowerCase())) wrong.push(`${c.name}: ${r.status} ${r.text.slice(0, 200)}`);
        }
        rounds++;
      }
    };
    // the fuzzer's sample, three senders
    let next = 0;
    const fuzzSender = async () => {
      while (next < sample.length) {
        const f = sample[next++];
        const at = Date.now();
        if (inWindow(at)) counts.inWindow++;
        counts.fuzz++;
        const r = await sendFuzz(f);
        statuses.set(`${f.face} ${r.status}`, (statuses.get(`${f.face} ${r.status}`) ?? 0) + 1);
        const logs503 = r.status === 503 && f.face === 'k8s' && /\/log(\?|$)/.test(f.path);
        const tooLarge = r.status === 504 && f.face === 'k8s' && /"ResourceVersionTooLarge"/.test(r.text);
        if (r.status === -1) counts.fuzzNotSent++;
        // the ECS face answers an unavailable store as ServerException (500), saying what happened
        else if ((r.status === 503 || r.status === 504 || r.status === 0 || (f.face === 'ecs' && r.status === 500 && !/An internal error occurred/.test(r.text))) && inWindow(at)) {
          counts.fuzzUnavailable++;
        } else if (r.status >= 500 && !logs503 && !tooLarge) fuzz5xx.push(`${r.status} ${describeCase(f).slice(0, 300)} -> ${r.text.slice(0, 200)}`);
        else if (r.status === 0) fuzz5xx.push(`no answer: ${describeCase(f).slice(0, 300)} (${r.text})`);
      }
    };
    await Promise.all([corpusSender(), corpusSender(), fuzzSender(), fuzzSender(), fuzzSender()]);
    // nothing half-written: the corpus's targets, and the store's records
    const exists = async (kind: string, ns: string | undefined, name: string) => (await t.client.tryGet(kind, ns, name)) !== undefined;
    const half: string[] = [];
    for (const [kind, ns, name] of [['TaskDefinition', undefined, 'good:2'], ['TaskDefinition', undefined, 'huge:1'], ['Cluster', undefined, 'c'], ['Task', 'default', 't'], ['Task', 'default', 'bad'], ['Service', 'default', 's'], ['DaemonTaskDefinition', undefined, 'd:1']] as const) {
      if (await exists(kind, ns, name)) half.push(`${kind} ${name} exists: a refused request wrote it`);
    }
    if ((await t.client.get<TaskDefinition>('TaskDefinition', undefined, 'good:1')).metadata.resourceVersion !== goodBefore) half.push('good:1 changed');
    // the corpus's patches of the default cluster (an invalid setting, a path that does not exist) left nothing
    // (the fuzzer's admin may tag it: only what the corpus would have written is looked for)
    const spec = JSON.stringify((await t.client.get('Cluster', undefined, 'default')).spec ?? {});
    if (/"maybe"|"nothing"/.test(spec)) half.push(`the default cluster's spec has what a refused patch carried: ${spec} (before: ${clusterSpecBefore})`);
    const integrity = await storeIntegrity(t);
    half.push(...integrity);
    const ready = await httpsCall(t, 'GET', '/readyz');
    s.injected.requests = { corpusCases: counts.corpus, corpusPasses: rounds, fuzzCases: counts.fuzz, fuzzSeed: FUZZ_SEED, sentWhileEtcdHadNoLeader: counts.inWindow };
    s.bounds.unavailableWindowS = Math.round((leaderless.to - leaderless.from) / 100) / 10;
    s.facts.answers = { corpus503or504InWindow: counts.corpusUnavailable, fuzz503or504InWindow: counts.fuzzUnavailable, fuzzNotSendable: counts.fuzzNotSent, fuzz: Object.fromEntries([...statuses].sort()) };
    s.checker.note('r9.corpus.wrongAnswer', wrong.length, 0, wrong.slice(0, 3).join('; '));
    s.checker.note('r9.fuzz.5xxOutsideNoLeaderWindow', fuzz5xx.length, 0, fuzz5xx.slice(0, 3).join('; '));
    s.checker.note('r9.halfWritten', half.length, 0, half.slice(0, 3).join('; '));
    s.checker.note('r9.readyAfter', ready.status === 200 ? 0 : 1, 0, `/readyz ${ready.status}`);
    expect(counts.fuzz, 'fuzz cases sent').to.be.greaterThan(100);
  }

  it('R9: the bad-input corpus and a fuzzer sample through the load balancer during R1: only 4xx (503/504 while etcd had no leader), nothing half-written', async () => {
    if (!r9) throw new Error('R1 did not get to kill the etcd leader, so R9 never started');
    await r9;
  });
});
