/**
 * The web dashboard in a real browser (Debian's chromium driven by playwright-core) against a
 * real 1-DOC (oakd: root + cluster + worker; native processes, no containerd needed) serving the
 * built dashboard (node scripts/build.mjs). One browser for the whole file. Covers: login with the
 * keyboard, an SLA with a mistake shown at its field and fixed, RUNNING arriving live (no reload,
 * no polling), scale to 2, logs following live, another organisation seeing none of it, hostile
 * text shown as text, delete with confirmation, the root unreachable and back, logout revoking
 * the refresh token, axe-core finding no serious violation, no console error, screenshots
 * (desktop and phone) in .e2e-tmp/dashboard/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { ApplicationDoc, ClusterDoc, ServiceDoc } from '@oak/contracts';
import { freePort, tmpDir, waitFor, type TmpDir } from '@oak/testkit';
import { Api, waitHealthy } from '../src/api.ts';
import { Procs, bins, repoRoot } from '../src/procs.ts';
import { removeCgroupParent } from '../src/faults.ts';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const ADMIN_PASSWORD = 'e2e-dash-secret-1';
const PASSWORD = 'dash-password-1';
const artefacts = join(repoRoot, '.e2e-tmp/dashboard');
const namespace = `dash${process.pid}`;
// page code is passed as strings (the test is typed against Node, not the DOM)
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** an SLA of one native process printing a numbered line every second */
function slaText(app: string, memory: unknown, desc = 'dashboard e2e'): string {
  return JSON.stringify(
    {
      sla_version: 'v2.0',
      customerID: 'alice',
      applications: [
        {
          application_name: app,
          application_namespace: 'dash',
          application_desc: desc,
          microservices: [
            {
              microservice_name: 'ticker',
              microservice_namespace: 'dash',
              virtualization: 'process',
              code: '/bin/sh',
              cmd: ['-c', 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done'],
              memory,
              vcpus: 0.1,
            },
          ],
        },
      ],
    },
    null,
    2,
  );
}

describe('dashboard in a browser against a 1-DOC', { timeout: 240_000 }, () => {
  let dir: TmpDir;
  const procs = new Procs();
  let base = '';
  let admin: Api;
  let context: BrowserContext;
  let page: Page;
  /** console errors and warnings, page errors; network failures the test causes on purpose are allowed while `expectFailures` */
  const problems: string[] = [];
  let expectFailures = false;

  function watch(p: Page): void {
    p.on('console', (m) => {
      if (m.type() !== 'error' && m.type() !== 'warning') return;
      if (expectFailures && /Failed to load resource|ERR_INTERNET_DISCONNECTED|net::ERR/.test(m.text())) return;
      problems.push(`${m.type()}: ${m.text()}`);
    });
    // the browser logs every failed request as a console error: name them
    p.on('response', (r) => {
      if (r.status() >= 400 && !expectFailures) problems.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
    });
    p.on('pageerror', (e) => problems.push(`pageerror: ${e.stack ?? e.message}`));
  }

  async function axe(p: Page, what: string): Promise<void> {
    // evaluated through the debugging protocol, not as an inline script: the page's CSP stays on
    await p.evaluate(`${axeSource};0`);
    const found = (await p.evaluate(`axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) })))`)) as { id: string; impact: string; help: string; nodes: string[] }[];
    const serious = found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious, [], `axe on ${what}: ${JSON.stringify(serious, null, 1)}`);
  }

  /** state and version of each instance row of the ticker service */
  async function rows(): Promise<{ state: string; version: string }[]> {
    return page.locator('[data-service="ticker"] tr[data-instance]').evaluateAll((trs) =>
      trs.map((tr) => ({ state: tr.querySelector('[data-state]')?.getAttribute('data-state') ?? '', version: tr.querySelector('[data-label="Version"]')?.textContent ?? '' })),
    );
  }

  async function rolledTo(version: string): Promise<void> {
    // the replaced instances may stay listed UNDEPLOYED until the root purges them: the live rows count
    let seen: { state: string; version: string }[] = [];
    await waitFor(async () => {
      seen = await rows();
      const live = seen.filter((x) => x.state !== 'UNDEPLOYED');
      return live.length === 2 && live.every((x) => x.state === 'RUNNING' && x.version === version) ? true : undefined;
    }, { timeoutMs: 60_000, message: `two RUNNING instances of version ${version}` }).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; the page showed ${JSON.stringify(seen)}`);
    });
  }

  async function login(p: Page, name: string): Promise<void> {
    await p.goto(`${base}/`);
    // with the keyboard only: Tab to the user name, type, Tab, type, Enter
    await p.getByLabel('User name').waitFor();
    await p.keyboard.press('Tab');
    assert.equal(await p.evaluate("document.activeElement?.getAttribute('name')"), 'username', 'Tab reaches the user name first');
    await p.keyboard.type(name);
    await p.keyboard.press('Tab');
    await p.keyboard.type(PASSWORD);
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();
  }

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/install-deps.sh test installs Debian's chromium`);
    assert.ok(existsSync(join(repoRoot, 'apps/dashboard/dist/index.html')), 'the dashboard is not built: run node scripts/build.mjs');
    rmSync(artefacts, { recursive: true, force: true });
    mkdirSync(artefacts, { recursive: true });
    dir = await tmpDir('oak-e2e-dash');
    const port = await freePort();
    const args = [
      '--host', '127.0.0.1', '--port', String(port),
      '--link-port', String(await freePort()), '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()),
      '--data-dir', dir.path, '--containerd', join(dir.path, 'no-containerd.sock'), '--namespace', namespace,
      '--report-interval', '500', '--netmanager', 'off',
    ];
    procs.spawn('oakd', bins.oakd, args, { dir: dir.path, env: { OAK_ADMIN_PASSWORD: ADMIN_PASSWORD } });
    base = `http://127.0.0.1:${port}`;
    await waitHealthy(`${base}/healthz`);
    admin = new Api(base);
    await admin.login('Admin', ADMIN_PASSWORD);
    for (const org of ['acme', 'globex']) await admin.call('POST', '/api/organization/', { name: org });
    await admin.call('POST', '/api/user/', { name: 'alice', password: PASSWORD, roles: ['Application_Provider'], organization: 'acme' });
    await admin.call('POST', '/api/user/', { name: 'bob', password: PASSWORD, roles: ['Application_Provider'], organization: 'globex' });
    await admin.call('POST', '/api/user/', { name: 'carol', password: PASSWORD, roles: ['Infrastructure_Provider'], organization: 'acme' });
    await waitFor(async () => {
      const cs = await admin.call<{ resources: { workers: number } | null }[]>('GET', '/api/clusters/active');
      return cs[0]?.resources?.workers === 1 ? true : undefined;
    }, { timeoutMs: 30_000, message: 'the embedded cluster with its worker' });
    // a fresh user data dir per run, removed with the test's directory
    context = await chromium.launchPersistentContext(join(dir.path, 'chromium-profile'), { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 860 } });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(20_000);
    watch(page);
  });

  after(async () => {
    await page?.screenshot({ path: join(artefacts, 'last.png'), fullPage: true }).catch(() => undefined);
    await context?.close();
    if (problems.length > 0 || process.exitCode) console.error(procs.logs());
    await procs.stopAll();
    // the worker's bridge, nftables tables and cgroups of this run's namespace
    if (dir !== undefined) await removeInstanceNetwork({ namespace, dataDir: dir.path }).catch(() => undefined);
    removeCgroupParent(namespace);
    await dir?.remove();
    // the worker keeps process workloads' working directories next to its data dir
    if (dir !== undefined) rmSync(`${dir.path}-work`, { recursive: true, force: true });
  });

  it('refuses a wrong password with the root\'s message, then logs in with the keyboard', async () => {
    await page.goto(`${base}/applications`);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('wrong-password');
    expectFailures = true;
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').getByText('wrong user name or password').waitFor();
    expectFailures = false;
    await axe(page, 'the login page');
    await page.screenshot({ path: join(artefacts, 'login-desktop.png') });
    await login(page, 'alice');
  });

  it('shows an SLA mistake at its field as you type, then creates the fixed SLA; RUNNING arrives live', async () => {
    await page.getByRole('link', { name: 'New application' }).click();
    const editor = page.getByLabel('SLA (JSON)');
    // the form of common fields writes an SLA into the editor, checked like typed text
    await page.getByText('Or fill in the common fields').click();
    const form = page.getByRole('form', { name: 'Common fields' });
    await form.getByLabel('Application name').fill('formapp');
    await form.getByLabel('Virtualization').selectOption('process');
    await form.getByLabel('Image or program').fill('/bin/sh');
    await form.getByLabel('Command (shell)').fill('sleep 100');
    await form.getByLabel('Memory (MB)').fill('lots');
    await form.getByRole('button', { name: 'Write the SLA into the editor' }).click();
    assert.match(await editor.inputValue(), /"application_name": "formapp"/);
    await page.locator('.issue.error[data-path="applications[0].microservices[0].memory"]').waitFor();
    await axe(page, 'the create page with its form');
    const bad = slaText('ticker', -16);
    await editor.fill(bad);
    const memoryLine = bad.split('\n').findIndex((l) => l.includes('"memory"')) + 1;
    // the form's issue at the same path is replaced once the typed text is checked
    const issue = page.locator('.issue.error[data-path="applications[0].microservices[0].memory"]', { hasText: /minimum|at least|negative|>= ?0|-16/ });
    await issue.waitFor();
    const text = await issue.innerText();
    assert.match(text, new RegExp(`line ${memoryLine}\\b`), `the issue names the line of "memory" (${memoryLine}): ${text}`);
    assert.equal(await page.locator(`.gutter > div:nth-child(${memoryLine})`).getAttribute('class'), 'mark err', 'the line is marked in the gutter');
    assert.ok(await page.getByRole('button', { name: 'Create and deploy' }).isDisabled(), 'an invalid SLA cannot be sent');
    await axe(page, 'the editor with an error');
    await editor.fill(slaText('ticker', 16));
    await page.getByText('No problems: the SLA is valid.').waitFor();
    // no reload from here on: a marker on window survives only if the page is never loaded again
    await page.evaluate('window.__marker = 42');
    await page.getByRole('button', { name: 'Create and deploy' }).click();
    await page.getByRole('heading', { name: /ticker/, level: 1 }).waitFor();
    await page.locator('[data-service="ticker"] [data-state="RUNNING"]').first().waitFor({ timeout: 30_000 });
    assert.equal(await page.evaluate('window.__marker'), 42, 'the page was not reloaded');
    await page.screenshot({ path: join(artefacts, 'application-desktop.png'), fullPage: true });
  });

  it('scales to 2 and sees both RUNNING', async () => {
    await page.getByLabel('Instances').fill('2');
    await page.getByRole('button', { name: 'Scale' }).click();
    await waitFor(async () => ((await page.locator('[data-service="ticker"] [data-state="RUNNING"]').count()) === 2 ? true : undefined), { timeoutMs: 30_000, message: 'two RUNNING instances on the page' });
    // placement by name (the ids as secondary text and tooltip)
    const [cluster] = await admin.call<ClusterDoc[]>('GET', '/api/clusters/active');
    const worker = cluster?.resources?.worker_summary[0];
    assert.ok(cluster && worker);
    const placement = page.locator('[data-service="ticker"] tr[data-instance="0"] [data-label="Placement"]');
    await placement.locator('.placement-cluster', { hasText: cluster.cluster_name }).waitFor();
    assert.equal(await placement.locator('.placement-cluster').getAttribute('title'), `cluster id ${cluster._id}`);
    assert.equal((await placement.locator('.placement-worker').innerText()).trim(), `on ${worker.name}`);
    assert.equal(await placement.locator('.placement-worker').getAttribute('title'), `worker id ${worker.id}`);
    assert.match(await placement.locator('.ids').innerText(), new RegExp(`${cluster._id} / ${worker.id}`));
    await axe(page, 'the application page');
  });

  it('follows the logs of an instance live', async () => {
    await page.locator('[data-instance="0"]').getByRole('link', { name: 'Logs' }).click();
    const pre = page.getByLabel('log lines');
    await pre.getByText(/tick \d+/).first().waitFor();
    const first = Number(/tick (\d+)\s*$/.exec(await pre.innerText())?.[1] ?? '0');
    await waitFor(async () => {
      const last = Number(/tick (\d+)\s*$/.exec(await pre.innerText())?.[1] ?? '0');
      return last >= first + 2 ? last : undefined;
    }, { timeoutMs: 15_000, message: 'new log lines arriving while following' });
    await page.goBack();
    await page.locator('[data-service="ticker"]').waitFor();
  });

  it('opens the CPU and memory readings of an instance from its row', async () => {
    await page.locator('[data-instance="0"]').getByRole('link', { name: 'Readings (CPU and memory) of instance 0' }).click();
    await page.getByRole('heading', { name: /^Readings/ }).waitFor();
    await page.goBack();
    await page.locator('[data-service="ticker"]').waitFor();
  });

  it('rolls out an update checked as typed, then rolls it back', async () => {
    await page.locator('[data-service="ticker"]').getByRole('button', { name: 'Update' }).click();
    const editor = page.getByLabel('SLA of ticker (JSON)');
    const current = await editor.inputValue();
    assert.match(current, /"memory": 16/);
    await editor.fill(current.replace('"memory": 16', '"memory": "many"'));
    await page.locator('.issue.error[data-path="memory"]').waitFor();
    await editor.fill(current.replace('"memory": 16', '"memory": 24'));
    // no error left (a field the root adds that the editor does not know would be a warning only)
    await page.locator('.issue.error[data-path="memory"]').waitFor({ state: 'detached' });
    assert.equal(await page.getByRole('form', { name: /^Update / }).locator('.issue.error').count(), 0);
    await page.getByRole('button', { name: 'Apply (rolling update)' }).click();
    await rolledTo('2');
    await page.getByText(/^Versions \(/).click();
    await page.getByLabel('Roll back to').selectOption({ label: 'version 1 (created)' });
    await page.getByRole('button', { name: 'Roll back' }).click();
    await rolledTo('3');
    await page.getByRole('cell', { name: 'rollback to 1' }).waitFor();
  });

  it('another organisation sees none of it; a role without applications gets no such view', async () => {
    const infra = await context.newPage();
    infra.setDefaultTimeout(20_000);
    watch(infra);
    await infra.goto(`${base}/`);
    await infra.getByLabel('User name').fill('carol');
    await infra.getByLabel('Password').fill(PASSWORD);
    await infra.getByRole('button', { name: 'Log in' }).click();
    await infra.getByRole('button', { name: 'Log out' }).waitFor();
    assert.equal(await infra.getByRole('link', { name: 'Applications' }).count(), 0, 'no Applications view for an Infrastructure_Provider');
    await infra.goto(`${base}/applications`);
    await infra.getByText('Nothing here.').waitFor();
    await infra.getByRole('button', { name: 'Log out' }).click();
    await infra.getByLabel('User name').waitFor();
    await infra.close();

    const other = await context.newPage();
    other.setDefaultTimeout(20_000);
    watch(other);
    await login(other, 'bob');
    await other.getByText('No applications yet in your organisation.').waitFor();
    assert.equal(await other.getByText('ticker').count(), 0);
    await other.getByRole('button', { name: 'Log out' }).click();
    await other.getByLabel('User name').waitFor();
    await other.close();
  });

  it('shows hostile text as text (no markup, no script)', async () => {
    const alice = new Api(base);
    await alice.login('alice', PASSWORD);
    const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    await alice.createApps(JSON.parse(slaText('hostile', 16, hostile)));
    await page.getByRole('link', { name: 'Applications', exact: true }).click();
    await page.locator('[data-app="hostile"]').getByText(hostile).waitFor();
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    assert.equal(await page.locator('main img, main script').count(), 0, 'no element made from the text');
    // the editor shows what was typed in messages as text too
    await page.getByRole('link', { name: 'New application' }).click();
    await page.getByLabel('SLA (JSON)').fill(slaText('<script>x</script>', 16));
    await page.locator('.issue.error[data-path="applications[0].application_name"]').waitFor();
    assert.equal(await page.locator('main script').count(), 0);
    await page.getByRole('button', { name: 'Cancel' }).click();
  });

  it('tells when the root is unreachable and reconnects by itself', async () => {
    await page.goto(`${base}/applications`);
    await page.locator('[data-app="ticker"]').waitFor();
    expectFailures = true;
    try {
      await context.setOffline(true);
      // a view that loads data while the root cannot be reached
      await page.getByRole('link', { name: 'New application' }).click();
      await page.getByRole('link', { name: 'Applications', exact: true }).click();
      await page.getByRole('status').getByText(/unreachable/).waitFor();
      await page.screenshot({ path: join(artefacts, 'unreachable-desktop.png') });
    } finally {
      await context.setOffline(false);
    }
    // back without a reload: the probe finds the root, the stream reopens, the view reloads
    await page.getByRole('status').getByText(/unreachable/).waitFor({ state: 'detached', timeout: 20_000 });
    expectFailures = false;
    await page.locator('[data-app="ticker"]').waitFor();
  });

  it('is usable on a phone-sized screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('[data-app="ticker"]').getByRole('link').click();
    await page.locator('[data-service="ticker"]').waitFor();
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than the phone screen`);
    await page.screenshot({ path: join(artefacts, 'application-phone.png'), fullPage: true });
    await axe(page, 'the application page on a phone');
    // the dark theme follows the system, and keeps its contrast
    await page.emulateMedia({ colorScheme: 'dark' });
    const bg = await page.evaluate<string>('getComputedStyle(document.body).backgroundColor');
    assert.equal(bg, 'rgb(13, 17, 23)', 'the dark background');
    await page.screenshot({ path: join(artefacts, 'application-phone-dark.png'), fullPage: true });
    await axe(page, 'the application page on a phone, dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('deletes the application after a confirmation', async () => {
    await page.getByRole('button', { name: 'Delete', exact: true }).first().click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('heading', { name: /Delete ticker\?/ }).waitFor();
    // Cancel keeps it
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.ok((await admin.call<ApplicationDoc[]>('GET', '/api/applications/')).some((a) => a.application_name === 'ticker'));
    await page.getByRole('button', { name: 'Delete', exact: true }).first().click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete application' }).click();
    await page.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();
    await page.locator('[data-app="ticker"]').waitFor({ state: 'detached' });
    const left = await admin.call<ApplicationDoc[]>('GET', '/api/applications/');
    assert.ok(!left.some((a) => a.application_name === 'ticker'));
    const services = await Promise.all(left.map((a) => admin.call<ServiceDoc[]>('GET', `/api/services/${a.applicationID}`)));
    assert.ok(services.flat().every((s) => s.microservice_name !== 'ticker' || s.application_name !== 'ticker'));
  });

  it('refreshes the session by itself: before the token expires, and once after a 401', async () => {
    type Saved = { token: string; refresh_token: string; expiresAt: number };
    const saved = async (): Promise<Saved> => JSON.parse((await page.evaluate<string | null>("sessionStorage.getItem('oak.session')")) ?? 'null') as Saved;
    const put = (v: Saved): Promise<unknown> => page.evaluate(`sessionStorage.setItem('oak.session', ${JSON.stringify(JSON.stringify(v))})`);
    // about to expire: traded for a new pair before it is used (no 401 on the way)
    const first = await saved();
    await put({ ...first, expiresAt: Date.now() + 1000 });
    await page.reload();
    await page.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();
    await waitFor(async () => ((await saved()).token !== first.token ? true : undefined), { timeoutMs: 10_000, message: 'a new access token' });
    await page.getByText('No applications yet in your organisation.').or(page.locator('[data-app]').first()).waitFor();
    // refused by the root (say, its secret changed): one refresh, then the same request again
    const second = await saved();
    expectFailures = true;
    await put({ ...second, token: `${second.token.slice(0, -4)}AAAA` });
    await page.reload();
    await page.getByRole('heading', { name: 'Applications', level: 1 }).waitFor();
    await waitFor(async () => ((await saved()).token !== `${second.token.slice(0, -4)}AAAA` ? true : undefined), { timeoutMs: 10_000, message: 'the refused token replaced' });
    await page.locator('[data-app="hostile"]').waitFor();
    expectFailures = false;
  });

  it('logs out, revoking the refresh token', async () => {
    const saved = await page.evaluate<string | null>("sessionStorage.getItem('oak.session')");
    assert.ok(saved !== null);
    const { refresh_token } = JSON.parse(saved) as { refresh_token: string };
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('User name').waitFor();
    assert.equal(await page.evaluate<string | null>("sessionStorage.getItem('oak.session')"), null);
    const r = await fetch(`${base}/api/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token }) });
    assert.equal(r.status, 401, 'the refresh token no longer works');
  });

  it('printed no console error or warning', () => {
    assert.deepEqual(problems, []);
  });
});
