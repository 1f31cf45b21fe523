/**
 * Closing a root stops everything that runs where its link runs. The fleet shell (issue 14) is
 * started by startRootLink beside the control plane; a root started with linkControl() holds only
 * the control plane, so closing that must stop the shell too: before, it went on stepping
 * rollouts every second against a closed store ("fleet: step failed") or beside a new leader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createStore } from '@oak/store';
import { linkControl } from '../src/link/index.ts';
import { startRoot } from '../src/server.ts';

test('closing a root started with linkControl stops its fleet shell', async () => {
  const store = await createStore({ sqlitePath: ':memory:' });
  let reads = 0;
  const list = store.listFleetRollouts.bind(store);
  store.listFleetRollouts = (limit) => {
    reads += 1;
    return list(limit);
  };
  const root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: 'admin-secret-1',
    logLevel: 'silent',
    announce: () => {},
    control: linkControl({ host: '127.0.0.1', port: 0 }),
  });
  try {
    assert.ok(root.ctx.fleet, 'the link started a fleet shell');
    // the shell steps once a second: it is alive before the close
    const deadline = Date.now() + 5000;
    while (reads === 0 && Date.now() < deadline) await sleep(50);
    assert.ok(reads > 0, 'the fleet shell read the rollouts while the root ran');
  } finally {
    await root.close();
  }
  assert.equal(root.ctx.fleet, undefined, 'the closed link is no longer offered to the fleet API');
  const after = reads;
  await sleep(2500);
  assert.equal(reads, after, 'no fleet step after the root closed');
  await store.close();
});
