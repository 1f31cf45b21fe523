/**
 * The cluster's overlay side end to end: the real cluster with its embedded broker (TLS, worker
 * identities), a fake root answering subnet and table queries on the link, fake workers, and fake
 * NetManagers (MQTT clients `<id>-net` with their worker's credentials).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connectBus, consoleLogger, silentLogger } from '@oak/bus';
import type { Bus } from '@oak/bus';
import { netTopics } from '@oak/contracts';
import type { ClusterToRoot, InstanceAddresses, PeerList, ServiceTable, SubnetResult, TableQueryResult } from '@oak/contracts';
import { freePort, waitFor } from '@oak/testkit';
import { startCluster } from '../src/index.ts';
import type { ClusterHandle } from '../src/index.ts';
import { assignment } from './fixtures.ts';
import { join, joinConfig, startFakeRoot, startFakeWorker } from './harness.ts';
import type { FakeRoot, FakeWorker } from './harness.ts';

const INTERVAL = 200;
const JOB = 'app.ns.web.ns';

interface FakeNetManager {
  bus: Bus;
  id: string;
  got: { topic: string; body: unknown; at: number }[];
  last<T>(topic: string): T | undefined;
  close(): Promise<void>;
}

async function startFakeNetManager(cluster: ClusterHandle, w: FakeWorker): Promise<FakeNetManager> {
  const bus = await connectBus(cluster.mqttUrl, {
    clientId: `${w.id}-net`,
    username: w.answer.mqtt_username ?? w.id,
    password: w.answer.mqtt_password ?? '',
    tls: join.clientTls(),
    reconnectPeriodMs: 60_000,
  });
  const got: FakeNetManager['got'] = [];
  const onMsg = (topic: string, p: Buffer): void => {
    got.push({ topic, body: JSON.parse(p.toString()) as unknown, at: Date.now() });
  };
  await bus.subscribe(`nodes/${w.id}/net/#`, onMsg);
  await bus.subscribe(netTopics.peers, onMsg);
  return {
    bus,
    id: w.id,
    got,
    last: <T>(topic: string) => got.filter((g) => g.topic === topic).at(-1)?.body as T | undefined,
    close: () => bus.close(),
  };
}

const overlay = (n: number): InstanceAddresses => ({ service_ip: '10.30.0.10', service_ip_v6: 'fdff::a', closest_ip: '10.30.0.11', instance_ip: `10.30.1.${n}`, instance_ip_v6: `fdff::1:${n}` });

describe('cluster: overlay network (embedded broker, fake root, workers and NetManagers)', () => {
  let root: FakeRoot;
  let cluster: ClusterHandle;
  const workers: FakeWorker[] = [];
  const nms: FakeNetManager[] = [];
  const subnets = new Map<string, { subnet: string; subnet_v6: string | null }>();
  /** the remote table the root knows for JOB (other clusters) */
  const remote: ServiceTable = {
    job_name: JOB,
    service_ip: '10.30.0.10',
    instances: [{ instance_number: 7, instance_ip: '10.30.1.7', nsip: '10.18.3.2', worker_id: 'far', cluster_id: 'c2', host_ip: '198.51.100.7', host_port: 50103, subnet: '10.18.3.0/26' }],
  };
  let subnetRequests = 0;
  before(async () => {
    root = await startFakeRoot();
    root.onMessage((m: ClusterToRoot) => {
      if (m.type === 'subnet_request') {
        subnetRequests++;
        const s = subnets.get(m.worker_id) ?? { subnet: `10.18.0.${64 * (subnets.size + 1)}/26`, subnet_v6: `fdff:18:0:${subnets.size + 1}::/64` };
        subnets.set(m.worker_id, s);
        root.send({ type: 'subnet_result', request_id: m.request_id, ...s });
      } else if (m.type === 'table_query') {
        if (m.job_name === JOB) root.send({ type: 'table_result', request_id: m.request_id, table: remote });
        else root.send({ type: 'table_result', request_id: m.request_id, error: 'no such service' });
      }
    });
    cluster = await startCluster({
      name: 'c1', host: '127.0.0.1', port: 0, mqttPort: 0, reportIntervalMs: INTERVAL, aggregateIntervalMs: 300, log: process.env.H5_DEBUG !== undefined ? consoleLogger("c") : silentLogger,
      root: { address: root.address, token: root.token },
      ...joinConfig(),
    });
    await waitFor(() => cluster.rootConnected, { message: 'link welcome' });
    root.send({ type: 'sync', instances: [] });
    workers.push(await startFakeWorker(cluster.registrationUrl, 'n1'), await startFakeWorker(cluster.registrationUrl, 'n2'));
    for (const w of workers) nms.push(await startFakeNetManager(cluster, w));
    await waitFor(() => root.lastAggregate()?.workers === 2, { message: '2 workers' });
  });
  after(async () => {
    for (const n of nms) await n.close();
    for (const w of workers) await w.close();
    await cluster.close();
    await root.close();
  });

  test('a NetManager (<id>-net) and its NodeEngine are connected at once; it gets its subnet from the root', async () => {
    for (const [i, nm] of nms.entries()) {
      await nm.bus.publishJson(netTopics.subnet(nm.id), { method: 'get', host_ip: `127.0.0.${i + 2}`, host_port: 50103 });
    }
    for (const nm of nms) await waitFor(() => nm.last<SubnetResult>(netTopics.subnetResult(nm.id))?.subnet !== undefined, { message: `subnet of ${nm.id}` });
    const [a, b] = nms as [FakeNetManager, FakeNetManager];
    assert.deepEqual(a.last(netTopics.subnetResult(a.id)), subnets.get(a.id));
    assert.notEqual(a.last<SubnetResult>(netTopics.subnetResult(a.id))?.subnet, b.last<SubnetResult>(netTopics.subnetResult(b.id))?.subnet);
    assert.ok(workers.every((w) => w.bus.connected), 'the NodeEngines stay connected');
    // asked again (NetManager restart): the same answer, from the cluster's cache
    const n = subnetRequests;
    await a.bus.publishJson(netTopics.subnet(a.id), { host_ip: '127.0.0.2', host_port: 50103 });
    await waitFor(() => a.got.filter((g) => g.topic === netTopics.subnetResult(a.id)).length === 2, { message: 'second answer' });
    assert.equal(subnetRequests, n);
    // the peers: both workers, retained (a late subscriber gets them)
    await waitFor(() => (a.last<PeerList>(netTopics.peers)?.peers.length ?? 0) === 2, { message: 'net/peers with both workers' });
    // a late subscriber (here the NodeEngine's own connection, the same identity) gets them retained
    const late: PeerList[] = [];
    const unsub = await (workers[1] as FakeWorker).bus.subscribe(netTopics.peers, (_t, p) => { late.push(JSON.parse(p.toString()) as PeerList); });
    try {
      await waitFor(() => late.at(-1)?.peers.length === 2, { message: 'retained peers' });
      assert.deepEqual(late.at(-1)?.peers.map((p) => [p.worker_id, p.host_ip]).sort(), [[a.id, '127.0.0.2'], [b.id, '127.0.0.3']].sort());
    } finally {
      await unsub();
    }
    await waitFor(() => root.lastAggregate()?.worker_summary.every((s) => s.net?.subnet === subnets.get(s.id)?.subnet) === true, { message: 'worker_summary.net in the aggregate' });
  });

  test('instances reported, queried, and every change pushed within 1 s; hostile reports change nothing', async () => {
    const nmOf = (id: string): FakeNetManager => nms.find((n) => n.id === id) as FakeNetManager;
    const deployOn = async (n: number): Promise<FakeNetManager> => {
      root.send({ type: 'deploy', instance: { ...assignment(JOB, n), overlay: overlay(n) } });
      await waitFor(() => root.statuses(JOB, n).some((s) => s.status === 'RUNNING'), { message: `instance ${n} RUNNING` });
      const wid = root.statuses(JOB, n).at(-1)?.worker_id ?? '';
      return nmOf(wid);
    };
    const report = async (nm: FakeNetManager, n: number, host = 10 + n): Promise<void> => {
      const s = subnets.get(nm.id);
      assert.ok(s);
      const base = s.subnet.split('/')[0]?.split('.').map(Number) ?? [];
      const nsip = `${base[0]}.${base[1]}.${base[2]}.${(base[3] ?? 0) + host}`;
      await nm.bus.publishJson(netTopics.serviceDeployed(nm.id), {
        job_name: JOB, instance_number: n, nsip, nsip_v6: `${s.subnet_v6?.replace('::/64', '')}::${host.toString(16)}`,
        host_ip: nm === nms[0] ? '127.0.0.2' : '127.0.0.3', host_port: 50103, subnet: s.subnet, subnet_v6: s.subnet_v6,
      });
    };
    const home0 = await deployOn(0);
    assert.deepEqual(workers.find((w) => w.id === home0.id)?.deploys.find((d) => d.job_name === JOB && d.instance_number === 0)?.overlay, overlay(0), 'the deploy command carries the overlay addresses');
    await report(home0, 0);
    await waitFor(() => root.statuses(JOB, 0).some((s) => s.net?.nsip !== undefined), { message: 'instance_status.net at the root' });
    assert.equal(root.statuses(JOB, 0).find((s) => s.net)?.net?.subnet, subnets.get(home0.id)?.subnet);

    // a NetManager asks for the table (it follows the job from now on)
    const asker = nms.find((n) => n !== home0) as FakeNetManager;
    const updates: { table: ServiceTable; at: number }[] = [];
    await asker.bus.subscribe(netTopics.jobUpdates(JOB), (_t, p) => { updates.push({ table: JSON.parse(p.toString()) as ServiceTable, at: Date.now() }); });
    await asker.bus.publishJson(netTopics.tableQueryRequest(asker.id), { request_id: 'q1', job_name: JOB });
    await waitFor(() => asker.last<TableQueryResult>(netTopics.tableQueryResult(asker.id))?.request_id === 'q1', { message: 'table query answered' });
    const first = asker.last<TableQueryResult>(netTopics.tableQueryResult(asker.id))?.table;
    assert.equal(first?.service_ip, '10.30.0.10');
    assert.deepEqual(first?.instances.map((e) => [e.instance_number, e.worker_id, e.instance_ip]), [[0, home0.id, '10.30.1.0'], [7, 'far', '10.30.1.7']]);
    assert.ok(root.received.some((m) => m.type === 'table_query' && m.job_name === JOB), 'the root was asked');

    // a second instance appears: pushed within 1 s of its report
    const home1 = await deployOn(1);
    const t1 = Date.now();
    await report(home1, 1);
    await waitFor(() => updates.some((u) => u.table.instances.some((e) => e.instance_number === 1)), { timeoutMs: 1000, message: 'update with instance 1 within 1 s' });
    const u1 = updates.find((u) => u.table.instances.some((e) => e.instance_number === 1));
    assert.ok(u1 && u1.at - t1 < 1000);
    assert.deepEqual(u1.table.instances.map((e) => e.instance_number), [0, 1, 7]);

    // it fails: out of the table within 1 s
    const w1 = workers.find((w) => w.id === home1.id) as FakeWorker;
    const t2 = Date.now();
    const seen = updates.length;
    await w1.publishStatus(JOB, 1, 'FAILED', 'exit 1');
    await waitFor(() => updates.slice(seen).some((u) => !u.table.instances.some((e) => e.instance_number === 1)), { timeoutMs: 1000, message: 'update without instance 1 within 1 s' });
    assert.ok((updates.at(-1)?.at ?? Infinity) - t2 < 1000);

    // hostile: a NetManager describing an instance of another worker, or claiming its subnet: nothing changes
    const other = nms.find((n) => n !== home0) as FakeNetManager;
    const s0 = subnets.get(home0.id);
    const sOther = subnets.get(other.id);
    assert.ok(s0 && sOther);
    const before = updates.length;
    const statusesBefore = root.statuses(JOB, 0).length;
    await other.bus.publishJson(netTopics.serviceDeployed(other.id), { job_name: JOB, instance_number: 0, nsip: `${sOther.subnet.split('.').slice(0, 3).join('.')}.${Number(sOther.subnet.split('.')[3]?.split('/')[0]) + 20}`, host_ip: '127.0.0.3', host_port: 50103, subnet: sOther.subnet });
    await other.bus.publishJson(netTopics.serviceDeployed(other.id), { job_name: 'evil.ns.x.ns', instance_number: 0, nsip: '10.18.0.70', host_ip: '127.0.0.3', host_port: 50103, subnet: s0.subnet });
    await other.bus.publishJson(netTopics.serviceUndeployed(other.id), { job_name: JOB, instance_number: 0 });
    await other.bus.publish(netTopics.tableQueryRequest(other.id), 'not json');
    await other.bus.publishJson(netTopics.tableQueryRequest(other.id), { request_id: 'bad', job_name: 'x'.repeat(300) });
    await waitFor(() => other.last<TableQueryResult>(netTopics.tableQueryResult(other.id))?.request_id === 'bad', { message: 'an invalid query is answered with an error' });
    assert.match(String(other.last<TableQueryResult>(netTopics.tableQueryResult(other.id))?.error), /invalid table query/);
    // over 64 KiB: not read, not answered
    await other.bus.publishJson(netTopics.tableQueryRequest(other.id), { request_id: 'big', job_name: JOB, pad: 'x'.repeat(70 * 1024) });
    await other.bus.publishJson(netTopics.tableQueryRequest(other.id), { request_id: 'after-big', job_name: 'nobody.ns.x.ns' });
    await waitFor(() => other.last<TableQueryResult>(netTopics.tableQueryResult(other.id))?.request_id === 'after-big', { message: 'the next query is answered' });
    assert.ok(!other.got.some((g) => g.topic === netTopics.tableQueryResult(other.id) && (g.body as { request_id?: string }).request_id === 'big'), 'the oversized query got no answer');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(updates.length, before, 'no table change');
    assert.equal(root.statuses(JOB, 0).length, statusesBefore, 'nothing forged reached the root');
    assert.equal(cluster.net.netOf(JOB, 0)?.subnet, s0.subnet);

    // interest removed by the last one: the root is told
    await asker.bus.publishJson(netTopics.interestRemove(asker.id), { job_name: JOB });
    await waitFor(() => root.received.some((m) => m.type === 'interest_remove' && m.job_name === JOB), { message: 'interest_remove to the root' });

    // a NetManager publishing a table itself is cut off; its NodeEngine stays
    void other.bus.publishJson(netTopics.jobUpdates(JOB), { job_name: JOB, service_ip: null, instances: [] }, 0).catch(() => undefined);
    await waitFor(() => !other.bus.connected, { timeoutMs: 3000, message: 'forger disconnected' });
    assert.ok(workers.every((w) => w.bus.connected));
    assert.equal(updates.length, before, 'the forged table reached nobody');

  });

  test('a removed worker leaves the peers; its instances leave the tables', async () => {
    const gone = workers[1] as FakeWorker;
    const watcher = await startFakeNetManager(cluster, workers[0] as FakeWorker);
    nms.push(watcher);
    await waitFor(() => watcher.last<PeerList>(netTopics.peers)?.peers.some((p) => p.worker_id === gone.id) === true, { message: 'retained peers with both' });
    // node removal: its token goes too, or its NodeEngine would simply register again
    join.revoke(gone.token);
    await cluster.revokeWorkers({ worker_ids: [gone.id] });
    await waitFor(() => watcher.last<PeerList>(netTopics.peers)?.peers.every((p) => p.worker_id !== gone.id) === true, { message: 'peer entry gone' });
    assert.equal(cluster.net.workerNet(gone.id), undefined);
    assert.ok([...cluster.net.instances.values()].every((r) => r.worker_id !== gone.id));
    // the Mosquitto form of a NetManager's identity (user name <id>-net) is accepted too; a removed worker's is not
    const keep = workers[0] as FakeWorker;
    const asNet = await connectBus(cluster.mqttUrl, { clientId: `${keep.id}-net`, username: `${keep.id}-net`, password: keep.answer.mqtt_password ?? '', tls: join.clientTls(), reconnectPeriodMs: 60_000 });
    await asNet.close();
    await assert.rejects(connectBus(cluster.mqttUrl, { clientId: `${gone.id}-net`, username: gone.id, password: gone.answer.mqtt_password ?? '', tls: join.clientTls(), connectTimeoutMs: 2000, reconnectPeriodMs: 0 }));
    await assert.rejects(connectBus(cluster.mqttUrl, { clientId: `${keep.id}-net`, username: `${keep.id}-net`, password: gone.answer.mqtt_password ?? '', tls: join.clientTls(), connectTimeoutMs: 2000, reconnectPeriodMs: 0 }));
  });
});

describe('cluster: overlay state after a cluster restart (stateless: the root and the NetManagers tell it again)', () => {
  test('the worker\'s subnet is asked from the root again, its reported instance is accepted and in the tables', async () => {
    const root = await startFakeRoot();
    const given = new Map<string, string>();
    root.onMessage((m) => {
      if (m.type === 'subnet_request') {
        const subnet = given.get(m.worker_id) ?? `10.18.0.${64 * (given.size + 1)}/26`;
        given.set(m.worker_id, subnet);
        root.send({ type: 'subnet_result', request_id: m.request_id, subnet, subnet_v6: null });
      } else if (m.type === 'table_query') {
        root.send({ type: 'table_result', request_id: m.request_id, table: { job_name: m.job_name ?? '', service_ip: '10.30.0.10', instances: [] } });
      }
    });
    const [port, mqttPort] = [await freePort(), await freePort()];
    const config = {
      name: 'c1', host: '127.0.0.1', port, mqttPort, reportIntervalMs: INTERVAL, aggregateIntervalMs: 300, log: silentLogger,
      root: { address: root.address, token: root.token }, linkMaxBackoffMs: 300, ...joinConfig(),
    };
    let cluster = await startCluster(config);
    let w: FakeWorker | undefined;
    let nm: Bus | undefined;
    try {
      await waitFor(() => cluster.rootConnected, { message: 'link welcome' });
      root.send({ type: 'sync', instances: [] });
      const worker = await startFakeWorker(cluster.registrationUrl, 'r1');
      w = worker;
      const results: { topic: string; body: Record<string, unknown> }[] = [];
      const announced: { deployed?: Record<string, unknown> } = {};
      // like a NetManager: on every (re)connect it asks for its subnet and announces its instances
      const announce = async (b: Bus): Promise<void> => {
        await b.publishJson(netTopics.subnet(worker.id), { host_ip: '127.0.0.2', host_port: 50103 });
        if (announced.deployed) await b.publishJson(netTopics.serviceDeployed(worker.id), announced.deployed);
      };
      const bus = await connectBus(cluster.mqttUrl, {
        clientId: `${worker.id}-net`, username: worker.id, password: worker.answer.mqtt_password ?? '', tls: join.clientTls(), reconnectPeriodMs: 200,
        onConnect: (reconnect) => (reconnect ? announce(nmBus()) : undefined),
      });
      nm = bus;
      const nmBus = (): Bus => bus;
      await bus.subscribe(`nodes/${worker.id}/net/+/result`, (topic, p) => { results.push({ topic, body: JSON.parse(p.toString()) as Record<string, unknown> }); });
      await announce(bus);
      await waitFor(() => results.some((r) => r.topic.endsWith('/subnet/result') && r.body.subnet !== undefined), { message: 'subnet' });
      const subnet = String(results.find((r) => r.body.subnet !== undefined)?.body.subnet);
      const ov = overlay(0);
      root.send({ type: 'deploy', instance: { ...assignment(JOB, 0), overlay: ov } });
      await waitFor(() => root.statuses(JOB, 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING' });
      const nsip = subnet.replace(/\.(\d+)\/26$/, (_m, d: string) => `.${Number(d) + 10}`);
      announced.deployed = { job_name: JOB, instance_number: 0, nsip, host_ip: '127.0.0.2', host_port: 50103, subnet };
      await bus.publishJson(netTopics.serviceDeployed(worker.id), announced.deployed);
      await waitFor(() => root.statuses(JOB, 0).some((s) => s.net?.nsip === nsip), { message: 'net info at the root' });
      const asked = root.received.filter((m) => m.type === 'subnet_request').length;

      // the cluster restarts: it knows nothing, the broker is new
      await cluster.close();
      const hellos = root.hellos;
      cluster = await startCluster(config);
      await waitFor(() => root.hellos > hellos && cluster.rootConnected, { timeoutMs: 10_000, message: 'linked again' });
      root.send({ type: 'sync', instances: [{ ...assignment(JOB, 0), worker_id: worker.id, overlay: ov }] });
      const c = cluster;
      await waitFor(() => c.core.isRegistered(worker.id), { timeoutMs: 10_000, message: 'the worker registered again' });
      await waitFor(() => c.net.netOf(JOB, 0)?.nsip === nsip, { timeoutMs: 10_000, message: 'its announced instance accepted again' });
      assert.ok(root.received.filter((m) => m.type === 'subnet_request').length > asked, 'the root was asked again');
      assert.equal(c.net.workers.get(worker.id)?.subnet, subnet, 'the same subnet (the root is idempotent)');
      // its NodeEngine reports the status again; a query gets the instance
      await worker.publishStatus(JOB, 0, 'RUNNING');
      await waitFor(() => c.core.desired.get(`${JOB}.instance.0`)?.status === 'RUNNING', { message: 'RUNNING again' });
      await bus.publishJson(netTopics.tableQueryRequest(worker.id), { request_id: 'after-restart', job_name: JOB });
      await waitFor(() => results.some((r) => r.body.request_id === 'after-restart'), { message: 'answered' });
      const t = results.find((r) => r.body.request_id === 'after-restart')?.body.table as ServiceTable | undefined;
      assert.deepEqual(t?.instances.map((e) => [e.instance_number, e.nsip, e.instance_ip]), [[0, nsip, '10.30.1.0']]);
    } finally {
      await nm?.close();
      await w?.close();
      await cluster.close();
      await root.close();
    }
  });
});
