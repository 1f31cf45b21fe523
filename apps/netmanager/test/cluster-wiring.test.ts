/**
 * The NetManager against the real cluster (apps/cluster: embedded broker with TLS and worker
 * identities, a fake root on the link answering subnets, the cluster's fake workers): two
 * NetManagers (fake datapaths) register with their worker's credentials as `<id>-net`, get
 * their subnets and each other as peer; an instance's table reaches its own worker on deploy and
 * the other worker through its service IP's traffic; a failed instance leaves the other worker's
 * table within 2 s. Needs the cluster's overlay side (h5-cluster).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger, consoleLogger } from '@oak/bus';
import type { ClusterToRoot, InstanceAddresses, NetRegisterAnswer } from '@oak/contracts';
import { tmpDir, waitFor } from '@oak/testkit';
import { startCluster } from '../../cluster/src/index.ts';
import { assignment } from '../../cluster/test/fixtures.ts';
import { join, joinConfig, startFakeRoot, startFakeWorker } from '../../cluster/test/harness.ts';
import { startNetManager } from '../src/netmanager.ts';
import { fakeDatapaths } from './fakes.ts';

const JOB = 'app.ns.web.ns';
const overlay = (n: number): InstanceAddresses => ({ service_ip: '10.30.0.10', service_ip_v6: 'fdff::a', closest_ip: '10.30.0.11', instance_ip: `10.30.1.${n}`, instance_ip_v6: `fdff::1:${n}` });

test('two NetManagers on the real cluster: subnets, peers, tables by deploy and by traffic, a failed instance leaves within 2 s', async () => {
  const root = await startFakeRoot();
  const subnets = new Map<string, { subnet: string; subnet_v6: string | null }>();
  root.onMessage((m: ClusterToRoot) => {
    if (m.type === 'subnet_request') {
      const s = subnets.get(m.worker_id) ?? { subnet: `10.18.0.${64 * (subnets.size + 1)}/26`, subnet_v6: `fdff:18:0:${subnets.size + 1}::/64` };
      subnets.set(m.worker_id, s);
      root.send({ type: 'subnet_result', request_id: m.request_id, ...s });
    } else if (m.type === 'table_query') {
      root.send({ type: 'table_result', request_id: m.request_id, error: 'no such service' });
    }
  });
  const cluster = await startCluster({ name: 'c1', host: '127.0.0.1', port: 0, mqttPort: 0, reportIntervalMs: 200, aggregateIntervalMs: 300, log: process.env.H2_DEBUG ? consoleLogger('c') : silentLogger, root: { address: root.address, token: root.token }, ...joinConfig() });
  await waitFor(() => cluster.rootConnected);
  root.send({ type: 'sync', instances: [] });
  const w1 = await startFakeWorker(cluster.registrationUrl, 'n1');
  const w2 = await startFakeWorker(cluster.registrationUrl, 'n2');
  const dir = await tmpDir('h2-x');
  const dps = [fakeDatapaths(), fakeDatapaths()] as const;
  const nms = await Promise.all([w1, w2].map((w, i) => startNetManager({ port: 0, keyDir: `${dir.path}/k${i}`, dataDir: `${dir.path}/d${i}`, publicAddress: `127.0.0.${i + 2}`, datapath: dps[i]!.factory, resolver: null, probe: false, tickMs: 50, log: process.env.H2_DEBUG ? consoleLogger(`nm${i}`) : silentLogger })));
  try {
    const ca = join.clusterTls.ca;
    const regs = await Promise.all([w1, w2].map(async (w, i) => {
      const r = await fetch(`http://127.0.0.1:${nms[i]!.port}/register`, { method: 'POST', headers: { authorization: `Bearer ${nms[i]!.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ worker_id: w.id, mqtt_url: cluster.mqttUrl, mqtt_username: w.answer.mqtt_username ?? w.id, mqtt_password: w.answer.mqtt_password, mqtt_ca: ca, namespace: `h2x${i}`, bridge: `h2xb${i}` }) });
      return { status: r.status, json: (await r.json()) as NetRegisterAnswer };
    }));
    assert.deepEqual(regs.map((r) => r.status), [200, 200]);
    assert.deepEqual(regs.map((r) => r.json.subnet), [subnets.get(w1.id)?.subnet, subnets.get(w2.id)?.subnet]);
    assert.notEqual(regs[0]?.json.subnet, regs[1]?.json.subnet);
    await waitFor(() => dps.every((d) => d.last().peers.length === 1), { message: 'peers' });
    root.send({ type: 'deploy', instance: { ...assignment(JOB, 0), overlay: overlay(0) } });
    await waitFor(() => root.statuses(JOB, 0).some((s) => s.status === 'RUNNING'));
    const wid = root.statuses(JOB, 0).at(-1)?.worker_id;
    const i = wid === w1.id ? 0 : 1;
    const s = subnets.get(wid!)!;
    const nsip = s.subnet.replace(/\.(\d+)\/26$/, (_m, d: string) => `.${Number(d) + 2}`);
    const dep = await fetch(`http://127.0.0.1:${nms[i]!.port}/instance/deploy`, { method: 'POST', headers: { authorization: `Bearer ${nms[i]!.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ job_name: JOB, instance_number: 0, nsip, overlay: overlay(0) }) });
    assert.equal(dep.status, 204);
    await waitFor(() => dps[i]!.last().services.some((x) => x.job_name === JOB && x.instances.length === 1), { message: 'own table with instance' });
    assert.deepEqual(dps[i]!.last().services.find((x) => x.job_name === JOB)?.closest, { nsip, nsip_v6: null }, 'closest: the local instance');
    // other worker: DNS-less use via unknown traffic to the service ip
    dps[1 - i]!.last().unknown?.('10.30.0.10');
    await waitFor(() => dps[1 - i]!.last().services.some((x) => x.job_name === JOB && x.instances.length === 1), { message: 'other worker learns by ip' });
    // fails -> leaves the other worker's table
    const w = i === 0 ? w1 : w2;
    await w.publishStatus(JOB, 0, 'FAILED', 'x');
    const t0 = Date.now();
    await waitFor(() => dps[1 - i]!.last().services.some((x) => x.job_name === JOB && x.instances.length === 0), { message: 'gone from the other worker', timeoutMs: 2000, intervalMs: 20 });
    assert.ok(Date.now() - t0 < 2000);
    assert.ok(dps[1 - i]!.last().forgotten.includes(nsip), 'its flows are forgotten there');
  } finally {
    for (const nm of nms) await nm.close();
    await w1.close(); await w2.close();
    await cluster.close(); await root.close(); await dir.remove();
  }
});
