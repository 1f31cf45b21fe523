/** A link message that makes its handler throw is dropped and logged; the link and the process go on (issue 7). */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RootToCluster } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { LinkClient } from '../src/index.ts';
import { startFakeRoot } from './harness.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('a throwing link handler drops that message only', async () => {
  const root = await startFakeRoot();
  cleanups.push(() => root.close());
  const handled: RootToCluster['type'][] = [];
  const errors: unknown[][] = [];
  const log = { debug() {}, info() {}, warn() {}, error: (...a: unknown[]) => errors.push(a) };
  const client = new LinkClient({
    address: root.address,
    token: root.token,
    clusterName: 'g',
    clusterLocation: null,
    version: 'test',
    log,
    handlers: {
      onWelcome: () => {},
      onMessage: (m) => {
        if (m.type === 'undeploy' && m.job_name === 'boom') throw new RangeError('Maximum call stack size exceeded');
        handled.push(m.type);
      },
    },
  });
  cleanups.push(() => client.close());
  client.start();
  await waitFor(() => client.connected, { message: 'connected' });
  root.send({ type: 'undeploy', job_name: 'boom', instance_number: 0 });
  root.send({ type: 'undeploy', job_name: 'fine', instance_number: 0 });
  await waitFor(() => handled.includes('undeploy'), { message: 'the next message was handled' });
  assert.equal(client.connected, true);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]?.[0]), /handler for undeploy failed; message dropped/);
});
