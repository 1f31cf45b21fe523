/**
 * A running cluster (HTTPS registration, MQTT, the root link) with addons (issue 12): the
 * workers' supported_addons and the cluster's CLUSTER_ADDONS reach the root's aggregate, and a
 * deploy with an addons constraint goes to the worker that offers the label.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@oak/bus';
import { waitFor } from '@oak/testkit';
import { startCluster, type ClusterHandle } from '../src/index.ts';
import { assignment } from './fixtures.ts';
import { joinConfig, startFakeRoot, startFakeWorker, type FakeRoot, type FakeWorker } from './harness.ts';

let root: FakeRoot;
let cluster: ClusterHandle;
const workers: FakeWorker[] = [];

before(async () => {
  root = await startFakeRoot();
  cluster = await startCluster({
    name: 'c1', host: '127.0.0.1', port: 0, mqttPort: 0, reportIntervalMs: 200, aggregateIntervalMs: 300, log: silentLogger,
    root: { address: root.address, token: root.token }, addons: ['cluster-cache'], ...joinConfig(),
  });
});
after(async () => {
  for (const w of workers) await w.close();
  await cluster.close();
  await root.close();
});

test('addons: aggregate carries them; the deploy goes to the worker offering the label', async () => {
  const plain = await startFakeWorker(cluster.registrationUrl, 'plain', { cores: 16 });
  workers.push(plain);
  const builder = await startFakeWorker(cluster.registrationUrl, 'builder', { cores: 2, addons: ['image-builder'] });
  workers.push(builder);
  await waitFor(() => root.lastAggregate()?.workers === 2, { message: 'aggregate with 2 workers' });
  await waitFor(() => root.lastAggregate()?.worker_summary.some((w) => w.supported_addons?.includes('image-builder')) === true, { message: 'worker addons in the aggregate' });
  assert.deepEqual(root.lastAggregate()?.supported_addons, ['cluster-cache']);
  root.send({ type: 'sync', instances: [] });
  const a = assignment('a.a.img.a', 0);
  root.send({ type: 'deploy', instance: { ...a, service: { ...a.service, constraints: [{ type: 'addons', needs: ['image-builder', 'cluster-cache'] }] } } });
  await waitFor(() => root.statuses('a.a.img.a', 0).some((s) => s.status === 'RUNNING'), { message: 'RUNNING' });
  assert.equal(builder.deploys.length, 1);
  assert.equal(plain.deploys.length, 0);
  // a label nobody offers: it waits with the reason
  const b = assignment('a.a.none.a', 0);
  root.send({ type: 'deploy', instance: { ...b, service: { ...b.service, constraints: [{ type: 'addons', needs: ['FLOps-learner'] }] } } });
  await waitFor(() => root.statuses('a.a.none.a', 0).some((s) => s.status === 'CLUSTER_SCHEDULED' && s.status_detail === 'NoWorkerMatchesConstraints'), { message: 'pending reason' });
});
