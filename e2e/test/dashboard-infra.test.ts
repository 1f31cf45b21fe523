/**
 * The dashboard's infrastructure, readings and administration views in a real browser (Debian's
 * chromium driven by playwright-core) against a real root serving the built dashboard, a real
 * cluster and fake workers (MQTT like a NodeEngine): the tree with the world map, live CPU and
 * memory charts that move without a reload, join tokens shown once, registry passwords never shown,
 * an axe-core check of each view (no serious or critical violation), no console error, and
 * screenshots at desktop and phone size (.e2e-tmp/dashboard/).
 *
 * Needs `node scripts/build.mjs` (apps/dashboard/dist). Run under the e2e lock.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { silentLogger } from '@oak/bus';
import { topics, type ApplicationDoc, type RootToCluster, type TokenPair } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { startCluster, type ClusterHandle } from '../../apps/cluster/src/index.ts';
import { startFakeWorker, type FakeWorker } from '../../apps/cluster/test/harness.ts';
import { linkControl } from '../../apps/root/src/link/index.ts';
import { startRoot, type RootHandle } from '../../apps/root/src/server.ts';
import { clusterJoinToken, rawLinkCall, workerJoinToken } from '../../apps/root/test/join.ts';
import { createStore, type Store } from '../../packages/store/src/index.ts';
import { axe, eventStreams, launchChromium, logIn as logInAt, watchedPage } from '../src/browser.ts';

const ADMIN = 'admin-secret-1';
const ARTEFACTS = fileURLToPath(new URL('../../.e2e-tmp/dashboard/', import.meta.url));
const JOB = 'charted.test.web.test';

let store: Store;
let root: RootHandle;
let cluster: ClusterHandle;
let w1: FakeWorker;
let w2: FakeWorker;
/** the hand-spoken cluster 'tokyo' */
let tokyo: { cancel(): void };
let browser: Browser;
let sid = '';
const consoleProblems: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

async function api<T>(method: string, path: string, token: string, body?: unknown): Promise<T> {
  const res = await fetch(`${root.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

const logIn = (page: Page, user: string, password: string): Promise<void> => logInAt(page, root.url, user, password);

async function shots(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTEFACTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTEFACTS, `${name}-phone.png`), fullPage: true });
  const overflow = (await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number;
  assert.ok(overflow <= 1, `${name}: the page is ${overflow} px wider than a phone screen`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

before(async () => {
  mkdirSync(ARTEFACTS, { recursive: true });
  store = await createStore({ sqlitePath: ':memory:' });
  cleanups.push(() => store.close());
  root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: ADMIN,
    logLevel: 'silent',
    announce: () => {},
    control: linkControl({ host: '127.0.0.1', port: 0, graceMs: 5000, retryMs: 500, pingIntervalMs: 200, pingTimeoutMs: 2000 }),
  });
  cleanups.push(() => root.close());
  const link = (root.ctx.control as unknown as { link: { address: string } }).link.address;
  cluster = await startCluster({
    name: 'munich',
    location: '48.14,11.58',
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: 300,
    aggregateIntervalMs: 300,
    linkMaxBackoffMs: 300,
    linkSilenceTimeoutMs: 3000,
    log: silentLogger,
    root: { address: link, token: await clusterJoinToken(root.ctx, 'munich') },
  });
  cleanups.push(() => cluster.close());
  w1 = await startFakeWorker(cluster.registrationUrl, 'edge-a', { token: (await workerJoinToken(root.ctx, 'munich')).token, cores: 4 });
  cleanups.push(() => w1.close());
  await waitFor(() => cluster.core.workers.get(w1.id)?.awaitingReport === false || undefined, { message: 'worker reported' });
  const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN }) });
  const { token } = (await login.json()) as TokenPair;
  const apps = await api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', token, {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [{ application_name: 'charted', application_namespace: 'test', application_desc: 'charts', microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', memory: 100, vcpus: 1 }] }],
  });
  sid = apps[0]?.microservices[0] ?? '';
  await waitFor(() => w1.running.has(`${JOB}.instance.0`) || undefined, { message: 'instance on the worker' });
  // a GPU worker joins after the placement (the instance stays on edge-a)
  w2 = await startFakeWorker(cluster.registrationUrl, 'gpu-b', {
    token: (await workerJoinToken(root.ctx, 'munich')).token,
    gpus: [{ index: 0, name: 'NVIDIA A2', memory_mb: 15360, uuid: 'GPU-00000000-0000-0000-0000-000000000001' }],
  });
  cleanups.push(() => w2.close());
  // a second cluster spoken by hand over the link: two overlay workers with subnets and RTTs
  const raw = await rawLinkCall(root.ctx, link);
  cleanups.push(async () => {
    raw.call.cancel();
    raw.client.close();
  });
  raw.call.on('error', () => {});
  tokyo = { cancel: () => raw.call.cancel() };
  raw.call.on('data', (m: RootToCluster) => {
    if (m.type === 'ping') raw.call.write({ type: 'pong', t: m.t });
  });
  raw.call.write({ type: 'hello', token: await clusterJoinToken(root.ctx, 'tokyo'), cluster_name: 'tokyo', cluster_location: '35.68,139.69', version: 'test' });
  const overlayWorker = (id: string, name: string, subnet: string, peer: string, rtt: number) => ({
    id,
    name,
    cpu_cores_free: 2,
    memory_free_mb: 1000,
    virtualizations: ['container'],
    location: null,
    net: { subnet, host_ip: '192.0.2.10', host_port: 50103, rtt: [{ worker_id: peer, rtt_ms: rtt }] },
  });
  await waitFor(async () => (await api<{ cluster_name: string; status: string }[]>('GET', '/api/clusters/', token)).some((c) => c.cluster_name === 'tokyo' && c.status === 'ACTIVE') || undefined, { message: 'tokyo ACTIVE' });
  raw.call.write({
    type: 'aggregate',
    resources: {
      cpu_cores_free: 4, cpu_cores_total: 4, memory_free_mb: 2000, memory_total_mb: 2000, gpus_free: 0, virtualizations: ['container'], workers: 2,
      worker_summary: [overlayWorker('tk1', 'tokyo-1', '10.18.0.0/26', 'tk2', 1.25), overlayWorker('tk2', 'tokyo-2', '10.18.0.64/26', 'tk1', 1.5)],
    },
  });
  browser = await launchChromium();
  cleanups.push(() => browser.close());
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('dashboard: infrastructure, readings, administration', () => {
  test('the tree and the world map; charts move live; tokens shown once; registry passwords never shown; accessible; no console errors', { timeout: 120_000 }, async () => {
    // bypassCSP: only for injecting axe-core; the app itself runs under the root's CSP otherwise
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
    cleanups.push(() => ctx.close());
    const page = await watchedPage(ctx, consoleProblems);
    // every GET /api/events of the tab, and whether it has ended
    const streams = eventStreams(page);
    const streamUrls = streams.list;
    await logIn(page, 'Admin', ADMIN);

    // infrastructure: root -> cluster -> worker, with a bar and the cluster on the map
    await page.getByRole('link', { name: 'Infrastructure' }).click();
    await page.getByRole('heading', { name: 'Infrastructure' }).waitFor();
    await page.getByRole('listitem', { name: 'worker edge-a' }).waitFor();
    const gpuWorker = page.getByRole('listitem', { name: 'worker gpu-b' });
    await gpuWorker.getByText('#0 NVIDIA A2, 15,360 MB').waitFor();
    assert.ok(await gpuWorker.getByText('(1 of 1 free)').isVisible());
    // the overlay: subnets and the measured round trips, peers by name
    const tk1 = page.getByRole('listitem', { name: 'worker tokyo-1' });
    await tk1.getByText('10.18.0.0/26').waitFor();
    const rtt = tk1.getByRole('table', { name: 'Measured round trips from tokyo-1' });
    assert.equal(await rtt.getByRole('cell', { name: 'tokyo-2 (tokyo)' }).count(), 1);
    assert.equal(await rtt.getByRole('cell', { name: '1.3 ms' }).count(), 1);
    assert.ok(await page.getByText('munich', { exact: false }).first().isVisible());
    assert.equal(await page.locator('.world-map circle.site-active').count(), 2, 'munich and tokyo on the map');
    assert.ok((await page.locator('meter[aria-label^="CPU "]').count()) >= 1, 'a CPU bar');
    const axeInfra = await axe(page);
    assert.deepEqual(axeInfra, [], 'axe on the infrastructure view');
    await shots(page, 'infrastructure');

    // a worker that stops reporting stays, marked dead since when, until it is removed
    const before = Date.now();
    await w2.close();
    await gpuWorker.locator('[data-worker-state="dead"]').waitFor({ timeout: 15_000 });
    const since = await gpuWorker.locator('time').first().getAttribute('datetime');
    assert.ok(since !== null && Date.parse(since) >= before - 1000 && Date.parse(since) <= Date.now(), `dead since ${since}`);
    assert.ok(await gpuWorker.getByText(/since .* ago\)/).first().isVisible(), 'since when, in words');
    assert.ok(await page.getByText(/1 worker, 1 dead/).first().isVisible(), 'the cluster counts it as dead, not as a worker');
    // a cluster that goes away stays, unreachable, its workers as last reported
    tokyo.cancel();
    const tokyoCluster = page.locator('li.cluster', { has: page.getByRole('heading', { name: /tokyo/ }) });
    await tokyoCluster.locator('[data-cluster-state="unreachable"]').waitFor({ timeout: 15_000 });
    assert.ok(await tokyoCluster.getByText(/unreachable, last heard from/).first().isVisible());
    await tk1.locator('[data-worker-state="unreachable"]').waitFor();
    assert.ok(await tk1.getByText(/with its cluster, last known/).first().isVisible());
    assert.equal(await page.locator('.world-map circle.site-inactive').count(), 1, 'tokyo is hollow on the map');
    assert.deepEqual(await axe(page), [], 'axe on the infrastructure view with a dead worker and a lost cluster');
    await shots(page, 'infrastructure-dead');
    // removed: then it goes
    await page.getByRole('button', { name: 'Remove worker gpu-b' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Remove worker' }).click();
    await gpuWorker.waitFor({ state: 'detached', timeout: 15_000 });
    await page.getByRole('listitem', { name: 'worker edge-a' }).waitFor();

    // one event stream for the tab, carrying the readings while a chart is shown (no second one)
    const tabStreams = streams.open;
    await waitFor(() => tabStreams() === 1 || undefined, { message: 'one event stream' });
    assert.equal(root.ctx.streams?.count(), 1, 'the root serves one event stream');
    assert.ok(!streamUrls.some((u) => /metrics/.test(u.url)), 'no readings before a chart is shown');
    const opened = streamUrls.length;

    // readings: the history, then a live reading without a reload
    await w1.bus.publishJson(topics.jobResources(w1.id), { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 12.5, memory_mb: 42 }] });
    const marker = (await page.evaluate('window.__mark = 7')) as number;
    // moved to within the page (no load): the tab's stream is switched to one with readings
    await page.evaluate(`history.pushState(null, '', '/services/${sid}/instances/0/metrics'); dispatchEvent(new PopStateEvent('popstate'))`);
    await page.getByRole('heading', { name: 'Instance 0' }).waitFor();
    await page.getByText('12.5 % of a core').waitFor({ timeout: 15_000 });
    await w1.bus.publishJson(topics.jobResources(w1.id), { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 87, memory_mb: 64 }] });
    await page.getByText('87.0 % of a core').waitFor({ timeout: 15_000 });
    await page.getByText('64.0 MB').waitFor();
    assert.equal(await page.evaluate('window.__mark'), marker, 'no reload');
    assert.ok((await page.locator('polyline.spark-line').count()) === 2);
    await waitFor(() => tabStreams() === 1 || undefined, { message: 'the replaced stream closed' });
    assert.equal(root.ctx.streams?.count(), 1, 'the root serves one event stream');
    assert.equal(streamUrls.length, opened + 1, `one switch: ${JSON.stringify(streamUrls)}`);
    assert.match(streamUrls.at(-1)?.url ?? '', /types=[a-z,]*metrics/);
    // away from the chart and back: still the same stream (readings are kept a while), no reconnect
    await page.getByRole('link', { name: 'Infrastructure' }).click();
    await page.getByRole('listitem', { name: 'worker edge-a' }).waitFor();
    await page.goBack();
    await page.getByText('87.0 % of a core').waitFor();
    assert.equal(streamUrls.length, opened + 1, 'no reconnection moving between views');
    assert.equal(tabStreams(), 1);
    assert.equal(root.ctx.streams?.count(), 1);
    assert.deepEqual(await axe(page), [], 'axe on the readings view');
    await shots(page, 'readings');

    // organisations and users
    await page.getByRole('link', { name: 'Organisations' }).click();
    await page.getByLabel('Name (letters, digits, _ or -)').fill('acme');
    await page.getByRole('button', { name: 'Create organisation' }).click();
    await page.getByRole('cell', { name: 'acme', exact: true }).waitFor();
    assert.deepEqual(await axe(page), [], 'axe on organisations');
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByLabel('Name', { exact: true }).fill('carol');
    await page.getByLabel('Password (at least 8 characters)').fill('carol-password-1');
    await page.getByLabel('Organisation').selectOption({ label: 'acme' });
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.getByRole('cell', { name: 'carol', exact: true }).waitFor();
    assert.equal(await page.getByLabel('Password (at least 8 characters)').inputValue(), '', 'the password is cleared');
    assert.deepEqual(await axe(page), [], 'axe on users');
    await shots(page, 'users');

    // join tokens: the secret once, never in the list nor after a reload
    await page.getByRole('link', { name: 'Join tokens' }).click();
    await page.getByLabel('Cluster name (optional: else bound at first use)').fill('berlin');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = await page.getByRole('textbox', { name: 'The new token' }).inputValue();
    assert.match(secret, /^oak1\.c\./);
    assert.deepEqual(await axe(page), [], 'axe on join tokens');
    await shots(page, 'tokens');
    await page.reload();
    await page.getByRole('cell', { name: 'berlin', exact: true }).waitFor();
    assert.ok(!(await page.content()).includes(secret.split('.').slice(3).join('.')), 'the secret is not shown again');

    // registry logins: the password is never shown back
    await page.getByRole('link', { name: 'Registries' }).click();
    await page.getByLabel(/Registry host/).fill('registry.example.com:5000');
    await page.getByLabel('User name').fill('ci');
    await page.getByLabel('Password or access token').fill('s3cret-registry-pass');
    await page.getByRole('button', { name: 'Store login' }).click();
    await page.getByRole('cell', { name: 'registry.example.com:5000', exact: true }).waitFor();
    assert.equal(await page.getByLabel('Password or access token').inputValue(), '');
    await page.reload();
    await page.getByRole('cell', { name: 'registry.example.com:5000', exact: true }).waitFor();
    assert.ok(!(await page.content()).includes('s3cret-registry-pass'));
    assert.deepEqual(await axe(page), [], 'axe on registries');
    await shots(page, 'registries');

    // carol (acme, Application_Provider) sees no admin pages and not the Admin's readings
    const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    cleanups.push(() => ctx2.close());
    const p2 = await watchedPage(ctx2, consoleProblems);
    await logIn(p2, 'carol', 'carol-password-1');
    assert.equal(await p2.getByRole('link', { name: 'Join tokens' }).count(), 0);
    assert.equal(await p2.getByRole('link', { name: 'Users' }).count(), 0);
    await p2.goto(`${root.url}/services/${sid}/instances/0/metrics`);
    await p2.getByRole('alert').waitFor();
    assert.equal(await p2.getByText('% of a core').count(), 0);
    // a refused request is the one console message allowed here (the browser logs failed fetches)
    const problems = consoleProblems.filter((m) => !/status of 40[34]/.test(m));
    assert.deepEqual(problems, [], 'no console errors or warnings');
  });
});
