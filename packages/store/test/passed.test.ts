import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceState } from '@oak/contracts';
import { passedSteps } from '../src/passed.ts';

const at = (s: InstanceState) => ({ status: s, status_detail: '', at: '2026-12-06T00:00:00.000Z' });

test('passedSteps keeps each passed status that is a step of its own, in order', () => {
  const steps = passedSteps('CLUSTER_SCHEDULED', [at('NODE_SCHEDULED'), at('CREATING')], 'RUNNING');
  assert.deepEqual(steps.map((p) => p.status), ['NODE_SCHEDULED', 'CREATING']);
});

test('passedSteps drops a passed status equal to the stored one, to the one before it, or to the new one', () => {
  const steps = passedSteps(
    'NODE_SCHEDULED',
    [at('NODE_SCHEDULED'), at('CREATING'), at('CREATING'), at('RUNNING')],
    'RUNNING',
  );
  assert.deepEqual(steps.map((p) => p.status), ['CREATING']);
  assert.deepEqual(passedSteps('RUNNING', [], 'FAILED'), []);
});
