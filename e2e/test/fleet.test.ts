/**
 * Issue 14, fleet upgrade: "a fleet upgrade of two workers with one failing health check stops and
 * rolls back", from the release artifacts alone (the fixture of install.test.ts: e2e/src/install.ts).
 * A root and a cluster on one host, two workers (wa, wb) on two others, installed with install.sh
 * --no-systemd and started from the printed command lines; wb's NodeEngine runs with an upgrade
 * check that fails. `oak fleet upgrade` (the cli artifact's) uploads the newer node-engine artifact
 * and rolls it out one worker at a time: wa fetches it from its cluster, installs it, restarts
 * itself into it and re-adopts its instance (the same process); wb does the same, its check fails,
 * the rollout stops and rolls wb back to the kept previous version, and the command exits 1 with
 * the reason. The versions of every component are in the API and in `oak node ls`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RolloutDoc } from '@oak/contracts';
import { canConnectTcp, waitFor, type NetHost } from '@oak/testkit';
import { Api, waitHealthy } from '../src/api.ts';
import { clustersActive, processWorkload, workloads } from '../src/faults.ts';
import { installField, run, V1, V2, type Started } from '../src/install.ts';
import { sla } from '../src/sla.ts';

const PASSWORD = 'e2e-fleet-password';

interface Versions {
  root: string;
  clusters: { name: string; version: string | null }[];
  workers: { name: string; version: string | null; self_upgrade_blocker: string | null; upgrade: { action: string; version: string; phase: string; detail: string } | null }[];
}

test('a fleet upgrade of two workers with one failing health check stops and rolls back', { timeout: 300_000 }, async (t) => {
  const f = await installField('fleet', ['node-engine', 'cluster', 'root', 'cli'], (m) => t.diagnostic(m));
  t.after(() => f.close());
  const { installSh, prefix, start } = f;
  const [ha, hb, hc] = (await Promise.all([f.net.addHost('ctl'), f.net.addHost('wa'), f.net.addHost('wb')])) as [NetHost, NetHost, NetHost];
  try {
    const root = await installSh('root', ['root', '--prefix', prefix('ctl')]);
    start('root', ha, (root.services[0] as Started).commandLine, { OAK_ADMIN_PASSWORD: PASSWORD });
    const api = new Api(`http://${ha.ip}:10000`);
    await waitHealthy(`http://${ha.ip}:10000/healthz`, 60_000);
    await api.login('Admin', PASSWORD);
    const token = async (body: Record<string, string>): Promise<string> => (await api.call<{ token: string }>('POST', '/api/tokens', body)).token;
    const cluster = await installSh('cluster', ['cluster', '--prefix', prefix('ctl'), '--root', ha.ip, '--name', 'c1', '--token', await token({ kind: 'cluster', name: 'c1' })]);
    start('cluster', ha, (cluster.services[0] as Started).commandLine, { OAK_REPORT_INTERVAL_MS: '500', OAK_DEAD_AFTER_INTERVALS: '20' });
    await waitFor(() => canConnectTcp(ha.ip, 10100, 500), { timeoutMs: 30_000, intervalMs: 100, message: 'cluster listening' });

    // wb's operator check after an upgrade fails (exit 1): its health check fails
    const failCheck = join(f.field, 'check-fail.sh');
    writeFileSync(failCheck, '#!/bin/sh\necho "the new version does not pass this site\'s check" >&2\nexit 1\n');
    chmodSync(failCheck, 0o755);
    const worker = async (h: string): Promise<Started> => {
      f.namespaces.push(`oakflt${h}`);
      const out = await installSh('node-engine', ['worker', '--prefix', prefix(h), '--cluster', ha.ip, '--token', await token({ kind: 'worker', cluster: 'c1' }), '--name', h, '--runtimes', 'process', '--isolation', 'off', '--namespace', `oakflt${h}`, '--report-interval', '500']);
      return out.services[0] as Started;
    };
    const [wa, wb] = (await Promise.all([worker('wa'), worker('wb')])) as [Started, Started];
    start('wa', hb, wa.commandLine);
    start('wb', hc, wb.commandLine, { OAK_UPGRADE_CHECK: failCheck });
    await clustersActive(api, { c1: 2 });
    const versions = (): Promise<Versions> => api.call<Versions>('GET', '/api/fleet/versions');
    await waitFor(async () => (await versions()).workers.filter((w) => w.version === V1).length === 2, { timeoutMs: 20_000, intervalMs: 250, message: 'both workers report their version' });
    const v1 = await versions();
    assert.equal(v1.clusters[0]?.version, V1);
    assert.deepEqual(v1.workers.map((w) => w.self_upgrade_blocker), [null, null], 'installed by install.sh: both can upgrade themselves');

    // an instance on each worker (one service, two replicas spread by the scheduler or not: both are watched)
    const marker = `oakfleet-${Date.now().toString(36)}`;
    f.markers.push(marker);
    const [app] = await api.createApps(sla({ app: 'fleetapp', ...processWorkload(marker) }));
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    await api.deployInstance(svc.microserviceID);
    await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 60_000);
    const [before] = workloads(marker);
    assert.ok(before, 'the workload process runs');

    // the cli artifact's oak, logged in by token
    const cli = await run(join(f.artifact('cli'), 'install.sh'), ['cli', '--prefix', prefix('ctl'), '--json'], { cwd: f.field, env: f.env });
    assert.equal(JSON.parse(cli.stdout).version, V1);
    const oak = join(prefix('ctl'), 'usr/local/bin/oak');
    const oakEnv = { ...f.env, OAK_TOKEN: api.token, HOME: f.dir };
    const started = Date.now();
    const up = await run(oak, ['--root', `http://${ha.ip}:10000`, 'fleet', 'upgrade', '--artifact', f.tarball('node-engine', V2), '--batch', '1', '--health-timeout', '90s'], { env: oakEnv }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    t.diagnostic(`oak fleet upgrade took ${Date.now() - started} ms`);
    assert.equal(up.code, 1, `the rollout stops: ${up.stderr}`);
    assert.match(up.stderr, /the rollout stopped: stopped at batch 2 of 2: wb failed: the upgrade check .*check-fail\.sh failed \(exit 1\).*; rolled back wb/);

    const [r] = await api.call<RolloutDoc[]>('GET', '/api/fleet/rollouts');
    assert.ok(r);
    assert.equal(r.status, 'failed');
    assert.deepEqual(r.workers.map((w) => [w.name, w.phase]), [['wa', 'healthy'], ['wb', 'rolled_back']]);
    // wa runs the new version, wb the old one again, both re-registered and reporting
    await waitFor(async () => {
      const v = await versions();
      return v.workers.find((w) => w.name === 'wa')?.version === V2 && v.workers.find((w) => w.name === 'wb')?.version === V1;
    }, { timeoutMs: 20_000, intervalMs: 250, message: 'wa on V2, wb back on V1' });
    assert.ok(readFileSync(join(prefix('wa'), 'opt/oak/node-engine/install.json'), 'utf8').includes(`"version": "${V2}"`));
    assert.ok(readFileSync(join(prefix('wb'), 'opt/oak/node-engine/install.json'), 'utf8').includes(`"version": "${V1}"`));
    // each NodeEngine restarted (twice for wb) and re-adopted its instances: the same workload process
    assert.match(f.logOf('wa'), /re-adopted 1 running instance|upgraded to 0\.1\.1/);
    assert.match(f.logOf('wb'), /rolled back to 0\.1\.0/);
    assert.deepEqual(workloads(marker).map((w) => w.pid), [before.pid], 'the instance was not restarted');
    const after = await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 30_000);
    assert.equal(after.instance_list[0]?.restarts ?? 0, 0);

    // the versions are in oak node ls and oak cluster ls too
    const nodes = (await run(oak, ['--root', `http://${ha.ip}:10000`, 'node', 'ls'], { env: oakEnv })).stdout;
    assert.match(nodes, new RegExp(`wa\\s.*${V2.replace(/\./g, '\\.')}`));
    assert.match(nodes, new RegExp(`wb\\s.*${V1.replace(/\./g, '\\.')}`));
    assert.match((await run(oak, ['--root', `http://${ha.ip}:10000`, 'cluster', 'ls'], { env: oakEnv })).stdout, new RegExp(`c1\\s.*${V1.replace(/\./g, '\\.')}`));

    await api.call('DELETE', `/api/application/${app.applicationID}`);
    await waitFor(() => workloads(marker).length === 0, { timeoutMs: 60_000, intervalMs: 250, message: 'workload gone' });
  } catch (err) {
    f.dumpLogs();
    throw err;
  }
});
