/**
 * The cluster's overlay core without I/O: subnets from the root, checked instance reports, service
 * tables merged with the root's, interest, peers, RTTs, and the limits on what a worker may send.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterToRoot, InstanceState, ServiceDeployed, ServiceTable, TableEntry } from '@oak/contracts';
import { LEFT_KEEP_MS, LEFT_MAX, NetCore } from '../src/net.ts';
import type { NetEffect, NetInstanceView, NetOptions, NetView } from '../src/net.ts';

interface FakeView extends NetView {
  inst: Map<string, NetInstanceView>;
  known: Set<string>;
  dead: Set<string>;
  isSynced: boolean;
  put(job: string, n: number, worker: string | null, status?: InstanceState, instance_ip?: string): void;
}

function fakeView(): FakeView {
  const inst = new Map<string, NetInstanceView>();
  const v: FakeView = {
    inst,
    known: new Set(['w1', 'w2']),
    dead: new Set(),
    isSynced: true,
    put(job, n, worker, status = 'RUNNING', instance_ip) {
      inst.set(`${job}#${n}`, {
        job_name: job, instance_number: n, worker_id: worker, status, status_detail: '', publicip: null,
        overlay: { service_ip: '10.30.0.1', service_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', instance_ip: instance_ip ?? `10.30.1.${n}` },
      });
    },
    instance: (job, n) => inst.get(`${job}#${n}`),
    *instancesOf(job) {
      for (const d of inst.values()) if (d.job_name === job) yield d;
    },
    allInstances: () => inst.values(),
    workerKnown: (id) => v.known.has(id),
    workerAlive: (id) => v.known.has(id) && !v.dead.has(id),
    synced: () => v.isSynced,
  };
  return v;
}

const JOB = 'app.ns.web.ns';
const T0 = 1_000_000;

function setup(opts: Partial<NetOptions> = {}): { net: NetCore; view: FakeView } {
  const view = fakeView();
  const net = new NetCore(view, opts);
  net.linkConnected('c1', T0);
  return { net, view };
}

const links = (e: NetEffect[]): ClusterToRoot[] => e.flatMap((x) => (x.type === 'link' ? [x.message] : []));
const pubs = (e: NetEffect[], topic?: string): { topic: string; payload: unknown; retain?: boolean }[] =>
  e.flatMap((x) => (x.type === 'publish' && (topic === undefined || x.topic === topic) ? [x] : []));
const logs = (e: NetEffect[]): string[] => e.flatMap((x) => (x.type === 'log' ? [x.message] : []));

/** gives a worker its subnet through the root, as the shell would */
function giveSubnet(net: NetCore, worker: string, subnet: string, subnet_v6: string | null, now = T0, host_ip = '192.0.2.10'): NetEffect[] {
  const e = net.subnetRequest(worker, { host_ip, host_port: 50103 }, now);
  const ask = links(e).find((m) => m.type === 'subnet_request');
  assert.ok(ask && ask.type === 'subnet_request' && ask.worker_id === worker, 'asked the root');
  return [...e, ...net.subnetResult({ type: 'subnet_result', request_id: ask.request_id, subnet, subnet_v6 }, now)];
}

function deployed(n: number, nsip: string, over: Partial<ServiceDeployed> = {}): ServiceDeployed {
  return { job_name: JOB, instance_number: n, nsip, nsip_v6: null, host_ip: '192.0.2.10', host_port: 50103, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64', ...over };
}

describe('net core: worker subnets', () => {
  test('asked from the root once, answered to the worker, cached afterwards', () => {
    const { net } = setup();
    const e = giveSubnet(net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64');
    assert.deepEqual(pubs(e, 'nodes/w1/net/subnet/result').map((p) => p.payload), [{ subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' }]);
    assert.ok(e.some((x) => x.type === 'aggregate'));
    const again = net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0 + 10);
    assert.deepEqual(links(again), [], 'no second root request');
    assert.deepEqual(pubs(again).map((p) => p.payload), [{ subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' }]);
    assert.deepEqual(net.workerNet('w1'), { subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64', host_ip: '192.0.2.10', host_port: 50103, rtt: [] });
  });

  test("the root's extra service ranges ride along with every subnet result; junk from the root keeps the previous ones", () => {
    const { net, view } = setup();
    view.known.add('w3');
    const ask = (worker: string, now: number): string => {
      const m = links(net.subnetRequest(worker, { host_ip: '192.0.2.10', host_port: 50103 }, now)).find((x) => x.type === 'subnet_request');
      assert.ok(m && m.type === 'subnet_request');
      return m.request_id;
    };
    const first = pubs(net.subnetResult({ type: 'subnet_result', request_id: ask('w1', T0), subnet: '10.18.0.64/26', service_ranges: ['192.168.178.0/24'] }, T0));
    assert.deepEqual(first.map((p) => p.payload), [{ subnet: '10.18.0.64/26', subnet_v6: null, service_ranges: ['192.168.178.0/24'] }]);
    // the worker asks again (a reconnect): the cached answer carries the ranges too
    assert.deepEqual(pubs(net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0 + 1)).map((p) => p.payload), [{ subnet: '10.18.0.64/26', subnet_v6: null, service_ranges: ['192.168.178.0/24'] }]);
    // a hostile or broken root: not subnets -> a warning, the previous ranges stay
    const bad = net.subnetResult({ type: 'subnet_result', request_id: ask('w2', T0 + 2), subnet: '10.18.0.128/26', service_ranges: ['192.168.178.4; drop', '10.0.0.0/33'] }, T0 + 2);
    assert.ok(logs(bad).some((l) => /service ranges that are not IPv4 subnets/.test(l)), JSON.stringify(logs(bad)));
    assert.deepEqual(pubs(bad).map((p) => p.payload), [{ subnet: '10.18.0.128/26', subnet_v6: null, service_ranges: ['192.168.178.0/24'] }]);
    // the root dropped the setting: an empty list clears them
    const cleared = pubs(net.subnetResult({ type: 'subnet_result', request_id: ask('w3', T0 + 3), subnet: '10.18.0.192/26', service_ranges: [] }, T0 + 3));
    assert.deepEqual(cleared.map((p) => p.payload), [{ subnet: '10.18.0.192/26', subnet_v6: null }]);
  });

  test('two requests while the root thinks: one root request, both answered', () => {
    const { net } = setup();
    const a = net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0);
    const b = net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0 + 1);
    assert.equal(links(a).length, 1);
    assert.equal(links(b).length, 0);
    const rid = (links(a)[0] as { request_id: string }).request_id;
    assert.equal(pubs(net.subnetResult({ type: 'subnet_result', request_id: rid, subnet: '10.18.0.64/26' }, T0 + 2)).length, 1);
    // an unknown or repeated answer changes nothing
    assert.deepEqual(net.subnetResult({ type: 'subnet_result', request_id: rid, subnet: '10.18.0.128/26' }, T0 + 3), []);
    assert.equal(net.workers.get('w1')?.subnet, '10.18.0.64/26');
  });

  test('root unreachable, silent or refusing: the worker gets an error (its NetManager retries)', () => {
    const view = fakeView();
    const net = new NetCore(view, { subnetTimeoutMs: 1000 });
    const down = net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0);
    assert.deepEqual(links(down), []);
    assert.match(String((pubs(down)[0]?.payload as { error?: string }).error), /cannot reach its root/);
    net.linkConnected('c1', T0);
    const asked = net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0);
    assert.equal(links(asked).length, 1);
    assert.deepEqual(net.tick(T0 + 500), []);
    assert.match(String((pubs(net.tick(T0 + 1000))[0]?.payload as { error?: string }).error), /did not answer/);
    const again = links(net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0 + 2000))[0] as { request_id: string };
    const refused = net.subnetResult({ type: 'subnet_result', request_id: again.request_id, error: 'the worker pool is exhausted' }, T0 + 2001);
    assert.deepEqual(pubs(refused).map((p) => p.payload), [{ error: 'the worker pool is exhausted' }]);
    const lost = links(net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0 + 3000));
    assert.equal(lost.length, 1);
    assert.match(String((pubs(net.linkLost(T0 + 3001))[0]?.payload as { error?: string }).error), /lost its root link/);
    assert.equal(net.workers.get('w1')?.subnet, null);
  });

  test('hostile: a tunnel endpoint that is no unicast address is refused', () => {
    const { net } = setup();
    for (const host_ip of ['0.0.0.0', '255.255.255.255', '224.0.0.1', 'example.com', '::', 'ff02::1', '01.2.3.4']) {
      const e = net.subnetRequest('w1', { host_ip, host_port: 50103 }, T0);
      assert.deepEqual(links(e), [], host_ip);
      assert.ok((pubs(e)[0]?.payload as { error?: string }).error !== undefined, host_ip);
    }
  });
});

describe('net core: instances reported by NetManagers', () => {
  test('a valid report goes up in instance_status.net; only a change is forwarded', () => {
    const { net, view } = setup();
    view.put(JOB, 0, 'w1');
    giveSubnet(net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64');
    const e = net.serviceDeployed('w1', deployed(0, '10.18.0.66', { nsip_v6: 'fdff:18:0:1::2' }), T0);
    assert.deepEqual(links(e), [{
      type: 'instance_status', job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '', worker_id: 'w1',
      net: { nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2', host_ip: '192.0.2.10', host_port: 50103, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' },
    }]);
    assert.deepEqual(links(net.serviceDeployed('w1', deployed(0, '10.18.0.66', { nsip_v6: 'fdff:18:0:1::2' }), T0 + 1)), [], 'the same again: nothing');
    assert.equal(net.netOf(JOB, 0)?.nsip, '10.18.0.66');
    const gone = net.serviceUndeployed('w1', { job_name: JOB, instance_number: 0 }, T0 + 2);
    assert.deepEqual(links(gone).map((m) => (m as { net?: unknown }).net), [null]);
    assert.equal(net.netOf(JOB, 0), undefined);
  });

  test('the statuses the overlay sends carry the epoch of the instance\'s assignment (issue 9)', () => {
    const { net, view } = setup();
    view.put(JOB, 0, 'w1');
    const d = view.inst.get(`${JOB}#0`);
    if (d) d.epoch = 6;
    giveSubnet(net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64');
    const up = links(net.serviceDeployed('w1', deployed(0, '10.18.0.66', { nsip_v6: 'fdff:18:0:1::2' }), T0));
    assert.deepEqual(up.map((m) => (m as { epoch?: number }).epoch), [6]);
    const gone = links(net.serviceUndeployed('w1', { job_name: JOB, instance_number: 0 }, T0 + 2));
    assert.deepEqual(gone.map((m) => (m as { epoch?: number }).epoch), [6]);
    // an assignment without epoch (an older root): no epoch field
    view.put(JOB, 1, 'w1');
    const old = links(net.serviceDeployed('w1', deployed(1, '10.18.0.67', { nsip_v6: 'fdff:18:0:1::3' }), T0 + 3));
    assert.equal(old.length, 1);
    assert.equal('epoch' in (old[0] as object), false);
  });

  test('statuses carry the net info while it is known, null once it is gone (moved elsewhere)', () => {
    const { net, view } = setup();
    view.put(JOB, 0, 'w1');
    assert.equal(net.netForStatus(JOB, 0), undefined, 'nothing known, nothing said');
    giveSubnet(net, 'w1', '10.18.0.64/26', null);
    net.serviceDeployed('w1', deployed(0, '10.18.0.66', { subnet_v6: null }), T0);
    assert.equal(net.netForStatus(JOB, 0)?.nsip, '10.18.0.66');
    // its worker is lost: rescheduled to w2
    view.put(JOB, 0, 'w2', 'NODE_SCHEDULED');
    assert.equal(net.netForStatus(JOB, 0), null);
    assert.equal(net.netForStatus(JOB, 0), undefined, 'said once');
    net.tick(T0 + 10);
    assert.equal(net.instances.size, 0, 'the stale record is pruned');
  });

  test('before its subnet is known (cluster restarted) a report waits; the root is asked', () => {
    const { net, view } = setup();
    view.put(JOB, 0, 'w1');
    const e = net.serviceDeployed('w1', deployed(0, '10.18.0.66'), T0);
    const ask = links(e)[0];
    assert.ok(ask?.type === 'subnet_request' && ask.worker_id === 'w1');
    const r = net.subnetResult({ type: 'subnet_result', request_id: ask.request_id, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' }, T0 + 5);
    assert.deepEqual(pubs(r), [], 'the worker did not ask: no result published');
    assert.equal(links(r).filter((m) => m.type === 'instance_status').length, 1, 'accepted once the subnet is known');
    // and before the root's first sync
    view.isSynced = false;
    view.put(JOB, 1, 'w1');
    assert.deepEqual(links(net.serviceDeployed('w1', deployed(1, '10.18.0.67'), T0 + 6)), []);
    view.isSynced = true;
    assert.equal(links(net.synced(T0 + 7)).filter((m) => m.type === 'instance_status').length, 1);
  });

  test('a notice that arrives after a quick undeploy of that instance from that worker is stale: dropped without a warning; from another worker, or long after, it is refused and logged', () => {
    const { net, view } = setup();
    giveSubnet(net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64');
    giveSubnet(net, 'w2', '10.18.0.128/26', 'fdff:18:0:2::/64', T0, '192.0.2.20');
    // instance 0 runs on w1; the root undeploys it before w1's NetManager notice came in
    view.put(JOB, 0, 'w1');
    net.instanceLeft(JOB, 0, 'w1', T0);
    view.inst.delete(`${JOB}#0`);
    const late = net.serviceDeployed('w1', deployed(0, '10.18.0.66'), T0 + 10);
    assert.deepEqual(logs(late), [], 'stale: no warning');
    assert.deepEqual(links(late), [], 'and nothing goes to the root');
    assert.equal(net.netOf(JOB, 0), undefined);
    // the same instance claimed by another worker is not stale
    const other = net.serviceDeployed('w2', deployed(0, '10.18.0.130', { subnet: '10.18.0.128/26', subnet_v6: 'fdff:18:0:2::/64' }), T0 + 10);
    assert.equal(logs(other).length, 1, 'another worker: warned');
    assert.match(logs(other)[0] ?? '', /not assigned to this worker/);
    // never deployed here at all
    assert.equal(logs(net.serviceDeployed('w1', deployed(7, '10.18.0.70'), T0 + 20)).length, 1, 'unknown: warned');
    // bounded: the oldest are forgotten first
    for (let k = 0; k < LEFT_MAX + 5; k++) net.instanceLeft(JOB, 100 + k, 'w1', T0 + 20);
    assert.equal(logs(net.serviceDeployed('w1', deployed(100, '10.18.0.71'), T0 + 30)).length, 1, 'evicted: warned');
    assert.deepEqual(logs(net.serviceDeployed('w1', deployed(100 + LEFT_MAX + 4, '10.18.0.72'), T0 + 30)), [], 'the newest is still known');
    // an instance undeployed long ago
    view.put(JOB, 1, 'w1');
    net.instanceLeft(JOB, 1, 'w1', T0 + 40);
    view.inst.delete(`${JOB}#1`);
    assert.equal(logs(net.serviceDeployed('w1', deployed(1, '10.18.0.67'), T0 + 40 + LEFT_KEEP_MS + 1)).length, 1, 'long after: warned');
  });

  test('hostile: another job, another worker\'s instance, another subnet, addresses outside it: refused and logged once', () => {
    const { net, view } = setup();
    view.put(JOB, 0, 'w1');
    view.put(JOB, 1, 'w2');
    giveSubnet(net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64');
    giveSubnet(net, 'w2', '10.18.0.128/26', 'fdff:18:0:2::/64', T0, '192.0.2.20');
    const bad: [string, ServiceDeployed][] = [
      ['unknown job', deployed(0, '10.18.0.66', { job_name: 'other.ns.db.ns' })],
      ['w2\'s instance', deployed(1, '10.18.0.66')],
      ['w2\'s subnet', deployed(0, '10.18.0.130', { subnet: '10.18.0.128/26' })],
      ['w2\'s v6 subnet', deployed(0, '10.18.0.66', { subnet_v6: 'fdff:18:0:2::/64' })],
      ['nsip outside', deployed(0, '10.18.0.130')],
      ['network address', deployed(0, '10.18.0.64')],
      ['gateway', deployed(0, '10.18.0.65')],
      ['broadcast', deployed(0, '10.18.0.127')],
      ['v6 outside', deployed(0, '10.18.0.66', { nsip_v6: 'fdff:18:0:2::5' })],
      ['v6 gateway', deployed(0, '10.18.0.66', { nsip_v6: 'fdff:18:0:1::1' })],
      ['not an address', deployed(0, 'ten')],
      ['host not an IP', deployed(0, '10.18.0.66', { host_ip: 'evil.example' })],
    ];
    for (const [what, m] of bad) {
      const e = net.serviceDeployed('w1', m, T0);
      assert.deepEqual(links(e), [], what);
      assert.equal(net.netOf(m.job_name, m.instance_number), undefined, what);
    }
    const first = net.serviceDeployed('w1', deployed(1, '10.18.0.66'), T0 + 1);
    assert.deepEqual(logs(first), [], 'the same refusal is logged once');
    // a second instance of w1 cannot take the first one's address
    view.put(JOB, 2, 'w1');
    assert.equal(links(net.serviceDeployed('w1', deployed(0, '10.18.0.66'), T0)).length, 1);
    assert.deepEqual(links(net.serviceDeployed('w1', deployed(2, '10.18.0.66'), T0)), []);
    // once the first one has failed (its undeploy was missed), the address is free again
    view.put(JOB, 0, 'w1', 'FAILED');
    assert.equal(links(net.serviceDeployed('w1', deployed(2, '10.18.0.66'), T0)).length, 1);
    assert.equal(net.netOf(JOB, 0), undefined, 'the stale record went');
    assert.equal(net.netOf(JOB, 2)?.nsip, '10.18.0.66');
    view.put(JOB, 0, 'w1');
    assert.equal(links(net.serviceDeployed('w1', deployed(0, '10.18.0.66'), T0)).length, 0, 'now instance 2 holds it');
    assert.equal(links(net.serviceDeployed('w1', deployed(0, '10.18.0.68'), T0)).length, 1);
    // and w2 cannot take w1's instance out
    assert.deepEqual(links(net.serviceUndeployed('w2', { job_name: JOB, instance_number: 0 }, T0)), []);
    assert.equal(net.netOf(JOB, 0)?.nsip, '10.18.0.68');
  });

  test('hostile: a flood of reports is rate limited', () => {
    const { net, view } = setup({ messageBurst: 5, messageRatePerS: 1 });
    view.put(JOB, 0, 'w1');
    giveSubnet(net, 'w1', '10.18.0.64/26', null);
    let accepted = 0;
    for (let i = 0; i < 50; i++) accepted += links(net.serviceDeployed('w1', deployed(0, `10.18.0.${66 + (i % 2)}`, { subnet_v6: null }), T0)).length;
    assert.ok(accepted <= 4, `${accepted} accepted`);
    assert.ok(accepted >= 1);
  });
});

/** a root table with one instance in another cluster and a stale copy of a local one */
function rootTable(): ServiceTable {
  const e = (n: number, worker: string, cluster: string, nsip: string): TableEntry => ({
    instance_number: n, instance_ip: `10.30.1.${n}`, nsip, worker_id: worker, cluster_id: cluster, host_ip: '198.51.100.7', host_port: 50103, subnet: '10.18.1.0/26',
  });
  return { job_name: JOB, service_ip: '10.30.0.1', instances: [e(0, 'w1', 'c1', '10.18.0.99'), e(5, 'x9', 'c2', '10.18.1.2')] };
}

function withTable(opts: Partial<NetOptions> = {}): { net: NetCore; view: FakeView } {
  const s = setup(opts);
  s.view.put(JOB, 0, 'w1');
  giveSubnet(s.net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64');
  s.net.serviceDeployed('w1', deployed(0, '10.18.0.66'), T0);
  return s;
}

function query(net: NetCore, worker: string, rid: string, now = T0, job = JOB): { effects: NetEffect[]; root?: string } {
  const effects = net.tableQuery(worker, { request_id: rid, job_name: job }, now);
  const q = links(effects).find((m) => m.type === 'table_query');
  return { effects, ...(q?.type === 'table_query' ? { root: q.request_id } : {}) };
}

describe('net core: service tables', () => {
  test('a query waits for the root; the answer merges local (authoritative) and other clusters', () => {
    const { net } = withTable();
    const q = query(net, 'w2', 'r1');
    assert.ok(q.root, 'asked the root');
    assert.deepEqual(pubs(q.effects), [], 'not answered before the root');
    assert.equal(query(net, 'w1', 'r2').root, undefined, 'one root query per job');
    const e = net.tableResult({ type: 'table_result', request_id: q.root, table: rootTable() }, T0 + 5);
    const answers = pubs(e).map((p) => ({ topic: p.topic, payload: p.payload as { request_id: string; table: ServiceTable } }));
    assert.deepEqual(answers.map((a) => [a.topic, a.payload.request_id]), [['nodes/w2/net/tablequery/result', 'r1'], ['nodes/w1/net/tablequery/result', 'r2']]);
    const t = answers[0]?.payload.table;
    assert.equal(t?.service_ip, '10.30.0.1');
    assert.equal(t?.closest_ip, '10.30.0.2');
    assert.deepEqual(t?.instances.map((x) => [x.instance_number, x.nsip, x.worker_id, x.cluster_id]), [[0, '10.18.0.66', 'w1', 'c1'], [5, '10.18.1.2', 'x9', 'c2']]);
    assert.equal(t?.instances[0]?.instance_ip, '10.30.1.0');
    // cached while interested: the next query is answered at once
    assert.equal(pubs(net.tableQuery('w2', { request_id: 'r3', job_name: JOB }, T0 + 6)).length, 1);
  });

  test('every change goes out as the full table within the coalescing window; instances leaving RUNNING leave at once', () => {
    const { net, view } = withTable();
    const q = query(net, 'w2', 'r1');
    net.tableResult({ type: 'table_result', request_id: q.root ?? '', table: { job_name: JOB, service_ip: '10.30.0.1', instances: [] } }, T0);
    net.flush(T0 + 100);
    // a second instance appears on w1
    view.put(JOB, 1, 'w1');
    net.serviceDeployed('w1', deployed(1, '10.18.0.67'), T0 + 200);
    assert.equal(net.nextFlushAt(), T0 + 250);
    assert.deepEqual(pubs(net.flush(T0 + 220)), [], 'coalesced');
    const up = pubs(net.flush(T0 + 250), `jobs/${JOB}/updates_available`);
    assert.deepEqual((up[0]?.payload as ServiceTable).instances.map((x) => x.nsip), ['10.18.0.66', '10.18.0.67']);
    assert.equal(net.nextFlushAt(), null);
    // it fails: out of the table
    view.put(JOB, 1, 'w1', 'FAILED');
    net.statusChanged(JOB, T0 + 300);
    assert.deepEqual((pubs(net.flush(T0 + 350))[0]?.payload as ServiceTable).instances.map((x) => x.instance_number), [0]);
    // nothing changed: nothing published
    net.statusChanged(JOB, T0 + 400);
    assert.deepEqual(pubs(net.flush(T0 + 450)), []);
    // its worker is lost: out as well
    view.dead.add('w1');
    net.workerLiveness('w1', T0 + 500);
    assert.deepEqual((pubs(net.flush(T0 + 550), `jobs/${JOB}/updates_available`)[0]?.payload as ServiceTable).instances, []);
    // the root pushes another cluster's instance
    net.tableUpdate(rootTable(), T0 + 600);
    assert.deepEqual((pubs(net.flush(T0 + 650))[0]?.payload as ServiceTable).instances.map((x) => x.worker_id), ['x9'], 'the stale copy of the local one is not taken');
  });

  test('undeployed and removed: the instance goes; a removed worker loses its instances, interests and peer entry', () => {
    const { net, view } = withTable();
    const q = query(net, 'w1', 'r1');
    net.tableResult({ type: 'table_result', request_id: q.root ?? '', table: { job_name: JOB, service_ip: null, instances: [] } }, T0);
    view.inst.delete(`${JOB}#0`);
    net.jobChanged(JOB, T0 + 10);
    assert.equal(net.netOf(JOB, 0), undefined);
    assert.equal(net.instances.size, 0);
    const rm = net.workerRemoved('w1', T0 + 20);
    assert.deepEqual(links(rm), [{ type: 'interest_remove', job_name: JOB }], 'no one else interested: the root is told');
    assert.equal(net.interest.size, 0);
    assert.equal(net.workerNet('w1'), undefined);
  });

  test('interest: kept until the last worker lets go, then interest_remove to the root', () => {
    const { net } = withTable();
    const q = query(net, 'w1', 'r1');
    query(net, 'w2', 'r2');
    net.tableResult({ type: 'table_result', request_id: q.root ?? '', table: rootTable() }, T0);
    assert.deepEqual(links(net.interestRemove('w1', JOB, T0 + 1)), []);
    assert.deepEqual(links(net.interestRemove('w1', JOB, T0 + 2)), [], 'twice is harmless');
    assert.deepEqual(links(net.interestRemove('w2', JOB, T0 + 3)), [{ type: 'interest_remove', job_name: JOB }]);
    assert.equal(net.rootTables.size, 0, 'the cached table goes');
    // a table update after that is ignored, no publish
    net.tableUpdate(rootTable(), T0 + 4);
    assert.deepEqual(pubs(net.flush(T0 + 100), `jobs/${JOB}/updates_available`), []);
  });

  test('by address: the job is found locally, or the root names it', () => {
    const { net } = withTable();
    const local = net.tableQuery('w2', { request_id: 'r1', ip: '10.30.0.1' }, T0);
    assert.deepEqual(links(local).map((m) => (m as { job_name?: string }).job_name), [JOB]);
    assert.ok(net.interest.get(JOB)?.has('w2'));
    const remote = net.tableQuery('w2', { request_id: 'r2', ip: '10.30.9.9' }, T0);
    const rq = links(remote)[0];
    assert.ok(rq?.type === 'table_query' && rq.ip === '10.30.9.9' && rq.job_name === undefined);
    const e = net.tableResult({ type: 'table_result', request_id: rq.request_id, table: { job_name: 'far.ns.api.ns', service_ip: '10.30.9.9', instances: [] } }, T0 + 1);
    assert.equal((pubs(e)[0]?.payload as { table?: ServiceTable }).table?.job_name, 'far.ns.api.ns');
    assert.ok(net.interest.get('far.ns.api.ns')?.has('w2'));
    const unknown = net.tableQuery('w2', { request_id: 'r3', ip: '10.30.8.8' }, T0);
    const uq = links(unknown)[0] as { request_id: string };
    const err = net.tableResult({ type: 'table_result', request_id: uq.request_id, error: 'no service has address 10.30.8.8' }, T0 + 2);
    assert.deepEqual(pubs(err).map((p) => p.payload), [{ request_id: 'r3', error: 'no service has address 10.30.8.8' }]);
    assert.match(String((pubs(net.tableQuery('w2', { request_id: 'r4', ip: 'x' }, T0))[0]?.payload as { error?: string }).error), /not an IP/);
    // a job nobody has: answered with the root's error, and no interest stays behind
    const none = query(net, 'w2', 'r6', T0, 'nobody.ns.x.ns');
    const noneAnswer = net.tableResult({ type: 'table_result', request_id: none.root ?? '', error: 'no such service' }, T0 + 3);
    assert.deepEqual(pubs(noneAnswer).map((p) => p.payload), [{ request_id: 'r6', error: 'no such service' }]);
    assert.deepEqual(links(noneAnswer), [{ type: 'interest_remove', job_name: 'nobody.ns.x.ns' }]);
    assert.equal(net.interest.has('nobody.ns.x.ns'), false);
    assert.match(String((pubs(net.tableQuery('w2', { request_id: 'r5' }, T0))[0]?.payload as { error?: string }).error), /job_name or an ip/);
    for (const job of ['a/b', 'jobs/+', 'x#', '$SYS', 'a b']) {
      const e = net.tableQuery('w2', { request_id: 'r7', job_name: job }, T0);
      assert.deepEqual(links(e), [], job);
      assert.match(String((pubs(e)[0]?.payload as { error?: string }).error), /cannot be a topic level/, job);
    }
  });

  test('the root silent or gone: local knowledge answers, else an error; on reconnect every followed job is asked again', () => {
    const { net } = withTable({ queryTimeoutMs: 1000 });
    const q = query(net, 'w2', 'r1');
    assert.ok(q.root);
    const late = net.tick(T0 + 1000);
    assert.deepEqual((pubs(late)[0]?.payload as { table?: ServiceTable }).table?.instances.map((x) => x.nsip), ['10.18.0.66']);
    query(net, 'w2', 'r2', T0 + 1001, 'nobody.ns.x.ns');
    const lost = net.linkLost(T0 + 1002);
    assert.match(String((pubs(lost)[0]?.payload as { error?: string }).error), /lost its root link/);
    const offline = net.tableQuery('w1', { request_id: 'r3', job_name: JOB }, T0 + 1003);
    assert.equal(pubs(offline).length, 1, 'local answer while the root is away');
    const back = links(net.linkConnected('c1', T0 + 2000));
    assert.deepEqual(back.map((m) => (m as { job_name?: string }).job_name).sort(), [JOB, 'nobody.ns.x.ns']);
  });

  test('the interest bound counts what a worker follows now: letting one go makes room', () => {
    const { net } = withTable({ maxInterestsPerWorker: 2 });
    query(net, 'w1', 'a0', T0, 'j0.ns.s.ns');
    query(net, 'w1', 'a1', T0, 'j1.ns.s.ns');
    assert.match(String((pubs(query(net, 'w1', 'a2', T0, 'j2.ns.s.ns').effects)[0]?.payload as { error?: string }).error), /too many tables/);
    assert.ok(query(net, 'w2', 'b0', T0, 'j2.ns.s.ns').root, 'another worker is counted apart');
    net.interestRemove('w1', 'j0.ns.s.ns', T0);
    query(net, 'w1', 'a3', T0, 'j2.ns.s.ns');
    assert.ok(net.interest.get('j2.ns.s.ns')?.has('w1'), 'room for another job');
    net.workerRemoved('w1', T0);
    query(net, 'w2', 'b1', T0, 'j0.ns.s.ns');
    assert.match(String((pubs(query(net, 'w2', 'b2', T0, 'j1.ns.s.ns').effects)[0]?.payload as { error?: string }).error), /too many tables/);
  });

  test('hostile: interests per worker, queries in flight and query rate are bounded', () => {
    const { net } = withTable({ maxInterestsPerWorker: 3, maxOutstandingQueries: 5, queryBurst: 8, queryRatePerS: 1 });
    for (let i = 0; i < 3; i++) assert.ok(query(net, 'w1', `a${i}`, T0, `j${i}.ns.s.ns`).root);
    const over = query(net, 'w1', 'a3', T0, 'j3.ns.s.ns');
    assert.match(String((pubs(over.effects)[0]?.payload as { error?: string }).error), /too many tables/);
    assert.equal(over.root, undefined);
    for (let i = 3; i < 5; i++) assert.ok(query(net, 'w2', `b${i}`, T0, `j${i}.ns.s.ns`).root);
    const busy = query(net, 'w2', 'b5', T0, 'j5.ns.s.ns');
    assert.equal(busy.root, undefined);
    assert.match(String((pubs(busy.effects)[0]?.payload as { error?: string }).error), /too many table queries in flight/);
    // w1 used 4 of 8; four more, then rate limited
    for (let i = 0; i < 4; i++) query(net, 'w1', `c${i}`, T0, 'j0.ns.s.ns');
    const limited = query(net, 'w1', 'c9', T0, 'j0.ns.s.ns');
    assert.match(String((pubs(limited.effects)[0]?.payload as { error?: string }).error), /rate limited/);
    assert.equal(pubs(query(net, 'w1', 'c10', T0 + 2000, 'j0.ns.s.ns').effects).length <= 1, true);
  });
});

describe('net core: peers and RTTs', () => {
  test('net/peers: own workers with subnet and endpoint, then the root\'s; retained, coalesced, only on change', () => {
    const { net, view } = setup();
    giveSubnet(net, 'w1', '10.18.0.64/26', 'fdff:18:0:1::/64', T0);
    giveSubnet(net, 'w2', '10.18.0.128/26', null, T0 + 10, '192.0.2.20');
    net.peers([
      { worker_id: 'x9', cluster_id: 'c2', subnet: '10.18.1.0/26', host_ip: '198.51.100.7', host_port: 50103 },
      { worker_id: 'w1', cluster_id: 'c1', subnet: '10.18.9.0/26', host_ip: '203.0.113.1', host_port: 1 },
    ], T0 + 20);
    assert.deepEqual(pubs(net.flush(T0 + 30)), [], 'coalesced');
    const p = pubs(net.flush(T0 + 50), 'net/peers');
    assert.equal(p.length, 1);
    assert.equal(p[0]?.retain, true);
    assert.deepEqual((p[0]?.payload as { peers: { worker_id: string; subnet: string }[] }).peers.map((x) => [x.worker_id, x.subnet]), [['w1', '10.18.0.64/26'], ['w2', '10.18.0.128/26'], ['x9', '10.18.1.0/26']]);
    net.peers([{ worker_id: 'x9', cluster_id: 'c2', subnet: '10.18.1.0/26', host_ip: '198.51.100.7', host_port: 50103 }], T0 + 100);
    assert.deepEqual(pubs(net.flush(T0 + 200)), [], 'the same list: not again');
    view.known.delete('w2');
    net.tick(T0 + 300);
    const after = pubs(net.flush(T0 + 400), 'net/peers');
    assert.deepEqual((after[0]?.payload as { peers: { worker_id: string }[] }).peers.map((x) => x.worker_id), ['w1', 'x9'], 'a forgotten worker leaves');
  });

  test('RTT reports are kept per worker for the aggregate, bounded', () => {
    const { net } = setup({ maxRttPeers: 2 });
    giveSubnet(net, 'w1', '10.18.0.64/26', null);
    net.rttReport('w1', { peers: [{ worker_id: 'w2', rtt_ms: 0.4 }, { worker_id: 'x9', rtt_ms: null }, { worker_id: 'x8', rtt_ms: 3 }] });
    assert.deepEqual(net.workerNet('w1')?.rtt, [{ worker_id: 'w2', rtt_ms: 0.4 }, { worker_id: 'x9', rtt_ms: null }]);
    net.rttReport('nobody', { peers: [{ worker_id: 'w2', rtt_ms: 1 }] });
    assert.equal(net.workerNet('nobody'), undefined);
  });

  test('rttMs answers the connectivity lookup: either direction, a silent peer is unknown', () => {
    const { net } = setup();
    giveSubnet(net, 'w1', '10.18.0.64/26', null);
    net.rttReport('w1', { peers: [{ worker_id: 'w2', rtt_ms: 0.4 }, { worker_id: 'x9', rtt_ms: null }] });
    assert.equal(net.rttMs('w1', 'w2'), 0.4);
    assert.equal(net.rttMs('w2', 'w1'), 0.4);
    assert.equal(net.rttMs('w1', 'x9'), undefined);
    assert.equal(net.rttMs('w2', 'x9'), undefined);
  });
});
