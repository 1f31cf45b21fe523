/**
 * The NodeEngine against a real (in-process) MQTT broker, a fake cluster registration endpoint and
 * the real process runtime: registration, reports, deploy/delete, one-shots, failures,
 * idempotence, logs, re-adoption after a restart, re-registration after a broker restart.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VIRTUALIZATIONS, type DeployCommand } from '@oak/contracts';
import { lookupUser } from '@oak/runtimes';
import { shortId, sleep, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import { removeInstanceNetwork } from '../src/network.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { FakeCluster, pidsWithArgv } from './helpers/cluster.ts';

/** the default user when it exists (scripts/install-deps.sh creates it), else nobody */
const RUN_AS = lookupUser('oak-workload') !== undefined ? undefined : 'nobody';

let cluster: FakeCluster;
let dir: TmpDir;
let engine: NodeEngineHandle | undefined;
const run = shortId(3);
const INTERVAL = 200;
const sleepArg = `30.${Math.floor(Math.random() * 1e6)}`;

function deploy(svc: string, extra: Partial<DeployCommand> = {}, n = 0): DeployCommand {
  return {
    microservice_name: svc,
    microservice_namespace: 'test',
    virtualization: 'process',
    code: '/bin/sleep',
    cmd: [sleepArg],
    job_name: `ne${run}.test.${svc}.test`,
    instance_number: n,
    ...extra,
  };
}

async function start(): Promise<NodeEngineHandle> {
  return startNodeEngine({
    clusterAddress: '127.0.0.1',
    clusterPort: cluster.httpPort,
    netmanagerPort: null,
    dataDir: dir.path,
    name: `test-worker-${run}`,
    reportIntervalMs: INTERVAL,
    registerBackoffMs: { initial: 50, max: 200 },
    runtimes: ['process'],
    log: silentLog,
    namespace: `ne${run}`,
    runAs: RUN_AS,
    joinToken: cluster.token,
  });
}

before(async () => {
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-ne');
});

after(async () => {
  await engine?.shutdown({ stopInstances: true });
  await cluster.close();
  for (const pid of pidsWithArgv(['/bin/sleep', sleepArg])) process.kill(pid, 'SIGKILL');
  for (const namespace of [`ne${run}`, `ne${run}p`]) await removeInstanceNetwork({ namespace, dataDir: dir.path });
  await dir.remove();
});

test('registers (retrying while the cluster is down) with real host facts and persists its id', async () => {
  cluster.down = true;
  const starting = start();
  await sleep(300);
  assert.equal(cluster.registrations.length, 0);
  cluster.down = false;
  engine = await starting;
  const reg = cluster.registrations[0];
  assert.ok(reg);
  assert.equal(reg.id, undefined, 'a fresh worker has no id yet');
  assert.equal(reg.node_name, `test-worker-${run}`);
  assert.equal(reg.cpu_cores, availableParallelism());
  assert.ok(reg.memory_mb > 0);
  assert.deepEqual(reg.virtualizations, ['process']);
  assert.equal(reg.netmanager_port, null);
  assert.equal(reg.os, 'linux');
  assert.equal((await readFile(join(dir.path, 'node-id'), 'utf8')).trim(), engine.id);
});

test('reports information every interval with real numbers', async () => {
  const id = engine!.id;
  const t0 = Date.now();
  const infos = await waitFor(() => {
    const l = cluster.messages.filter((m) => m.topic === `nodes/${id}/information` && m.at >= t0);
    return l.length >= 4 ? l : undefined;
  }, { timeoutMs: 5000 });
  const span = (infos[3]!.at - infos[0]!.at) / 3;
  assert.ok(span > INTERVAL * 0.5 && span < INTERVAL * 3, `interval ${span} ms`);
  const p = infos[3]!.payload;
  assert.equal(p['cpu_cores'], availableParallelism());
  assert.ok(typeof p['cpu_percent'] === 'number' && p['cpu_percent'] >= 0 && p['cpu_percent'] <= 100);
  assert.ok((p['memory_free_mb'] as number) > 0 && (p['memory_free_mb'] as number) <= (p['memory_total_mb'] as number));
  assert.ok((p['disk_free_mb'] as number) > 0);
  assert.deepEqual(p['virtualizations'], ['process']);
  assert.ok(Math.abs((p['timestamp'] as number) - Date.now()) < 5000);
  assert.ok(cluster.messages.some((m) => m.topic === `nodes/${id}/jobs/resources`));
});

test('deploy: CREATING then RUNNING; duplicate deploy is a no-op; resources and running_instances; delete: UNDEPLOYED and gone', async () => {
  const id = engine!.id;
  const cmd = deploy('sleeper');
  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await cluster.waitJob(id, cmd.job_name, 'RUNNING');
  assert.deepEqual(cluster.states(id, cmd.job_name), ['CREATING', 'RUNNING']);
  // the workload execs /bin/sleep through nsenter/setpriv, possibly just after RUNNING
  await waitFor(() => pidsWithArgv(['/bin/sleep', sleepArg]).length === 1, { timeoutMs: 10_000, message: 'one sleep process' });

  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await waitFor(() => cluster.states(id, cmd.job_name).length >= 4, { message: 're-reports' });
  await sleep(300);
  assert.deepEqual(cluster.states(id, cmd.job_name), ['CREATING', 'RUNNING', 'RUNNING', 'RUNNING']);
  assert.equal(pidsWithArgv(['/bin/sleep', sleepArg]).length, 1, 'one process only');

  const name = `${cmd.job_name}.instance.0`;
  const t0 = Date.now();
  const info = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/information` && m.at > t0 && (m.payload['running_instances'] as string[]).includes(name)));
  assert.ok(info);
  const res = await waitFor(() =>
    cluster.messages.find((m) => m.topic === `nodes/${id}/jobs/resources` && m.at > t0 && (m.payload['instances'] as { job_name: string }[]).some((i) => i.job_name === cmd.job_name)),
  );
  const inst = (res.payload['instances'] as { job_name: string; memory_mb: number; cpu_percent: number }[]).find((i) => i.job_name === cmd.job_name)!;
  assert.ok(inst.memory_mb > 0, `memory ${inst.memory_mb}`);
  assert.ok(inst.cpu_percent >= 0);

  await cluster.publish(`nodes/${id}/control/delete`, { job_name: cmd.job_name, virtualization: 'process', instance_number: 0 });
  const undeployed = await cluster.waitJob(id, cmd.job_name, 'UNDEPLOYED');
  assert.equal(undeployed['instance_number'], 0);
  assert.deepEqual(pidsWithArgv(['/bin/sleep', sleepArg]), []);
  assert.ok(!cluster.states(id, cmd.job_name).includes('FAILED'), 'a delete is not reported as a failure');
});

test('deleting an unknown instance reports UNDEPLOYED too', async () => {
  const id = engine!.id;
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: `ne${run}.test.ghost.test`, virtualization: 'process', instance_number: 4 });
  const s = await cluster.waitJob(id, `ne${run}.test.ghost.test`, 'UNDEPLOYED');
  assert.equal(s['instance_number'], 4);
});

test('one-shot exit 0 is COMPLETED; a failing command is FAILED with its exit code', async () => {
  const id = engine!.id;
  const ok = deploy('oneshot', { code: '/bin/true', cmd: [], one_shot: true });
  const bad = deploy('failing', { code: '/bin/sh', cmd: ['-c', 'echo about to fail; exit 3'] });
  await cluster.publish(`nodes/${id}/control/deploy`, ok);
  await cluster.publish(`nodes/${id}/control/deploy`, bad);
  const done = await cluster.waitJob(id, ok.job_name, 'COMPLETED');
  assert.equal(done['exit_code'], 0);
  const failed = await cluster.waitJob(id, bad.job_name, 'FAILED');
  assert.equal(failed['exit_code'], 3);
  assert.match(String(failed['status_detail']), /3/);
  assert.equal(cluster.states(id, ok.job_name)[0], 'CREATING');
  assert.equal(cluster.states(id, ok.job_name).filter((s) => s === 'COMPLETED').length, 1, 'reported once');
});

test('start errors, unknown virtualizations and invalid commands are FAILED with the reason', async () => {
  const id = engine!.id;
  const missing = deploy('missing', { code: '/nonexistent/oak-binary', cmd: [] });
  const wasm = deploy('wasmsvc', { virtualization: 'wasm', code: '/x.wasm' });
  const badPort = deploy('badport', { port: '99999' });
  await cluster.publish(`nodes/${id}/control/deploy`, missing);
  await cluster.publish(`nodes/${id}/control/deploy`, wasm);
  await cluster.publish(`nodes/${id}/control/deploy`, badPort);
  await cluster.publish(`nodes/${id}/control/deploy`, { job_name: `ne${run}.test.invalid.test`, instance_number: 0, virtualization: 'process' });
  assert.match(String((await cluster.waitJob(id, missing.job_name, 'FAILED'))['status_detail']), /nonexistent|not found|no such/i);
  assert.equal((await cluster.waitJob(id, wasm.job_name, 'FAILED'))['status_detail'], 'virtualization wasm not available on this worker (it offers process)');
  assert.match(String((await cluster.waitJob(id, badPort.job_name, 'FAILED'))['status_detail']), /port/);
  assert.match(String((await cluster.waitJob(id, `ne${run}.test.invalid.test`, 'FAILED'))['status_detail']), /invalid deploy command/);
});

test('logs: a request returns the output lines, then end', async () => {
  const id = engine!.id;
  const cmd = deploy('talker', { code: '/bin/sh', cmd: ['-c', `echo hello; echo world; exec /bin/sleep ${sleepArg}`] });
  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await cluster.waitJob(id, cmd.job_name, 'RUNNING');
  await sleep(200);
  const rid = `req${shortId(3)}`;
  await cluster.publish(`nodes/${id}/control/logs`, { request_id: rid, job_name: cmd.job_name, instance_number: 0, follow: false });
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/logs/${rid}` && m.payload['end'] === true), { message: 'log end' });
  const lines = cluster.messages.filter((m) => m.topic === `nodes/${id}/logs/${rid}`).flatMap((m) => m.payload['lines'] as string[]);
  assert.deepEqual(lines, ['hello', 'world']);

  // follow + cancel
  const rf = `req${shortId(3)}`;
  await cluster.publish(`nodes/${id}/control/logs`, { request_id: rf, job_name: cmd.job_name, instance_number: 0, follow: true, tail: 1 });
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/logs/${rf}`), { message: 'first follow batch' });
  assert.equal(cluster.messages.some((m) => m.topic === `nodes/${id}/logs/${rf}` && m.payload['end'] === true), false);
  await cluster.publish(`nodes/${id}/control/logs/cancel`, { request_id: rf });
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/logs/${rf}` && m.payload['end'] === true), { message: 'follow ends on cancel' });
  assert.deepEqual(cluster.messages.filter((m) => m.topic === `nodes/${id}/logs/${rf}`).flatMap((m) => m.payload['lines'] as string[]), ['world']);

  const ru = `req${shortId(3)}`;
  await cluster.publish(`nodes/${id}/control/logs`, { request_id: ru, job_name: 'no.such.job.here', instance_number: 0 });
  const unknown = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/logs/${ru}`));
  assert.equal(unknown.payload['end'], true);
  assert.match(String(unknown.payload['error']), /not on this worker/);
});

test('logs: a follow ends by itself when the instance ends', async () => {
  const id = engine!.id;
  const cmd = deploy('brief', { code: '/bin/sh', cmd: ['-c', 'echo a; sleep 0.6; echo b'], one_shot: true });
  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await cluster.waitJob(id, cmd.job_name, 'RUNNING');
  const rid = `req${shortId(3)}`;
  await cluster.publish(`nodes/${id}/control/logs`, { request_id: rid, job_name: cmd.job_name, instance_number: 0, follow: true });
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/logs/${rid}` && m.payload['end'] === true), { timeoutMs: 10_000, message: 'follow end' });
  assert.deepEqual(cluster.messages.filter((m) => m.topic === `nodes/${id}/logs/${rid}`).flatMap((m) => m.payload['lines'] as string[]), ['a', 'b']);
  await cluster.waitJob(id, cmd.job_name, 'COMPLETED');
});

test('restart: same node id, the running instance is re-adopted (RUNNING reported, no second process)', async () => {
  const id = engine!.id;
  const cmd = deploy('survivor');
  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await cluster.waitJob(id, cmd.job_name, 'RUNNING');
  // RUNNING is reported once the supervisor started the workload; its nsenter/setpriv chain may
  // still be on its way to exec /bin/sleep
  const before = await waitFor(() => {
    const pids = pidsWithArgv(['/bin/sleep', sleepArg]);
    return pids.length === 2 ? pids : undefined;
  }, { timeoutMs: 10_000, message: `talker and survivor: ${pidsWithArgv(['/bin/sleep', sleepArg]).length} sleep processes` });

  await engine!.close();
  engine = undefined;
  assert.deepEqual(pidsWithArgv(['/bin/sleep', sleepArg]), before, 'close() leaves instances running');
  const regsBefore = cluster.registrations.length;
  const t0 = Date.now();
  engine = await start();
  assert.equal(engine.id, id);
  assert.equal(cluster.registrations[regsBefore]?.id, id, 'the restarted worker asks for its old id');
  const readopted = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/job` && m.at >= t0 && m.payload['job_name'] === cmd.job_name));
  assert.equal(readopted.payload['status'], 'RUNNING');

  // a duplicate deploy after the restart still starts nothing
  await cluster.publish(`nodes/${id}/control/deploy`, cmd);
  await sleep(300);
  assert.deepEqual(pidsWithArgv(['/bin/sleep', sleepArg]), before);

  // exits of adopted instances still reach the cluster
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: cmd.job_name, virtualization: 'process', instance_number: 0 });
  await waitFor(() => cluster.jobs(id, cmd.job_name).some((p) => p['status'] === 'UNDEPLOYED'));
  assert.equal(pidsWithArgv(['/bin/sleep', sleepArg]).length, 1);
});

test('MQTT reconnect after a cluster restart: registers again and re-reports its instances', async () => {
  const id = engine!.id;
  const regs = cluster.registrations.length;
  await cluster.restartBroker();
  const t0 = Date.now();
  await waitFor(() => cluster.registrations.length > regs, { timeoutMs: 15_000, message: 're-registration' });
  assert.equal(cluster.registrations.at(-1)?.id, id);
  const talker = `ne${run}.test.talker.test`;
  const again = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/job` && m.at >= t0 && m.payload['job_name'] === talker), { timeoutMs: 15_000 });
  assert.equal(again.payload['status'], 'RUNNING');
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/information` && m.at >= t0), { timeoutMs: 5000 });
});

test('a cluster restart where the reconnect comes long after the registration its refusal made: one registration, not two', async () => {
  const id = engine!.id;
  const regs = cluster.registrations.length;
  // the restarted cluster forgets the worker: its reconnect is refused, and it registers; the
  // broker is then away for 2.5 s (a loaded cluster: the connect takes long after the
  // registration), so the reconnect that works comes well after that registration
  let up = 0;
  let back: Promise<void> | undefined;
  cluster.onRegistration = () => {
    cluster.onRegistration = undefined;
    back = (async () => {
      await cluster.stopBroker();
      await sleep(2500);
      await cluster.startBroker(cluster.brokerPort);
      await cluster.connectObserver();
      up = Date.now();
    })();
  };
  await cluster.restartBroker();
  await waitFor(() => back !== undefined, { timeoutMs: 15_000, message: 'the registration after the refusal' });
  await back;
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/information` && m.at >= up), { timeoutMs: 10_000, message: 'reports again' });
  // a second registration would come before that report (onReconnect registers, then reports)
  await sleep(300);
  assert.equal(cluster.registrations.length, regs + 1, 'registered once for the restart');
  assert.equal(cluster.registrations.at(-1)?.id, id);
});

test('credentials dropped by the cluster (MQTT refusal): the worker registers again with its token and goes on', async () => {
  const id = engine!.id;
  const regs = cluster.registrations.length;
  cluster.revoke(id);
  const t0 = Date.now();
  await waitFor(() => cluster.registrations.length > regs, { timeoutMs: 15_000, message: 're-registration after the refusal' });
  assert.equal(cluster.registrations.at(-1)?.id, id, 'it proves its id and keeps it');
  await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/information` && m.at >= t0), { timeoutMs: 10_000, message: 'reports again' });
});

test('a revoked token: the worker is refused and stays out (nothing it sends gets through)', async () => {
  const d = await tmpDir('oak-ne-revoked');
  const token = cluster.join.workerToken();
  const e = await startNodeEngine({ clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir: d.path, name: 'doomed', reportIntervalMs: INTERVAL, registerBackoffMs: { initial: 50, max: 200 }, runtimes: ['process'], log: silentLog, joinToken: token, isolation: 'off' });
  try {
    const id = e.id;
    await waitFor(() => cluster.messages.some((m) => m.topic === `nodes/${id}/information`), { message: 'first report' });
    cluster.join.revoke(token);
    cluster.revoke(id);
    await waitFor(() => cluster.refused.some((r) => r.id === id), { timeoutMs: 10_000, message: 'the re-registration is refused' });
    const t0 = Date.now();
    await sleep(3 * INTERVAL);
    assert.equal(cluster.messages.filter((m) => m.topic.startsWith(`nodes/${id}/`) && m.at >= t0).length, 0);
    assert.equal(cluster.creds.has(id), false);
  } finally {
    await e.close();
    await d.remove();
  }
  // a new start with that token fails with the reason and the hint
  const d2 = await tmpDir('oak-ne-revoked2');
  try {
    await assert.rejects(
      startNodeEngine({ clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir: d2.path, runtimes: ['process'], log: silentLog, joinToken: token, isolation: 'off' }),
      /refused this worker: .*revoked.*oak token create worker/,
    );
  } finally {
    await d2.remove();
  }
});

test('no token, a cluster token, or a token of another CA: the start fails with a clear message', async () => {
  const d = await tmpDir('oak-ne-notoken');
  const base = { clusterAddress: '127.0.0.1', clusterPort: cluster.httpPort, netmanagerPort: null, dataDir: d.path, runtimes: ['process' as const], log: silentLog, registerBackoffMs: { initial: 50, max: 100 }, isolation: 'off' as const };
  try {
    await assert.rejects(startNodeEngine(base), /join token is required.*-t <token>.*OAK_JOIN_TOKEN/);
    await assert.rejects(startNodeEngine({ ...base, joinToken: `oak1.c.abcdefgh.${'A'.repeat(32)}.${cluster.join.caHash}` }), /cluster join token/);
    // the right secret, but the fingerprint of another CA: the cluster is not the one the token names
    const other = cluster.token.replace(/\.[0-9a-f]{64}$/, `.${'0'.repeat(64)}`);
    const regs = cluster.registrations.length + cluster.refused.length;
    await assert.rejects(startNodeEngine({ ...base, joinToken: other }), /refused this worker: .*fingerprint/);
    assert.equal(cluster.registrations.length + cluster.refused.length, regs, 'nothing was sent to an unverified cluster');
  } finally {
    await d.remove();
  }
});

test('shutdown with stopInstances stops everything and reports UNDEPLOYED', async () => {
  const id = engine!.id;
  await engine!.shutdown({ stopInstances: true });
  engine = undefined;
  await cluster.waitJob(id, `ne${run}.test.talker.test`, 'UNDEPLOYED');
  assert.deepEqual(pidsWithArgv(['/bin/sleep', sleepArg]), []);
  // issue 9: stopping for good says so on nodes/<id>/gone, with the nonce of its registration and reports
  const gone = await waitFor(() => cluster.messages.find((m) => m.topic === `nodes/${id}/gone`), { timeoutMs: 5000, message: 'gone published' });
  assert.equal(gone.payload['id'], id);
  const conn = gone.payload['conn'];
  assert.match(String(conn), /^[A-Za-z0-9_-]{8,64}$/);
  assert.ok(cluster.registrations.some((r) => r.id === id && r.conn === conn), 'its registration carried the nonce');
  assert.ok(cluster.messages.some((m) => m.topic === `nodes/${id}/information` && m.payload['conn'] === conn), 'reports carry the nonce');
});

test('startup says which virtualizations are offered and why not', async () => {
  const d = await tmpDir('oak-ne-probe');
  const lines: string[] = [];
  const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
  const e = await startNodeEngine({
    clusterAddress: '127.0.0.1',
    clusterPort: cluster.httpPort,
    netmanagerPort: null,
    dataDir: d.path,
    containerdSocket: join(d.path, 'no-containerd.sock'),
    reportIntervalMs: INTERVAL,
    log,
    namespace: `ne${run}p`,
    runAs: RUN_AS,
    joinToken: cluster.token,
  });
  try {
    // containerd is absent here; process always works; unikernel and wasm where this machine can
    const offered = [...e.virtualizations];
    assert.ok(offered.includes('process') && !offered.includes('container'), offered.join(','));
    assert.ok(lines.some((l) => l.startsWith('container: unavailable (') && l.includes('no-containerd.sock')), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('process: available (')));
    // every virtualization has its line: offered ones say available, the others why not
    for (const v of VIRTUALIZATIONS) assert.ok(lines.some((l) => l.startsWith(`${v}: ${offered.includes(v) ? 'available' : 'unavailable'} (`)), `${v}: ${lines.join('\n')}`);
    assert.ok(lines.includes(`offering: ${offered.join(', ')}`));
    assert.deepEqual(cluster.registrations.at(-1)?.virtualizations, offered);
  } finally {
    await e.close();
    await d.remove();
  }
});
