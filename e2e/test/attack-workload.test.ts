/**
 * Attack: workloads against their own node, on a real 1-DOC (the `oakd` binary: root, cluster
 * and worker in one process) with a private containerd. The 1-DOC listens on every address of
 * the machine (random ports), so the control plane is really reachable from the node itself; a
 * container instance and a process instance then try to connect to each of its ports (API,
 * link, registration, broker) on every address they could use (their loopback, the bridge
 * gateway, the machine's own address) and to read the 1-DOC's data dir (SQLite database with the
 * JWT secret, node id). Each attempt's exit code lands in the instance's own log, read through
 * the API. Every attempt must fail, and the container's port mapping must still reach it from
 * outside.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { bridgePlan } from '@oak/net';
import { freePort, startContainerd, startRegistry, tmpDir, waitFor, buildBusyboxImage } from '@oak/testkit';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import { Api, waitHealthy } from '../src/api.ts';
import { Procs, bins } from '../src/procs.ts';
import { sla } from '../src/sla.ts';

const missing = ['containerd', 'runc', 'ctr', 'nft', 'ip', 'nsenter', 'setpriv'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : process.getuid?.() !== 0 ? 'needs root' : false;

/**
 * Tests address only loopback and devices they made, never the machine's real interfaces: the
 * node addresses probed are loopback and the bridge gateway (the input rule matches on the bridge
 * interface, so any other node address is refused the same way).
 */
function hostAddress(_exclude: string): string | undefined {
  return undefined;
}

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

test('attack: a container and a process on a 1-DOC reach none of its control-plane ports and cannot read its data dir', { skip, timeout: 240_000 }, async (t) => {
  const ctd = await startContainerd();
  t.after(() => ctd.stop());
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const image = await buildBusyboxImage(reg);
  const dir = await tmpDir('oak-e2e-attack');
  t.after(() => dir.remove());
  const procs = new Procs();
  t.after(() => procs.stopAll());
  t.after(() => removeInstanceNetwork({ namespace: ctd.namespace, dataDir: dir.path }));
  // process instances outlive a stopped NodeEngine by design (re-adoption): end what is left
  t.after(() => {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(`${dir.path}/runtimes/process/`)) process.kill(-Number(d), 'SIGKILL');
      } catch {
        /* gone, or not a group leader */
      }
    }
  });
  const plan = bridgePlan(ctd.namespace);

  const ports = { api: await freePort(), link: await freePort(), registration: await freePort(), broker: await freePort() };
  const args = [
    '--host', '0.0.0.0', '--port', String(ports.api), '--link-port', String(ports.link), '--cluster-port', String(ports.registration),
    '--mqtt-port', String(ports.broker), '--data-dir', dir.path, '--containerd', ctd.socket, '--namespace', ctd.namespace, '--report-interval', '500',
    // the wall on the worker's own bridge plan (172.30/24); the overlay's bridge has the same wall
    // plus DNS on the gateway (rules tests), and its tunnel would otherwise take the host's address
    '--netmanager', 'off',
  ];
  const password = 'e2e-attack-secret-1';
  // the default user of process workloads when it exists (scripts/install-deps.sh creates it)
  const runAs: Record<string, string> = spawnSync('getent', ['passwd', 'oak-workload']).status === 0 ? {} : { OAK_RUN_AS: 'nobody' };
  const oakd = procs.spawn('oakd', bins.oakd, args, { dir: dir.path, env: { OAK_ADMIN_PASSWORD: password, ...runAs } });
  const base = `http://127.0.0.1:${ports.api}`;
  await waitHealthy(`${base}/healthz`);
  const api = new Api(base);
  await api.login('Admin', password);
  await waitFor(async () => {
    const cs = await api.call<{ resources: { workers: number } | null }[]>('GET', '/api/clusters/active');
    return cs[0]?.resources?.workers === 1 ? cs : undefined;
  }, { timeoutMs: 30_000, message: 'the 1-DOC worker is up' });
  assert.match(oakd.log(), /network isolation: on/, 'the worker isolates its instances');

  // the control plane is really there, on every address of the node
  const host = hostAddress(plan.bridge);
  const addresses = ['127.0.0.1', plan.gateway, ...(host !== undefined ? [host] : [])];
  for (const [name, port] of Object.entries(ports)) {
    for (const a of [plan.gateway, ...(host !== undefined ? [host] : [])]) assert.equal(await reachable(a, port), true, `the node reaches its own ${name} at ${a}:${port}`);
  }
  const secrets = ['oak.db', 'node-id'].map((f) => join(dir.path, f));
  for (const f of secrets) assert.ok(existsSync(f), `${f} exists`);

  const attempts = [
    ...Object.entries(ports).flatMap(([name, port]) => addresses.map((a) => `busybox nc -w 1 ${a} ${port} </dev/null >/dev/null 2>&1; echo "try ${name} ${a}:${port} exit=$?"`)),
    ...secrets.map((f) => `cat ${f} >/dev/null 2>&1; echo "try read ${f} exit=$?"`),
    `ls ${dir.path} >/dev/null 2>&1; echo "try list ${dir.path} exit=$?"`,
  ];
  const script = [...attempts, 'echo "uid=$(id -u)"', 'echo attack-done'].join('; ');

  // the container also serves its page on a mapped port
  const hostPort = await freePort();
  const ctSla = sla({ app: 'attackct', code: image, cmd: ['sh', '-c', `${script}; exec httpd -f -p 80 -h /www`] });
  const ctMs = (ctSla.applications as { microservices: Record<string, unknown>[] }[])[0]!.microservices[0]!;
  ctMs.port = `${hostPort}:80/tcp`;
  const prSla = sla({ app: 'attackpr', virtualization: 'process', code: '/bin/sh', cmd: ['-c', `${script}; exec sleep 600`] });
  const results: Record<string, string> = {};
  const apps: string[] = [];
  for (const [kind, s] of [['container', ctSla], ['process', prSla]] as const) {
    const [app] = await api.createApps(s);
    apps.push(app!.applicationID);
    const [svc] = await api.services(app!.applicationID);
    await api.deployInstance(svc!.microserviceID);
    const st = await api.waitStatus(svc!.microserviceID, 'RUNNING', 1, 60_000);
    assert.match(st.instance_list[0]?.status_detail ?? '', /address 172\.30\./);
    results[kind] = await waitFor(async () => {
      const r = await fetch(`${base}/api/service/${svc!.microserviceID}/instance/0/logs`, { headers: { authorization: `Bearer ${api.token}` } });
      const text = await r.text();
      return text.includes('attack-done') ? text : undefined;
    }, { timeoutMs: 30_000, message: `${kind} attack log` });
  }

  for (const [kind, text] of Object.entries(results)) {
    const tries = text.split('\n').filter((l) => l.startsWith('try '));
    assert.equal(tries.length, attempts.length, `${kind}: every attempt reported\n${text}`);
    const succeeded = tries.filter((l) => l.endsWith(' exit=0'));
    assert.deepEqual(succeeded, [], `${kind}: no attempt may succeed\n${text}`);
  }
  assert.doesNotMatch(results['process'] ?? '', /uid=0\b/, 'the process does not run as root');

  // the port mapping still reaches the container from outside (loopback and the node's address)
  for (const a of ['127.0.0.1', ...(host !== undefined ? [host] : [])]) {
    const page = await waitFor(async () => {
      try {
        return await (await fetch(`http://${a}:${hostPort}/`, { signal: AbortSignal.timeout(2000) })).text();
      } catch {
        return undefined;
      }
    }, { timeoutMs: 10_000, message: `mapping via ${a}` });
    assert.match(page, /hello from oak busybox/);
  }

  // undeploy: the instances and their namespaces go
  for (const id of apps) await api.call('DELETE', `/api/application/${id}`);
  await waitFor(() => (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(`oak-${plan.tag}-`)).length <= 1 ? true : undefined), {
    timeoutMs: 30_000, message: 'instance namespaces removed (the spare may stay until the worker stops)',
  });
});
