/**
 * Property-based fuzzing of every MQTT handler of the cluster (information, job, jobs/resources,
 * logs) on its real embedded broker: thousands of malformed or hostile payloads on the topics of
 * a registered worker and of ids nobody registered. The cluster keeps answering /healthz, its
 * state (workers, desired instances) is unchanged, the live log session survives, memory stays
 * bounded. Seed and size: OAK_FUZZ_SEED, OAK_FUZZ_SCALE (see @oak/testkit/fuzz).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connectBus, silentLogger, type Bus } from '@oak/bus';
import { topics, type ClusterToRoot } from '@oak/contracts';
import { requestJson, waitFor } from '@oak/testkit';
import { brokenMessage, fuzzParams, hostileBytes, hostileString, hostileValue, memory } from '@oak/testkit/fuzz';
import { startCluster, type ClusterHandle } from '../src/index.ts';
import { assignment, information } from './fixtures.ts';
import { join, joinConfig, startFakeRoot, startFakeWorker, type FakeRoot, type FakeWorker } from './harness.ts';

const JOB = 'fuzz.test.web.test';
const RID = 'fuzz-logs-1';

describe('fuzz: the cluster MQTT handlers', () => {
  let root: FakeRoot;
  let cluster: ClusterHandle;
  let worker: FakeWorker;
  let attacker: Bus;
  before(async () => {
    root = await startFakeRoot();
    // workers report rarely: nothing but the fuzz touches the state during the run
    cluster = await startCluster({ name: 'fz', host: '127.0.0.1', port: 0, mqttPort: 0, reportIntervalMs: 3_600_000, aggregateIntervalMs: 3_600_000, log: silentLogger, ...joinConfig(), root: { address: root.address, token: root.token } });
    worker = await startFakeWorker(cluster.registrationUrl, 'fw', { reportIntervalMs: 3_600_000 });
    await waitFor(() => root.connected, { message: 'cluster linked' });
    root.send({ type: 'deploy', instance: assignment(JOB, 0) });
    await waitFor(() => root.statuses(JOB, 0).some((s) => s.status === 'RUNNING'), { message: 'instance RUNNING' });
    root.send({ type: 'logs', request_id: RID, job_name: JOB, instance_number: 0, follow: true });
    await waitFor(() => worker.logRequests.some((r) => r.request_id === RID), { message: 'log session open' });
    // the fuzzer publishes with the cluster's own (full-access) credentials: the ACL would close a
    // worker's connection at its first foreign topic (attack-wire and bus auth tests cover that);
    // here every hostile payload must reach the handlers themselves
    attacker = await connectBus(cluster.mqttUrl, { clientId: `fuzz-${Date.now()}`, ...cluster.ownClientOptions(), log: silentLogger });
  });
  after(async () => {
    await attacker?.close();
    await worker?.close();
    await cluster?.close();
    await root?.close();
  });

  const state = (): string =>
    JSON.stringify({
      workers: [...cluster.core.workers.values()],
      desired: [...cluster.core.desired.values()],
    });

  test('thousands of hostile messages change nothing and break nothing', async () => {
    const wid = worker.id;
    const before = state();
    const mem0 = memory();
    const statusesBefore = root.statuses().length;
    const nodeId = fc.oneof({ weight: 3, arbitrary: fc.constant(wid) }, { weight: 1, arbitrary: hostileString.filter((s) => s.length > 0 && s.length < 100 && !/[/+#\u0000]/.test(s)) });
    const infoArb = brokenMessage(information([], 4, 4096) as unknown as Record<string, unknown>, {
      cpu_percent: 'nonneg',
      cpu_cores: 'nonneg',
      memory_free_mb: 'nonneg',
      memory_total_mb: 'nonneg',
      disk_free_mb: 'nonneg',
      gpus: 'integer',
      virtualizations: 'array',
      running_instances: 'array',
      timestamp: 'number',
    });
    const jobArb = brokenMessage({ job_name: JOB, instance_number: 0, status: 'FAILED', status_detail: 'forged' }, { job_name: 'string', instance_number: 'integer', status: 'string', status_detail: 'string' });
    const resourcesArb = fc.oneof(
      brokenMessage({ instances: [] }, { instances: 'array' }),
      brokenMessage({ job_name: JOB, instance_number: 0, cpu_percent: 1, memory_mb: 1 }, { job_name: 'string', instance_number: 'integer', cpu_percent: 'nonneg', memory_mb: 'nonneg' }).map((i) => ({ instances: [i] })),
    );
    const logsArb = fc.oneof(brokenMessage({ lines: [] }, { lines: 'array' }), fc.array(hostileValue, { minLength: 1, maxLength: 5 }).filter((l) => l.some((x) => typeof x !== 'string')).map((lines) => ({ lines })));
    const message = fc.oneof(
      fc.record({ kind: fc.constant('information'), id: nodeId, body: fc.oneof(infoArb.map((v) => Buffer.from(JSON.stringify(v))), hostileBytes) }),
      fc.record({ kind: fc.constant('job'), id: nodeId, body: fc.oneof(jobArb.map((v) => Buffer.from(JSON.stringify(v))), hostileBytes) }),
      fc.record({ kind: fc.constant('jobs/resources'), id: nodeId, body: fc.oneof(resourcesArb.map((v) => Buffer.from(JSON.stringify(v))), hostileBytes) }),
      fc.record({ kind: fc.constantFrom(`logs/${RID}`, 'logs/other', `logs/${RID}/x`), id: nodeId, body: fc.oneof(logsArb.map((v) => Buffer.from(JSON.stringify(v))), hostileBytes) }),
    );
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(message, async ({ kind, id, body }) => {
        await attacker.publish(`nodes/${id}/${kind}`, body, 0);
        sent++;
      }),
      fuzzParams(3000),
    );
    // a sentinel after everything: once it reaches the root, every message before it was handled
    await worker.bus.publishJson(topics.logsAnswer(wid, RID), { lines: ['sentinel'] }, 1);
    await waitFor(() => root.received.some((m: ClusterToRoot) => m.type === 'logs_data' && m.request_id === RID && m.lines.includes('sentinel')), { timeoutMs: 60_000, message: 'the sentinel went through' });
    const h = await requestJson(`${cluster.httpUrl}/healthz`, { tls: join.clientTls() });
    assert.equal(h.status, 200);
    assert.equal(state(), before, 'workers and desired instances are unchanged');
    assert.equal(root.statuses().length, statusesBefore, 'no forged status reached the root');
    assert.ok(!root.received.some((m) => m.type === 'logs_end' && m.request_id === RID), 'the log session is still open');
    const mem1 = memory();
    if (process.env.OAK_FUZZ_VERBOSE) console.log(`heap ${Math.round((mem1.heap - mem0.heap) / 1e6)} MB, rss ${Math.round((mem1.rss - mem0.rss) / 1e6)} MB`);
    // what is still held after a full collection (a leak of subscribers, sessions, buffers shows here); RSS only grossly
    assert.ok(mem1.heap - mem0.heap < 100 * 1024 * 1024, `live heap grew by ${Math.round((mem1.heap - mem0.heap) / 1e6)} MB`);
    assert.ok(mem1.rss - mem0.rss < 1024 * 1024 * 1024, `RSS grew by ${Math.round((mem1.rss - mem0.rss) / 1e6)} MB`);
    assert.ok(sent >= fuzzParams(3000).numRuns);
  });
});
