import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interpretExit } from '../src/index.ts';

const base = { oomKills: 0, oneShot: false };

test('exit codes and signals', () => {
  assert.deepEqual(interpretExit({ ...base, code: 0, oneShot: true }), { exit_code: 0, state: 'COMPLETED', detail: 'completed' });
  assert.deepEqual(interpretExit({ ...base, code: 0 }), { exit_code: 0, state: 'FAILED', detail: 'exited with code 0' });
  assert.deepEqual(interpretExit({ ...base, code: 3, oneShot: true }), { exit_code: 3, state: 'FAILED', detail: 'exited with code 3' });
  assert.deepEqual(interpretExit({ ...base, code: 137 }), { exit_code: 137, state: 'FAILED', detail: 'killed by signal SIGKILL', signal: 'SIGKILL' });
  assert.deepEqual(interpretExit({ ...base, code: 143 }), { exit_code: 143, state: 'FAILED', detail: 'killed by signal SIGTERM', signal: 'SIGTERM' });
  assert.equal(interpretExit({ ...base, code: 255 }).detail, 'exited with code 255');
});

test('out of memory', () => {
  assert.deepEqual(interpretExit({ ...base, code: 137, oomKills: 1, memoryLimitMb: 32 }), { exit_code: 137, state: 'FAILED', detail: 'out of memory: killed at the 32 MB limit', signal: 'SIGKILL' });
  // a child was OOM-killed and the main process gave up with its own code
  assert.equal(interpretExit({ ...base, code: 1, oomKills: 2, memoryLimitMb: 64 }).detail, 'exited with code 1 (out of memory: 2 processes killed at the 64 MB limit)');
  // even a one-shot that exits 0 after an OOM kill inside it is a failure
  assert.equal(interpretExit({ ...base, code: 0, oomKills: 1, oneShot: true, memoryLimitMb: 32 }).state, 'FAILED');
});

test('no exit file: the supervisor itself died', () => {
  assert.deepEqual(interpretExit({ ...base, code: undefined, wrapperSignal: 'SIGKILL' }), { exit_code: 137, state: 'FAILED', detail: 'killed by signal SIGKILL', signal: 'SIGKILL' });
  assert.equal(interpretExit({ ...base, code: undefined }).detail, 'exited; exit status unknown (its supervisor was killed)');
  assert.equal(interpretExit({ ...base, code: undefined, lostReason: 'the host restarted while it ran' }).detail, 'exited; exit status unknown (the host restarted while it ran)');
  assert.equal(interpretExit({ ...base, code: undefined, oomKills: 1, memoryLimitMb: 16 }).detail, 'out of memory: killed at the 16 MB limit');
});
