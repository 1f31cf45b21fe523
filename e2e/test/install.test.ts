/**
 * Issue 14: the release artifacts on their own. `scripts/dist.mjs` writes them (and a second
 * node-engine build with a bumped version); the test copies the tarballs into an empty directory
 * outside the repository (no node_modules of the project anywhere above it), unpacks them and runs
 * each `install.sh` with the `node` of the PATH, `--no-systemd`, into one prefix per host. The
 * printed command lines start the programs inside network namespaces: a root and a cluster on one
 * host, two workers on two others, joined with tokens. A process application is deployed; the
 * worker running it is upgraded to the newer build and restarted, and its instance keeps running
 * (same process, re-adopted). Uninstall --purge leaves every prefix empty. Units written for the
 * real artifacts pass `systemd-analyze verify` (where it is installed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canConnectTcp, waitFor, type NetHost } from '@oak/testkit';
import { Api, waitHealthy } from '../src/api.ts';
import { clustersActive, processWorkload, workloads } from '../src/faults.ts';
import { installField, run, V1, V2, type InstallOut, type Started } from '../src/install.ts';
import { workerRows } from '../src/overlay.ts';
import { sla } from '../src/sla.ts';
import type { ChildProcess } from 'node:child_process';

const PASSWORD = 'e2e-install-password';

test('install from the release artifacts: root+cluster, two workers, deploy, upgrade without an instance restart, uninstall', { timeout: 240_000 }, async (t) => {
  // 1-2. the artifacts, written by `make dist`, copied to an empty place, checked, unpacked
  const f = await installField('install', ['node-engine', 'cluster', 'root', 'cli'], (m) => t.diagnostic(m));
  t.after(() => f.close());
  const { field, env, installSh, prefix, start, stopped, artifact, markers, namespaces } = f;
  const logOf = f.logOf;
  const children = new Set<ChildProcess>();
  const track = (c: ChildProcess): ChildProcess => {
    children.add(c);
    c.once('exit', () => children.delete(c));
    return c;
  };

  // 3. hosts, and what runs on them: the printed command lines as they are, in a shell
  const net = f.net;
  const [ha, hb, hc] = (await Promise.all([net.addHost('ctl'), net.addHost('wa'), net.addHost('wb')])) as [NetHost, NetHost, NetHost];

  try {
    const root = await installSh('root', ['root', '--prefix', prefix('ctl')]);
    assert.equal(root.services.length, 1);
    track(start('root', ha, (root.services[0] as Started).commandLine, { OAK_ADMIN_PASSWORD: PASSWORD }));
    const api = new Api(`http://${ha.ip}:10000`);
    await waitHealthy(`http://${ha.ip}:10000/healthz`, 60_000);
    await api.login('Admin', PASSWORD);
    const token = async (body: Record<string, string>): Promise<string> => (await api.call<{ token: string }>('POST', '/api/tokens', body)).token;

    const cluster = await installSh('cluster', ['cluster', '--prefix', prefix('ctl'), '--root', ha.ip, '--name', 'c1', '--token', await token({ kind: 'cluster', name: 'c1' })]);
    track(start('cluster', ha, (cluster.services[0] as Started).commandLine, { OAK_REPORT_INTERVAL_MS: '500', OAK_DEAD_AFTER_INTERVALS: '20' }));
    await waitFor(() => canConnectTcp(ha.ip, 10100, 500), { timeoutMs: 30_000, intervalMs: 100, message: 'cluster listening' });

    const workerArgs = async (h: string): Promise<string[]> => {
      namespaces.push(`oakinst${h}`);
      return ['worker', '--prefix', prefix(h), '--cluster', ha.ip, '--token', await token({ kind: 'worker', cluster: 'c1' }), '--name', h, '--runtimes', 'process', '--isolation', 'off', '--namespace', `oakinst${h}`, '--report-interval', '500'];
    };
    const [wa, wb] = (await Promise.all(['wa', 'wb'].map(async (h) => installSh('node-engine', await workerArgs(h))))) as [InstallOut, InstallOut];
    const engines: Record<string, ChildProcess> = {
      wa: track(start('wa', hb, (wa.services[0] as Started).commandLine)),
      wb: track(start('wb', hc, (wb.services[0] as Started).commandLine)),
    };
    await clustersActive(api, { c1: 2 });

    // the cli artifact too: its `oak` runs from the prefix with nothing else
    const cli = await run(join(artifact('cli'), 'install.sh'), ['cli', '--prefix', prefix('ctl'), '--json'], { cwd: field, env });
    assert.equal(JSON.parse(cli.stdout).version, V1);
    assert.match((await run(join(prefix('ctl'), 'usr/local/bin/oak'), ['--version'], { env })).stdout, /\d+\.\d+\.\d+/);

    // 4. an application (process virtualization), one instance
    const marker = `oakinst-${Date.now().toString(36)}`;
    markers.push(marker);
    const [app] = await api.createApps(sla({ app: 'instapp', ...processWorkload(marker) }));
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    await api.deployInstance(svc.microserviceID);
    const running = await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 60_000);
    const inst = running.instance_list[0];
    assert.ok(inst?.worker_id);
    const rows = await workerRows(api);
    const on = rows.find((r) => r.w.id === inst.worker_id)?.w.name;
    assert.ok(on === 'wa' || on === 'wb', `instance on ${String(on)}`);
    const [before] = workloads(marker);
    assert.ok(before, 'the workload process runs');

    // 5. upgrade that worker to the newer build: settings and data kept, restarted, instance re-adopted
    const idFiles = readdirSync(on === 'wa' ? wa.dataDir : wb.dataDir).sort();
    const upgraded = JSON.parse((await run(join(artifact('node-engine', V2), 'install.sh'), ['worker', '--prefix', prefix(on), '--no-systemd', '--json'], { cwd: field, env })).stdout) as InstallOut;
    assert.deepEqual([upgraded.version, upgraded.previous, upgraded.upgrade], [V2, V1, true]);
    assert.equal(upgraded.dataDir, on === 'wa' ? wa.dataDir : wb.dataDir);
    assert.deepEqual(readdirSync(upgraded.dataDir).sort(), idFiles);
    assert.ok(readFileSync(join(prefix(on), 'opt/oak/node-engine/current/oak-release.json'), 'utf8').includes(`"version": "${V2}"`));
    // a downgrade is refused (exit 2), and changes nothing
    const down = await run(join(artifact('node-engine'), 'install.sh'), ['worker', '--prefix', prefix(on), '--no-systemd'], { cwd: field, env }).then(() => 0, (e: { code: number; stderr: string }) => {
      assert.match(e.stderr, /is older[\s\S]*--allow-downgrade/);
      return e.code;
    });
    assert.equal(down, 2);
    await stopped(engines[on] as ChildProcess);
    assert.equal(workloads(marker)[0]?.pid, before.pid, 'the instance outlives its NodeEngine');
    track(start(`${on}-v2`, on === 'wa' ? hb : hc, (upgraded.services[0] as Started).commandLine));
    await waitFor(() => /re-adopted 1 running instance/.test(logOf(`${on}-v2`)), { timeoutMs: 30_000, intervalMs: 200, message: 're-adoption logged' });
    await clustersActive(api, { c1: 2 });
    const after = await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 30_000);
    assert.equal(after.instance_list[0]?.worker_id, inst.worker_id, 'same worker identity');
    assert.deepEqual(workloads(marker).map((w) => w.pid), [before.pid], 'the same process: no restart, no second copy');
    assert.equal(after.instance_list[0]?.restarts ?? 0, inst.restarts ?? 0);

    // 6. the generated units of the real artifacts pass systemd's check
    const staged = prefix('staged');
    // three programs into one prefix at once (each writes its own files; the shared directories are made with recursive mkdir)
    const stagedRoles = [['root', ['root']], ['cluster', ['cluster', '--root', ha.ip, '--name', 'c1', '--token', await token({ kind: 'cluster', name: 'c9' })]], ['node-engine', ['worker', '--cluster', ha.ip, '--token', await token({ kind: 'worker', cluster: 'c1' }), '--netmanager']]] as const;
    await Promise.all(stagedRoles.map(([p, args]) => run(join(artifact(p), 'install.sh'), [...args, '--prefix', staged], { cwd: field, env })));
    const units = readdirSync(join(staged, 'etc/systemd/system')).sort();
    assert.deepEqual(units, ['oak-cluster.service', 'oak-netmanager.service', 'oak-root.service', 'oak-worker.service']);
    const analyze = await run('systemd-analyze', ['--version']).then(() => true, () => false);
    if (analyze) for (const u of units) await run('systemd-analyze', ['verify', join(staged, 'etc/systemd/system', u)]);
    else t.diagnostic('systemd-analyze is not installed: the units were written but not verified');

    // 7. everything away: the application, the processes, then uninstall --purge leaves nothing
    await api.call('DELETE', `/api/application/${app.applicationID}`);
    await waitFor(() => workloads(marker).length === 0, { timeoutMs: 60_000, intervalMs: 250, message: 'workload gone' });
    await Promise.all([...children].map(stopped));
    const uninstall = async (role: string, h: string): Promise<string> =>
      (await run('node', [join(prefix(h), 'opt/oak', role === 'worker' ? 'node-engine' : role, 'current/oak-install.mjs'), 'uninstall', role, '--prefix', prefix(h), '--purge'], { env })).stdout;
    // the prefixes at once; in one prefix one role after the other (the last one removes the shared directories)
    const roles: Record<string, string[]> = { wa: ['worker'], wb: ['worker'], ctl: ['cluster', 'root', 'cli'], staged: ['worker', 'cluster', 'root'] };
    await Promise.all(
      Object.entries(roles).map(async ([h, rs]) => {
        for (const role of rs) assert.match(await uninstall(role, h), /nothing of it is left/, `uninstall ${role} from host-${h}`);
      }),
    );
    for (const h of ['wa', 'wb', 'ctl', 'staged']) assert.deepEqual(readdirSync(prefix(h), { recursive: true }), [], `host-${h} is empty`);
  } catch (err) {
    f.dumpLogs();
    throw err;
  }
});
