/**
 * The overlay messages of the root's link end (issue 8), with a real root (API, link, control
 * plane) and two fake clusters speaking the link protocol by hand: worker subnets (idempotent,
 * owned by the cluster that asked first, released by node removal), `overlay` in every deploy,
 * instance net info checked and stored, tables across clusters by job name or virtual address,
 * table_update pushes, interest removal and limits, peers of the other clusters, hostile input.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ClusterDoc, ClusterResources, InstanceNet, RootToCluster, ServiceDoc, ServiceTable, TokenPair } from '@oak/contracts';
import { createStore } from '@oak/store';
import type { Store } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { linkControl } from '../src/link/index.ts';
import type { LinkControlPlane } from '../src/link/index.ts';
import { startRoot } from '../src/server.ts';
import type { RootHandle } from '../src/server.ts';
import { clusterJoinToken, rawLinkCall } from './join.ts';

const ADMIN_PASSWORD = 'admin-secret-1';

type Msg<T extends RootToCluster['type']> = Extract<RootToCluster, { type: T }>;

interface FakeCluster {
  id: string;
  got: RootToCluster[];
  send(m: unknown): void;
  /** the first message of `type` at or after `from` matching `pred` */
  wait<T extends RootToCluster['type']>(type: T, pred?: (m: Msg<T>) => boolean, from?: number): Promise<Msg<T>>;
  close(): void;
}

function resources(workers: { id: string; net?: Record<string, unknown> }[], cpu = 8): ClusterResources {
  return {
    cpu_cores_free: cpu,
    cpu_cores_total: cpu,
    memory_free_mb: cpu * 1024,
    memory_total_mb: cpu * 1024,
    gpus_free: 0,
    virtualizations: ['container'],
    workers: workers.length,
    worker_summary: workers.map((w) => ({ id: w.id, name: w.id, cpu_cores_free: cpu / Math.max(1, workers.length), memory_free_mb: 1024, virtualizations: ['container' as const], ...(w.net ? { net: w.net as never } : {}) })),
  };
}

function sla(app: string, replicas: number): unknown {
  return {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: app,
        application_namespace: 'test',
        application_desc: '',
        microservices: [{ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', memory: 100, vcpus: 1, replicas }],
      },
    ],
  };
}

describe('overlay messages on the root link', () => {
  let store: Store;
  let root: RootHandle;
  let control: LinkControlPlane;
  let token: string;
  let c1: FakeCluster;
  let c2: FakeCluster;
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

  const connect = async (name: string): Promise<FakeCluster> => {
    const { client, call } = await rawLinkCall(root.ctx, control.link.address, { ownConnection: true });
    const got: RootToCluster[] = [];
    call.on('data', (m: RootToCluster) => {
      if (m.type === 'ping') call.write({ type: 'pong', t: m.t });
      else got.push(m);
    });
    call.on('error', () => undefined);
    call.write({ type: 'hello', token: await clusterJoinToken(root.ctx, name), cluster_name: name, cluster_location: null, version: 'test' });
    const welcome = await waitFor(() => got.find((m): m is Msg<'welcome'> => m.type === 'welcome'), { message: `${name} welcomed` });
    const fake: FakeCluster = {
      id: welcome.cluster_id,
      got,
      send: (m) => call.write(m),
      wait: <T extends RootToCluster['type']>(type: T, pred: (m: Msg<T>) => boolean = () => true, from = 0) =>
        waitFor(() => got.slice(from).find((m): m is Msg<T> => m.type === type && pred(m as Msg<T>)), { message: `${name}: ${type}` }),
      close: () => {
        call.cancel();
        client.close();
      },
    };
    fakes.push(fake);
    return fake;
  };

  let rid = 0;
  const requestId = (): string => `r${++rid}`;
  const subnet = async (c: FakeCluster, worker: string): Promise<Msg<'subnet_result'>> => {
    const id = requestId();
    c.send({ type: 'subnet_request', request_id: id, worker_id: worker });
    return c.wait('subnet_result', (m) => m.request_id === id);
  };
  const query = async (c: FakeCluster, q: { job_name?: string; ip?: string }): Promise<Msg<'table_result'>> => {
    const id = requestId();
    c.send({ type: 'table_query', request_id: id, ...q });
    return c.wait('table_result', (m) => m.request_id === id);
  };
  const service = async (sid: string): Promise<ServiceDoc> => (await api<ServiceDoc>('GET', `/api/service/${sid}`)).body;

  before(async () => {
    store = await createStore({ sqlitePath: ':memory:' });
    root = await startRoot({
      host: '127.0.0.1',
      port: 0,
      store,
      adminPassword: ADMIN_PASSWORD,
      logLevel: 'silent',
      announce: () => {},
      control: linkControl({ host: '127.0.0.1', port: 0, retryMs: 300, pingIntervalMs: 200, pingTimeoutMs: 5000, netLimits: { rate: 20, burst: 60, maxInterest: 3 } }),
    });
    control = root.ctx.control as LinkControlPlane;
    const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN_PASSWORD }) });
    token = ((await login.json()) as TokenPair).token;
    c1 = await connect('c1');
    c2 = await connect('c2');
  });
  after(async () => {
    for (const f of fakes) f.close();
    await root.close();
    await store.close();
  });

  let s1 = '';
  let s1v6: string | null = null;
  const net1 = (nsip: string, nsip_v6?: string): InstanceNet => ({ nsip, ...(nsip_v6 ? { nsip_v6 } : {}), host_ip: '127.0.0.11', host_port: 50103, subnet: s1, subnet_v6: s1v6 });

  test('every cluster gets peers after its welcome', async () => {
    const p1 = await c1.wait('peers');
    const p2 = await c2.wait('peers');
    assert.deepEqual([p1.peers, p2.peers], [[], []]);
  });

  test('subnet_request: a subnet per worker, the same again, refused for a worker of another cluster and for bad ids', async () => {
    const a = await subnet(c1, 'w1');
    assert.equal(a.error, undefined);
    assert.match(a.subnet ?? '', /^10\.18\.\d+\.\d+\/26$/);
    assert.match(a.subnet_v6 ?? '', /^fdff:18:[0-9a-f:]*\/64$/);
    s1 = a.subnet!;
    s1v6 = a.subnet_v6 ?? null;
    const again = await subnet(c1, 'w1');
    assert.deepEqual([again.subnet, again.subnet_v6], [a.subnet, a.subnet_v6], 'idempotent');
    const b = await subnet(c1, 'w2');
    assert.notEqual(b.subnet, a.subnet);
    const stolen = await subnet(c2, 'w1');
    assert.equal(stolen.subnet, undefined);
    assert.match(stolen.error ?? '', /another cluster/);
    for (const bad of ['a/b', 'a+b', 'x#', 'sp ace', 'ctl\u0001']) {
      const r = await subnet(c2, bad);
      assert.equal(r.subnet, undefined, bad);
      assert.match(r.error ?? '', /worker_id/);
    }
    // malformed messages are dropped; the link stays up and answers the next one
    c2.send({ type: 'subnet_request', request_id: 'bad id!', worker_id: 'x' });
    c2.send({ type: 'subnet_request', request_id: 'r-x', worker_id: 'y'.repeat(201) });
    c2.send({ type: 'table_query', request_id: 'q'.repeat(200) });
    c2.send({ type: 'interest_remove' });
    const ok = await subnet(c2, 'v1');
    assert.match(ok.subnet ?? '', /\/26$/);
    assert.equal(c2.got.some((m) => m.type === 'subnet_result' && (m.request_id === 'bad id!' || m.request_id === 'r-x')), false);
  });

  test('peers: a cluster sees the other clusters\' workers the root vouches for, never its own or forged ones', async () => {
    const mark2 = c2.got.length;
    const mark1 = c1.got.length;
    c1.send({ type: 'aggregate', resources: resources([{ id: 'w1', net: { subnet: s1, subnet_v6: s1v6, host_ip: '127.0.0.11', host_port: 50103, rtt: [{ worker_id: 'v1', rtt_ms: 1.2 }] } }]) });
    const p = await c2.wait('peers', (m) => m.peers.length > 0, mark2);
    assert.deepEqual(p.peers, [{ worker_id: 'w1', cluster_id: c1.id, subnet: s1, subnet_v6: s1v6, host_ip: '127.0.0.11', host_port: 50103 }]);
    // c2 claims c1's worker and subnet, and one of its own workers with a made-up subnet: none of it reaches c1
    c2.send({
      type: 'aggregate',
      resources: resources([
        { id: 'w1', net: { subnet: s1, host_ip: '127.0.0.12', host_port: 50103 } },
        { id: 'v1', net: { subnet: '10.18.200.0/26', host_ip: '127.0.0.13', host_port: 50103 } },
        { id: 'v2', net: { subnet: s1, host_ip: 'not-an-ip', host_port: 50103 } },
      ], 0),
    });
    await waitFor(async () => (await api<ClusterDoc[]>('GET', '/api/clusters/')).body.find((c) => c.cluster_name === 'c2')?.resources?.workers === 3, { message: 'c2 aggregate stored' });
    await control.idle();
    assert.equal(c1.got.slice(mark1).some((m) => m.type === 'peers' && m.peers.length > 0), false);
    // the node listing shows each worker's net (subnet, host, rtt)
    const listed = (await api<ClusterDoc[]>('GET', '/api/clusters/')).body.find((c) => c.cluster_name === 'c1');
    assert.deepEqual(listed?.resources?.worker_summary[0]?.net?.subnet, s1);
    assert.deepEqual(listed?.resources?.worker_summary[0]?.net?.rtt, [{ worker_id: 'v1', rtt_ms: 1.2 }]);
  });

  let sid = '';
  let doc: ServiceDoc;
  const JOB = 'net.test.web.test';

  test('every deploy carries the overlay addresses the API shows', async () => {
    const mark = c1.got.length;
    const r = await api<ApplicationDoc[]>('POST', '/api/application/?deploy=true', sla('net', 2));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    sid = r.body[0]!.microservices[0]!;
    const d0 = await c1.wait('deploy', (m) => m.instance.job_name === JOB && m.instance.instance_number === 0, mark);
    const d1 = await c1.wait('deploy', (m) => m.instance.job_name === JOB && m.instance.instance_number === 1, mark);
    doc = await service(sid);
    for (const [d, i] of [[d0, 0], [d1, 1]] as const) {
      assert.deepEqual(d.instance.overlay, {
        service_ip: doc.service_ip,
        service_ip_v6: doc.service_ip_v6,
        closest_ip: doc.closest_ip,
        closest_ip_v6: doc.closest_ip_v6,
        instance_ip: doc.instance_list[i]?.instance_ip,
        instance_ip_v6: doc.instance_list[i]?.instance_ip_v6,
      });
    }
    assert.equal(c2.got.some((m) => m.type === 'deploy'), false, 'c2 has no capacity');
  });

  test('instance_status.net is stored when it lies in the worker\'s subnet, refused when not', async () => {
    const base = s1.split('/')[0]!.split('.').map(Number);
    const inSubnet = `${base[0]}.${base[1]}.${base[2]}.${base[3]! + 2}`;
    c1.send({ type: 'instance_status', job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '', worker_id: 'w1', net: net1(inSubnet) });
    // outside the subnet / not the worker's subnet / worker of another cluster: dropped, the status is kept
    c1.send({ type: 'instance_status', job_name: JOB, instance_number: 1, status: 'RUNNING', status_detail: '', worker_id: 'w1', net: net1('10.18.250.2') });
    const d = await waitFor(async () => {
      const s = await service(sid);
      return s.instance_list.every((i) => i.status === 'RUNNING') ? s : undefined;
    }, { message: 'both RUNNING' });
    assert.equal(d.instance_list[0]?.nsip, inSubnet);
    assert.equal(d.instance_list[1]?.nsip, null);
    c1.send({ type: 'instance_status', job_name: JOB, instance_number: 1, status: 'RUNNING', status_detail: '', worker_id: 'v1', net: { ...net1(inSubnet), subnet: '10.18.200.0/26', nsip: '10.18.200.5' } });
    c1.send({ type: 'instance_status', job_name: JOB, instance_number: 1, status: 'RUNNING', status_detail: '', worker_id: 'w1', net: { ...net1(inSubnet), host_port: 0 } });
    await waitFor(async () => (await service(sid)).instance_list[1]?.worker_id === 'v1' || undefined, { message: 'status applied' });
    await control.idle();
    assert.equal((await service(sid)).instance_list[1]?.nsip, null);
  });

  test('table_query across clusters by job name, service, closest or instance address; errors for unknown ones', async () => {
    const byJob = await query(c2, { job_name: JOB });
    const t = byJob.table as ServiceTable;
    assert.equal(t.job_name, JOB);
    assert.equal(t.service_ip, doc.service_ip);
    assert.equal(t.closest_ip_v6, doc.closest_ip_v6);
    assert.equal(t.instances.length, 1, 'only RUNNING instances with net info');
    assert.deepEqual({ ...t.instances[0], nsip: '' }, {
      instance_number: 0, instance_ip: doc.instance_list[0]?.instance_ip, instance_ip_v6: doc.instance_list[0]?.instance_ip_v6, nsip: '', nsip_v6: null,
      worker_id: 'w1', cluster_id: c1.id, host_ip: '127.0.0.11', host_port: 50103, subnet: s1, subnet_v6: s1v6,
    });
    for (const ip of [doc.service_ip, doc.service_ip_v6, doc.closest_ip, doc.instance_list[1]?.instance_ip, doc.instance_list[0]?.instance_ip_v6]) {
      const r = await query(c2, { ip: ip ?? '' });
      assert.equal(r.table?.job_name, JOB, String(ip));
    }
    for (const q of [{ ip: '10.30.250.250' }, { ip: 'garbage' }, { ip: s1.split('/')[0]! }, {}, { job_name: 'no.such.job.here' }]) {
      const r = await query(c2, q);
      assert.equal(r.table, undefined, JSON.stringify(q));
      assert.ok((r.error ?? '').length > 0);
    }
  });

  test('table_update reaches the interested cluster when an instance of the job changes; interest_remove stops it', async () => {
    const base = s1.split('/')[0]!.split('.').map(Number);
    const second = `${base[0]}.${base[1]}.${base[2]}.${base[3]! + 3}`;
    let mark = c2.got.length;
    c1.send({ type: 'instance_status', job_name: JOB, instance_number: 1, status: 'RUNNING', status_detail: '', worker_id: 'w1', net: net1(second) });
    const u1 = await c2.wait('table_update', (m) => m.table.job_name === JOB && m.table.instances.length === 2, mark);
    assert.deepEqual(u1.table.instances.map((i) => i.instance_number), [0, 1]);
    mark = c2.got.length;
    c1.send({ type: 'instance_status', job_name: JOB, instance_number: 0, status: 'FAILED', status_detail: 'crashed', worker_id: 'w1', net: null });
    const u2 = await c2.wait('table_update', (m) => m.table.job_name === JOB && m.table.instances.length === 1, mark);
    assert.equal(u2.table.instances[0]?.instance_number, 1);
    assert.equal(c1.got.some((m) => m.type === 'table_update'), false, 'c1 never asked');
    assert.equal((await service(sid)).instance_list[0]?.nsip, null, 'net null clears');

    // undeploying through the API: the instance leaves the table
    mark = c2.got.length;
    assert.equal((await api('DELETE', `/api/service/${sid}/instance/1`)).status, 200);
    await c2.wait('table_update', (m) => m.table.job_name === JOB && m.table.instances.length === 0, mark);

    // interest removed: a change of the job sends nothing; another job's change still arrives
    const other = await api<ApplicationDoc[]>('POST', '/api/application/', sla('other', 1));
    const otherSid = other.body[0]!.microservices[0]!;
    c2.send({ type: 'interest_remove', job_name: JOB });
    // the answer to a later message of the same stream: the root has taken the removal by then
    // (control.idle() alone does not wait for a message still on its way over the link)
    assert.ok((await query(c2, { job_name: 'other.test.web.test' })).table);
    await control.idle();
    mark = c2.got.length;
    assert.equal((await api('POST', `/api/service/${sid}/instance`)).status, 200);
    await waitFor(async () => (await service(sid)).instance_list.some((i) => i.status === 'CLUSTER_SCHEDULED') || undefined, { message: 'new instance placed' });
    assert.equal((await api('POST', `/api/service/${otherSid}/instance`)).status, 200);
    await c2.wait('table_update', (m) => m.table.job_name === 'other.test.web.test', mark);
    assert.equal(c2.got.slice(mark).some((m) => m.type === 'table_update' && m.table.job_name === JOB), false);
  });

  test('interest is bounded per link; the rate of requests too', async () => {
    for (const a of ['lim1', 'lim2']) assert.equal((await api('POST', '/api/application/', sla(a, 1))).status, 200);
    assert.ok((await query(c2, { job_name: 'lim1.test.web.test' })).table); // 2 of 3
    assert.ok((await query(c2, { job_name: 'lim1.test.web.test' })).table, 'asking again costs nothing');
    c2.send({ type: 'interest_remove', job_name: 'no.such.job.at.all' });
    assert.ok((await query(c2, { job_name: JOB })).table); // 3 of 3
    const over = await query(c2, { job_name: 'lim2.test.web.test' });
    assert.equal(over.table, undefined);
    assert.match(over.error ?? '', /at most 3/);
    // a burst over the rate: the excess is answered with an error, never dropped silently
    const ids = Array.from({ length: 120 }, () => requestId());
    for (const id of ids) c1.send({ type: 'subnet_request', request_id: id, worker_id: 'w1' });
    const answers = await waitFor(() => {
      const got = c1.got.filter((m): m is Msg<'subnet_result'> => m.type === 'subnet_result' && ids.includes(m.request_id));
      return got.length === ids.length ? got : undefined;
    }, { message: 'every request answered' });
    assert.ok(answers.some((a) => /too many/.test(a.error ?? '')), 'some refused');
    assert.ok(answers.some((a) => a.subnet === s1), 'some served');
  });

  test('node removal releases the worker\'s subnet: another cluster may take the id, the block is reused', async () => {
    // c1 may have been rate limited just now: wait for its bucket
    const w2 = await waitFor(async () => {
      const r = await subnet(c1, 'w2');
      return r.subnet;
    }, { message: 'w2 subnet', timeoutMs: 10_000, intervalMs: 300 });
    assert.equal((await api('DELETE', `/api/cluster/c1/node/w2`)).status, 200);
    // the root removes it from c1 (revoke_workers) and frees the block
    await c1.wait('revoke_workers', (m) => m.worker_ids?.includes('w2') === true);
    const r = await waitFor(async () => {
      const a = await subnet(c2, 'w2');
      return a.subnet;
    }, { message: 'w2 for c2', timeoutMs: 10_000, intervalMs: 300 });
    assert.equal(r, w2, 'the lowest free block again');
  });

  test('interest belongs to the live link: a reconnected cluster gets no table_update until it asks again', async () => {
    c2.close();
    await waitFor(async () => (await api<ClusterDoc[]>('GET', '/api/clusters/')).body.find((c) => c.cluster_name === 'c2')?.status === 'INACTIVE' || undefined, { message: 'c2 gone' });
    const again = await connect('c2');
    await again.wait('peers');
    const mark = again.got.length;
    // another job's change that it asks about after the first: only that one arrives
    assert.equal((await api('POST', `/api/service/${sid}/instance`)).status, 200);
    const ok = await query(again, { job_name: 'lim1.test.web.test' });
    assert.ok(ok.table);
    const lim = (await api<ServiceDoc[]>('GET', '/api/services/' + (await api<ApplicationDoc[]>('GET', '/api/applications/')).body.find((a) => a.application_name === 'lim1')?.applicationID)).body[0]!;
    assert.equal((await api('POST', `/api/service/${lim.microserviceID}/instance`)).status, 200);
    await again.wait('table_update', (m) => m.table.job_name === 'lim1.test.web.test', mark);
    assert.equal(again.got.slice(mark).some((m) => m.type === 'table_update' && m.table.job_name === JOB), false);
  });
});

describe('a data dir from before the overlay', () => {
  test('at start, the link control plane gives stored services and instances their addresses', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const org = await store.createOrganization('old-org');
    const user = await store.createUser({ name: 'old-user', password_hash: 'h', roles: ['Admin'], organization_id: org.id });
    const { services } = await store.createApplication({ name: 'old', namespace: 'test', description: '', user_id: user.id, organization_id: org.id }, [
      { job_name: 'old.test.web.test', name: 'web', namespace: 'test', sla: { microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'x', memory: 10, vcpus: 1 } },
    ]);
    const sid = services[0]!.id;
    await store.addInstance(sid, 'RUNNING');
    assert.equal((await store.getService(sid))?.service_ip, null);
    const root = await startRoot({
      host: '127.0.0.1', port: 0, store, adminPassword: ADMIN_PASSWORD, logLevel: 'silent', announce: () => {},
      control: linkControl({ host: '127.0.0.1', port: 0, pingIntervalMs: 200 }),
    });
    try {
      await (root.ctx.control as LinkControlPlane).idle();
      const s = await store.getService(sid);
      assert.match(s?.service_ip ?? '', /^10\.30\./);
      assert.match(s?.closest_ip_v6 ?? '', /^fdff::/);
      assert.match((await store.getInstance(sid, 0))?.instance_ip ?? '', /^10\.30\./);
    } finally {
      await root.close();
      await store.close();
    }
  });
});
