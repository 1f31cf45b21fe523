/**
 * The reconciler as the root's control plane (issue 9), with a real root (API, link, control
 * plane) and fake clusters speaking the link protocol by hand, so that the test decides what a
 * cluster answers (or that it never answers):
 * - a root restarted in the middle of a rolling update (a new control plane on the same store)
 *   finishes it with no surplus replica;
 * - CLUSTER_SCHEDULED past its deadline on a cluster that never answers is placed on the other;
 * - 50 concurrent addInstance + desired=stop through the control plane converge to no running
 *   copy on the cluster;
 * - a report of an older epoch (a stale copy) gets exactly one undeploy.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ClusterResources, InstanceAssignment, InstanceState, RootToCluster, TokenPair } from '@oak/contracts';
import { createStore } from '@oak/store';
import type { Store } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { createLinkControlPlane, startLinkServer } from '../src/link/index.ts';
import type { LinkControlOptions, LinkControlPlane } from '../src/link/index.ts';
import { startRoot } from '../src/server.ts';
import type { RootHandle } from '../src/server.ts';
import { configFromArgs } from '../src/main.ts';
import { rootTrust } from '../src/trust.ts';
import { clusterJoinToken, rawLinkCall } from './join.ts';

const ADMIN_PASSWORD = 'admin-secret-1';

type Msg<T extends RootToCluster['type']> = Extract<RootToCluster, { type: T }>;

/** what a fake cluster does with a deploy: the states it reports (with the epoch), in order; [] = silent */
type Behaviour = (a: InstanceAssignment) => InstanceState[];

interface FakeCluster {
  id: string;
  name: string;
  got: RootToCluster[];
  /** instance name → epoch of the copies it runs (deploys add, undeploys and syncs remove) */
  running: Map<string, number | undefined>;
  /** instance name → how many copies it started (fresh deploys) */
  starts: Map<string, number>;
  behaviour: Behaviour;
  send(m: unknown): void;
  report(job: string, n: number, status: InstanceState, epoch?: number): void;
  wait<T extends RootToCluster['type']>(type: T, pred?: (m: Msg<T>) => boolean, from?: number): Promise<Msg<T>>;
  close(): void;
}

function resources(cpu = 8): ClusterResources {
  return {
    cpu_cores_free: cpu,
    cpu_cores_total: cpu,
    memory_free_mb: cpu * 1024,
    memory_total_mb: cpu * 1024,
    gpus_free: 0,
    virtualizations: ['container'],
    workers: 1,
    worker_summary: [{ id: 'w1', name: 'w1', cpu_cores_free: cpu, memory_free_mb: cpu * 1024, virtualizations: ['container'] }],
  };
}

function sla(app: string, replicas: number, cmd = 'v1'): unknown {
  return {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: app,
        application_namespace: 'test',
        application_desc: '',
        microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', cmd: ['serve', cmd], memory: 100, vcpus: 0.1, replicas }],
      },
    ],
  };
}

const running: Behaviour = () => ['NODE_SCHEDULED', 'CREATING', 'RUNNING'];
const silent: Behaviour = () => [];

interface TestRoot {
  root: RootHandle;
  store: Store;
  control: LinkControlPlane;
  api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  connect(name: string, behaviour: Behaviour, copies?: Map<string, number | undefined>): Promise<FakeCluster>;
  close(): Promise<void>;
}

async function startTestRoot(store: Store, opts: Partial<LinkControlOptions> = {}): Promise<TestRoot> {
  const root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: ADMIN_PASSWORD,
    logLevel: 'silent',
    announce: () => {},
    control: async (ctx) => {
      const link = await startLinkServer({ host: '127.0.0.1', port: 0, store: ctx.store, events: ctx.events, trust: await rootTrust(ctx), pingIntervalMs: 200, pingTimeoutMs: 5000 });
      return createLinkControlPlane({ link, store: ctx.store, events: ctx.events, retryMs: 300, settleMs: 0, ...opts });
    },
  });
  const control = root.ctx.control as LinkControlPlane;
  const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN_PASSWORD }) });
  const { token } = (await login.json()) as TokenPair;
  const fakes: FakeCluster[] = [];
  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${root.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T };
  };
  const connect = async (name: string, behaviour: Behaviour, copies?: Map<string, number | undefined>): Promise<FakeCluster> => {
    const { client, call } = await rawLinkCall(root.ctx, control.link.address, { ownConnection: true });
    const got: RootToCluster[] = [];
    const fake: FakeCluster = {
      id: '',
      name,
      got,
      running: new Map(copies ?? []),
      starts: new Map(),
      behaviour,
      send: (m) => call.write(m),
      report: (job, n, status, epoch) => call.write({ type: 'instance_status', job_name: job, instance_number: n, status, status_detail: '', worker_id: 'w1', ...(epoch !== undefined ? { epoch } : {}) }),
      wait: <T extends RootToCluster['type']>(type: T, pred: (m: Msg<T>) => boolean = () => true, from = 0) =>
        waitFor(() => got.slice(from).find((m): m is Msg<T> => m.type === type && pred(m as Msg<T>)), { message: `${name}: ${type}` }),
      close: () => {
        call.cancel();
        client.close();
      },
    };
    const play = (a: InstanceAssignment): void => {
      const k = `${a.job_name}/${a.instance_number}`;
      fake.starts.set(k, (fake.starts.get(k) ?? 0) + 1);
      const states = fake.behaviour(a);
      states.forEach((st, i) => setTimeout(() => {
        if (fake.running.get(`${a.job_name}/${a.instance_number}`) === a.epoch) fake.report(a.job_name, a.instance_number, st, a.epoch);
      }, 10 * (i + 1)));
    };
    call.on('data', (m: RootToCluster) => {
      if (m.type === 'ping') return void call.write({ type: 'pong', t: m.t });
      got.push(m);
      if (m.type === 'deploy') {
        const k = `${m.instance.job_name}/${m.instance.instance_number}`;
        // like a cluster: a deploy of an instance it runs only updates its assignment (no restart)
        const had = fake.running.has(k);
        fake.running.set(k, m.instance.epoch);
        if (had) fake.report(m.instance.job_name, m.instance.instance_number, 'RUNNING', m.instance.epoch);
        else play(m.instance);
      } else if (m.type === 'undeploy') {
        const k = `${m.job_name}/${m.instance_number}`;
        if (m.epoch === undefined || fake.running.get(k) === m.epoch) fake.running.delete(k);
      } else if (m.type === 'sync') {
        const keep = new Map<string, InstanceAssignment>(m.instances.map((a) => [`${a.job_name}/${a.instance_number}`, a]));
        for (const k of [...fake.running.keys()]) if (!keep.has(k)) fake.running.delete(k);
        for (const [k, a] of keep) {
          const had = fake.running.has(k);
          // a copy it runs keeps its epoch when the assignment names none (a lost instance it may keep)
          const epoch = a.epoch ?? fake.running.get(k);
          fake.running.set(k, epoch);
          if (had) fake.report(a.job_name, a.instance_number, 'RUNNING', epoch);
          else play(a);
        }
      }
    });
    call.on('error', () => undefined);
    call.write({ type: 'hello', token: await clusterJoinToken(root.ctx, name), cluster_name: name, cluster_location: null, version: 'test' });
    const welcome = await waitFor(() => got.find((m): m is Msg<'welcome'> => m.type === 'welcome'), { message: `${name} welcomed` });
    fake.id = welcome.cluster_id;
    call.write({ type: 'aggregate', resources: resources() });
    await waitFor(async () => (await store.getCluster(fake.id))?.resources?.workers === 1, { message: `${name} aggregate stored` });
    fakes.push(fake);
    return fake;
  };
  return {
    root,
    store,
    control,
    api,
    connect,
    async close() {
      for (const f of fakes) f.close();
      await root.close();
    },
  };
}

async function deploy(r: TestRoot, app: string, replicas: number): Promise<string> {
  const res = await r.api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', sla(app, replicas));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const sid = res.body[0]?.microservices[0];
  assert.ok(sid);
  return sid;
}

const jobOf = (app: string): string => `${app}.test.web.test`;

describe('the reconciler on the root link', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  test('a root restarted in the middle of a rolling update finishes it with no surplus replica', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    let r = await startTestRoot(store);
    cleanups.push(() => r.close());
    // v1 copies run; v2 ones stay CREATING while the first root lives
    const c1 = await r.connect('c1', (a) => (a.service.cmd?.[1] === 'v2' ? ['CREATING'] : ['NODE_SCHEDULED', 'CREATING', 'RUNNING']));
    const sid = await deploy(r, 'restart', 3);
    const job = jobOf('restart');
    await waitFor(async () => (await store.listInstances({ service_id: sid, statuses: ['RUNNING'] })).length === 3, { message: 'three RUNNING v1 instances' });
    assert.equal((await r.api('PUT', `/api/service/${sid}`, { cmd: ['serve', 'v2'] })).status, 200);
    // the first successor is in flight (max_surge 1): the root dies now
    await waitFor(async () => (await store.listInstances({ service_id: sid })).some((x) => x.service_version === 2 && x.status === 'CREATING'), { message: 'a v2 successor CREATING' });
    await r.close();
    c1.close();
    assert.equal((await store.listInstances({ service_id: sid, desired: 'run' })).length, 4, 'three old + one successor');

    r = await startTestRoot(store);
    const again = await r.connect('c1', running);
    const done = await waitFor(async () => {
      const rows = await store.listInstances({ service_id: sid, desired: 'run' });
      return rows.length === 3 && rows.every((x) => x.service_version === 2 && x.status === 'RUNNING') ? rows : undefined;
    }, { timeoutMs: 20_000, message: 'rolled to v2 by the new root' });
    await r.control.idle();
    const all = await store.listInstances({ service_id: sid });
    assert.deepEqual(done.map((x) => x.instance_number), [3, 4, 5], 'one successor per old instance, the one in flight kept');
    assert.equal(all.length, 6, 'no surplus row');
    assert.ok(all.filter((x) => x.instance_number < 3).every((x) => x.desired === 'stop' && x.status === 'UNDEPLOYED'));
    const copies = [...again.running.keys()].filter((k) => k.startsWith(`${job}/`)).sort();
    assert.deepEqual(copies, [`${job}/3`, `${job}/4`, `${job}/5`], 'exactly the three v2 copies run on the cluster');
    assert.equal((await store.getServiceVersion(sid, 2))?.outcome, 'complete');
  });

  test('a finished row leaves the passes but is purged on time; a service with many finished rows plans from its live ones', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store, { reconcile: { purgeAfterMs: 1500 } });
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'purge', 3);
    await waitFor(async () => ((await store.listInstances({ service_id: sid })).filter((x) => x.status === 'RUNNING').length === 3 ? true : undefined), { message: '3 RUNNING' });
    // scale down to 1: two rows finish (UNDEPLOYED, addresses released), then nothing else happens
    for (const n of [0, 1]) assert.equal((await r.api('DELETE', `/api/service/${sid}/instance/${n}`)).status, 200);
    await waitFor(async () => ((await store.listInstances({ service_id: sid, live: true })).map((x) => x.instance_number).join() === '2' ? true : undefined), { message: 'two rows finished' });
    assert.equal((await store.listInstances({ service_id: sid })).length, 3, 'the finished rows are kept until their purge');
    // the purge comes from the service's timer alone (no report, no API call, resync 5 s away)
    const t0 = Date.now();
    await waitFor(async () => ((await store.listInstances({ service_id: sid })).length === 1 ? true : undefined), { timeoutMs: 10_000, message: 'finished rows purged' });
    assert.ok(Date.now() - t0 < 4500, `purged after ${Date.now() - t0} ms`);
    assert.deepEqual([...c1.running.keys()].filter((k) => k.startsWith(`${jobOf('purge')}/`)), [`${jobOf('purge')}/2`]);
  });

  test('a quick start (NODE_SCHEDULED, CREATING, RUNNING 10 ms apart) is one row write, every status in the history and the events, in order', { timeout: 60_000 }, async () => {
    // 300 ms: far more than the 10 ms between the reports even on a loaded machine (default 20 ms)
    for (const wait of [300, 0]) {
      const store = await createStore({ sqlitePath: ':memory:' });
      cleanups.push(() => store.close());
      const writes: string[] = [];
      const real = store.updateInstance.bind(store);
      store.updateInstance = (id, n, patch, passed) => {
        if (patch.status !== undefined) writes.push(patch.status);
        return real(id, n, patch, passed);
      };
      const r = await startTestRoot(store, { progressWaitMs: wait });
      cleanups.push(() => r.close());
      const seen: string[] = [];
      r.root.ctx.events.subscribe((e) => {
        if (e.type === 'instance') seen.push(e.instance.status);
      });
      await r.connect('c1', running);
      const sid = await deploy(r, `quick${wait}`, 1);
      await waitFor(async () => ((await store.getInstance(sid, 0))?.status === 'RUNNING' ? true : undefined), { message: 'RUNNING' });
      await r.control.idle();
      const history = (await store.instanceHistory(sid, 0)).map((h) => h.status);
      assert.deepEqual(history, ['REQUESTED', 'CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']);
      const times = (await store.instanceHistory(sid, 0)).map((h) => h.at);
      assert.deepEqual(times, [...times].sort(), 'history times in order');
      assert.deepEqual(seen.filter((st) => st !== 'REQUESTED'), ['CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']);
      // with the wait, the three reports of the copy are one write; without it, three
      assert.deepEqual(writes, wait > 0 ? ['CLUSTER_SCHEDULED', 'RUNNING'] : ['CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']);
      await r.close();
    }
  });

  test('CLUSTER_SCHEDULED past its deadline on a cluster that never answers is placed on the other cluster', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store, { reconcile: { deadlines: { CLUSTER_SCHEDULED: 800 } } });
    cleanups.push(() => r.close());
    const mute = await r.connect('mute', silent);
    const sid = await deploy(r, 'deadline', 1);
    const job = jobOf('deadline');
    const first = await mute.wait('deploy', (m) => m.instance.job_name === job);
    assert.equal(first.instance.epoch, 1);
    const good = await r.connect('good', running);
    const row = await waitFor(async () => {
      const x = await store.getInstance(sid, 0);
      return x?.status === 'RUNNING' ? x : undefined;
    }, { timeoutMs: 10_000, message: 'RUNNING on the other cluster' });
    assert.equal(row.cluster_id, good.id);
    assert.equal(row.last_cluster_id, mute.id);
    assert.ok(row.epoch > 1, `epoch ${row.epoch}`);
    const history = await store.instanceHistory(sid, 0);
    assert.ok(history.some((h) => h.status === 'REQUESTED' && /CLUSTER_SCHEDULED/.test(h.status_detail) && /deadline/.test(h.status_detail)), JSON.stringify(history));
    // the silent cluster was told to drop its copy (of the old epoch) and got no second deploy
    await mute.wait('undeploy', (m) => m.job_name === job && m.instance_number === 0 && m.epoch === 1);
    assert.equal(mute.got.filter((m) => m.type === 'deploy').length, 1);
  });

  test('50 concurrent addInstance + desired=stop through the control plane converge to no running copy', { timeout: 90_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store);
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'race', 0);
    const job = jobOf('race');
    const s = await store.getService(sid);
    assert.ok(s);
    const jitter = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 40)));
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const row = await store.addInstance(sid, 'REQUESTED', 'waiting for a cluster');
        r.control.instancesRequested(s, [row]);
        await jitter();
        const stopped = await store.updateInstance(sid, row.instance_number, { desired: 'stop' });
        r.control.instancesUndeployed(s, [stopped]);
      }),
    );
    await waitFor(async () => {
      const rows = await store.listInstances({ service_id: sid });
      return rows.length === 50 && rows.every((x) => x.desired === 'stop' && x.status === 'UNDEPLOYED') ? true : undefined;
    }, { timeoutMs: 20_000, message: 'every instance stopped at the root' });
    // the undeploys reach the cluster (the link may lag behind the store on a loaded machine)
    const copies = (): string[] => [...c1.running.keys()].filter((k) => k.startsWith(`${job}/`));
    await waitFor(() => copies().length === 0, { timeoutMs: 20_000, message: `no copy runs on the cluster (left: ${copies().join(' ')})` });
    await r.control.idle();
    assert.deepEqual(copies(), []);
    assert.equal(c1.got.filter((m) => m.type === 'deploy').length <= 50, true, 'one deploy per instance at most');
    // numbers were never reused
    assert.deepEqual((await store.listInstances({ service_id: sid })).map((x) => x.instance_number), Array.from({ length: 50 }, (_, i) => i));
  });

  test('rows told undeployed and deleted only after the pass ran (an application deleted through a follower) still lose their copies', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store);
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'late', 4);
    const job = jobOf('late');
    await waitFor(async () => (await store.listInstances({ service_id: sid })).filter((x) => x.status === 'RUNNING').length === 4 || undefined, { message: '4 RUNNING' });
    const s = await store.getService(sid);
    assert.ok(s);
    const copies = (): string[] => [...c1.running.keys()].filter((k) => k.startsWith(`${job}/`));
    assert.equal(copies().length, 4);
    // the leader hears of the undeploy (the rows as the follower saw them, still stored, desired=run)
    // and its pass runs before the follower's delete commits
    r.control.instancesUndeployed(s, (await store.listInstances({ service_id: sid })).map((x) => ({ ...x, desired: 'stop' as const })));
    await r.control.idle();
    await store.deleteApplication(s.application_id);
    // nothing asks for a pass now: the periodic resync finds the service gone
    await waitFor(() => copies().length === 0, { timeoutMs: 15_000, message: `no copy runs on the cluster (left: ${copies().join(' ')})` });
  });

  test('a report of an older epoch (a stale copy) gets exactly one undeploy', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store);
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'stale', 1);
    const job = jobOf('stale');
    await waitFor(async () => (await store.getInstance(sid, 0))?.status === 'RUNNING', { message: 'RUNNING' });
    const row = await store.getInstance(sid, 0);
    assert.equal(row?.epoch, 1);
    // make the row's placement newer than the copy that keeps reporting (epoch 1 → the row at 3)
    await store.updateInstance(sid, 0, { epoch: 3 });
    c1.running.set(`${job}/0`, 3);
    const mark = c1.got.length;
    for (let i = 0; i < 5; i++) {
      c1.report(job, 0, 'RUNNING', 1);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    await c1.wait('undeploy', (m) => m.job_name === job && m.instance_number === 0 && m.epoch === 1, mark);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await r.control.idle();
    const undeploys = c1.got.slice(mark).filter((m): m is Msg<'undeploy'> => m.type === 'undeploy' && m.job_name === job);
    assert.deepEqual(undeploys.map((m) => m.epoch), [1], 'one undeploy, of the stale epoch only');
    const now = await store.getInstance(sid, 0);
    assert.equal(now?.status, 'RUNNING');
    assert.equal(now?.desired, 'run');
    assert.equal(now?.epoch, 3);
  });

  test('a short link blip restarts nothing: the reconnected cluster gets its full sync with the same epochs, no new deploy', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store, { graceMs: 20_000 });
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'blip', 2);
    const job = jobOf('blip');
    await waitFor(async () => (await store.listInstances({ service_id: sid, statuses: ['RUNNING'] })).length === 2, { message: 'two RUNNING' });
    await r.control.idle();
    c1.close();
    await waitFor(async () => (await store.getCluster(c1.id))?.status === 'INACTIVE' || undefined, { message: 'c1 away' });
    await r.control.idle();
    // away (not lost): nothing moves
    assert.deepEqual((await store.listInstances({ service_id: sid })).map((x) => [x.status, x.desired, x.epoch]), [['RUNNING', 'run', 1], ['RUNNING', 'run', 1]]);
    const back = await r.connect('c1', running);
    const sync = await back.wait('sync');
    assert.deepEqual(sync.instances.filter((a) => a.job_name === job).map((a) => [a.instance_number, a.epoch]), [[0, 1], [1, 1]]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await r.control.idle();
    assert.equal(back.got.filter((m) => m.type === 'deploy' || m.type === 'undeploy').length, 0, 'no deploy, no undeploy');
    const rows = await store.listInstances({ service_id: sid });
    assert.deepEqual(rows.map((x) => [x.instance_number, x.status, x.epoch, x.cluster_id]), [[0, 'RUNNING', 1, back.id], [1, 'RUNNING', 1, back.id]]);
  });

  test('a cluster lost past lost_after with no other cluster keeps its copy when it comes back (best_score): adopted, not restarted', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store, { graceMs: 1000 });
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'adopt', 1);
    const job = jobOf('adopt');
    await waitFor(async () => (await store.getInstance(sid, 0))?.status === 'RUNNING', { message: 'RUNNING' });
    c1.close();
    // lost: placed again, but there is no other cluster
    await waitFor(async () => {
      const x = await store.getInstance(sid, 0);
      return x?.status === 'REQUESTED' && x.lost_at !== null ? x : undefined;
    }, { timeoutMs: 10_000, message: 'lost and waiting for a cluster' });
    const back = await r.connect('c1', running, new Map([[`${job}/0`, 1]]));
    const sync = await back.wait('sync');
    assert.deepEqual(sync.instances.filter((a) => a.job_name === job).map((a) => [a.instance_number, a.epoch]), [[0, undefined]], 'kept in its desired set, without an epoch');
    const row = await waitFor(async () => {
      const x = await store.getInstance(sid, 0);
      return x?.status === 'RUNNING' && x.cluster_id === back.id && x.lost_at === null && back.running.get(`${job}/0`) === x.epoch ? x : undefined;
    }, { timeoutMs: 10_000, message: 'back on c1, its copy at the row epoch' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await r.control.idle();
    assert.equal(back.running.get(`${job}/0`), (await store.getInstance(sid, 0))?.epoch, `its copy runs on (epoch ${row.epoch})`);
    assert.equal(back.starts.get(`${job}/0`) ?? 0, 0, 'never restarted');
  });

  test('an instance stopped while its cluster is away is stopped when the cluster is back (its sync leaves it out)', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    const r = await startTestRoot(store, { graceMs: 20_000 });
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'away', 1);
    const job = jobOf('away');
    await waitFor(async () => (await store.getInstance(sid, 0))?.status === 'RUNNING', { message: 'RUNNING' });
    c1.close();
    await waitFor(async () => (await store.getCluster(c1.id))?.status === 'INACTIVE' || undefined, { message: 'c1 away' });
    const s = await store.getService(sid);
    assert.ok(s);
    r.control.instancesUndeployed(s, [await store.updateInstance(sid, 0, { desired: 'stop' })]);
    await r.control.idle();
    // its cluster is away (not lost): the row waits, desired=stop, still RUNNING
    assert.deepEqual(((x) => [x?.desired, x?.status])(await store.getInstance(sid, 0)), ['stop', 'RUNNING']);
    const back = await r.connect('c1', running, new Map([[`${job}/0`, 1]]));
    const sync = await back.wait('sync');
    assert.equal(sync.instances.filter((a) => a.job_name === job).length, 0, 'left out of the sync');
    await waitFor(async () => (await store.getInstance(sid, 0))?.status === 'UNDEPLOYED', { message: 'stopped at the root' });
    assert.equal(back.running.has(`${job}/0`), false);
  });

  test('other roots ask for passes on oak_reconcile; hostile payloads are ignored', { timeout: 60_000 }, async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    cleanups.push(() => store.close());
    // no resync to speak of: only the notification can start the pass
    const r = await startTestRoot(store, { retryMs: 600_000 });
    cleanups.push(() => r.close());
    const c1 = await r.connect('c1', running);
    const sid = await deploy(r, 'notify', 1);
    const job = jobOf('notify');
    await waitFor(async () => (await store.getInstance(sid, 0))?.status === 'RUNNING', { message: 'RUNNING' });
    await r.control.idle();
    for (const p of ['', 'x'.repeat(5000), "'; DROP TABLE services; --", '../../etc', '*']) await store.notify('oak_reconcile', p);
    // a follower's API stopped the instance (its row written in the shared store) and told us so
    await store.updateInstance(sid, 0, { desired: 'stop' });
    await store.notify('oak_reconcile', sid);
    await c1.wait('undeploy', (m) => m.job_name === job && m.instance_number === 0 && m.epoch === 1);
    await waitFor(async () => (await store.getInstance(sid, 0))?.status === 'UNDEPLOYED', { message: 'stopped at the root' });
  });

});

test('oak-root reconciler settings: flags and env, refused when out of range or not numbers', () => {
  const ok = configFromArgs(['--lost-after', '5', '--scheduled-deadline', '2.5', '--resync', '1000'], { OAK_CREATING_DEADLINE_S: '120' });
  assert.ok(ok !== 'help' && typeof ok.control === 'function');
  for (const [flag, v] of [['--lost-after', '0'], ['--lost-after', 'abc'], ['--scheduled-deadline', '1e9'], ['--resync', '5'], ['--creating-deadline=-1', ''], ['--node-scheduled-deadline', '9'.repeat(40)]] as const) {
    assert.throws(() => configFromArgs(v === '' ? [flag] : [flag, v], {}), /must be a number/, `${flag} ${v}`);
  }
  assert.throws(() => configFromArgs([], { OAK_LOST_AFTER_S: 'x' }), /--lost-after must be a number/);
});
