/**
 * The NodeEngine with the real NetManager (in-process startNetManager, real datapath and resolver)
 * and a fake cluster (real TLS broker) that gives the subnet and answers table queries: the bridge
 * on the subnet, the instance resolves an overlay name through the worker's resolver on the
 * gateway (the NodeEngine's resolv.conf in the workload's mount namespace, its input rule for DNS).
 *
 * The NetManager (H2), its resolver (H3) and the datapath fakes are loaded at run time: this test
 * needs the merged tree (apps/netmanager/src/index.ts, dns.ts, test/fakes.ts); the datapath is
 * the NetManager's own test fake (the tunnel is not what is checked here).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { netTopics } from '@oak/contracts';
import type { DeployCommand, ServiceTable, TableQueryRequest } from '@oak/contracts';
import { bridgePlan, tagOf } from '@oak/net';
import { ProcessRuntime, lookupUser } from '@oak/runtimes';
import { freePort, shortId, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { removeInstanceNetwork } from '../src/network.ts';
import { FakeCluster } from './helpers/cluster.ts';

const run = shortId(3);
const namespace = `h6r${run}`;
const third = 150 + (parseInt(tagOf(namespace), 16) % 40);
const subnet = `10.18.${third}.0/26`;
const subnet6 = `fdff:18:0:${third.toString(16)}00::/64`;
const user = lookupUser('oak-workload') ?? lookupUser('nobody');
const job = `h6${run}.app.web.test`;
const dnsName = `web.test.h6${run}.app.oak`;
const serviceIp = `10.30.${third}.7`;

let cluster: FakeCluster;
let dir: TmpDir;
interface NetManagerHandle { port: number; clean(): Promise<void> }
type Factory = (o: { lookup: (name: string, type: 'A' | 'AAAA') => Promise<string[] | undefined>; upstreams: string[] }) => unknown;
let nm: NetManagerHandle | undefined;
let engine: NodeEngineHandle | undefined;
const lines: string[] = [];
const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
const nsips = new Map<number, string>();

before(async () => {
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-h6-real');
  await chmod(dir.path, 0o755);
  await cluster.observer.subscribe('nodes/+/net/#', (topic, buf) => {
    if (topic.endsWith('/result')) return;
    const id = topic.split('/')[1] as string;
    const msg = JSON.parse(buf.toString()) as Record<string, unknown>;
    if (topic === netTopics.subnet(id)) void cluster.observer.publishJson(netTopics.subnetResult(id), { subnet, subnet_v6: subnet6 });
    if (topic === netTopics.serviceDeployed(id)) nsips.set(msg['instance_number'] as number, msg['nsip'] as string);
    if (topic === netTopics.tableQueryRequest(id)) {
      const q = msg as unknown as TableQueryRequest;
      const table: ServiceTable = {
        job_name: job, service_ip: serviceIp,
        instances: [...nsips].map(([n, nsip]) => ({ instance_number: n, instance_ip: null, nsip, worker_id: id, host_ip: '127.0.0.1', host_port: 50103, subnet })),
      };
      void cluster.observer.publishJson(netTopics.tableQueryResult(id), q.job_name === job || q.ip === serviceIp ? { request_id: q.request_id, table } : { request_id: q.request_id, error: 'no such service' });
    }
  });
});

after(async () => {
  await engine?.shutdown({ stopInstances: true }).catch(() => {});
  await nm?.clean().catch((e: unknown) => console.error(e));
  await removeInstanceNetwork({ namespace, dataDir: join(dir.path, 'data') });
  await cluster?.close();
  await dir?.remove();
});

test('real NetManager and resolver: register, bridge on its subnet, the instance resolves an overlay name through the gateway', { timeout: 120_000 }, async () => {
  const nmMod = (await import('@oak/netmanager' as string)) as { startNetManager: (o: Record<string, unknown>) => Promise<NetManagerHandle> };
  const dnsMod = (await import('../../netmanager/src/dns.ts' as string)) as { OverlayResolver: new (o: Record<string, unknown>) => unknown };
  const fakes = (await import('../../netmanager/test/fakes.ts' as string)) as { fakeDatapaths: () => { factory: unknown } };
  const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
  const resolver: Factory = (o) => new dnsMod.OverlayResolver({ lookup: (name: string, type: 'A' | 'AAAA') => o.lookup(name, type), upstreams: o.upstreams, log: quiet });
  nm = await nmMod.startNetManager({
    datapath: fakes.fakeDatapaths().factory,
    resolver,
    port: 0, keyDir: dir.path, dataDir: join(dir.path, 'nm'), publicAddress: '127.0.0.1', publicPort: await freePort(), upstreams: ['127.0.0.1'], probePort: 0, probeHost: '127.0.0.1',
  });
  const dataDir = join(dir.path, 'data');
  engine = await startNodeEngine(
    { clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: nm.port, useNetManager: true, netmanagerKeyDir: dir.path, dataDir, reportIntervalMs: 300, log, namespace, isolation: 'on', joinToken: cluster.token },
    { runtimes: [new ProcessRuntime({ dataDir: join(dataDir, 'proc'), runAs: user, workRoot: join(dir.path, 'work'), cgroupParent: namespace })] },
  );
  const plan = bridgePlan(namespace, subnet);
  assert.ok(lines.some((l) => l.includes(`bridge ${plan.bridge} ${plan.gateway}/26`)), lines.join('\n'));
  const script = [
    'cat /etc/resolv.conf',
    `for i in 1 2 3 4 5; do r=$(timeout 3 busybox nslookup ${dnsName} 2>&1); echo "try $i: $r"; echo "$r" | grep -q ${serviceIp} && break; sleep 0.5; done`,
    `echo "getent=$(timeout 3 getent hosts ${dnsName})"`,
    'echo probe-done', 'exec sleep 600',
  ].join('; ');
  const cmd: DeployCommand = { microservice_name: 'web', microservice_namespace: 'test', virtualization: 'process', code: '/bin/sh', cmd: ['-c', script], job_name: job, instance_number: 0, overlay: { service_ip: serviceIp, instance_ip: null } };
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  await cluster.waitJob(engine.id, job, 'RUNNING', 30_000);
  const logFile = join(dataDir, 'proc', 'instances', `${job}.instance.0`, 'log');
  const text = await waitFor(async () => { const t = await readFile(logFile, 'utf8').catch(() => ''); return /probe-done/.test(t) ? t : undefined; }, { timeoutMs: 40_000, message: 'probe' }).catch(async (e: unknown) => { console.log(await readFile(logFile, 'utf8').catch(() => 'no log')); throw e; });
  assert.match(text, new RegExp(`getent=${serviceIp.replace(/\./g, '\\.')}\\s+${dnsName.replace(/\./g, '\\.')}`));
  assert.match(text, new RegExp(`nameserver ${plan.gateway.replace(/\./g, '\\.')}`));
  // the MTU the NetManager gave is on the instance's veth
  assert.match(spawnSync('ip', ['link', 'show', 'master', plan.bridge], { encoding: 'utf8' }).stdout, / mtu \d+ /);
});
