import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OakError, netTopics } from '@oak/contracts';
import type { ServiceTable, TableEntry, TableQueryRequest } from '@oak/contracts';
import { NetCore, gatewayOf, gatewayOf6 } from '../src/core.ts';
import type { Effect } from '../src/core.ts';
import { inZone, parseOverlayName, pickClosest } from '@oak/net';

const JOB = 'app.ns.web.default';
const OTHER = 'app.ns.db.default';

function registered(opts: Partial<ConstructorParameters<typeof NetCore>[0]> = {}): NetCore {
  const core = new NetCore({ hostIp: '192.0.2.10', hostPort: 50103, ...opts });
  core.attach('w1');
  core.connected(0);
  core.subnetResult({ subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' }, 0);
  return core;
}

function entry(n: number, worker: string, nsip: string, extra: Partial<TableEntry> = {}): TableEntry {
  return {
    instance_number: n, instance_ip: `10.30.0.${10 + n}`, nsip, worker_id: worker, host_ip: '192.0.2.20', host_port: 50103,
    subnet: worker === 'w1' ? '10.18.0.64/26' : '10.18.0.128/26', ...extra,
  };
}

function table(job: string, instances: TableEntry[]): ServiceTable {
  return { job_name: job, service_ip: '10.30.0.2', service_ip_v6: 'fdff::2', closest_ip: '10.30.0.3', closest_ip_v6: null, instances };
}

const publishes = (fx: Effect[], topic: string) => fx.filter((e): e is Extract<Effect, { type: 'publish' }> => e.type === 'publish' && e.topic === topic);
const types = (fx: Effect[]) => fx.map((e) => e.type);

test('gateway is the first host of each subnet', () => {
  assert.equal(gatewayOf('10.18.0.64/26'), '10.18.0.65');
  assert.equal(gatewayOf6('fdff:18:0:1::/64'), 'fdff:18:0:1::1');
});

test('register: subnet request on connect, repeated until answered, then the subnet effect', () => {
  const core = new NetCore({ hostIp: '192.0.2.10', hostPort: 50103, subnetRetryMs: 2000 });
  assert.deepEqual(core.attach('w1'), []);
  const fx = core.connected(0);
  assert.deepEqual(publishes(fx, netTopics.subnet('w1')).map((e) => e.payload), [{ method: 'get', host_ip: '192.0.2.10', host_port: 50103 }]);
  assert.equal(core.tick(1999).length, 0);
  assert.equal(publishes(core.tick(2000), netTopics.subnet('w1')).length, 1);
  const got = core.subnetResult({ subnet: '10.18.0.64/26', subnet_v6: null }, 2100);
  assert.deepEqual(got, [{ type: 'subnet', subnet: '10.18.0.64/26', subnet_v6: null, changed: false, service_ranges: [] }]);
  // the root's extra service ranges ride along, normalised; a bad one is left out
  const wide = core.subnetResult({ subnet: '10.18.0.64/26', subnet_v6: null, service_ranges: ['192.168.178.0/24', 'x/99'] }, 2200);
  assert.deepEqual(wide, [{ type: 'subnet', subnet: '10.18.0.64/26', subnet_v6: null, changed: false, service_ranges: ['192.168.178.0/24'] }]);
  assert.equal(core.tick(10_000).length, 0);
  assert.equal(core.registered, true);
  assert.deepEqual(core.subnetResult({ error: 'pool exhausted' }, 1)[0], { type: 'subnet-error', error: 'pool exhausted' });
  assert.equal(core.subnetResult({ subnet: '10.18.0.65/26' }, 1)[0]?.type, 'subnet-error');
});

test('deploy checks the address, publishes service/deployed, queries its own table once', () => {
  const core = registered();
  assert.throws(() => core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.1.5' }, 1), (e: unknown) => e instanceof OakError && e.code === 'OAK_BAD_REQUEST' && /10\.18\.0\.64\/26/.test(e.message));
  assert.throws(() => core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.65' }, 1), OakError);
  assert.throws(() => core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:2::2' }, 1), /nsip_v6/);
  assert.throws(() => core.deploy({ job_name: 'a/b', instance_number: 0, nsip: '10.18.0.66' }, 1), /topic/);
  const fx = core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2' }, 1);
  assert.equal(fx[0]?.type, 'persist');
  assert.deepEqual(publishes(fx, netTopics.serviceDeployed('w1'))[0]?.payload, {
    job_name: JOB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2', host_ip: '192.0.2.10', host_port: 50103, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64',
  });
  const sub = fx.findIndex((e) => e.type === 'subscribe' && e.topic === netTopics.jobUpdates(JOB));
  const q = fx.findIndex((e) => e.type === 'publish' && e.topic === netTopics.tableQueryRequest('w1'));
  assert.ok(sub >= 0 && q > sub, 'subscribed before asking');
  assert.throws(() => core.deploy({ job_name: JOB, instance_number: 1, nsip: '10.18.0.66' }, 1), (e: unknown) => e instanceof OakError && e.code === 'OAK_CONFLICT');
  // the same notice again (a NodeEngine replay): nothing to announce or persist
  assert.deepEqual(core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2' }, 1), []);
  // moved to another address: the old one is forgotten, the new one announced
  const moved = core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.68', nsip_v6: 'fdff:18:0:1::2' }, 1);
  assert.ok(moved.some((e) => e.type === 'forget' && e.nsip === '10.18.0.66'));
  assert.equal(publishes(moved, netTopics.serviceDeployed('w1')).length, 1);
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2' }, 1);
  // a second instance of the same job: no second query
  const fx2 = core.deploy({ job_name: JOB, instance_number: 1, nsip: '10.18.0.67' }, 2);
  assert.equal(publishes(fx2, netTopics.tableQueryRequest('w1')).length, 0);
  assert.ok(!types(fx2).includes('subscribe'));
});

test('deploy before registration is a clear conflict', () => {
  const core = new NetCore({ hostIp: '192.0.2.10', hostPort: 50103 });
  assert.throws(() => core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0), (e: unknown) => e instanceof OakError && e.code === 'OAK_CONFLICT' && e.hint !== undefined);
});

test('table queries: one outstanding per job or address, retried every 2 s with the same id, given up after 5', () => {
  const core = registered();
  const first = core.use(OTHER, 10);
  const q = publishes(first, netTopics.tableQueryRequest('w1'));
  assert.equal(q.length, 1);
  const id = (q[0]?.payload as TableQueryRequest).request_id;
  assert.equal(publishes(core.use(OTHER, 11), netTopics.tableQueryRequest('w1')).length, 0);
  assert.equal(core.tick(2009).length, 0);
  const again = publishes(core.tick(2010), netTopics.tableQueryRequest('w1'));
  assert.equal((again[0]?.payload as TableQueryRequest).request_id, id);
  // by address: deduplicated too
  assert.equal(publishes(core.unknownAddress('10.30.0.99', 100), netTopics.tableQueryRequest('w1')).length, 1);
  assert.equal(core.unknownAddress('10.30.0.99', 101).length, 0);
  let gaveUp: Effect[] = [];
  for (let t = 4010; t <= 20_000; t += 2000) gaveUp = gaveUp.concat(core.tick(t));
  assert.deepEqual(gaveUp.filter((e) => e.type === 'table').map((e) => (e as { job_name: string | null }).job_name).sort(), [OTHER, null].sort());
  assert.equal(core.pending.size, 0);
});

test('an address query answered with a table programs it, subscribes its job and answers later traffic from the index', () => {
  const core = registered();
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0);
  const q = publishes(core.unknownAddress('10.30.0.2', 5), netTopics.tableQueryRequest('w1'))[0]?.payload as TableQueryRequest;
  assert.equal(q.ip, '10.30.0.2');
  const t = table(OTHER, [entry(0, 'w2', '10.18.0.130')]);
  const fx = core.tableResult({ request_id: q.request_id, table: t }, 6);
  assert.ok(fx.some((e) => e.type === 'subscribe' && e.topic === netTopics.jobUpdates(OTHER)));
  const svc = fx.find((e) => e.type === 'services');
  assert.ok(svc && svc.type === 'services');
  const s = svc.services.find((x) => x.job_name === OTHER);
  assert.equal(s?.service_ip, '10.30.0.2');
  assert.deepEqual(s?.closest, { nsip: '10.18.0.130', nsip_v6: null });
  assert.ok(fx.some((e) => e.type === 'table' && e.table !== null));
  assert.equal(publishes(fx, netTopics.tableQueryRequest('w1')).length, 0, 'no query for a job whose table came');
  assert.equal(core.unknownAddress('10.30.0.10', 7).length, 0, 'instance ip known now');
  // an error answer caches the miss for 2 s
  const q2 = publishes(core.unknownAddress('10.30.9.9', 10), netTopics.tableQueryRequest('w1'))[0]?.payload as TableQueryRequest;
  assert.deepEqual(core.tableResult({ request_id: q2.request_id, error: 'no such address' }, 11), [{ type: 'table', job_name: null, ip: '10.30.9.9', table: null }]);
  assert.equal(core.unknownAddress('10.30.9.9', 1000).length, 0);
  core.tick(2011);
  assert.equal(publishes(core.unknownAddress('10.30.9.9', 2012), netTopics.tableQueryRequest('w1')).length, 1);
  // unknown request ids and tables of jobs nobody wants are ignored
  assert.deepEqual(core.tableResult({ request_id: 'nope', table: table('x.y.z.w', []) }, 12), []);
});

test('updates: applied within one effect round, removed instances forgotten after the services are set', () => {
  const core = registered();
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0);
  const q = core.pending.get(`job:${JOB}`);
  assert.ok(q);
  core.tableResult({ request_id: q.request_id, table: table(JOB, [entry(0, 'w1', '10.18.0.66'), entry(1, 'w2', '10.18.0.130')]) }, 1);
  const fx = core.update(JOB, table(JOB, [entry(0, 'w1', '10.18.0.66')]), 2);
  assert.deepEqual(types(fx), ['services', 'forget']);
  assert.deepEqual(fx[1], { type: 'forget', nsip: '10.18.0.130', nsip_v6: null });
  // the same table again changes nothing
  assert.deepEqual(core.update(JOB, table(JOB, [entry(0, 'w1', '10.18.0.66')]), 3), []);
  // a table under the wrong topic, or for a job without interest, is ignored
  assert.deepEqual(core.update(JOB, table(OTHER, []), 4), []);
  assert.deepEqual(core.update(OTHER, table(OTHER, []), 4), []);
});

test('a local instance leaves: service/undeployed, out of the tables, forgetInstance; last one out drops all interest', () => {
  const core = registered();
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0);
  core.deploy({ job_name: JOB, instance_number: 1, nsip: '10.18.0.67' }, 0);
  const q = core.pending.get(`job:${JOB}`);
  assert.ok(q);
  core.tableResult({ request_id: q.request_id, table: table(JOB, [entry(0, 'w1', '10.18.0.66'), entry(1, 'w1', '10.18.0.67'), entry(2, 'w2', '10.18.0.130')]) }, 1);
  core.use(OTHER, 2);
  const fx = core.undeploy({ job_name: JOB, instance_number: 0 }, 3);
  assert.deepEqual(publishes(fx, netTopics.serviceUndeployed('w1')).map((e) => e.payload), [{ job_name: JOB, instance_number: 0 }]);
  const svc = fx.find((e) => e.type === 'services');
  assert.ok(svc && svc.type === 'services');
  assert.deepEqual(svc.services[0]?.instances.map((i) => i.nsip), ['10.18.0.67', '10.18.0.130']);
  assert.deepEqual(svc.services[0]?.closest, { nsip: '10.18.0.67', nsip_v6: null }, 'local first');
  assert.deepEqual(fx.at(-1), { type: 'forget', nsip: '10.18.0.66', nsip_v6: null });
  assert.ok(fx.findIndex((e) => e.type === 'services') < fx.findIndex((e) => e.type === 'forget'));
  assert.equal(publishes(fx, netTopics.interestRemove('w1')).length, 0);
  const last = core.undeploy({ job_name: JOB, instance_number: 1 }, 4);
  assert.deepEqual(publishes(last, netTopics.interestRemove('w1')).map((e) => e.payload).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))), [{ job_name: OTHER }, { job_name: JOB }].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))));
  assert.deepEqual(last.filter((e) => e.type === 'unsubscribe').map((e) => (e as { topic: string }).topic).sort(), [netTopics.jobUpdates(OTHER), netTopics.jobUpdates(JOB)].sort());
  assert.ok(last.some((e) => e.type === 'services' && e.services.length === 0));
  assert.ok(last.some((e) => e.type === 'forget' && e.nsip === '10.18.0.130'), 'remote flows of dropped tables go');
  assert.deepEqual(core.undeploy({ job_name: JOB, instance_number: 9 }, 5), [], 'unknown instance: nothing');
});

test('interest of a job no local instance belongs to expires after the idle time; DNS use keeps it', () => {
  const core = registered({ interestIdleMs: 1000 });
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0);
  core.use(OTHER, 0);
  assert.equal(publishes(core.tick(900), netTopics.interestRemove('w1')).length, 0);
  core.use(OTHER, 900);
  assert.equal(publishes(core.tick(1800), netTopics.interestRemove('w1')).length, 0);
  const fx = core.tick(1900);
  assert.deepEqual(publishes(fx, netTopics.interestRemove('w1')).map((e) => e.payload), [{ job_name: OTHER }]);
  assert.ok(fx.some((e) => e.type === 'unsubscribe' && e.topic === netTopics.jobUpdates(OTHER)));
  assert.ok(core.interest.has(JOB), 'own job pinned by its local instance');
});

test('closest: local first, else lowest RTT, RTT changes move it, null RTTs last', () => {
  const es = [entry(0, 'w2', '10.18.0.130'), entry(1, 'w3', '10.18.0.194'), entry(2, 'w4', '10.18.1.2')];
  assert.equal(pickClosest(es, 'w1', new Map([['w2', 9], ['w3', 3]]))?.instance_number, 1);
  assert.equal(pickClosest(es, 'w1', new Map([['w2', null], ['w3', null]]))?.instance_number, 0);
  assert.equal(pickClosest([...es, entry(5, 'w1', '10.18.0.70')], 'w1', new Map([['w3', 0.1]]))?.instance_number, 5);
  assert.equal(pickClosest([], 'w1', new Map()), undefined);

  const core = registered();
  core.setPeers([{ worker_id: 'w1', subnet: '10.18.0.64/26', host_ip: '192.0.2.10', host_port: 50103 }, { worker_id: 'w2', subnet: '10.18.0.128/26', host_ip: '192.0.2.20', host_port: 50103 }, { worker_id: 'w3', subnet: '10.18.0.192/26', host_ip: '192.0.2.30', host_port: 50103 }], 0);
  assert.deepEqual(core.peers.map((p) => p.worker_id), ['w2', 'w3'], 'self is no peer');
  core.use(OTHER, 0);
  const q = core.pending.get(`job:${OTHER}`);
  assert.ok(q);
  core.tableResult({ request_id: q.request_id, table: table(OTHER, es.slice(0, 2)) }, 0);
  const a = core.rttResults(new Map([['w2', 5], ['w3', 2]]), 1);
  assert.deepEqual(publishes(a, netTopics.rtt('w1'))[0]?.payload, { peers: [{ worker_id: 'w2', rtt_ms: 5 }, { worker_id: 'w3', rtt_ms: 2 }] });
  const s = a.find((e) => e.type === 'services');
  assert.ok(s && s.type === 'services');
  assert.equal(s.services[0]?.closest?.nsip, '10.18.0.194');
  const b = core.rttResults(new Map([['w3', null]]), 2);
  const s2 = b.find((e) => e.type === 'services');
  assert.ok(s2 && s2.type === 'services');
  assert.equal(s2.services[0]?.closest?.nsip, '10.18.0.130');
  assert.ok(!core.rttResults(new Map([['w3', null]]), 3).some((e) => e.type === 'services'), 'no change, no reprogramming');
  assert.ok(!core.rttResults(new Map([['w9', 1]]), 3).some((e) => e.type === 'publish' && JSON.stringify(e.payload).includes('w9')), 'no RTT for strangers');
});

test('reconnect: subnet asked again, instances announced again, every table queried again', () => {
  const core = registered();
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0);
  core.use(OTHER, 0);
  const fx = core.connected(100);
  assert.equal(publishes(fx, netTopics.subnet('w1')).length, 1);
  assert.equal(publishes(fx, netTopics.serviceDeployed('w1')).length, 1);
  assert.deepEqual(publishes(fx, netTopics.tableQueryRequest('w1')).map((e) => (e.payload as TableQueryRequest).job_name).sort(), [OTHER, JOB].sort());
});

test('snapshot and restore: a restarted core knows its instances and interest and asks again', () => {
  const core = registered();
  core.deploy({ job_name: JOB, instance_number: 0, nsip: '10.18.0.66' }, 0);
  core.use(OTHER, 0);
  const snap = core.snapshot();
  const again = new NetCore({ hostIp: '192.0.2.10', hostPort: 50103 });
  again.attach('w1', { subnet: '10.18.0.64/26', subnet_v6: null });
  again.restore(JSON.parse(JSON.stringify(snap)) as typeof snap, 50);
  assert.equal(again.registered, true);
  const fx = again.connected(60);
  assert.equal(fx.filter((e) => e.type === 'subscribe').length, 2);
  assert.equal(publishes(fx, netTopics.tableQueryRequest('w1')).length, 2);
  assert.equal(publishes(fx, netTopics.serviceDeployed('w1')).length, 1);
  // another identity starts from scratch
  const other = again.attach('w9');
  assert.ok(other.some((e) => e.type === 'forget' && e.nsip === '10.18.0.66'));
  assert.equal(again.local.size, 0);
  assert.equal(again.registered, false);
});

test('DNS lookups: forward outside .oak, NXDOMAIN for bad .oak shapes, wait then answer', () => {
  assert.equal(inZone('example.com'), false);
  assert.equal(inZone('x.oak') && parseOverlayName('x.oak') === undefined, true);
  assert.equal(parseOverlayName('Web.Default.App.NS.oak.')?.job_name, 'app.ns.web.default');
  assert.equal(parseOverlayName('2.web.default.app.ns.oak')?.instance_number, 2);
  const core = registered();
  assert.deepEqual(core.lookup('example.com', 'A', 0), { kind: 'forward' });
  assert.deepEqual(core.lookup('a.b.oak', 'A', 0), { kind: 'answer', addresses: null });
  const w = core.lookup('web.default.app.ns.oak', 'A', 0);
  assert.equal(w.kind, 'wait');
  assert.ok(w.kind === 'wait' && publishes(w.effects, netTopics.tableQueryRequest('w1')).length === 1);
  const q = core.pending.get(`job:${JOB}`);
  assert.ok(q);
  core.tableResult({ request_id: q.request_id, table: table(JOB, [entry(0, 'w2', '10.18.0.130', { instance_ip_v6: 'fdff::10' })]) }, 1);
  assert.deepEqual(core.lookup('web.default.app.ns.oak', 'A', 2), { kind: 'answer', addresses: ['10.30.0.2'] });
  assert.deepEqual(core.lookup('web.default.app.ns.oak', 'AAAA', 2), { kind: 'answer', addresses: ['fdff::2'] });
  assert.deepEqual(core.lookup('0.web.default.app.ns.oak', 'A', 2), { kind: 'answer', addresses: ['10.30.0.10'] });
  assert.deepEqual(core.lookup('0.web.default.app.ns.oak', 'AAAA', 2), { kind: 'answer', addresses: ['fdff::10'] });
  assert.deepEqual(core.lookup('7.web.default.app.ns.oak', 'A', 2), { kind: 'answer', addresses: null });
  assert.equal(core.lookup('db.default.app.ns.oak', 'AAAA', 3).kind, 'wait');
  core.tableResult({ request_id: (core.pending.get('job:app.ns.db.default') ?? { request_id: 'x' }).request_id, table: { ...table(OTHER, []), service_ip_v6: null } }, 3);
  assert.deepEqual(core.lookup('db.default.app.ns.oak', 'AAAA', 3), { kind: 'answer', addresses: [] }, 'exists, no v6: NODATA');
});

test('hostile: an instance scanning the virtual pool cannot flood the cluster; interest is bounded', () => {
  const core = registered({ maxAddressQueries: 3, maxInterest: 2 });
  let sent = 0;
  for (let i = 0; i < 100; i++) sent += publishes(core.unknownAddress(`10.30.0.${i}`, 0), netTopics.tableQueryRequest('w1')).length;
  assert.equal(sent, 3);
  core.use('a.b.c.d', 0);
  core.use('a.b.c.e', 0);
  assert.deepEqual(core.use('a.b.c.f', 0), []);
  assert.equal(core.interest.size, 2);
});
