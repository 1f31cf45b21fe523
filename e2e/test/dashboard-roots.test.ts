/**
 * The dashboard on a follower root (issue 11): two roots on one PostgreSQL (a schema of this test
 * in database `test` at 127.0.0.1:5432, or OAK_TEST_PG_URL), a real cluster that dials the
 * follower's link port and is redirected to the leader, a fake worker (MQTT like a NodeEngine).
 * The readings reach the leader only; a chart opened in a real browser on the follower's
 * dashboard shows them, live (through the roots' event bridge), on the tab's one event stream.
 *
 * Needs `node scripts/build.mjs` (apps/dashboard/dist). Run under the e2e lock.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Browser } from 'playwright-core';
import { silentLogger } from '@oak/bus';
import { topics, type ApplicationDoc, type TokenPair } from '@oak/contracts';
import { freePort, waitFor } from '@oak/testkit';
import { startCluster, type ClusterHandle } from '../../apps/cluster/src/index.ts';
import { startFakeWorker, type FakeWorker } from '../../apps/cluster/test/harness.ts';
import { linkControl } from '../../apps/root/src/link/index.ts';
import { startRoot, type RootHandle } from '../../apps/root/src/server.ts';
import { clusterJoinToken, workerJoinToken } from '../../apps/root/test/join.ts';
import { axe, eventStreams, launchChromium, logIn, watchedPage } from '../src/browser.ts';

const PG_URL = process.env.OAK_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ADMIN = 'dash-roots-secret-1';
const SCHEMA = `oak_dash_roots_${process.pid}_${randomBytes(3).toString('hex')}`;
const JOB = 'bridged.test.web.test';

let leader: RootHandle;
let follower: RootHandle;
let cluster: ClusterHandle;
let worker: FakeWorker;
let browser: Browser;
let sid = '';
const problems: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

async function token(url: string): Promise<string> {
  const r = await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN }) });
  assert.equal(r.status, 200);
  return ((await r.json()) as TokenPair).token;
}

before(async () => {
  // dropped last, once no root uses it
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`drop schema if exists "${SCHEMA}" cascade`);
    await c.end();
  });
  const ports = [await freePort(), await freePort()];
  // the first one to start leads (and creates the schema); the second follows
  const mk = (port: number): Promise<RootHandle> =>
    startRoot({
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      announce: () => {},
      databaseUrl: PG_URL,
      pgSchema: SCHEMA,
      adminPassword: ADMIN,
      control: linkControl({ host: '127.0.0.1', port, graceMs: 5000, retryMs: 500, pingIntervalMs: 200, pingTimeoutMs: 2000 }),
      lead: { linkUrl: `127.0.0.1:${port}`, redirectListen: { host: '127.0.0.1', port } },
    });
  const a = await mk(ports[0]!);
  cleanups.push(() => a.close());
  const b = await mk(ports[1]!);
  cleanups.push(() => b.close());
  // normally the first one leads; under load the lease may go either way: one leads, the other follows
  const first = await waitFor(() => [a, b].find((r) => r.lead?.role === 'leader'), { timeoutMs: 15_000, message: 'a leader' });
  leader = first;
  follower = first === a ? b : a;
  const followerPort = first === a ? ports[1] : ports[0];
  await waitFor(() => follower.lead?.role === 'follower' || undefined, { timeoutMs: 15_000, message: 'a follower' });
  // the cluster dials the follower, which sends it on to the leader's link
  cluster = await startCluster({
    name: 'bridged',
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: 300,
    aggregateIntervalMs: 300,
    linkMaxBackoffMs: 300,
    linkSilenceTimeoutMs: 3000,
    log: silentLogger,
    root: { address: `127.0.0.1:${followerPort}`, token: await clusterJoinToken(leader.ctx, 'bridged') },
  });
  cleanups.push(() => cluster.close());
  worker = await startFakeWorker(cluster.registrationUrl, 'edge-f', { token: (await workerJoinToken(leader.ctx, 'bridged')).token, cores: 4 });
  cleanups.push(() => worker.close());
  await waitFor(() => cluster.core.workers.get(worker.id)?.awaitingReport === false || undefined, { message: 'worker reported' });
  // deployed through the follower (its writes reach the leader's control plane)
  const t = await token(follower.url);
  const res = await fetch(`${follower.url}/api/application/?deploy=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      sla_version: 'v2.0',
      customerID: 'Admin',
      applications: [{ application_name: 'bridged', application_namespace: 'test', application_desc: 'charts on a follower', microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', memory: 100, vcpus: 1 }] }],
    }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const apps = (await res.json()) as ApplicationDoc[];
  sid = apps[0]?.microservices[0] ?? '';
  await waitFor(() => worker.running.has(`${JOB}.instance.0`) || undefined, { timeoutMs: 30_000, message: 'instance on the worker' });
  browser = await launchChromium();
  cleanups.push(() => browser.close());
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('dashboard on a follower root', () => {
  test('a chart opened on the follower shows the readings that reach the leader, live', { timeout: 120_000 }, async () => {
    // the cluster's link is the leader's (redirected), so every reading arrives there
    await waitFor(async () => (await leader.ctx.store.listClusters()).some((c) => c.name === 'bridged' && c.status === 'ACTIVE') || undefined, { message: 'the cluster linked' });
    assert.ok((follower.lead?.redirectLink?.stats.redirected ?? 0) >= 1, 'the follower sent the cluster on to the leader');
    assert.equal(follower.lead?.role, 'follower');
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
    cleanups.push(() => ctx.close());
    const page = await watchedPage(ctx, problems);
    const streams = eventStreams(page);
    await logIn(page, follower.url, 'Admin', ADMIN);
    await page.goto(`${follower.url}/services/${sid}/instances/0/metrics`);
    await page.getByRole('heading', { name: 'Instance 0' }).waitFor();
    const marker = (await page.evaluate('window.__mark = 11')) as number;
    await worker.bus.publishJson(topics.jobResources(worker.id), { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 33.5, memory_mb: 48 }] });
    await page.getByText('33.5 % of a core').waitFor({ timeout: 15_000 });
    await worker.bus.publishJson(topics.jobResources(worker.id), { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 71, memory_mb: 96 }] });
    await page.getByText('71.0 % of a core').waitFor({ timeout: 15_000 });
    await page.getByText('96.0 MB').waitFor();
    assert.equal(await page.evaluate('window.__mark'), marker, 'live, without a reload');
    // served by the follower alone: the page never talked to the leader, on one event stream
    assert.ok(streams.list.every((s) => s.url.startsWith(follower.url)));
    assert.equal(streams.open(), 1, `one event stream: ${JSON.stringify(streams.list)}`);
    assert.equal(follower.ctx.streams?.count(), 1, 'the follower serves it');
    assert.equal(leader.ctx.streams?.count() ?? 0, 0, 'the leader serves no stream');
    // the follower's own history has them too (a reload starts from it)
    await page.reload();
    await page.getByText('71.0 % of a core').waitFor();
    assert.deepEqual(await axe(page), [], 'axe on the readings view');
    assert.deepEqual(problems, [], 'no console errors or warnings');
  });
});
