/**
 * Logs outlive the instance (issue 10 point 9), on a real NodeEngine with the real process driver
 * against a stand-in cluster: a one-shot job's output and a crashed service's last words are
 * served after the instance was cleaned up, an undeployed service's shutdown lines too; a follow
 * on a kept log prints it and ends; everything survives a NodeEngine restart; after the retention
 * period (a fake clock) the answer says which logs were dropped, where, why and since when.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import type { DeployCommand } from '@oak/contracts';
import { lookupUser } from '@oak/runtimes';
import { shortId, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { silentLog } from '../src/config.ts';
import { startNodeEngine } from '../src/engine.ts';
import type { NodeEngineHandle } from '../src/engine.ts';
import { FakeCluster } from './helpers/cluster.ts';

const RUN_AS = lookupUser('oak-workload') !== undefined ? undefined : 'nobody';
const run = shortId(3);
const HOUR = 3_600_000;

let cluster: FakeCluster;
let dir: TmpDir;
let engine: NodeEngineHandle | undefined;
let clock = Date.now();

function deploy(svc: string, extra: Partial<DeployCommand>): DeployCommand {
  return {
    microservice_name: svc,
    microservice_namespace: 'test',
    virtualization: 'process',
    code: '/bin/sh',
    job_name: `kl${run}.test.${svc}.test`,
    instance_number: 0,
    ...extra,
  };
}

function start(): Promise<NodeEngineHandle> {
  return startNodeEngine({
    clusterAddress: '127.0.0.1',
    clusterPort: cluster.httpPort,
    netmanagerPort: null,
    dataDir: dir.path,
    name: `kl-worker-${run}`,
    reportIntervalMs: 500,
    registerBackoffMs: { initial: 50, max: 200 },
    runtimes: ['process'],
    log: silentLog,
    namespace: `kl${run}`,
    runAs: RUN_AS,
    joinToken: cluster.token,
    isolation: 'off',
    // ended instances are cleaned up (their logs handed to the keeper) at once
    exitedRetentionMs: 100,
    logRetentionMs: HOUR,
    now: () => clock,
  });
}

/** one log request; resolves with its lines and the last batch */
async function logs(job: string, opts: { follow?: boolean; tail?: number } = {}): Promise<{ lines: string[]; end: Record<string, unknown> }> {
  const id = engine!.id;
  const rid = `r${shortId(4)}`;
  await cluster.publish(`nodes/${id}/control/logs`, { request_id: rid, job_name: job, instance_number: 0, follow: opts.follow === true, ...(opts.tail !== undefined ? { tail: opts.tail } : {}) });
  const topic = `nodes/${id}/logs/${rid}`;
  const end = await waitFor(() => cluster.messages.find((m) => m.topic === topic && m.payload['end'] === true), { timeoutMs: 10_000, message: `end of ${rid}` });
  return { lines: cluster.messages.filter((m) => m.topic === topic).flatMap((m) => m.payload['lines'] as string[]), end: end.payload };
}

/** waits until the worker answers from its kept logs (the instance was cleaned up) */
async function keptLines(job: string): Promise<string[]> {
  let last: string[] = [];
  await waitFor(async () => {
    last = (await logs(job)).lines;
    return last[0]?.startsWith('# oak: ') === true;
  }, { timeoutMs: 15_000, intervalMs: 100, message: `kept logs of ${job}` });
  return last;
}

before(async () => {
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-kl');
});

after(async () => {
  await engine?.shutdown({ stopInstances: true }).catch(() => undefined);
  await cluster.close();
  await dir.remove();
  await rm(`${dir.path}-work`, { recursive: true, force: true });
});

const oneShot = deploy('job', { cmd: ['-c', 'echo computing; echo result 42'], one_shot: true });
const crash = deploy('crash', { cmd: ['-c', 'echo starting; echo last words >&2; exit 3'] });
const svc = deploy('svc', { cmd: ['-c', 'trap "echo shutting down cleanly; exit 0" TERM; echo serving; while :; do sleep 0.05; done'] });

test('a COMPLETED one-shot and a FAILED service: their logs are served after the instances are gone', async () => {
  engine = await start();
  const id = engine.id;
  await cluster.publish(`nodes/${id}/control/deploy`, oneShot);
  await cluster.publish(`nodes/${id}/control/deploy`, crash);
  await cluster.waitJob(id, oneShot.job_name, 'COMPLETED');
  await cluster.waitJob(id, crash.job_name, 'FAILED');
  const job = await keptLines(oneShot.job_name);
  assert.match(job[0] ?? '', new RegExp(`^# oak: ${oneShot.job_name.replace(/\./g, '\\.')}\\.instance\\.0 ended \\S+ \\(COMPLETED\\); its logs are kept on worker kl-worker-${run} \\(${id}\\) until \\S+ \\(1 h\\)$`));
  assert.deepEqual(job.slice(1), ['computing', 'result 42']);
  const died = await keptLines(crash.job_name);
  assert.match(died[0] ?? '', /\(FAILED\)/);
  assert.deepEqual(died.slice(1), ['starting', 'last words']);
  // tail, and a follow prints what is kept and ends by itself
  assert.deepEqual((await logs(crash.job_name, { tail: 1 })).lines.slice(1), ['last words']);
  const f = await logs(oneShot.job_name, { follow: true });
  assert.deepEqual(f.lines.slice(1), ['computing', 'result 42']);
  assert.equal(f.end['error'], undefined);
});

test('an undeployed service keeps its lines, its shutdown included', async () => {
  const id = engine!.id;
  await cluster.publish(`nodes/${id}/control/deploy`, svc);
  await cluster.waitJob(id, svc.job_name, 'RUNNING');
  await waitFor(async () => (await logs(svc.job_name)).lines.includes('serving'), { timeoutMs: 10_000, intervalMs: 100, message: 'serving' });
  await cluster.publish(`nodes/${id}/control/delete`, { job_name: svc.job_name, instance_number: 0 });
  await cluster.waitJob(id, svc.job_name, 'UNDEPLOYED');
  const lines = await keptLines(svc.job_name);
  assert.match(lines[0] ?? '', /\(UNDEPLOYED\)/);
  // (the shell may say its sleep was "Terminated" in between)
  assert.equal(lines[1], 'serving');
  assert.equal(lines.at(-1), 'shutting down cleanly', 'the lines written after the undeploy came are kept');
});

test('a NodeEngine restart keeps them; after the retention period the answer says what was dropped and when', async () => {
  await engine!.close();
  engine = await start();
  assert.deepEqual((await keptLines(oneShot.job_name)).slice(1), ['computing', 'result 42']);
  assert.equal((await keptLines(svc.job_name)).at(-1), 'shutting down cleanly');

  clock += HOUR + 1000;
  await engine.close();
  engine = await start(); // the start sweeps
  for (const job of [oneShot.job_name, crash.job_name]) {
    const r = await logs(job);
    assert.deepEqual(r.lines, []);
    assert.equal(r.end['gone'], true);
    assert.match(String(r.end['error']), new RegExp(`^the logs of ${job.replace(/\./g, '\\.')}\\.instance\\.0 \\(ended \\S+Z\\) were dropped on worker kl-worker-${run} \\(\\S+\\) at \\S+Z: this worker keeps the logs of ended instances for 1 h$`));
  }
  const unknown = await logs(`kl${run}.test.never.test`);
  assert.equal(unknown.end['gone'], true);
  assert.match(String(unknown.end['error']), /is not on this worker \(.*\) and no logs of it are kept here/);
});
