/** ClusterCore.usage() (issue 11): which per-instance readings go up to the root, and the measured worker fields of the aggregate. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_USAGE_READINGS } from '@oak/contracts';
import { ClusterCore } from '../src/core.ts';
import { assignment, information, registration } from './fixtures.ts';

const JOB = 'app.ns.web.ns';

test('only readings of instances placed on the reporting worker; numbers clamped; dead workers left out', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  for (const id of ['w1', 'w2']) {
    c.register(id, registration(id), 0);
    c.information(id, information([], 4, 4096), 0);
  }
  const placed = c.deploy(assignment(JOB, 0), 1).find((e) => e.type === 'deploy');
  assert.ok(placed?.type === 'deploy');
  const owner = placed.worker_id;
  const other = owner === 'w1' ? 'w2' : 'w1';
  c.jobResources(owner, { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 150.123, memory_mb: 64 }, { job_name: 'ghost.ns.web.ns', instance_number: 0, cpu_percent: 1, memory_mb: 1 }] }, 2);
  c.jobResources(other, { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 99, memory_mb: 999 }] }, 2);
  assert.deepEqual(c.usage(), [{ job_name: JOB, instance_number: 0, worker_id: owner, cpu_percent: 150.12, memory_mb: 64 }]);
  // absurd numbers from a worker are clamped (never above the contract's limits, never negative)
  c.jobResources(owner, { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 1e12, memory_mb: -5 }] }, 3);
  const [r] = c.usage();
  assert.equal(r?.cpu_percent, 1_000_000);
  assert.equal(r?.memory_mb, 0);
  // a dead worker's last readings are not passed on
  c.tick(10_000);
  assert.deepEqual(c.usage(), []);
});

test('at most MAX_USAGE_READINGS readings per aggregate', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  c.register('w', registration('w', 100_000, 100_000_000), 0);
  c.information('w', information([], 100_000, 100_000_000), 0);
  const n = MAX_USAGE_READINGS + 10;
  for (let i = 0; i < n; i++) c.deploy(assignment(JOB, i, { vcpus: 0, memory: 0 }), 1);
  c.jobResources('w', { instances: Array.from({ length: n }, (_, i) => ({ job_name: JOB, instance_number: i, cpu_percent: 1, memory_mb: 1 })) }, 2);
  assert.equal(c.usage().length, MAX_USAGE_READINGS);
});

test('the aggregate carries the measured readings of each worker', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  c.register('w', { ...registration('w', 8, 8192), disk_mb: 50_000 }, 0);
  c.information('w', { ...information([], 8, 8192), cpu_percent: 250, memory_free_mb: 2048, disk_free_mb: 10_000 }, 0);
  const s = c.aggregate().worker_summary[0];
  assert.equal(s?.cpu_percent, 100, 'clamped to the whole machine');
  assert.equal(s?.cpu_cores_total, 8);
  assert.equal(s?.memory_total_mb, 8192);
  assert.equal(s?.memory_available_mb, 2048);
  assert.equal(s?.disk_free_mb, 10_000);
  assert.equal(s?.disk_total_mb, 50_000);
  assert.equal(s?.arch, 'x86_64');
  assert.equal(s?.os, 'linux');
});
