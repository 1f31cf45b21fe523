/**
 * NetManagerLink against a fake NetManager (no root): the bearer key from the key file, the
 * notices queued while it is away and replayed after it is back, a new key (restart) noticed,
 * hostile answers refused with a clear line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetInstanceDeploy, NetRegister, NetRegisterAnswer } from '@oak/contracts';
import { tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { NetManagerLink, keyPath } from '../src/netmanager.ts';
import { FakeNetManager } from './helpers/netmanager.ts';

const answer: NetRegisterAnswer = {
  subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64', gateway: '10.18.0.65', gateway_v6: 'fdff:18:0:1::1', tunnel_device: 'oakx0', mtu: 1450, dns: '10.18.0.65',
};
const registration: NetRegister = { worker_id: 'w1', mqtt_url: 'mqtts://127.0.0.1:10003', mqtt_username: 'w1', mqtt_password: 'pw', namespace: 'h6l', bridge: 'oakbabcdef' };
const dep = (n: number): NetInstanceDeploy => ({ job_name: 'a.b.c.d', instance_number: n, nsip: `10.18.0.${66 + n}`, nsip_v6: `fdff:18:0:1::${(2 + n).toString(16)}` });

let dir: TmpDir;
let nm: FakeNetManager;
before(async () => {
  dir = await tmpDir('oak-h6-link');
  nm = new FakeNetManager(dir.path, answer);
  await nm.start();
});
after(async () => {
  await nm.stop();
  await dir.remove();
});

function link(lines: string[], current: () => NetInstanceDeploy[] = () => [], answers: NetRegisterAnswer[] = [], port = nm.port): NetManagerLink {
  const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
  return new NetManagerLink({ port, keyDir: dir.path, log, registration: () => registration, onAnswer: async (a) => { answers.push(a); }, current, checkMs: 50, timeoutMs: 1000, registerTimeoutMs: 1000 });
}

test('registers with the key, delivers notices, queues them while away and replays after a restart (new key)', async () => {
  const lines: string[] = [];
  const answers: NetRegisterAnswer[] = [];
  let current = [dep(0)];
  const l = link(lines, () => current, answers);
  try {
    assert.equal(await l.first(2000), true);
    assert.deepEqual(answers, [answer]);
    assert.deepEqual(nm.of('/register').map((r) => r.body), [registration]);
    // the replay after the registration: every current instance
    assert.deepEqual(nm.of('/instance/deploy').map((r) => r.body), [dep(0)]);
    l.start();
    l.deployed('a.b.c.d.instance.1', dep(1));
    await waitFor(() => nm.of('/instance/deploy').some((r) => r.body['instance_number'] === 1), { timeoutMs: 3000 });
    // away: notices wait, the latest per instance wins
    await nm.stop();
    l.undeployed('a.b.c.d.instance.1', { job_name: 'a.b.c.d', instance_number: 1 });
    l.deployed('a.b.c.d.instance.2', dep(2));
    l.undeployed('a.b.c.d.instance.2', { job_name: 'a.b.c.d', instance_number: 2 });
    await waitFor(() => lines.some((x) => /not reachable/.test(x)), { timeoutMs: 3000 });
    assert.ok(l.pending >= 2);
    current = [dep(0)];
    nm.requests.length = 0;
    await nm.start(nm.port);
    await waitFor(() => l.pending === 0 && nm.of('/instance/deploy').length > 0, { timeoutMs: 5000, message: 'replayed' });
    const paths = nm.of('/instance/deploy').concat(nm.of('/instance/undeploy')).map((r) => `${r.path} ${String(r.body['instance_number'])}`).sort();
    assert.deepEqual(paths, ['/instance/deploy 0', '/instance/undeploy 1', '/instance/undeploy 2']);
    assert.ok(lines.some((x) => /reachable again/.test(x)), lines.join('\n'));
    assert.equal(lines.filter((x) => /not reachable/.test(x)).length, 1, 'one line while away, not one per retry');
    // a restarted NetManager on the same port writes a new key: noticed without any request failing
    nm.requests.length = 0;
    nm.key = 'k'.repeat(40);
    await writeFile(keyPath(dir.path, nm.port), `${nm.key}\n`);
    await waitFor(() => nm.of('/register').length > 0 && nm.of('/instance/deploy').length > 0, { timeoutMs: 3000, message: 'registered again after a key change' });
  } finally {
    await l.close();
  }
});

test('hostile: no key file, a wrong key, an invalid or oversized answer, a 4xx notice: clear lines, nothing taken', async () => {
  const lines: string[] = [];
  const answers: NetRegisterAnswer[] = [];
  const nokey = link(lines, () => [], answers, 1);
  assert.equal(await nokey.first(100), false);
  assert.match(lines.join('\n'), /no NetManager key at .*netmanager-1\.key .*ENOENT/);
  await nokey.close();

  const cases: [string, [number, string], RegExp][] = [
    ['401', [401, '{}'], /refused the key \(401\)/],
    ['not json', [200, 'hello'], /not JSON/],
    ['invalid', [200, JSON.stringify({ ...answer, mtu: 10 })], /registration answer is invalid/],
    ['oversized', [200, JSON.stringify({ ...answer, pad: 'x'.repeat(70 * 1024) })], /larger than 64 KiB/],
    ['503', [503, '{"error":{"message":"no subnet"}}'], /refused the registration \(503\)/],
  ];
  for (const [name, reply, re] of cases) {
    lines.length = 0;
    nm.override = (r) => (r.path === '/register' ? reply : undefined);
    const l = link(lines, () => [], answers);
    assert.equal(await l.first(100), false, name);
    assert.match(lines.join('\n'), re, name);
    await l.close();
  }
  assert.deepEqual(answers, [], 'no hostile answer reached the engine');
  // a refused notice (400) is logged and dropped, not retried forever
  nm.override = (r) => (r.path === '/instance/deploy' ? [400, '{"error":{"message":"nsip outside the subnet"}}'] : undefined);
  lines.length = 0;
  const l = link(lines);
  try {
    assert.equal(await l.first(1000), true);
    l.start();
    l.deployed('x.instance.9', dep(9));
    await waitFor(() => lines.some((x) => /refused the deploy notice of x\.instance\.9 \(400\)/.test(x)), { timeoutMs: 3000 });
    assert.equal(l.pending, 0);
  } finally {
    nm.override = undefined;
    await l.close();
  }
});

test('the key file is read per request: a key with control characters is refused', async () => {
  const lines: string[] = [];
  const other = new FakeNetManager(dir.path, answer);
  await other.start();
  try {
    await writeFile(join(dir.path, `netmanager-${other.port}.key`), 'abc\u0000def\n');
    const l = link(lines, () => [], [], other.port);
    assert.equal(await l.first(100), false);
    assert.match(lines.join('\n'), /empty or not printable/);
    await l.close();
  } finally {
    await other.stop();
  }
});

test('a NetManager on a port the Fetch standard calls "bad" (6000 is one) is reached all the same', async () => {
  // 6000 itself may be taken on a shared machine: any port of that list shows the same
  const bad = [6000, 6665, 6666, 6667, 6668, 6669, 6697, 10080, 4045, 5061];
  const other = new FakeNetManager(dir.path, answer);
  let started = false;
  for (const port of bad) {
    try {
      await other.start(port);
      started = true;
      break;
    } catch {
      await other.stop();
    }
  }
  assert.ok(started, `none of ${bad.join(', ')} is free`);
  const lines: string[] = [];
  const l = link(lines, () => [], [], other.port);
  try {
    assert.equal(await l.first(2000), true, lines.join('\n'));
    assert.equal(other.of('/register').length, 1);
  } finally {
    await l.close();
    await other.stop();
  }
});

test('a NetManager that keeps refusing the registration (500: its datapath fails) is asked ever less often; a new key is tried at once', async () => {
  const lines: string[] = [];
  const l = link(lines);
  nm.requests.length = 0;
  nm.override = (r) => (r.path === '/register' ? [500, '{"error":{"code":"OAK_INTERNAL","message":"the datapath could not be set up"}}'] : undefined);
  try {
    l.start();
    // checkMs 50: without a backoff that is ~40 attempts in 2 s; doubling from 50 ms gives about 6
    await new Promise((r) => setTimeout(r, 2000));
    const tries = nm.of('/register').length;
    assert.ok(tries >= 3 && tries <= 9, `${tries} registration attempts in 2 s`);
    assert.ok(l.failures >= 3, `failures ${l.failures}`);
    assert.equal(lines.filter((x) => /refused the registration \(500\)/.test(x)).length, 1, 'one line, not one per retry');
    // the NetManager restarted (a new key): the next check tries at once, and succeeds
    nm.override = undefined;
    nm.requests.length = 0;
    nm.key = 'n'.repeat(40);
    await writeFile(keyPath(dir.path, nm.port), `${nm.key}\n`);
    await waitFor(() => nm.of('/register').length > 0, { timeoutMs: 1000, message: 'registered at once after a key change' });
    await waitFor(() => l.failures === 0, { timeoutMs: 1000, message: 'backoff reset after success' });
  } finally {
    nm.override = undefined;
    await l.close();
  }
});
