import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { LABELS } from '../../pkg/agent/runtime/runtime.ts';
import { startApiServer, type TestApiServer } from '../support/apiserver.ts';
import { eventually, startControlPlane, type Running } from '../support/fleet.ts';

/**
 * Where the test writes the console's screenshots: the ones the README shows with
 * BERTH_UPDATE_SCREENSHOTS=1, else a temporary folder (a test run leaves the checkout as it was).
 */
const SHOTS = process.env.BERTH_UPDATE_SCREENSHOTS === '1' ? join(import.meta.dirname, 'screenshots') : mkdtempSync(join(tmpdir(), 'berth-shots-'));
const TD = '/apis/berth.dev/v1/taskdefinitions';
const SVC = '/apis/berth.dev/v1/namespaces/default/services';

const webSpec = (command: string[]) => ({
  containerDefinitions: [{ name: 'web', image: 'busybox', memory: 32, command, portMappings: [{ containerPort: 80, hostPort: 0 }] }],
});

/**
 * The web console in Debian's Chromium (playwright-core, no downloaded browser) against a
 * real apiserver serving /ui/, the real controllers and hollow agents: what a user sees
 * changes live from watches, and what a user does goes through the API as that user.
 */
describe('web console in Chromium (apiserver, controllers, hollow agents)', function () {
  this.timeout(120_000);
  let api: TestApiServer;
  let cp: Running;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  /** requests the pages made to anywhere but berth, and the errors they logged (CSP violations are) */
  const foreign: string[] = [];
  const pageErrors: string[] = [];

  const watchPage = (p: Page) => {
    p.on('request', (r) => {
      if (!r.url().startsWith(api.url + '/')) foreign.push(r.url());
    });
    p.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`${m.text()} ${m.location().url}`);
    });
    p.on('pageerror', (e) => pageErrors.push(e.message));
    p.on('response', (r) => {
      if (r.status() >= 400) pageErrors.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
    });
  };
  const shot = (p: Page, name: string) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const service = async () => (await api.call('GET', `${SVC}/web`)).body;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    api = await startApiServer({ build: { console: true } });
    cp = await startControlPlane(api, 2, { fleet: { memoryMiB: 2048, hollow: { rules: [{ image: 'busybox', logs: ['hello from web'] }] } }, manager: { resyncMs: 2000 } });
    for (const cmd of [['httpd', '-f'], ['httpd', '-f', '-v']]) {
      const r = await api.call('POST', TD, { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'web' }, spec: webSpec(cmd) });
      expect(r.status, JSON.stringify(r.body)).to.equal(201);
    }
    const s = await api.call('POST', SVC, {
      apiVersion: 'berth.dev/v1',
      kind: 'Service',
      metadata: { name: 'web' },
      spec: { taskDefinition: 'web:1', desiredCount: 1, deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true } } },
    });
    expect(s.status, JSON.stringify(s.body)).to.equal(201);
    browser = await chromium.launch({
      executablePath: execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim(),
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update'],
    });
    admin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await admin.newPage();
    watchPage(page);
  });

  after(async () => {
    await browser?.close();
    await cp?.stop();
    await api?.stop();
    if (process.env.BERTH_UPDATE_SCREENSHOTS !== '1') rmSync(SHOTS, { recursive: true, force: true });
  });

  it('serves /ui/ with a strict Content-Security-Policy, an uncached page and immutable hashed assets', async () => {
    const index = await fetch(`${api.url}/ui/clusters/default/services/web`);
    expect(index.status, await index.clone().text()).to.equal(200);
    expect(index.headers.get('cache-control')).to.equal('no-cache');
    const csp = index.headers.get('content-security-policy')!;
    expect(csp).to.include("default-src 'none'").and.include("script-src 'self'").and.not.include('unsafe-inline');
    const html = await index.text();
    const script = /src="(\/ui\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)?.[1];
    expect(script, html).to.be.a('string');
    expect(html).to.not.match(/<script>|<style>|style="/);
    const asset = await fetch(api.url + script);
    expect(asset.headers.get('cache-control')).to.equal('public, max-age=31536000, immutable');
    expect(asset.headers.get('content-type')).to.match(/^text\/javascript/);
  });

  it('logs in with a one-time link (spent once) and shows the clusters with their counts', async () => {
    const code = api.api.consoleLogins!.issueCode({ user: 'admin', uid: '1', groups: ['berth:admins'] });
    await page.goto(`${api.url}/ui/#code=${code}`);
    await page.getByTestId('user').filter({ hasText: 'admin' }).waitFor();
    expect(page.url(), 'the code leaves the address bar').to.not.include('code=');
    const again = await fetch(`${api.url}/ui/session`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) });
    expect(again.status, 'a spent code').to.equal(401);
    const token = await page.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem('berth.console.token'));
    expect(token).to.match(/^berth-console\./).and.not.equal(api.adminToken);
    const row = page.locator('tr', { has: page.getByRole('link', { name: 'default' }) });
    await row.locator('[data-count="instances"]').filter({ hasText: '2' }).waitFor();
    await row.locator('[data-count="running"]').filter({ hasText: '1' }).waitFor();
    await shot(page, 'clusters');
  });

  it('shows a service scaling from 1 to 3 live as the API changes it', async () => {
    await page.getByRole('link', { name: 'default' }).click();
    await page.getByRole('link', { name: 'web', exact: true }).click();
    expect(new URL(page.url()).pathname).to.equal('/ui/clusters/default/services/web');
    await page.getByTestId('running').filter({ hasText: /^1$/ }).waitFor();
    const r = await api.call('PATCH', `${SVC}/web`, { spec: { desiredCount: 3 } }, { contentType: 'application/merge-patch+json' });
    expect(r.status).to.equal(200);
    await page.getByTestId('desired').filter({ hasText: /^3$/ }).waitFor();
    await page.getByTestId('running').filter({ hasText: /^3$/ }).waitFor({ timeout: 30_000 });
  });

  it('rolls the service to a new revision and the progress bar completes; rolls back from the UI', async () => {
    const r = await api.call('PATCH', `${SVC}/web`, { spec: { taskDefinition: 'web:2' } }, { contentType: 'application/merge-patch+json' });
    expect(r.status).to.equal(200);
    const bar = page.getByTestId('progress-PRIMARY');
    await page.locator('tr', { hasText: 'web:2' }).getByTestId('progress-PRIMARY').waitFor();
    await page.locator('[data-testid="progress-PRIMARY"][data-state="COMPLETED"]').waitFor({ timeout: 60_000 });
    expect(await bar.getAttribute('value')).to.equal('3');
    expect(await bar.getAttribute('max')).to.equal('3');
    await shot(page, 'service');
    await page.getByRole('button', { name: 'Roll back…' }).click();
    await page.getByRole('dialog').getByText('Deploy web:1 in place of web:2?').waitFor();
    await page.getByRole('dialog').getByRole('button', { name: 'Roll back' }).click();
    await page.locator('#flash').getByText('web rolling back to web:1').waitFor();
    expect((await service()).spec.taskDefinition).to.equal('web:1');
    await page.locator('tr', { hasText: 'web:1' }).locator('[data-testid="progress-PRIMARY"][data-state="COMPLETED"]').waitFor({ timeout: 60_000 });
  });

  it('forces a new deployment from the UI: every task replaced by one of the same revision', async () => {
    const running = async () => ((await api.call('GET', `/apis/berth.dev/v1/namespaces/default/tasks?fieldSelector=${encodeURIComponent('status.lastStatus=RUNNING,spec.group=service:web')}`)).body as { items: Array<{ metadata: { name: string } }> }).items.map((t) => t.metadata.name);
    const before = await running();
    expect(before).to.have.length(3);
    await page.getByRole('button', { name: 'Force new deployment…' }).click();
    await page.getByRole('dialog').getByText('Replace every task of web with a new one of web:1, within its deployment bounds?').waitFor();
    await page.getByRole('dialog').getByRole('button', { name: 'Force new deployment' }).click();
    await page.locator('#flash').getByText('web: new deployment of web:1').waitFor();
    expect((await service()).spec.restartedAt).to.be.a('string');
    // a new PRIMARY of the same revision completes, and none of the old tasks is left running
    await page.locator('tr', { hasText: 'web:1' }).locator('[data-testid="progress-PRIMARY"][data-state="COMPLETED"]').waitFor({ timeout: 90_000 });
    await eventually(async () => {
      const now = await running();
      return now.length === 3 && now.every((n) => !before.includes(n));
    }, 60_000, 'every task replaced');
  });

  it("opens a task's log and sees a new line appear", async () => {
    await page.getByRole('navigation', { name: 'cluster default' }).getByRole('link', { name: 'Tasks' }).click();
    const first = page.locator('tr', { hasText: 'RUNNING' }).first().getByRole('link').first();
    const taskName = await first.getAttribute('title');
    await first.click();
    await page.getByRole('button', { name: 'Follow logs' }).click();
    const logs = page.getByTestId('logs');
    await logs.getByText('hello from web').waitFor();
    const task = (await api.call('GET', `/apis/berth.dev/v1/namespaces/default/tasks/${taskName}`)).body;
    let appended = false;
    for (const a of cp.fleet.agents) {
      for (const c of await a.runtime.list({ [LABELS.taskArn]: task.status.taskArn })) {
        a.runtime.appendLog(c.id, 'a line printed after the log was opened');
        appended = true;
      }
    }
    expect(appended, 'the task has a container').to.equal(true);
    await logs.getByText('a line printed after the log was opened').waitFor();
    await page.locator('.timeline [aria-current="step"]').getByText('RUNNING').waitFor();
    await shot(page, 'task');
  });

  it('drains an instance from the UI: its tasks move to the other one', async () => {
    await page.getByRole('navigation', { name: 'cluster default' }).getByRole('link', { name: 'Container instances' }).click();
    const card = page.locator('article.card').first();
    const instance = (await card.getAttribute('data-instance'))!;
    await card.getByRole('button', { name: 'Drain…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Drain' }).click();
    await card.getByTestId('instance-status').getByText('DRAINING').waitFor();
    const ci = (await api.call('GET', `/apis/berth.dev/v1/namespaces/default/containerinstances/${instance}`)).body;
    expect(ci.spec.status).to.equal('DRAINING');
    await eventually(
      async () => {
        const tasks = (await api.call('GET', '/apis/berth.dev/v1/namespaces/default/tasks')).body.items as Array<{ spec: { containerInstance?: string; group?: string }; status?: { lastStatus?: string } }>;
        const web = tasks.filter((t) => t.spec.group === 'service:web' && t.status?.lastStatus === 'RUNNING');
        return web.length === 3 && web.every((t) => t.spec.containerInstance !== instance);
      },
      60_000,
      'the service tasks left the draining instance',
    );
    await card.getByRole('button', { name: 'Activate…' }).waitFor();
    await shot(page, 'instances');
  });

  it('shows target groups with their targets, live as a load-balanced service registers its task', async () => {
    const td = await api.call('POST', '/apis/berth.dev/v1/taskdefinitions', { apiVersion: 'berth.dev/v1', kind: 'TaskDefinition', metadata: { name: 'lbweb' }, spec: { containerDefinitions: [{ name: 'app', image: 'busybox', memory: 32, command: ['httpd', '-f'], portMappings: [{ containerPort: 80, hostPort: 0 }] }] } });
    expect(td.status, JSON.stringify(td.body)).to.equal(201);
    const tg = await api.call('POST', '/apis/berth.dev/v1/targetgroups', { apiVersion: 'berth.dev/v1', kind: 'TargetGroup', metadata: { name: 'lbweb-tg' }, spec: { protocol: 'HTTP', port: 80, healthCheckPath: '/health', deregistrationDelaySeconds: 1 } });
    expect(tg.status, JSON.stringify(tg.body)).to.equal(201);
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Load balancing' }).click();
    await page.getByTestId('targets-lbweb-tg').getByText('no targets registered').waitFor();
    const svc = await api.call('POST', `${SVC}`, { apiVersion: 'berth.dev/v1', kind: 'Service', metadata: { name: 'lbweb', namespace: 'default' }, spec: { taskDefinition: 'lbweb', desiredCount: 1, loadBalancers: [{ targetGroupArn: 'lbweb-tg', containerName: 'app', containerPort: 80 }] } });
    expect(svc.status, JSON.stringify(svc.body)).to.equal(201);
    // the task's endpoint appears in the target group, in ELB's first state (no berth-lb checks it here)
    const row = page.getByTestId('targets-lbweb-tg').locator('tr', { hasText: 'initial' });
    await row.waitFor({ timeout: 30_000 });
    expect(await row.getByRole('link').last().textContent()).to.equal('lbweb');
    await shot(page, 'loadbalancing');
    const del = await api.call('DELETE', `${SVC}/lbweb`);
    expect(del.status).to.be.oneOf([200, 202]);
  });

  it('lists the daemons of a cluster (none here)', async () => {
    await page.goto(`${api.url}/ui/clusters/default/daemons`);
    await page.getByText('no daemons in this cluster').waitFor();
  });

  it('shows two task definition revisions side by side', async () => {
    await page.getByRole('link', { name: 'Task definitions' }).click();
    await page.getByRole('link', { name: 'web', exact: true }).click();
    const diff = page.getByRole('table', { name: 'revision 1 and revision 2' });
    await diff.locator('tr.add').filter({ hasText: '"-v"' }).waitFor();
    await shot(page, 'taskdefinition');
  });

  it("refuses a viewer's scale with the API's message, and nothing changes", async () => {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
    const viewer = await ctx.newPage();
    watchPage(viewer);
    await viewer.goto(`${api.url}/ui/clusters/default/services/web`);
    await viewer.getByLabel('Token').fill(api.viewerToken);
    await viewer.getByRole('button', { name: 'Log in' }).click();
    await viewer.getByTestId('user').filter({ hasText: 'viewer' }).waitFor();
    expect(new URL(viewer.url()).pathname, 'back on the page asked for').to.equal('/ui/clusters/default/services/web');
    // by keyboard: Tab to the button, Enter opens the dialog, Escape cancels; then a count and Enter
    const focused = () => viewer.evaluate(() => (globalThis as unknown as { document: { activeElement: { textContent: string } | null } }).document.activeElement?.textContent ?? '');
    for (let i = 0; i < 40 && (await focused()) !== 'Scale…'; i++) await viewer.keyboard.press('Tab');
    expect(await focused()).to.equal('Scale…');
    await viewer.keyboard.press('Enter');
    await viewer.getByRole('dialog').waitFor();
    await viewer.keyboard.press('Escape');
    await viewer.getByRole('dialog').waitFor({ state: 'detached' });
    await viewer.getByRole('button', { name: 'Scale…' }).focus();
    await viewer.keyboard.press('Enter');
    await viewer.getByLabel('Desired tasks').press('Control+A');
    await viewer.keyboard.type('5');
    await viewer.keyboard.press('Enter');
    const alert = viewer.locator('#flash .error');
    await alert.getByText('Refused (403)').waitFor();
    // word for word what the API answers the viewer for the same request
    const api403 = await api.call('PATCH', `${SVC}/web`, { spec: { desiredCount: 5 } }, { token: api.viewerToken, contentType: 'application/merge-patch+json' });
    expect(api403.status).to.equal(403);
    expect(await alert.locator('.message').textContent()).to.equal(api403.body.message).and.include('viewer');
    expect((await service()).spec.desiredCount).to.equal(3);
    await shot(viewer, 'refused-phone');
    await ctx.close();
  });

  it('made no request outside berth and logged no error (no CSP violation)', () => {
    expect(foreign).to.deep.equal([]);
    // the viewer's refused PATCH (Chromium logs it as a failed load too) is the only failure allowed
    expect(pageErrors.filter((e) => !/\b403\b/.test(e))).to.deep.equal([]);
    expect(pageErrors.filter((e) => /^PATCH /.test(e))).to.have.length(1);
  });
});
