/**
 * Health probes and local restarts in a real NodeEngine with the real process runtime (and, as
 * root, each instance in its own network namespace: the probe goes to the namespace's address):
 * a healthy http server is reported healthy; an http probe that keeps failing restarts the
 * instance restart_max times, counted, then FAILED; an exiting service is restarted with its
 * restarts counted; restart "never" keeps an unhealthy instance running.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { DeployCommand } from '@oak/contracts';
import { lookupUser } from '@oak/runtimes';
import { shortId, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import { removeInstanceNetwork } from '../src/network.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { FakeCluster, pidsWithArgv } from './helpers/cluster.ts';

const RUN_AS = lookupUser('oak-workload') !== undefined ? undefined : 'nobody';
const run = shortId(3);
const sleepArg = `31.${Math.floor(Math.random() * 1e6)}`;
/** the sleep of the restart-count test, apart from the others' */
const keptArg = `32.${Math.floor(Math.random() * 1e6)}`;
let cluster: FakeCluster;
let dir: TmpDir;
let engine: NodeEngineHandle;
let port = 0;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function deploy(svc: string, extra: Partial<DeployCommand>): DeployCommand {
  return {
    microservice_name: svc,
    microservice_namespace: 'test',
    virtualization: 'process',
    code: '/bin/sleep',
    cmd: [sleepArg],
    job_name: `he${run}.test.${svc}.test`,
    instance_number: 0,
    ...extra,
  };
}

function startEngine(): Promise<NodeEngineHandle> {
  return startNodeEngine({
    clusterAddress: '127.0.0.1',
    clusterPort: cluster.httpPort,
    netmanagerPort: null,
    dataDir: dir.path,
    name: `health-${run}`,
    reportIntervalMs: 300,
    registerBackoffMs: { initial: 50, max: 200 },
    restartBackoffMs: { initial: 100, max: 400 },
    runtimes: ['process'],
    log: silentLog,
    namespace: `he${run}`,
    runAs: RUN_AS,
    joinToken: cluster.token,
  });
}

before(async () => {
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-he');
  port = await freePort();
  engine = await startEngine();
});

after(async () => {
  await engine.shutdown({ stopInstances: true });
  await cluster.close();
  for (const a of [sleepArg, keptArg]) for (const pid of pidsWithArgv(['/bin/sleep', a])) process.kill(pid, 'SIGKILL');
  await removeInstanceNetwork({ namespace: `he${run}`, dataDir: dir.path });
  await dir.remove();
});

const PROBE = { interval_s: 0.2, timeout_s: 0.5, failure_threshold: 2 };
/** for servers that must come up healthy: python's start on a busy machine may take seconds */
const PATIENT = { interval_s: 0.2, timeout_s: 1, failure_threshold: 25 };

test('a healthy http server: starting, then healthy, restarts 0', { timeout: 60_000 }, async () => {
  const cmd = deploy('web', { code: '/usr/bin/python3', cmd: ['-m', 'http.server', String(port), '--bind', '0.0.0.0'], health: { type: 'http', port, path: '/', ...PATIENT } });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  const running = await cluster.waitJob(engine.id, cmd.job_name, 'RUNNING');
  assert.equal(running['health'], 'starting');
  const healthy = await waitFor(() => cluster.jobs(engine.id, cmd.job_name).find((j) => j['health'] === 'healthy'), { timeoutMs: 20_000, message: 'healthy' }).catch((err: unknown) => {
    throw new Error(`${String(err)}: ${JSON.stringify(cluster.jobs(engine.id, cmd.job_name))}`);
  });
  assert.equal(healthy['status'], 'RUNNING');
  assert.equal(healthy['restarts'], 0);
  await cluster.publish(`nodes/${engine.id}/control/delete`, { job_name: cmd.job_name, instance_number: 0, virtualization: 'process' });
  await cluster.waitJob(engine.id, cmd.job_name, 'UNDEPLOYED');
});

test('an http probe that keeps failing: restarted restart_max times, counted, then FAILED with the reason', { timeout: 60_000 }, async () => {
  const cmd = deploy('sick', { health: { type: 'http', port, path: '/healthz', ...PROBE }, restart_max: 2 });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  const failed = await cluster.waitJob(engine.id, cmd.job_name, 'FAILED', 40_000);
  assert.equal(failed['restarts'], 2);
  assert.equal(failed['health'], 'unhealthy');
  assert.match(String(failed['status_detail']), /unhealthy: 2 health probes failed .*gave up after 2 local restart\(s\) \(restart_max 2\)/);
  const jobs = cluster.jobs(engine.id, cmd.job_name);
  const restarting = jobs.filter((j) => j['status'] === 'CREATING' && /^restart \d of 2/.test(String(j['status_detail'])));
  assert.deepEqual(restarting.map((j) => /^restart (\d)/.exec(String(j['status_detail']))?.[1]), ['1', '2']);
  assert.ok(jobs.some((j) => j['status'] === 'RUNNING' && j['restarts'] === 1), 'RUNNING again after restart 1');
  await waitFor(() => pidsWithArgv(['/bin/sleep', sleepArg]).length === 0, { timeoutMs: 10_000, message: 'the failed instance is stopped' });
});

test('a service that exits is restarted with backoff, counted; restart_max 0 fails at once; restart never keeps an unhealthy one running', { timeout: 60_000 }, async () => {
  const crash = deploy('crash', { code: '/bin/sh', cmd: ['-c', 'exit 3'] });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, crash);
  const failed = await cluster.waitJob(engine.id, crash.job_name, 'FAILED', 30_000);
  assert.equal(failed['restarts'], 3, 'default restart_max 3');
  assert.equal(failed['exit_code'], 3);
  assert.match(String(failed['status_detail']), /exited with code 3; gave up after 3 local restart\(s\)/);
  assert.equal(cluster.jobs(engine.id, crash.job_name).filter((j) => j['status'] === 'FAILED').length, 1, 'FAILED once');

  const once = deploy('once', { code: '/bin/sh', cmd: ['-c', 'exit 5'], restart_max: 0 });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, once);
  const f0 = await cluster.waitJob(engine.id, once.job_name, 'FAILED');
  assert.equal(f0['restarts'], 0);
  assert.equal(cluster.jobs(engine.id, once.job_name).some((j) => String(j['status_detail']).startsWith('restart ')), false);

  const job = deploy('oneshot', { code: '/bin/true', cmd: [], one_shot: true });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, job);
  const done = await cluster.waitJob(engine.id, job.job_name, 'COMPLETED');
  assert.equal(done['restarts'], 0, 'one_shot: never restarted');

  const keep = deploy('keep', { health: { type: 'tcp', port, ...PROBE }, restart: 'never' });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, keep);
  const unhealthy = await waitFor(() => cluster.jobs(engine.id, keep.job_name).find((j) => j['health'] === 'unhealthy'), { timeoutMs: 20_000, message: 'unhealthy' });
  assert.equal(unhealthy['status'], 'RUNNING');
  // it keeps running and probed: still RUNNING a few probes later, never restarted
  const t0 = Date.now();
  await waitFor(() => Date.now() - t0 > 1000 || undefined, { timeoutMs: 5000 });
  const last = cluster.jobs(engine.id, keep.job_name).at(-1);
  assert.equal(last?.['status'], 'RUNNING');
  assert.equal(last?.['restarts'], 0);
  assert.equal(pidsWithArgv(['/bin/sleep', sleepArg]).length, 1);
});

test('a NodeEngine restart: the re-adopted instance is probed again once its deploy comes again', { timeout: 60_000 }, async () => {
  const p2 = await freePort();
  const cmd = deploy('again', { code: '/usr/bin/python3', cmd: ['-m', 'http.server', String(p2), '--bind', '0.0.0.0'], health: { type: 'tcp', port: p2, ...PATIENT } });
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  await waitFor(() => cluster.jobs(engine.id, cmd.job_name).find((j) => j['health'] === 'healthy'), { timeoutMs: 20_000, message: 'healthy' });
  await engine.close();
  engine = await startEngine();
  const t0 = Date.now();
  await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
  const back = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${engine.id}/job` && m.at >= t0 && m.payload['job_name'] === cmd.job_name && m.payload['health'] === 'healthy'), { timeoutMs: 20_000, message: 'healthy again after the restart' });
  assert.equal(back.payload['status'], 'RUNNING');
  assert.equal(back.payload['restarts'], 0);
  await cluster.publish(`nodes/${engine.id}/control/delete`, { job_name: cmd.job_name, instance_number: 0, virtualization: 'process' });
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${engine.id}/job` && m.at >= t0 && m.payload['job_name'] === cmd.job_name && m.payload['status'] === 'UNDEPLOYED'), { timeoutMs: 15_000 });
});

test('a NodeEngine restart keeps the restart count: the next restart is counted on from it', { timeout: 90_000 }, async () => {
  // the first copy fails (restart 1), the second runs; the marker is outside the instance's work dir
  const marks = await tmpDir('oak-he-mark');
  chmodSync(marks.path, 0o777);
  const mark = join(marks.path, 'first');
  try {
    const cmd = deploy('kept', { code: '/bin/sh', cmd: ['-c', `[ -e ${mark} ] || { : > ${mark}; exit 3; }; exec /bin/sleep ${keptArg}`], restart_max: 3, health: { type: 'exec', command: ['/bin/true'], ...PATIENT } });
    await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
    await waitFor(() => cluster.jobs(engine.id, cmd.job_name).find((j) => j['status'] === 'RUNNING' && j['restarts'] === 1), { timeoutMs: 30_000, message: 'RUNNING after restart 1' });
    await waitFor(() => pidsWithArgv(['/bin/sleep', keptArg]).length === 1 || undefined, { timeoutMs: 10_000, message: 'the second copy runs' });
    await engine.close();
    engine = await startEngine();
    const t0 = Date.now();
    const since = (pred: (p: Record<string, unknown>) => boolean): Record<string, unknown> | undefined =>
      cluster.messages.find((m) => m.topic === `nodes/${engine.id}/job` && m.at >= t0 && m.payload['job_name'] === cmd.job_name && pred(m.payload))?.payload;
    await cluster.publish(`nodes/${engine.id}/control/deploy`, cmd);
    const back = await waitFor(() => since((p) => p['status'] === 'RUNNING'), { timeoutMs: 20_000, message: 'RUNNING after the NodeEngine restart' });
    assert.equal(back['restarts'], 1, 'the count survived the NodeEngine restart');
    // the deploy resumes its restart record and probe (queued behind the report): then the copy dies
    await waitFor(() => since((p) => p['health'] === 'healthy'), { timeoutMs: 20_000, message: 'probed again' });
    for (const pid of pidsWithArgv(['/bin/sleep', keptArg])) process.kill(pid, 'SIGKILL');
    const next = await waitFor(() => since((p) => p['status'] === 'CREATING' && /^restart \d of 3/.test(String(p['status_detail']))), { timeoutMs: 20_000, message: 'restarted again' });
    assert.match(String(next['status_detail']), /^restart 2 of 3 in 0\.2 s/, 'attempt 2, with the backoff of attempt 2');
    const running = await waitFor(() => since((p) => p['status'] === 'RUNNING' && p['restarts'] === 2), { timeoutMs: 20_000, message: 'RUNNING after restart 2' });
    assert.equal(running['restarts'], 2);
    await cluster.publish(`nodes/${engine.id}/control/delete`, { job_name: cmd.job_name, instance_number: 0, virtualization: 'process' });
    await waitFor(() => since((p) => p['status'] === 'UNDEPLOYED'), { timeoutMs: 15_000, message: 'undeployed' });
  } finally {
    await marks.remove();
  }
});
