import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Microservice } from '@oak/contracts';
import { compileConstraints, demandOf } from '../src/index.ts';

const svc: Microservice = { microservice_name: 'server', microservice_namespace: 'test', virtualization: 'container', code: 'nginx' };

test('demandOf defaults absent amounts to 0 and keeps constraints', () => {
  assert.deepEqual(demandOf(svc, 'a.b.c.d'), { job_name: 'a.b.c.d', virtualization: 'container', vcpus: 0, memory_mb: 0, gpus: 0, constraints: [] });
  const d = demandOf({ ...svc, vcpus: 2, memory: 512, vgpus: 1, constraints: [{ type: 'direct', cluster: 'c1' }] }, 'j');
  assert.equal(d.vcpus, 2);
  assert.equal(d.memory_mb, 512);
  assert.equal(d.gpus, 1);
  assert.deepEqual(d.constraints, [{ type: 'direct', cluster: 'c1' }]);
});

test('demandOf: GPUs are whole (a fractional vgpus holds the next whole GPU)', () => {
  assert.equal(demandOf({ ...svc, vgpus: 0.5 }, 'j').gpus, 1);
  assert.equal(demandOf({ ...svc, vgpus: 2 }, 'j').gpus, 2);
  assert.equal(demandOf({ ...svc, vgpus: 1.0000000001 }, 'j').gpus, 1);
  assert.equal(demandOf({ ...svc, vgpus: 2.2 }, 'j').gpus, 3);
  assert.equal(demandOf({ ...svc, vgpus: -1 }, 'j').gpus, 0);
});

test('demandOf treats negative or non-finite amounts as 0', () => {
  const d = demandOf({ ...svc, vcpus: -1, memory: Number.NaN }, 'j');
  assert.equal(d.vcpus, 0);
  assert.equal(d.memory_mb, 0);
});

test('constraints compile once per demand', () => {
  const d = demandOf({ ...svc, constraints: [{ type: 'geo', location: '1,2', threshold: 5 }, { type: 'latency', area: 'eu', threshold: 3 }] }, 'j');
  const c = compileConstraints(d);
  assert.equal(compileConstraints(d), c);
  assert.deepEqual(c.geo[0]?.point, { lat: 1, long: 2 });
  assert.deepEqual(c.latency[0]?.keys, ['eu']);
  assert.equal(c.none, false);
  assert.equal(compileConstraints(demandOf(svc, 'j')).none, true);
});
