/**
 * Workloads are not the node, through a real NodeEngine: a private containerd and the testkit's
 * busybox image, the real `oak-workload` user (or nobody), real network namespaces, a real
 * bridge and real nftables rules. Each instance writes what it could do into its own log; the
 * test reads the log and the kernel's state.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { join } from 'node:path';
import type { DeployCommand } from '@oak/contracts';
import { bridgePlan } from '@oak/net';
import { ContainerdRuntime, ProcessRuntime, lookupUser } from '@oak/runtimes';
import type { Runtime } from '@oak/runtimes';
import { buildBusyboxImage, freePort, shortId, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import type { NodeEngineConfig } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { removeInstanceNetwork } from '../src/network.ts';
import { FakeCluster } from './helpers/cluster.ts';

const missing = ['containerd', 'runc', 'ctr', 'nft', 'ip', 'nsenter', 'setpriv'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false;

const run = shortId(3);
const namespace = `iso${run}`;
/**
 * A bridge subnet no route uses now, outside 172.30.0.0/16, where the other tests' namespaces take
 * their default subnets: a test running beside this one took the same 172.30.<n>.0/24 once in a
 * CI run, and this NodeEngine rightly refused to start on an overlapping subnet.
 */
function freeSubnet(): string {
  const routes = spawnSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout ?? '';
  for (;;) {
    const n = 1 + Math.floor(Math.random() * 254);
    if (!routes.includes(`172.29.${n}.`)) return `172.29.${n}.0/24`;
  }
}
const bridgeSubnet = freeSubnet();
const plan = bridgePlan(namespace, bridgeSubnet);
const user = lookupUser('oak-workload') ?? lookupUser('nobody');
let cluster: FakeCluster;
let ctd: ContainerdInstance;
let reg: RegistryInstance;
let dir: TmpDir;
let dataDir: string;
let image: string;
let engine: NodeEngineHandle | undefined;
/** stand-in for a control-plane port listening on every address of the node */
let control: Server;
let controlPort = 0;
const lines: string[] = [];
const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };

function runtimes(): Runtime[] {
  return [
    new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: join(dataDir, 'ctd'), stopGraceMs: 1000 }),
    new ProcessRuntime({ dataDir: join(dataDir, 'proc'), runAs: user, workRoot: join(dir.path, 'work'), cgroupParent: namespace }),
  ];
}

function start(over: Partial<NodeEngineConfig> = {}): Promise<NodeEngineHandle> {
  return startNodeEngine(
    { clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir, reportIntervalMs: 300, log, namespace, bridgeSubnet, isolation: 'on', joinToken: cluster.token, ...over },
    { runtimes: runtimes() },
  );
}

function cmd(svc: string, extra: Partial<DeployCommand>): DeployCommand {
  return { microservice_name: svc, microservice_namespace: 'test', virtualization: 'container', code: image, job_name: `iso${run}.test.${svc}.test`, instance_number: 0, ...extra };
}

/**
 * The node address the probes use besides loopback: the bridge gateway, an address of the node on
 * a device this test made. Tests address only loopback and their own devices (never the machine's
 * real interfaces); the input rule matches on the bridge interface, so every node address is
 * refused the same way.
 */
function hostAddress(): string {
  return plan.gateway;
}

async function instanceLog(id: string, job: string, wanted: RegExp): Promise<string> {
  const rid = `r${shortId(4)}`;
  let text = '';
  await waitFor(async () => {
    await cluster.publish(`nodes/${id}/control/logs`, { request_id: `${rid}${shortId(2)}`, job_name: job, instance_number: 0, follow: false });
    await new Promise((r) => setTimeout(r, 150));
    const got = cluster.messages.filter((m) => m.topic.startsWith(`nodes/${id}/logs/${rid}`)).flatMap((m) => m.payload['lines'] as string[]);
    text = got.join('\n');
    return wanted.test(text);
  }, { timeoutMs: 20_000, message: `log of ${job} matching ${wanted}` });
  return text;
}

function netnsList(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`oak-${plan.tag}-`));
}

function rules(): string {
  return spawnSync('nft', ['list', 'table', 'ip', plan.table], { encoding: 'utf8' }).stdout;
}

async function httpGet(host: string, port: number): Promise<string> {
  const ctrl = new AbortController();
  const t = setTimeout(() => ctrl.abort(), 2000);
  try {
    return await (await fetch(`http://${host}:${port}/`, { signal: ctrl.signal })).text();
  } finally {
    clearTimeout(t);
  }
}

before(async () => {
  if (skip !== false) return;
  cluster = await FakeCluster.start();
  ctd = await startContainerd();
  reg = await startRegistry();
  dir = await tmpDir('oak-iso');
  await chmod(dir.path, 0o755);
  dataDir = join(dir.path, 'data');
  // an existing, too open data dir (an older install): the NodeEngine tightens it
  await mkdir(dataDir);
  await chmod(dataDir, 0o755);
  image = await buildBusyboxImage(reg);
  control = createServer((s) => s.end('control plane\n'));
  await new Promise<void>((r) => control.listen(0, '0.0.0.0', r));
  controlPort = (control.address() as { port: number }).port;
});

after(async () => {
  if (skip !== false) return;
  await engine?.shutdown({ stopInstances: true }).catch(() => {});
  await removeInstanceNetwork({ namespace, dataDir });
  control.close();
  await cluster?.close();
  await ctd?.stop();
  await reg?.stop();
  await dir?.remove();
});

test('every instance in its own namespace: no way to the node, data dir unreadable, port mapping works, re-adopted, cleaned up', { skip, timeout: 180_000 }, async () => {
  engine = await start();
  const id = engine.id;
  assert.ok(lines.some((l) => l.includes(`network isolation: on`) && l.includes(plan.bridge)), lines.join('\n'));
  const bridgeMac = async (): Promise<string> => (await readFile(`/sys/class/net/${plan.bridge}/address`, 'utf8')).trim();
  assert.equal(await bridgeMac(), plan.mac, 'the bridge has its fixed MAC');
  assert.equal((await stat(dataDir)).mode & 0o777, 0o700, 'the data dir is root\'s alone');
  assert.equal((await readFile(`/proc/sys/net/ipv6/conf/${plan.bridge}/disable_ipv6`, 'utf8')).trim(), '1', 'no IPv6 on the bridge');
  assert.match(spawnSync('nft', ['list', 'table', 'ip6', plan.table], { encoding: 'utf8' }).stdout, new RegExp(`iifname "${plan.bridge}" counter packets \\d+ bytes \\d+ drop`));
  await writeFile(join(dataDir, 'secret.db'), 'jwt-secret-value\n', { mode: 0o644 });
  const host = hostAddress();
  const mqtt = cluster.brokerPort;
  const registration = cluster.httpPort;
  const tries = (where: string, port: number, label: string): string => `busybox nc -w 1 ${where} ${port} </dev/null >/dev/null 2>&1; echo "${label}=$?"`;

  // a process instance: who am I, can I read the data dir, can I reach the node?
  const probe = [
    'echo "uid=$(id -u)"',
    `cat ${join(dataDir, 'secret.db')} 2>&1; echo "cat=$?"`,
    `cat ${join(dataDir, 'node-id')} 2>&1; echo "nodeid=$?"`,
    tries(plan.gateway, controlPort, 'gateway'),
    tries(host, controlPort, 'host'),
    tries('127.0.0.1', controlPort, 'loopback'),
    tries(plan.gateway, mqtt, 'broker'),
    tries(host, registration, 'registration'),
    'echo "addr=$(ip -4 -o addr show dev eth0 | busybox awk \'{print $4}\')"',
    'echo probe-done', 'exec sleep 600',
  ].join('; ');
  const proc = cmd('proc', { virtualization: 'process', code: '/bin/sh', cmd: ['-c', probe] });
  await cluster.publish(`nodes/${id}/control/deploy`, proc);
  const running = await cluster.waitJob(id, proc.job_name, 'RUNNING', 30_000);
  assert.match(String(running['status_detail']), new RegExp(`address ${plan.cidr.split('.').slice(0, 3).join('\\.')}\\.\\d+`));
  const plog = await instanceLog(id, proc.job_name, /probe-done/);
  assert.match(plog, new RegExp(`uid=${user?.uid}\\b`));
  assert.doesNotMatch(plog, /uid=0\b/);
  assert.match(plog, /Permission denied/);
  assert.match(plog, /cat=1/);
  assert.match(plog, /nodeid=1/);
  assert.doesNotMatch(plog, /jwt-secret-value/);
  for (const k of ['gateway', 'host', 'loopback', 'broker', 'registration']) assert.match(plog, new RegExp(`${k}=1`), `${k}: ${plog}`);
  assert.match(plog, new RegExp(`addr=${plan.cidr.split('.').slice(0, 3).join('\\.')}\\.\\d+/24`));

  // a container: no CAP_NET_RAW, no way to the node, its port mapping works from outside
  const hostPort = await freePort();
  const cprobe = [
    'grep CapEff /proc/self/status',
    tries(plan.gateway, controlPort, 'gateway'),
    tries(host, mqtt, 'broker'),
    tries('127.0.0.1', controlPort, 'loopback'),
    'echo probe-done', 'exec httpd -f -p 80 -h /www',
  ].join('; ');
  const web = cmd('web', { cmd: ['sh', '-c', cprobe], port: `${hostPort}:80/tcp` });
  await cluster.publish(`nodes/${id}/control/deploy`, web);
  await cluster.waitJob(id, web.job_name, 'RUNNING', 60_000);
  const clog = await instanceLog(id, web.job_name, /probe-done/);
  const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(clog)?.[1] ?? 'ffffffffff'}`);
  assert.equal(capEff & (1n << 13n), 0n, `CAP_NET_RAW (bit 13) is not effective: ${clog}`);
  assert.notEqual(capEff & (1n << 10n), 0n, 'CAP_NET_BIND_SERVICE is');
  for (const k of ['gateway', 'broker', 'loopback']) assert.match(clog, new RegExp(`${k}=1`), `${k}: ${clog}`);
  assert.match(await waitFor(() => httpGet('127.0.0.1', hostPort).catch(() => undefined), { timeoutMs: 10_000 }), /hello from oak busybox/);
  assert.match(await httpGet(host, hostPort), /hello from oak busybox/);
  assert.match(rules(), new RegExp(`tcp dport ${hostPort} dnat to ${plan.cidr.split('.').slice(0, 3).join('\\.')}\\.\\d+:80`));
  await waitFor(() => netnsList().length === 3, { timeoutMs: 10_000, message: 'two instances and one spare' });

  // a process instance serves on a mapped port too (as oak-workload, from its own work dir)
  const procPort = await freePort();
  const psrv = cmd('psrv', { virtualization: 'process', code: '/bin/sh', cmd: ['-c', 'echo proc-page > index.html; exec busybox httpd -f -p 8080 -h .'], port: `${procPort}:8080` });
  await cluster.publish(`nodes/${id}/control/deploy`, psrv);
  await cluster.waitJob(id, psrv.job_name, 'RUNNING', 30_000);
  assert.match(await waitFor(() => httpGet('127.0.0.1', procPort).catch(() => undefined), { timeoutMs: 10_000 }), /proc-page/);

  // a second NodeEngine with the same --namespace on this kernel must not touch these namespaces
  const bin = join(import.meta.dirname, '..', 'bin', 'NodeEngine.mjs');
  const twin = spawn(process.execPath, [bin, '-a', '127.0.0.1', '-p', String(cluster.httpPort), '-n', '0', '-t', cluster.token, '--data-dir', join(dir.path, 'twin'),
    '--containerd', join(dir.path, 'none.sock'), '--namespace', namespace, '--runtimes', 'process'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let twinOut = '';
  twin.stdout.on('data', (d: Buffer) => { twinOut += d.toString(); });
  twin.stderr.on('data', (d: Buffer) => { twinOut += d.toString(); });
  try {
    await waitFor(() => /network isolation: OFF \(another NodeEngine \(pid \d+\) already runs with --namespace/.test(twinOut), { timeoutMs: 20_000, message: `twin says so: ${twinOut}` });
  } finally {
    twin.kill('SIGTERM');
  }
  await new Promise((r) => twin.once('exit', r));
  assert.match(await httpGet('127.0.0.1', hostPort), /hello from oak busybox/, 'the twin left the rules alone');

  // a port already used on the node (the control plane's) is refused with the reason
  const hijack = cmd('hijack', { cmd: ['sh', '-c', 'sleep 600'], port: `${controlPort}:80` });
  await cluster.publish(`nodes/${id}/control/deploy`, hijack);
  const refused = await cluster.waitJob(id, hijack.job_name, 'FAILED', 30_000);
  assert.match(String(refused['status_detail']), new RegExp(`host port ${controlPort}/tcp is already in use`));

  // restart with a stale namespace left by a "crash": instances and their namespaces are kept, the stale one goes
  await engine.close();
  engine = undefined;
  const stale = `oak-${plan.tag}-fd`;
  spawnSync('ip', ['netns', 'add', stale]);
  // hostile or broken state files are ignored
  await writeFile(join(dataDir, 'net', 'broken.json'), '{not json');
  await writeFile(join(dataDir, 'net', 'forged.json'), JSON.stringify({ id: 'forged', ip: '172.30.0.9', netns: '../../etc', path: '/etc', ports: [] }));
  assert.ok(netnsList().includes(stale));
  engine = await start();
  await waitFor(() => !netnsList().includes(stale), { timeoutMs: 10_000, message: 'stale namespace removed' });
  assert.match(await httpGet('127.0.0.1', hostPort), /hello from oak busybox/, 'mapping survives the restart');
  assert.match(await httpGet('127.0.0.1', procPort), /proc-page/, 'the process and its mapping too');
  const kept = netnsList();
  assert.ok(kept.length >= 2, kept.join(' '));
  assert.equal(await bridgeMac(), plan.mac, 'instances joining the bridge do not change its MAC');

  // undeploy removes namespace, veth and rules
  for (const j of [web, proc, psrv]) {
    await cluster.publish(`nodes/${id}/control/delete`, { job_name: j.job_name, virtualization: j.virtualization, instance_number: 0 });
    await cluster.waitJob(id, j.job_name, 'UNDEPLOYED', 30_000);
  }
  await waitFor(() => netnsList().length <= 1, { timeoutMs: 10_000, message: 'only the spare namespace left' });
  assert.equal(await bridgeMac(), plan.mac, 'nor do instances leaving it');
  assert.doesNotMatch(rules(), /dnat to/);
  const veths = spawnSync('ip', ['-br', 'link'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(`oakv${plan.tag}`));
  assert.ok(veths.length <= 1, veths.join('\n'));
  await assert.rejects(httpGet('127.0.0.1', hostPort));
  await engine.close();
  engine = undefined;
  assert.deepEqual(netnsList(), [], 'close() removes the spare');
});

test('privileged and host-path volumes: refused by default with the reason, allowed within the worker\'s limits', { skip, timeout: 120_000 }, async () => {
  const shared = join(dir.path, 'shared');
  await mkdir(shared, { recursive: true });
  await writeFile(join(shared, 'hello.txt'), 'shared file\n');
  await symlink(dataDir, join(shared, 'sneaky'));
  engine = await start();
  const id = engine.id;
  const fails: [DeployCommand, RegExp][] = [
    [cmd('priv', { cmd: ['sh', '-c', 'sleep 600'], privileged: true }), /privileged: true refused: this worker does not allow privileged instances \(start the NodeEngine with --allow-privileged\)/],
    [cmd('vol', { cmd: ['sh', '-c', 'sleep 600'], volumes: [`${shared}:/data`] }), /host-path volumes are refused: this worker allows none/],
    [cmd('pvol', { virtualization: 'process', code: '/bin/sleep', cmd: ['600'], volumes: [`${shared}:/data`] }), /volumes are supported for containers and microVMs only/],
  ];
  for (const [c, why] of fails) {
    await cluster.publish(`nodes/${id}/control/deploy`, c);
    assert.match(String((await cluster.waitJob(id, c.job_name, 'FAILED', 30_000))['status_detail']), why);
  }
  await engine.close();

  engine = await start({ allowPrivileged: true, volumeAllow: [shared] });
  const outside = cmd('out', { cmd: ['sh', '-c', 'sleep 600'], volumes: [{ source: dataDir, target: '/data' }] });
  const viaLink = cmd('link', { cmd: ['sh', '-c', 'sleep 600'], volumes: [`${join(shared, 'sneaky')}:/data:ro`] });
  const dotdot = cmd('dots', { cmd: ['sh', '-c', 'sleep 600'], volumes: [`${shared}/../data:/data`] });
  for (const c of [outside, viaLink]) {
    await cluster.publish(`nodes/${id}/control/deploy`, c);
    assert.match(String((await cluster.waitJob(id, c.job_name, 'FAILED', 30_000))['status_detail']), /is outside this worker's allowed directories/);
  }
  await cluster.publish(`nodes/${id}/control/deploy`, dotdot);
  assert.match(String((await cluster.waitJob(id, dotdot.job_name, 'FAILED', 30_000))['status_detail']), /without "\.\."/);

  const ok = cmd('okvol', { cmd: ['sh', '-c', 'cat /data/hello.txt; echo x > /data/new 2>&1 || echo "ro=yes"; grep CapEff /proc/self/status; echo probe-done; sleep 600'], volumes: [`${shared}:/data:ro`], privileged: true });
  await cluster.publish(`nodes/${id}/control/deploy`, ok);
  const st = await waitFor(() => cluster.jobs(id, ok.job_name).find((j) => j['status'] === 'RUNNING' || j['status'] === 'FAILED'), { timeoutMs: 60_000 });
  assert.equal(st['status'], 'RUNNING', String(st['status_detail']));
  const text = await instanceLog(id, ok.job_name, /probe-done/);
  assert.match(text, /shared file/);
  assert.match(text, /ro=yes/);
  const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(text)?.[1] ?? '0'}`);
  assert.notEqual(capEff & (1n << 13n), 0n, 'a privileged container has CAP_NET_RAW');
  assert.equal(existsSync(join(shared, 'new')), false);
  await engine.shutdown({ stopInstances: true });
  engine = undefined;
});

test('--isolation off: said clearly at start, instances share the node network', { skip, timeout: 60_000 }, async () => {
  lines.length = 0;
  engine = await start({ isolation: 'off' });
  const id = engine.id;
  assert.ok(lines.some((l) => /network isolation: OFF \(--isolation off\); instances share the node's network/.test(l)), lines.join('\n'));
  const p = cmd('shared', { virtualization: 'process', code: '/bin/sh', cmd: ['-c', `busybox nc -w 1 127.0.0.1 ${controlPort} </dev/null; echo "loopback=$?"; echo probe-done; sleep 600`] });
  await cluster.publish(`nodes/${id}/control/deploy`, p);
  await cluster.waitJob(id, p.job_name, 'RUNNING', 30_000);
  const text = await instanceLog(id, p.job_name, /probe-done/);
  assert.match(text, /control plane/);
  assert.match(text, /loopback=0/);
  assert.deepEqual(netnsList(), []);
  await engine.shutdown({ stopInstances: true });
  engine = undefined;
  // and the data dir stays unreadable without isolation too
  assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
  assert.ok((await readFile(join(dataDir, 'secret.db'), 'utf8')).includes('jwt'));
});
