/**
 * The NodeEngine's side of the overlay (issue 8) against a fake NetManager: an HTTP server on
 * 127.0.0.1:0 speaking the local API (contracts net.ts) with its key file in a temp dir. Real
 * bridge, namespaces and nftables (namespace `h6x<run>`), real process instances as the workload
 * user, the testkit's fake cluster with a real (TLS) broker.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, readFile, stat, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeployCommand, NetRegisterAnswer } from '@oak/contracts';
import { bridgePlan, tagOf } from '@oak/net';
import { ProcessRuntime, lookupUser } from '@oak/runtimes';
import type { Runtime } from '@oak/runtimes';
import { shortId, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import type { NodeEngineConfig } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { removeInstanceNetwork } from '../src/network.ts';
import { planOfAnswer, sameAnswer } from '../src/netmanager.ts';
import { FakeCluster } from './helpers/cluster.ts';
import { FakeNetManager } from './helpers/netmanager.ts';

const missing = ['nft', 'ip', 'nsenter', 'setpriv', 'unshare', 'mount'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false;

const run = shortId(3);
const namespace = `h6x${run}`;
const hostileNs = `h6y${run}`;
const upgradeNs = `h6u${run}`;
const user = lookupUser('oak-workload') ?? lookupUser('nobody');
// a /26 and /64 of the overlay plan no other test on this kernel is likely to use
const third = 200 + (parseInt(tagOf(namespace), 16) % 50);
const answer: NetRegisterAnswer = {
  subnet: `10.18.${third}.64/26`,
  subnet_v6: `fdff:18:0:${third.toString(16)}01::/64`,
  gateway: `10.18.${third}.65`,
  gateway_v6: `fdff:18:0:${third.toString(16)}01::1`,
  tunnel_device: `h6t${run}`,
  mtu: 1400,
  dns: `10.18.${third}.65`,
};
const plan = bridgePlan(namespace, answer.subnet, { subnetV6: answer.subnet_v6, mtu: answer.mtu });
const dummy = `h6d${run}`;

let cluster: FakeCluster;
let dir: TmpDir;
let dataDir: string;
let nm: FakeNetManager;
let engine: NodeEngineHandle | undefined;
const lines: string[] = [];
const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };

function runtimes(data: string): Runtime[] {
  return [new ProcessRuntime({ dataDir: join(data, 'proc'), runAs: user, workRoot: join(dir.path, `work-${data.slice(-4)}`), cgroupParent: namespace })];
}

function start(over: Partial<NodeEngineConfig> = {}): Promise<NodeEngineHandle> {
  const data = over.dataDir ?? dataDir;
  return startNodeEngine(
    {
      clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: nm.port, useNetManager: true, netmanagerKeyDir: dir.path,
      netmanagerWaitMs: 3000, netmanagerCheckMs: 200, dataDir, reportIntervalMs: 300, log, namespace, isolation: 'on', joinToken: cluster.token, ...over,
    },
    { runtimes: runtimes(data) },
  );
}

function cmd(svc: string, n: number, script: string): DeployCommand {
  return {
    microservice_name: svc, microservice_namespace: 'test', virtualization: 'process', code: '/bin/sh', cmd: ['-c', script],
    job_name: `h6${run}.test.${svc}.test`, instance_number: n,
    overlay: { service_ip: '10.30.0.5', service_ip_v6: 'fdff::5', closest_ip: '10.30.0.6', instance_ip: `10.30.0.${10 + n}`, instance_ip_v6: `fdff::${10 + n}` },
  };
}

function instanceLog(id: string): Promise<string> {
  return readFile(join(dataDir, 'proc', 'instances', id, 'log'), 'utf8').catch(() => '');
}

function addresses(dev: string, ns?: string): string[] {
  const args = [...(ns !== undefined ? ['-n', ns] : []), '-j', 'addr', 'show', 'dev', dev];
  const j = JSON.parse(spawnSync('ip', args, { encoding: 'utf8' }).stdout || '[]') as { addr_info?: { local: string; prefixlen: number; scope: string }[] }[];
  return (j[0]?.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`);
}

function netnsOf(tag: string): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`oak-${tag}-`));
}

before(async () => {
  if (skip !== false) return;
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-h6-nm');
  await chmod(dir.path, 0o755);
  dataDir = join(dir.path, 'data');
  nm = new FakeNetManager(dir.path, answer);
  await nm.start();
});

after(async () => {
  if (skip !== false) return;
  await engine?.shutdown({ stopInstances: true }).catch(() => {});
  await removeInstanceNetwork({ namespace, dataDir });
  await removeInstanceNetwork({ namespace: hostileNs, dataDir: join(dir.path, 'hostile') });
  await removeInstanceNetwork({ namespace: upgradeNs, dataDir: join(dir.path, 'upgrade') });
  spawnSync('ip', ['link', 'del', dummy]);
  await nm?.stop();
  await cluster?.close();
  await dir?.remove();
  const left = [...netnsOf(tagOf(namespace)), ...netnsOf(tagOf(hostileNs)), ...netnsOf(tagOf(upgradeNs))];
  assert.deepEqual(left, [], 'no namespace left behind');
  assert.doesNotMatch(spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout, new RegExp(`oak_(${tagOf(namespace)}|${tagOf(hostileNs)}|${tagOf(upgradeNs)})`));
});

test('planOfAnswer refuses answers that are not private, not the first host, or hostile names', () => {
  assert.equal(planOfAnswer(namespace, answer).cidr, answer.subnet);
  const bad = (o: Partial<NetRegisterAnswer>): (() => unknown) => () => planOfAnswer(namespace, { ...answer, ...o });
  assert.throws(bad({ subnet: '8.8.8.0/26', gateway: '8.8.8.1' }), /cannot be used: .*not a private/);
  assert.throws(bad({ subnet: '10.18.0.64/30' }), /between \/16 and \/29/);
  assert.throws(bad({ gateway: `10.18.${third}.66` }), /not the first host/);
  assert.throws(bad({ subnet_v6: '2001:db8::/64', gateway_v6: '2001:db8::1' }), /unique-local/);
  assert.throws(bad({ gateway_v6: null }), /IPv6 gateway/);
  assert.throws(bad({ dns: '1.1.1.1' }), /resolver 1\.1\.1\.1 is not on the bridge gateway/);
  assert.throws(bad({ tunnel_device: 'x"; flush ruleset' }), /not a device name/);
  assert.throws(bad({ tunnel_device: plan.bridge }), /is the instance bridge/);
  assert.throws(bad({ mtu: 1000 }), /IPv6 needs 1280/);
  assert.equal(sameAnswer(answer, { ...answer }), true);
  assert.equal(sameAnswer(answer, { ...answer, mtu: 1450 }), false);
});

test('register with the worker identity, bridge on the /26 + /64, instances with v4+v6, MTU, resolv.conf; notices queued and replayed; restart re-announces', { skip, timeout: 120_000 }, async () => {
  engine = await start();
  const id = engine.id;
  // 1. registration with the worker's own identity
  const reg = nm.of('/register')[0]?.body;
  assert.ok(reg !== undefined, lines.join('\n'));
  assert.equal(reg['worker_id'], id);
  assert.equal(reg['mqtt_url'], `mqtts://127.0.0.1:${cluster.brokerPort}`);
  assert.equal(reg['mqtt_username'], id);
  assert.equal(reg['mqtt_password'], cluster.password(id));
  assert.match(String(reg['mqtt_ca']), /^-----BEGIN CERTIFICATE-----/);
  assert.equal(reg['namespace'], namespace);
  assert.equal(reg['bridge'], plan.bridge);
  // persisted before acting
  assert.deepEqual((JSON.parse(await readFile(join(dataDir, 'netmanager.json'), 'utf8')) as { answer: unknown }).answer, answer);
  // 2. the bridge on the NetManager's subnets, the rules with the overlay
  assert.deepEqual(addresses(plan.bridge).sort(), [`${answer.gateway}/26`, `${answer.gateway_v6 as string}/64`].sort());
  const rules = spawnSync('nft', ['list', 'table', 'ip', plan.table], { encoding: 'utf8' }).stdout;
  assert.match(rules, new RegExp(`iifname "${answer.tunnel_device}" ip saddr 10\\.18\\.0\\.0/16 accept`));
  assert.match(rules, /udp dport 53 accept/);
  assert.match(spawnSync('nft', ['list', 'table', 'ip6', plan.table], { encoding: 'utf8' }).stdout, /ip6 saddr fdff:18:0:[0-9a-f]+::\/64 ip6 daddr != \{ [^}]*fdff:18::\/48[^}]*\} oifname != "oakb[0-9a-f]+" masquerade/);
  assert.equal((await stat(join(dataDir, 'net', 'resolv.conf'))).mode & 0o777, 0o644);

  // 3. an instance: v4 + v6 of the same index, default routes, MTU, the resolver
  const probe = [
    'cat /etc/resolv.conf',
    'ip -o addr show dev eth0 scope global | while read -r _ _ fam a _; do echo "addr=$fam $a"; done',
    'echo "mtu=$(cat /sys/class/net/eth0/mtu)"',
    'ip route show default | sed "s/^/route4=/"', 'ip -6 route show default | sed "s/^/route6=/"',
    'echo probe-done', 'exec sleep 600',
  ].join('; ');
  const c0 = cmd('web', 0, probe);
  const id0 = `${c0.job_name}.instance.0`;
  await cluster.publish(`nodes/${id}/control/deploy`, c0);
  await cluster.waitJob(id, c0.job_name, 'RUNNING', 30_000);
  const log0 = await waitFor(async () => { const t = await instanceLog(id0); return /probe-done/.test(t) ? t : undefined; }, { timeoutMs: 10_000, message: 'probe output' });
  assert.match(log0, new RegExp(`^# the oak NodeEngine.*\\nnameserver ${answer.gateway.replace(/\./g, '\\.')}\\n`));
  const nsip = `10.18.${third}.66`;
  const nsip6 = `${(answer.gateway_v6 as string).slice(0, -1)}2`;
  assert.match(log0, new RegExp(`addr=inet ${nsip.replace(/\./g, '\\.')}/26`));
  assert.match(log0, new RegExp(`addr=inet6 ${nsip6}/64`));
  assert.match(log0, /mtu=1400/);
  assert.match(log0, new RegExp(`route4=default via ${answer.gateway.replace(/\./g, '\\.')}`));
  assert.match(log0, new RegExp(`route6=default via ${answer.gateway_v6 as string}`));
  assert.equal(await readFile('/etc/resolv.conf', 'utf8').then((t) => t.includes('# the oak NodeEngine')), false, 'the host keeps its resolv.conf');
  // 4. the deploy notice with the namespace addresses and the deploy's overlay addresses
  const dep = await waitFor(() => nm.of('/instance/deploy').find((r) => r.body['job_name'] === c0.job_name)?.body, { timeoutMs: 5000, message: 'deploy notice' });
  assert.deepEqual(dep, { job_name: c0.job_name, instance_number: 0, nsip, nsip_v6: nsip6, overlay: c0.overlay });

  // 5. the NetManager goes away: instances still start, notices wait; it comes back: replayed
  await nm.stop();
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: c0.job_name, instance_number: 0, virtualization: 'process' });
  await cluster.waitJob(id, c0.job_name, 'UNDEPLOYED', 30_000);
  const c1 = cmd('api', 1, 'exec sleep 600');
  await cluster.publish(`nodes/${id}/control/deploy`, c1);
  const r1 = await cluster.waitJob(id, c1.job_name, 'RUNNING', 30_000);
  assert.match(String(r1['status_detail']), new RegExp(`address 10\\.18\\.${third}\\.\\d+ fdff:`));
  await waitFor(() => lines.some((l) => /not reachable/.test(l) && /retrying in the background/.test(l)), { timeoutMs: 5000, message: 'one warning line' });
  const before = nm.requests.length;
  await nm.start(nm.port);
  await waitFor(() => nm.of('/instance/undeploy').some((r) => r.body['job_name'] === c0.job_name && r.body['instance_number'] === 0), { timeoutMs: 10_000, message: 'undeploy replayed' });
  await waitFor(() => nm.of('/instance/deploy').some((r) => r.body['instance_number'] === 1), { timeoutMs: 10_000, message: 'deploy replayed' });
  assert.ok(nm.requests.slice(before).some((r) => r.path === '/register'), 'registered again with the new key');
  assert.equal(lines.filter((l) => /not reachable/.test(l)).length <= 2, true, `not one line per retry: ${lines.filter((l) => /not reachable/.test(l)).join('\n')}`);

  // 6. NodeEngine restart: re-adopts the namespace (same subnet) and announces it again
  const ns1 = netnsOf(plan.tag).sort();
  await engine.close();
  engine = undefined;
  nm.requests.length = 0;
  engine = await start();
  assert.equal(engine.id, id);
  await waitFor(() => nm.of('/instance/deploy').find((r) => r.body['instance_number'] === 1), { timeoutMs: 10_000, message: 're-announced after restart' });
  const again = nm.of('/instance/deploy').find((r) => r.body['instance_number'] === 1)?.body;
  assert.equal(again?.['nsip'], String(r1['status_detail']).match(/address (\S+)/)?.[1]);
  assert.deepEqual(again?.['overlay'], c1.overlay);
  assert.ok(netnsOf(plan.tag).some((n) => ns1.includes(n)), 'the instance kept its namespace');
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: c1.job_name, instance_number: 1, virtualization: 'process' });
  await waitFor(() => nm.of('/instance/undeploy').some((r) => r.body['instance_number'] === 1), { timeoutMs: 10_000, message: 'undeploy after restart' });

  // 7. a restart while the NetManager is away: the bridge on the persisted subnet, instances start
  await engine.close();
  engine = undefined;
  await nm.stop();
  nm.requests.length = 0;
  engine = await start({ netmanagerWaitMs: 500 });
  assert.ok(lines.some((l) => l.includes(`building the bridge on the subnet it gave before (${answer.subnet})`)), lines.join('\n'));
  assert.deepEqual(addresses(plan.bridge).sort(), [`${answer.gateway}/26`, `${answer.gateway_v6 as string}/64`].sort());
  const c2 = cmd('db', 2, 'exec sleep 600');
  await cluster.publish(`nodes/${id}/control/deploy`, c2);
  const r2 = await cluster.waitJob(id, c2.job_name, 'RUNNING', 30_000);
  assert.match(String(r2['status_detail']), new RegExp(`address 10\\.18\\.${third}\\.\\d+ fdff:`));
  await nm.start(nm.port);
  await waitFor(() => nm.of('/instance/deploy').some((r) => r.body['job_name'] === c2.job_name), { timeoutMs: 10_000, message: 'deploy sent once the NetManager is there' });
});

test('hostile NetManager answers (overlapping a host route, not private) are refused clearly; instances stay isolated', { skip, timeout: 60_000 }, async () => {
  const hostileData = join(dir.path, 'hostile');
  // a route of this machine (on a device this test made) over the subnet the NetManager will give
  const taken = `10.18.${third}.128/25`;
  assert.equal(spawnSync('ip', ['link', 'add', dummy, 'type', 'bridge']).status, 0);
  assert.equal(spawnSync('ip', ['link', 'set', dummy, 'up']).status, 0);
  assert.equal(spawnSync('ip', ['route', 'add', taken, 'dev', dummy]).status, 0);
  const hostile = new FakeNetManager(dir.path, { ...answer, subnet: `10.18.${third}.128/26`, gateway: `10.18.${third}.129`, dns: `10.18.${third}.129` });
  await hostile.start();
  const hostileLines: string[] = [];
  const hlog = { info: (m: string) => hostileLines.push(m), warn: (m: string) => hostileLines.push(m), error: (m: string) => hostileLines.push(m) };
  const e = await start({ namespace: hostileNs, dataDir: hostileData, netmanagerPort: hostile.port, log: hlog, netmanagerWaitMs: 500 });
  try {
    assert.ok(hostileLines.some((l) => /refusing the NetManager's subnet: the instance bridge subnet 10\.18\.\d+\.128\/26 overlaps the route/.test(l)), hostileLines.join('\n'));
    // still isolated, on the default bridge, nothing persisted
    const def = bridgePlan(hostileNs);
    assert.deepEqual(addresses(def.bridge), [`${def.gateway}/24`]);
    await assert.rejects(stat(join(hostileData, 'netmanager.json')), /ENOENT/);
    // not private: refused with the reason, once
    hostile.reply = { ...answer, subnet: '8.8.8.0/26', gateway: '8.8.8.1', dns: null };
    await waitFor(() => hostileLines.some((l) => /not a private/.test(l)), { timeoutMs: 5000, message: 'not private refused' });
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(hostileLines.filter((l) => /not a private/.test(l)).length, 1, 'one line, not one per retry');
    assert.equal(hostile.of('/instance/deploy').length, 0);
    // a key that is not the NetManager's: refused (401), nothing taken
    await writeFile(join(dir.path, `netmanager-${hostile.port}.key`), 'wrong-key\n');
    await waitFor(() => hostileLines.some((l) => /refused the key \(401\)/.test(l)), { timeoutMs: 5000, message: 'bad key' });
  } finally {
    await e.shutdown({ stopInstances: true });
    await hostile.stop();
    await rm(join(dir.path, `netmanager-${hostile.port}.key`), { force: true });
    spawnSync('ip', ['link', 'del', dummy]);
  }
});

test('an upgrade to the overlay: instances from before keep their bridge; it moves onto the NetManager\'s subnet when they are gone', { skip, timeout: 90_000 }, async () => {
  const data = join(dir.path, 'upgrade');
  const sub = `10.18.${third}.192/26`;
  const up = new FakeNetManager(dir.path, { ...answer, subnet: sub, gateway: `10.18.${third}.193`, dns: `10.18.${third}.193`, subnet_v6: null, gateway_v6: null });
  await up.start();
  const ulines: string[] = [];
  const ulog = { info: (m: string) => ulines.push(m), warn: (m: string) => ulines.push(m), error: (m: string) => ulines.push(m) };
  const def = bridgePlan(upgradeNs);
  // before: no -n, an instance on the default bridge
  let e = await start({ namespace: upgradeNs, dataDir: data, log: ulog, useNetManager: undefined, netmanagerPort: null });
  const id = e.id;
  const c = cmd('old', 0, 'exec sleep 600');
  try {
    await cluster.publish(`nodes/${id}/control/deploy`, c);
    const r = await cluster.waitJob(id, c.job_name, 'RUNNING', 30_000);
    assert.match(String(r['status_detail']), new RegExp(`address ${def.gateway.replace(/\.1$/, '').replace(/\./g, '\\.')}\\.\\d+`));
    await e.close();
    // after: -n; the NetManager answers, the instance keeps its namespace on the default bridge
    e = await start({ namespace: upgradeNs, dataDir: data, log: ulog, netmanagerPort: up.port, netmanagerWaitMs: 2000 });
    assert.ok(ulines.some((l) => /instance\(s\) from before run on .*the bridge moves when they are gone/.test(l)), ulines.join('\n'));
    assert.deepEqual(addresses(def.bridge), [`${def.gateway}/24`]);
    assert.equal(up.of('/instance/deploy').length, 0, 'no notice with an address outside the overlay subnet');
    // the instance goes: the bridge moves, and is announced from then on
    await cluster.publish(`nodes/${id}/control/delete`, { job_name: c.job_name, instance_number: 0, virtualization: 'process' });
    await waitFor(() => addresses(def.bridge).includes(`10.18.${third}.193/26`), { timeoutMs: 15_000, message: 'the bridge on the overlay subnet' });
    const c1 = cmd('new', 1, 'exec sleep 600');
    await cluster.publish(`nodes/${id}/control/deploy`, c1);
    await cluster.waitJob(id, c1.job_name, 'RUNNING', 30_000);
    await waitFor(() => up.of('/instance/deploy').some((q) => q.body['nsip'] === `10.18.${third}.194`), { timeoutMs: 10_000, message: 'announced on the new subnet' });
  } finally {
    await e.shutdown({ stopInstances: true });
    await up.stop();
  }
});
