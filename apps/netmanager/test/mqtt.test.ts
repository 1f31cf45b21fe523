/**
 * The NetManager against a real broker (aedes, port 0) and a fake cluster that answers subnet and
 * table queries and publishes updates, with fakes for the datapath and the resolver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { netTopics } from '@oak/contracts';
import type { NetRegisterAnswer, ServiceDeployed, SubnetRequest, TableQueryRequest } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { createCa, issueIdentity } from '@oak/trust';
import { CLUSTER_SERVICE_NAME } from '@oak/trust/tls';
import { startNetManager } from '../src/netmanager.ts';
import { statePath } from '../src/state.ts';
import { NETMANAGER_VERSION } from '../src/config.ts';
import { fakeDatapaths, fakeResolvers } from './fakes.ts';
import { CACHE, DB, WEB, api, entry, options, publishPeers, register, withEnv } from './harness.ts';

test('register, subnet, peers, deploy, table query, an update within 1 s, DNS, unknown traffic, restart, undeploy', async () => {
  await withEnv(async (env) => {
    const { cluster } = env;
    cluster.tables.set(WEB, { job_name: WEB, service_ip: '10.30.1.2', service_ip_v6: 'fdff::1:2', closest_ip: '10.30.1.3', closest_ip_v6: null, instances: [entry(0, 'w1', '10.18.0.66'), entry(1, 'w2', '10.18.0.130')] });
    cluster.tables.set(DB, { job_name: DB, service_ip: '10.30.2.2', service_ip_v6: null, closest_ip: null, closest_ip_v6: null, instances: [entry(0, 'w2', '10.18.0.131')] });
    cluster.tables.set(CACHE, { job_name: CACHE, service_ip: '10.30.3.2', service_ip_v6: null, closest_ip: null, closest_ip_v6: null, instances: [entry(0, 'w2', '10.18.0.132')] });
    cluster.byIp.set('10.30.3.2', CACHE);
    // the retained peer list is there before the NetManager subscribes
    await publishPeers(env, [
      { worker_id: 'w1', subnet: '10.18.0.64/26', host_ip: '127.0.0.1', host_port: 50103 },
      { worker_id: 'w2', subnet: '10.18.0.128/26', subnet_v6: 'fdff:18:0:2::/64', host_ip: '127.0.0.2', host_port: 50103 },
    ]);

    const dps = fakeDatapaths();
    const rs = fakeResolvers();
    let nm = await startNetManager(options(env, { datapath: dps.factory, resolver: rs.factory, upstreams: ['192.0.2.53'] }));
    try {
      assert.equal((await stat(nm.keyPath)).mode & 0o777, 0o600);
      assert.equal((await api(nm, 'POST', '/instance/deploy', { job_name: WEB, instance_number: 0, nsip: '10.18.0.66' })).status, 409, 'deploy before register');

      const reg = await api(nm, 'POST', '/register', register(env));
      assert.equal(reg.status, 200, JSON.stringify(reg.json));
      assert.deepEqual(reg.json as NetRegisterAnswer, {
        subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64', gateway: '10.18.0.65', gateway_v6: 'fdff:18:0:1::1', tunnel_device: 'oakxh2test', mtu: 1450, dns: '10.18.0.65',
        // its version: what the NodeEngine reports as netmanager_version (oak node ls, fleet versions)
        version: NETMANAGER_VERSION,
      });
      assert.ok(env.clients.some((c) => c.clientId === 'w1-net' && c.username === 'w1-net'), 'its own client id and user name <worker>-net, the worker password');
      assert.deepEqual(cluster.of(netTopics.subnet('w1'))[0] as SubnetRequest, { method: 'get', host_ip: '127.0.0.1', host_port: 50103 });
      const dp = dps.last();
      assert.deepEqual({ ns: dp.opts.namespace, br: dp.opts.bridge, subnet: dp.opts.subnet, v6: dp.opts.subnet_v6, addr: dp.opts.publicAddress, port: dp.opts.publicPort, vni: dp.opts.vni },
        { ns: 'h2t', br: 'oakbh2t', subnet: '10.18.0.64/26', v6: 'fdff:18:0:1::/64', addr: '127.0.0.1', port: 50103, vni: 18 });
      assert.equal(dp.inits, 1);
      assert.deepEqual(rs.all[0]?.listening, [{ host: '10.18.0.65', port: 53 }, { host: 'fdff:18:0:1::1', port: 53 }]);
      assert.deepEqual(rs.all[0]?.upstreams, ['192.0.2.53']);
      await waitFor(() => dp.peers.length === 1 && dp.peers[0]?.worker_id === 'w2', { message: 'remote peers programmed' });

      // deploy: service/deployed and the own table
      assert.equal((await api(nm, 'POST', '/instance/deploy', { job_name: WEB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2' })).status, 204);
      const dep = await waitFor(() => cluster.of(netTopics.serviceDeployed('w1'))[0] as ServiceDeployed | undefined);
      assert.deepEqual(dep, { job_name: WEB, instance_number: 0, nsip: '10.18.0.66', nsip_v6: 'fdff:18:0:1::2', host_ip: '127.0.0.1', host_port: 50103, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' });
      await waitFor(() => dp.services.find((s) => s.job_name === WEB)?.instances.length === 2, { message: 'web table programmed' });
      assert.deepEqual(dp.services.find((s) => s.job_name === WEB)?.closest, { nsip: '10.18.0.66', nsip_v6: null }, 'local first');
      assert.equal((await api(nm, 'POST', '/instance/deploy', { job_name: WEB, instance_number: 3, nsip: '10.18.1.66' })).status, 400, 'outside the subnet');

      // an update: reflected within 1 s, the instance gone is forgotten
      const t0 = Date.now();
      await cluster.bus.publishJson(netTopics.jobUpdates(WEB), { ...cluster.tables.get(WEB), instances: [entry(0, 'w1', '10.18.0.66')] });
      await waitFor(() => dp.services.find((s) => s.job_name === WEB)?.instances.length === 1 && dp.forgotten.includes('10.18.0.130'), { timeoutMs: 1000, intervalMs: 10, message: 'update within 1 s' });
      assert.ok(Date.now() - t0 < 1000);

      // invalid messages are ignored (logged once), nothing breaks
      await cluster.bus.publish(netTopics.jobUpdates(WEB), 'not json');
      await cluster.bus.publishJson(netTopics.jobUpdates(WEB), { job_name: WEB, instances: 'no' });
      await cluster.bus.publishJson(netTopics.tableQueryResult('w1'), { request_id: 'x y' });
      await cluster.bus.publishJson(netTopics.peers, { peers: [{ worker_id: 'w3' }] });
      await cluster.bus.publishJson(netTopics.jobUpdates(WEB), { ...cluster.tables.get(WEB), job_name: DB });

      // DNS: a name without table asks for it and answers
      const lookup = rs.all[0]?.lookup;
      assert.ok(lookup);
      assert.equal(await lookup('example.com', 'A'), undefined, 'forwarded');
      assert.deepEqual(await lookup('db.default.app.ns.oak', 'A'), ['10.30.2.2']);
      assert.deepEqual(await lookup('0.db.default.app.ns.oak', 'A'), ['10.30.1.10']);
      assert.equal(await lookup('nope.default.app.ns.oak', 'A'), undefined, 'no such service: NXDOMAIN');
      await waitFor(() => dp.services.some((s) => s.job_name === DB));

      // traffic to an address without translation: asked by ip, programmed
      assert.ok(dp.unknown);
      dp.unknown('10.30.3.2');
      dp.unknown('10.30.3.2');
      await waitFor(() => dp.services.some((s) => s.job_name === CACHE), { timeoutMs: 1000, message: 'unknown address programmed' });
      const byIp = cluster.of(netTopics.tableQueryRequest('w1')).filter((q) => (q as TableQueryRequest).ip === '10.30.3.2');
      assert.equal(byIp.length, 1, 'deduplicated');

      const st = await api(nm, 'GET', '/status');
      assert.equal(st.status, 200);
      const status = st.json as { subnet: string; peers: number; tables: Array<{ job_name: string }>; mqtt_connected: boolean };
      assert.equal(status.subnet, '10.18.0.64/26');
      assert.equal(status.peers, 1);
      assert.equal(status.mqtt_connected, true);
      assert.deepEqual(status.tables.map((t) => t.job_name), [CACHE, DB, WEB]);

      // restart: re-attached from netmanager.json without /register, tables asked for again
      assert.equal((await stat(statePath(`${env.dir.path}/data`))).mode & 0o777, 0o600);
      await nm.close();
      assert.equal(dp.closed, 1);
      assert.equal(dp.cleaned, 0, 'close leaves the kernel state');
      const before = cluster.of(netTopics.tableQueryRequest('w1')).length;
      const deployedBefore = cluster.of(netTopics.serviceDeployed('w1')).length;
      nm = await startNetManager(options(env, { datapath: dps.factory, resolver: rs.factory }));
      const dp2 = dps.last();
      assert.notEqual(dp2, dp);
      assert.equal(dp2.inits, 1);
      assert.equal(dp2.opts.subnet, '10.18.0.64/26');
      await waitFor(() => cluster.of(netTopics.tableQueryRequest('w1')).length >= before + 3, { message: 'tables asked for again' });
      await waitFor(() => cluster.of(netTopics.serviceDeployed('w1')).length > deployedBefore, { message: 'instances announced again' });
      await waitFor(() => dp2.services.length === 3 && dp2.peers.length === 1);

      // the last local instance leaves: service/undeployed, forgotten, interest removed everywhere
      assert.equal((await api(nm, 'POST', '/instance/undeploy', { job_name: WEB, instance_number: 0 })).status, 204);
      assert.equal((await api(nm, 'POST', '/instance/undeploy', { job_name: WEB, instance_number: 7 })).status, 204, 'unknown instance');
      await waitFor(() => cluster.of(netTopics.serviceUndeployed('w1')).length === 1);
      const removed = () => new Set(cluster.of(netTopics.interestRemove('w1')).map((p) => (p as { job_name: string }).job_name));
      await waitFor(() => [CACHE, DB, WEB].every((j) => removed().has(j)), { message: 'interest/remove for every job' });
      assert.ok(removed().has('app.ns.nope.default'), 'the interest in a service that does not exist went at once');
      assert.ok(dp2.forgotten.includes('10.18.0.66'));
      await waitFor(() => dp2.services.length === 0);
      // unsubscribed: a later update is not taken
      const calls = dp2.serviceCalls;
      await cluster.bus.publishJson(netTopics.jobUpdates(WEB), cluster.tables.get(WEB));
      const marker = cluster.of(netTopics.tableQueryRequest('w1')).length;
      dp2.unknown?.('10.30.9.9');
      await waitFor(() => cluster.of(netTopics.tableQueryRequest('w1')).length > marker);
      assert.equal(dp2.serviceCalls, calls);

      // clean: the datapath's clean, the state and the key file go
      const keyPath = nm.keyPath;
      await nm.clean();
      assert.equal(dp2.cleaned, 1);
      await assert.rejects(stat(statePath(`${env.dir.path}/data`)));
      await assert.rejects(stat(keyPath));
    } finally {
      await nm.close();
    }
  });
});

test('no subnet from the cluster: /register answers 503 with a hint; a late answer lets the next one through', async () => {
  await withEnv(async (env) => {
    env.cluster.answerSubnets = false;
    const dps = fakeDatapaths();
    const nm = await startNetManager(options(env, { datapath: dps.factory, resolver: null, registerTimeoutMs: 300 }));
    try {
      const r = await api(nm, 'POST', '/register', register(env));
      assert.equal(r.status, 503);
      const e = (r.json as { error: { code: string; hint: string } }).error;
      assert.equal(e.code, 'OAK_UNAVAILABLE');
      assert.match(e.hint, /broker/);
      assert.equal(dps.all.length, 0);
      env.cluster.answerSubnets = true;
      // the core asks again every 2 s
      const ok = await waitFor(async () => { const x = await api(nm, 'POST', '/register', register(env)); return x.status === 200 ? x : undefined; }, { timeoutMs: 8000, intervalMs: 100 });
      assert.equal((ok.json as NetRegisterAnswer).dns, null, 'no resolver');
      assert.equal(dps.all.length, 1);
    } finally {
      await nm.close();
    }
  });
});

test('RTT: the prober measures the peers\' gateways and the NetManager reports nodes/<id>/net/rtt', async () => {
  await withEnv(async (env) => {
    // a peer whose gateway is 127.0.0.1: the probes stay on loopback (this NetManager answers them itself)
    await publishPeers(env, [
      { worker_id: 'w1', subnet: '10.18.0.64/26', host_ip: '127.0.0.1', host_port: 50103 },
      { worker_id: 'wl', subnet: '127.0.0.0/26', host_ip: '127.0.0.1', host_port: 50103 },
    ]);
    const dps = fakeDatapaths();
    const nm = await startNetManager(options(env, { datapath: dps.factory, resolver: null, probe: true, probeHost: '127.0.0.1', probePort: 0, probeIntervalMs: 100 }));
    try {
      assert.equal((await api(nm, 'POST', '/register', register(env))).status, 200);
      const report = await waitFor(() => env.cluster.of(netTopics.rtt('w1')).find((r) => {
        const p = (r as { peers: Array<{ worker_id: string; rtt_ms: number | null }> }).peers;
        return p.some((x) => x.worker_id === 'wl' && typeof x.rtt_ms === 'number');
      }), { message: 'an RTT report with a number' });
      assert.ok(report);
      const st = nm.status() as { rtt: Array<{ worker_id: string; rtt_ms: number | null }> };
      assert.equal(st.rtt[0]?.worker_id, 'wl');
    } finally {
      await nm.close();
    }
  });
});

test('TLS: the broker is verified against the CA from /register (pinned to the cluster name); another CA never connects', async () => {
  const ca = await createCa({ commonName: 'h2 test cluster CA' });
  const other = await createCa({ commonName: 'h2 stranger CA' });
  const id = await issueIdentity(ca, { commonName: CLUSTER_SERVICE_NAME, dnsNames: [CLUSTER_SERVICE_NAME] });
  await withEnv(async (env) => {
    assert.match(env.broker.url, /^mqtts:/);
    const dps = fakeDatapaths();
    const nm = await startNetManager(options(env, { datapath: dps.factory, resolver: null, registerTimeoutMs: 1000 }));
    try {
      const refused = await api(nm, 'POST', '/register', { ...register(env), mqtt_ca: other.certPem });
      assert.equal(refused.status, 503, 'a broker with a certificate of another CA is not trusted');
      assert.ok(!env.clients.some((c) => c.clientId === 'w1-net'));
      const ok = await api(nm, 'POST', '/register', { ...register(env), mqtt_ca: ca.certPem });
      assert.equal(ok.status, 200, JSON.stringify(ok.json));
      assert.ok(env.clients.some((c) => c.clientId === 'w1-net'));
    } finally {
      await nm.close();
    }
  }, { tls: { cert: id.chainPem, key: id.keyPem }, ca: ca.certPem });
});

test('a resolver that cannot start leaves the overlay without DNS, not without a registration', async () => {
  await withEnv(async (env) => {
    const dps = fakeDatapaths();
    const nm = await startNetManager(options(env, { datapath: dps.factory, resolver: () => { throw new Error('bad upstream'); } }));
    try {
      const r = await api(nm, 'POST', '/register', register(env));
      assert.equal(r.status, 200);
      assert.equal((r.json as NetRegisterAnswer).dns, null);
    } finally {
      await nm.close();
    }
  });
});
