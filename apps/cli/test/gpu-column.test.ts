import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerSummary } from '@oak/contracts';
import { GPU_WIDTH, gpuText } from '../src/commands/cluster.ts';

const w = (p: Partial<WorkerSummary>): WorkerSummary => ({ id: 'w', name: 'w', cpu_cores_free: 1, memory_free_mb: 1, virtualizations: ['container'], ...p });
const g = (index: number, name: string, memory_mb = 0) => ({ index, name, memory_mb, uuid: '' });

test('oak node ls GPU column: free/total and the models with their memory', () => {
  assert.equal(gpuText(w({})), '-');
  assert.equal(gpuText(w({ gpus_free: 0 })), '-');
  assert.equal(gpuText(w({ gpus_free: 1, gpus: [g(0, 'NVIDIA T4', 15360)] })), '1/1 NVIDIA T4 15360MB');
  assert.equal(gpuText(w({ gpus_free: 1, gpus: [g(0, 'NVIDIA A100', 40960), g(1, 'NVIDIA A100', 40960), g(2, 'NVIDIA T4')] })), '1/3 2x NVIDIA A100 40960MB, NVIDIA T4');
  assert.equal(gpuText(w({ gpus_free: -1, gpus: [g(0, '')] })), '0/1 GPU', 'never below 0; a nameless GPU is GPU');
  // an older cluster that sends only the count
  assert.equal(gpuText(w({ gpus_free: 2 })), '2 free');
});

test('oak node ls GPU column: a worker\'s hostile names cannot reach the terminal or widen the table', () => {
  const t = gpuText(w({ gpus_free: 1, gpus: [g(0, '\u001b[31mRED\u001b[0m\u0007\u009b'), g(1, 'x'.repeat(128))] }));
  assert.doesNotMatch(t, /[\u0000-\u001f\u007f-\u009f]/);
  assert.ok(t.startsWith('1/2 [31mRED[0m'));
  assert.ok(t.length <= GPU_WIDTH);
  assert.ok(t.endsWith('…'));
});
