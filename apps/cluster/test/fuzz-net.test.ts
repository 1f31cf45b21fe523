/**
 * Property-based fuzzing of the cluster's overlay handlers (subnet, table query, service
 * deployed/undeployed, interest removal, RTT) on its real embedded broker: thousands of malformed
 * or hostile payloads on the net topics of a registered worker and of ids nobody registered. The
 * cluster keeps answering, no instance gets net info it was not entitled to, nothing but subnet
 * and table queries reaches the root, interests stay bounded. Seed and size: OAK_FUZZ_SEED,
 * OAK_FUZZ_SCALE (see @oak/testkit/fuzz).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connectBus, silentLogger, type Bus } from '@oak/bus';
import { netTopics } from '@oak/contracts';
import { requestJson, waitFor } from '@oak/testkit';
import { brokenMessage, fuzzParams, hostileBytes, hostileString, memory } from '@oak/testkit/fuzz';
import { startCluster, type ClusterHandle } from '../src/index.ts';
import { assignment } from './fixtures.ts';
import { join, joinConfig, startFakeRoot, startFakeWorker, type FakeRoot, type FakeWorker } from './harness.ts';

const JOB = 'fuzz.test.net.test';

describe('fuzz: the cluster overlay handlers', () => {
  let root: FakeRoot;
  let cluster: ClusterHandle;
  let worker: FakeWorker;
  let attacker: Bus;
  before(async () => {
    root = await startFakeRoot();
    root.onMessage((m) => {
      if (m.type === 'subnet_request') root.send({ type: 'subnet_result', request_id: m.request_id, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64' });
      if (m.type === 'table_query') root.send({ type: 'table_result', request_id: m.request_id, error: 'no such service' });
    });
    cluster = await startCluster({ name: 'fn', host: '127.0.0.1', port: 0, mqttPort: 0, reportIntervalMs: 3_600_000, aggregateIntervalMs: 3_600_000, log: silentLogger, ...joinConfig(), root: { address: root.address, token: root.token } });
    worker = await startFakeWorker(cluster.registrationUrl, 'fw', { reportIntervalMs: 3_600_000 });
    await waitFor(() => root.connected, { message: 'cluster linked' });
    root.send({ type: 'sync', instances: [] });
    root.send({ type: 'deploy', instance: assignment(JOB, 0) });
    await waitFor(() => root.statuses(JOB, 0).some((s) => s.status === 'RUNNING'), { message: 'instance RUNNING' });
    // full-access credentials: the ACL would cut a worker off at its first foreign topic; here
    // every hostile payload must reach the handlers
    attacker = await connectBus(cluster.mqttUrl, { clientId: `fuzz-${Date.now()}`, ...cluster.ownClientOptions(), log: silentLogger });
  });
  after(async () => {
    await attacker?.close();
    await worker?.close();
    await cluster?.close();
    await root?.close();
  });

  test('thousands of hostile net messages: no foreign net info, bounded state, the cluster answers', async () => {
    const wid = worker.id;
    const mem0 = memory();
    const nodeId = fc.oneof({ weight: 3, arbitrary: fc.constant(wid) }, { weight: 1, arbitrary: hostileString.filter((s) => s.length > 0 && s.length < 100 && !/[/+#\u0000]/.test(s)) });
    const deployedArb = brokenMessage(
      { job_name: JOB, instance_number: 0, nsip: '10.18.1.66', host_ip: '127.0.0.2', host_port: 50103, subnet: '10.18.1.64/26' },
      { job_name: 'string', instance_number: 'integer', nsip: 'string', host_ip: 'string', host_port: 'integer', subnet: 'string' },
    );
    const bodies: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
      'net/subnet': brokenMessage({ host_ip: '127.0.0.2', host_port: 50103 }, { host_ip: 'string', host_port: 'integer' }),
      'net/tablequery/request': brokenMessage({ request_id: 'r1', job_name: JOB }, { request_id: 'string', job_name: 'string', ip: 'string' }),
      'net/service/deployed': deployedArb,
      'net/service/undeployed': brokenMessage({ job_name: JOB, instance_number: 0 }, { job_name: 'string', instance_number: 'integer' }),
      'net/interest/remove': brokenMessage({ job_name: JOB }, { job_name: 'string' }),
      'net/rtt': brokenMessage({ peers: [] }, { peers: 'array' }),
    };
    const message = fc.oneof(
      ...Object.entries(bodies).map(([kind, arb]) => fc.record({ kind: fc.constant(kind), id: nodeId, body: fc.oneof(arb.map((v) => Buffer.from(JSON.stringify(v))), hostileBytes) })),
    );
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(message, async ({ kind, id, body }) => {
        await attacker.publish(`nodes/${id}/${kind}`, body, 0);
        sent++;
      }),
      fuzzParams(3000),
    );
    // a sentinel: once answered, everything before it was handled
    const answers: string[] = [];
    await attacker.subscribe(netTopics.tableQueryResult(wid), (_t, p) => { answers.push(p.toString()); });
    await attacker.publishJson(netTopics.tableQueryRequest(wid), { request_id: 'sentinel', job_name: JOB }, 1);
    await waitFor(() => answers.some((a) => a.includes('"sentinel"')), { timeoutMs: 60_000, message: 'the sentinel was answered' });
    const h = await requestJson(`${cluster.httpUrl}/healthz`, { tls: join.clientTls() });
    assert.equal(h.status, 200);
    // no net info beyond what a valid report for the worker's own instance in its own subnet gives
    for (const r of cluster.net.instances.values()) {
      assert.equal(r.worker_id, wid);
      assert.equal(r.job_name, JOB);
      assert.equal(r.net.subnet, '10.18.0.64/26');
    }
    assert.ok(![...root.received].some((m) => m.type === 'instance_status' && m.net != null && m.net.subnet !== '10.18.0.64/26'), 'no foreign subnet reached the root');
    let interests = 0;
    for (const set of cluster.net.interest.values()) if (set.has(wid)) interests++;
    assert.ok(interests <= cluster.net.opts.maxInterestsPerWorker);
    for (const set of cluster.net.interest.values()) for (const w of set) assert.equal(w, wid, 'only registered workers have interests');
    const mem1 = memory();
    assert.ok(mem1.heap - mem0.heap < 100 * 1024 * 1024, `live heap grew by ${Math.round((mem1.heap - mem0.heap) / 1e6)} MB`);
    assert.ok(sent >= fuzzParams(3000).numRuns);
  });
});
