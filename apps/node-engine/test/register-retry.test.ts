import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '@oak/testkit';
import { registeredSince, registerWithRetry } from '../src/register.ts';

const body = { node_name: 'w', host: '127.0.0.1', cpu_cores: 1, memory_mb: 512, arch: 'x86_64', os: 'linux', virtualizations: ['process' as const] };

test('registration retries back off exponentially, each delay spread 0.5x..1.5x (workers refused at once retry apart)', async () => {
  // nothing listens there: every attempt fails at once
  const url = `https://127.0.0.1:${await freePort()}/api/node/register`;
  const draws = [0, 0.5, 0.999, 0.25, 0.75];
  let k = 0;
  const delays: number[] = [];
  const stop = new AbortController();
  await assert.rejects(registerWithRetry(url, () => body, () => Promise.resolve({}), {
    initialMs: 10,
    maxMs: 40,
    signal: stop.signal,
    random: () => draws[k++] ?? 0.5,
    onFailure: (_attempt, _err, delay) => {
      delays.push(delay);
      if (delays.length === draws.length) stop.abort(new Error('enough'));
    },
  }), /enough/);
  // 10, 20, 40, then the cap 40: times 0.5, 1.0, 1.499, 0.75, 1.25
  assert.deepEqual(delays, [5, 20, 60, 30, 50]);
});

test('without a random source given, the delays of many workers differ', async () => {
  const url = `https://127.0.0.1:${await freePort()}/api/node/register`;
  const firsts: number[] = [];
  await Promise.all(Array.from({ length: 10 }, async () => {
    const stop = new AbortController();
    await registerWithRetry(url, () => body, () => Promise.resolve({}), {
      initialMs: 1000,
      maxMs: 1000,
      signal: stop.signal,
      onFailure: (_a, _e, delay) => {
        firsts.push(delay);
        stop.abort(new Error('one is enough'));
      },
    }).catch(() => undefined);
  }));
  assert.equal(firsts.length, 10);
  for (const d of firsts) assert.ok(d >= 500 && d <= 1500, `delay ${d}`);
  assert.ok(new Set(firsts).size > 1, `all ten delays are ${firsts[0]} ms`);
});

test('registeredSince: only a registration made after the connection dropped counts', () => {
  assert.equal(registeredSince(0, 0), false, 'never registered');
  assert.equal(registeredSince(1000, 2000), false, 'registered before the drop: the cluster may have restarted since');
  assert.equal(registeredSince(2500, 2000), true, 'registered after the drop (after a refusal)');
  assert.equal(registeredSince(2000, 2000), true);
});
