/**
 * Rolling update of a service through the cluster link: a real root (API + link + control plane
 * on an in-memory store), a real cluster (startCluster) and fake workers that speak MQTT like a
 * NodeEngine.
 *
 * Since issue 9 the rollout runs from the persisted versions (reconcile/core.ts): stopped
 * instances stay as desired=stop rows (UNDEPLOYED) until purged, numbers are never reused, and a
 * stopped rollout is restarted by a new version (the same SLA again is no new version).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@oak/bus';
import { startCluster } from '@oak/cluster';
import type { ClusterConfig } from '@oak/cluster';
import type { ApplicationDoc, DeployCommand, InstanceState, ServiceDoc, TokenPair } from '@oak/contracts';
import { createStore } from '@oak/store';
import type { Store } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { startFakeWorker } from '../../cluster/test/harness.ts';
import type { FakeWorker, FakeWorkerOptions } from '../../cluster/test/harness.ts';
import { createLinkControlPlane, startLinkServer } from '../src/link/index.ts';
import type { LinkControlPlane } from '../src/link/index.ts';
import { rootTrust } from '../src/trust.ts';
import { clusterJoinToken, workerJoinToken } from './join.ts';
import { startRoot } from '../src/server.ts';
import type { RootHandle } from '../src/server.ts';

const ADMIN_PASSWORD = 'admin-secret-1';
const JOB = 'roll.test.web.test';

// ------------------------------------------------------------------------------ through the link

interface TestRoot {
  root: RootHandle;
  store: Store;
  control: LinkControlPlane;
  api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

async function startTestRoot(store: Store, rolloutTimeoutMs: number): Promise<TestRoot> {
  const root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: ADMIN_PASSWORD,
    logLevel: 'silent',
    announce: () => {},
    control: async (ctx) => {
      const link = await startLinkServer({ host: '127.0.0.1', port: 0, store: ctx.store, events: ctx.events, trust: await rootTrust(ctx), pingIntervalMs: 200, pingTimeoutMs: 1000 });
      return createLinkControlPlane({ link, store: ctx.store, events: ctx.events, graceMs: 5000, retryMs: 500, rolloutTimeoutMs, rolloutPollMs: 100 });
    },
  });
  const control = root.ctx.control as LinkControlPlane;
  const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN_PASSWORD }) });
  const { token } = (await login.json()) as TokenPair;
  return {
    root,
    store,
    control,
    async api<T>(method: string, path: string, body?: unknown) {
      const res = await fetch(`${root.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T };
    },
    close: () => root.close(),
  };
}

async function clusterConfig(r: TestRoot, name: string, linkAddress: string): Promise<ClusterConfig> {
  return {
    name,
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    reportIntervalMs: 200,
    // a worker is declared dead after 2 s of silence (not 0.6 s): a loaded test machine must not fail the rollout's availability checks
    deadAfterIntervals: 10,
    aggregateIntervalMs: 300,
    linkMaxBackoffMs: 300,
    linkSilenceTimeoutMs: 2000,
    log: silentLogger,
    root: { address: linkAddress, token: await clusterJoinToken(r.root.ctx, name) },
  };
}

const SLA = {
  sla_version: 'v2.0',
  customerID: 'Admin',
  applications: [
    {
      application_name: 'roll',
      application_namespace: 'test',
      application_desc: 'rolling update test',
      microservices: [
        {
          microservice_name: 'web',
          microservice_namespace: 'test',
          virtualization: 'container',
          code: 'docker.io/library/nginx:latest',
          cmd: ['serve', 'v1'],
          environment: ['VERSION=1'],
          memory: 100,
          vcpus: 1,
          replicas: 2,
        },
      ],
    },
  ],
};

interface Setup {
  r: TestRoot;
  workers: FakeWorker[];
  sid: string;
}

/** A root, one cluster with two workers, and the 2-replica service RUNNING as instances 0 and 1. */
async function setup(cleanups: (() => Promise<void>)[], opts: { rolloutTimeoutMs?: number; worker?: FakeWorkerOptions; startRunning?: (ws: FakeWorker[]) => () => void } = {}): Promise<Setup> {
  const store = await createStore({ sqlitePath: ':memory:' });
  const r = await startTestRoot(store, opts.rolloutTimeoutMs ?? 10_000);
  cleanups.push(() => store.close(), () => r.close());
  const c = await startCluster(await clusterConfig(r, 'c1', r.control.link.address));
  cleanups.push(() => c.close());
  const token = (await workerJoinToken(r.root.ctx, 'c1')).token;
  const workers = [await startFakeWorker(c.registrationUrl, 'w1', { ...opts.worker, token }), await startFakeWorker(c.registrationUrl, 'w2', { ...opts.worker, token })];
  cleanups.push(...workers.map((w) => () => w.close()));
  if (opts.startRunning) {
    const stop = opts.startRunning(workers);
    cleanups.push(async () => stop());
  }
  await waitFor(async () => (await r.api<{ resources?: { workers?: number } }[]>('GET', '/api/clusters/')).body[0]?.resources?.workers === 2, { message: 'aggregate with 2 workers' });
  const res = await r.api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', SLA);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const sid = res.body[0]?.microservices[0];
  assert.ok(sid);
  await waitFor(async () => {
    const rows = await store.listInstances({ service_id: sid });
    return rows.length === 2 && rows.every((x) => x.status === 'RUNNING');
  }, { message: 'two RUNNING instances' });
  return { r, workers, sid };
}

/** Counts RUNNING instances of a service after every change the root publishes, and keeps the lowest count. */
async function watchRunning(r: TestRoot, sid: string, cleanups: (() => Promise<void>)[]): Promise<{ min(): number; stop(): void }> {
  const status = new Map<number, InstanceState>();
  for (const x of await r.store.listInstances({ service_id: sid })) status.set(x.instance_number, x.status);
  const count = (): number => [...status.values()].filter((s) => s === 'RUNNING').length;
  let min = count();
  const off = r.root.ctx.events.subscribe((e) => {
    if (e.type !== 'instance' || e.microserviceID !== sid) return;
    status.set(e.instance.instance_number, e.instance.status);
    min = Math.min(min, count());
  });
  // and a sample of the store, besides the events
  const timer = setInterval(() => {
    void r.store.listInstances({ service_id: sid }).then((rows) => {
      min = Math.min(min, rows.filter((x) => x.status === 'RUNNING').length);
    }, () => undefined);
  }, 20);
  timer.unref();
  const stop = (): void => {
    off();
    clearInterval(timer);
  };
  cleanups.push(async () => stop());
  return { min: () => min, stop };
}

/** Deploys the workers received for one instance number. */
function deploysOf(workers: FakeWorker[], n: number): DeployCommand[] {
  return workers.flatMap((w) => w.deploys.filter((d) => d.job_name === JOB && d.instance_number === n));
}

/**
 * Workers that do not reach RUNNING by themselves: `decide` says what each new deploy becomes
 * (undefined: it stays CREATING).
 */
function manualWorkers(decide: (cmd: DeployCommand) => InstanceState | undefined): (ws: FakeWorker[]) => () => void {
  return (ws) => {
    const seen = new Map<FakeWorker, number>();
    const timer = setInterval(() => {
      for (const w of ws) {
        const from = seen.get(w) ?? 0;
        seen.set(w, w.deploys.length);
        for (const cmd of w.deploys.slice(from)) {
          const s = decide(cmd);
          if (s !== undefined) void w.publishStatus(cmd.job_name, cmd.instance_number, s, s === 'FAILED' ? 'image not found' : '');
        }
      }
    }, 50);
    return () => clearInterval(timer);
  };
}

/** the instances that should run (desired=run), as [number, status] */
async function numbers(r: TestRoot, sid: string): Promise<[number, InstanceState][]> {
  return (await r.store.listInstances({ service_id: sid, desired: 'run' })).map((x) => [x.instance_number, x.status]);
}

/** the instance is stopped at the root: desired=stop and UNDEPLOYED */
async function stopped(r: TestRoot, sid: string, n: number): Promise<boolean> {
  const row = await r.store.getInstance(sid, n);
  return row !== undefined && row.desired === 'stop' && row.status === 'UNDEPLOYED';
}

describe('rolling update through the cluster link', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  test('a changed SLA replaces both RUNNING instances one at a time, never fewer than 2 RUNNING', async () => {
    const { r, workers, sid } = await setup(cleanups);
    const undeployedEvents: number[] = [];
    const seq: string[] = [];
    const off = r.root.ctx.events.subscribe((e) => {
      if (e.type !== 'instance' || e.microserviceID !== sid) return;
      seq.push(`${e.instance.instance_number}:${e.instance.status}`);
      if (e.instance.status === 'UNDEPLOYED') undeployedEvents.push(e.instance.instance_number);
    });
    const watch = await watchRunning(r, sid, cleanups);
    const put = await r.api<ServiceDoc>('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v2'], environment: ['VERSION=2'] });
    assert.equal(put.status, 200, JSON.stringify(put.body));

    const done = await waitFor(async () => {
      const rows = await numbers(r, sid);
      return rows.length === 2 && rows.every(([n, st]) => n >= 2 && st === 'RUNNING') && (await stopped(r, sid, 0)) && (await stopped(r, sid, 1)) ? rows : undefined;
    }, { timeoutMs: 15_000, message: 'two new RUNNING instances' });
    watch.stop();
    off();
    assert.deepEqual(done.map(([n]) => n), [2, 3]);
    assert.ok(watch.min() >= 2, `RUNNING dropped to ${watch.min()} during the rollout`);
    // the replacements were deployed with the new spec, the old ones deleted on their workers
    for (const n of [2, 3]) {
      const cmds = deploysOf(workers, n);
      assert.ok(cmds.length > 0, `instance ${n} deployed`);
      for (const d of cmds) {
        assert.deepEqual(d.cmd, ['serve', 'v2']);
        assert.deepEqual(d.environment, ['VERSION=2']);
      }
    }
    for (const n of [0, 1]) {
      assert.ok(deploysOf(workers, n).every((d) => d.cmd?.[1] === 'v1'), 'the old instances ran the old spec');
      await waitFor(() => workers.some((w) => w.deletes.some((d) => d.job_name === JOB && d.instance_number === n)), { message: `instance ${n} deleted on its worker` });
    }
    assert.deepEqual(undeployedEvents.sort(), [0, 1]);
    // one at a time: 0 goes after 2 runs, 3 is requested after 0 went, 1 goes after 3 runs
    const at = (x: string): number => seq.indexOf(x);
    assert.ok(at('2:RUNNING') < at('0:UNDEPLOYED') && at('0:UNDEPLOYED') < at('3:REQUESTED') && at('3:RUNNING') < at('1:UNDEPLOYED'), seq.join(' '));
    assert.ok(at('2:RUNNING') >= 0, seq.join(' '));

    // the same SLA again changes nothing
    const same = await r.api<ServiceDoc>('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v2'] });
    assert.equal(same.status, 200);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await r.control.idle();
    assert.deepEqual(await numbers(r, sid), [[2, 'RUNNING'], [3, 'RUNNING']]);
  });

  test('a replacement that FAILS stops the rollout: it is undeployed, the old instances keep running', async () => {
    const { r, workers, sid } = await setup(cleanups, {
      worker: { run: false },
      startRunning: manualWorkers((cmd) => (cmd.cmd?.[1] === 'broken' ? 'FAILED' : 'RUNNING')),
    });
    const watch = await watchRunning(r, sid, cleanups);
    const put = await r.api<ServiceDoc>('PUT', `/api/service/${sid}`, { cmd: ['serve', 'broken'] });
    assert.equal(put.status, 200);
    await waitFor(() => deploysOf(workers, 2).length > 0, { message: 'replacement deployed' });
    await waitFor(() => workers.some((w) => w.deletes.some((d) => d.job_name === JOB && d.instance_number === 2)), { message: 'failed replacement deleted on its worker' });
    await waitFor(() => stopped(r, sid, 2), { message: 'failed replacement stopped at the root' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await r.control.idle();
    watch.stop();
    assert.deepEqual(await numbers(r, sid), [[0, 'RUNNING'], [1, 'RUNNING']]);
    assert.equal(deploysOf(workers, 3).length, 0, 'no further replacement');
    assert.ok(workers.every((w) => !w.deletes.some((d) => d.job_name === JOB && d.instance_number < 2)), 'old instances never deleted');
    assert.ok(watch.min() >= 2, `RUNNING dropped to ${watch.min()}`);

    // the version's outcome says why it stopped
    const v2 = await r.store.getServiceVersion(sid, 2);
    assert.match(v2?.outcome ?? '', /^stopped: instance 2 is FAILED/);
    // fixed SLA: a new version, the rollout goes through (numbers are never reused: 3 and 4)
    const fix = await r.api<ServiceDoc>('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v3'] });
    assert.equal(fix.status, 200);
    const rolled = await waitFor(async () => {
      const rows = await numbers(r, sid);
      return rows.length === 2 && rows.every(([n, s]) => n >= 2 && s === 'RUNNING') ? rows : undefined;
    }, { timeoutMs: 15_000, message: 'rolled to v3' });
    assert.deepEqual(rolled.map(([n]) => n), [3, 4]);
    for (const n of [3, 4]) assert.ok(deploysOf(workers, n).length > 0 && deploysOf(workers, n).every((d) => d.cmd?.[1] === 'v3'));
    assert.equal(deploysOf(workers, 2).length, 1, 'the failed replacement was never deployed again');
  });

  test('a replacement not RUNNING in time stops the rollout; the same SLA again changes nothing; a new version restarts it', async () => {
    // v2 replacements never get past CREATING; v3 ones run
    const { r, workers, sid } = await setup(cleanups, {
      rolloutTimeoutMs: 1500,
      worker: { run: false },
      startRunning: manualWorkers((cmd) => (cmd.cmd?.[1] === 'v2' ? undefined : 'RUNNING')),
    });
    const watch = await watchRunning(r, sid, cleanups);
    assert.equal((await r.api('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v2'] })).status, 200);
    await waitFor(() => deploysOf(workers, 2).length > 0, { message: 'v2 replacement deployed' });
    await waitFor(() => stopped(r, sid, 2), { timeoutMs: 5000, message: 'timed-out replacement stopped' });
    await waitFor(() => workers.some((w) => w.deletes.some((d) => d.job_name === JOB && d.instance_number === 2)), { message: 'timed-out replacement deleted on its worker' });
    await r.control.idle();
    assert.deepEqual(await numbers(r, sid), [[0, 'RUNNING'], [1, 'RUNNING']]);
    assert.match((await r.store.getServiceVersion(sid, 2))?.outcome ?? '', /^stopped: instance 2 was not ready within 1.5 s/);

    // the same SLA again: no new version, nothing is tried again
    assert.equal((await r.api('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v2'] })).status, 200);
    assert.equal((await r.store.getService(sid))?.version, 2);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await r.control.idle();
    assert.equal(deploysOf(workers, 3).length, 0);

    // a new version restarts the rollout from the current state
    assert.equal((await r.api('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v3'] })).status, 200);
    const final = await waitFor(async () => {
      const rows = await numbers(r, sid);
      return rows.length === 2 && rows.every(([n, st]) => n >= 3 && st === 'RUNNING') ? rows : undefined;
    }, { timeoutMs: 15_000, message: 'rolled to v3' });
    watch.stop();
    assert.deepEqual(final.map(([n]) => n), [3, 4]);
    assert.equal(workers.flatMap((w) => w.deletes.filter((d) => d.job_name === JOB && d.instance_number === 2)).length, 1, 'the v2 replacement undeployed once');
    for (const n of [3, 4]) {
      assert.ok(deploysOf(workers, n).length > 0);
      assert.ok(deploysOf(workers, n).every((d) => d.cmd?.[1] === 'v3'));
    }
    assert.ok(watch.min() >= 2, `RUNNING dropped to ${watch.min()}`);
    assert.equal((await r.store.getServiceVersion(sid, 3))?.outcome, 'complete');
  });
});
