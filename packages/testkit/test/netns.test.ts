import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createNetwork, run, waitFor } from '../src/index.ts';
import type { TestNetwork } from '../src/index.ts';

test('network namespace hosts reach each other; destroy removes every namespace and link', { timeout: 60_000 }, async (t) => {
  const net = await createNetwork('tk', { gateway: true });
  t.after(() => net.destroy());
  const a = await net.addHost('a');
  const b = await net.addHost('b');
  assert.match(net.subnet, /^10\.240\.\d+\.0\/24$/);
  assert.notEqual(a.ip, b.ip);
  assert.ok(existsSync(a.nsPath));
  assert.match((await a.exec('ip', ['addr', 'show', 'lo'])).stdout, /UP/);
  assert.match((await a.exec('busybox', ['ping', '-c1', '-W2', b.ip])).stdout, /1 packets received/);
  // the machine reaches the hosts through the gateway, and a host reaches the machine at .1
  assert.equal(net.gatewayIp?.endsWith('.1'), true);
  assert.equal((await run('busybox', ['ping', '-c1', '-W2', a.ip], { check: false })).code, 0);
  assert.equal((await b.exec('busybox', ['ping', '-c1', '-W2', net.gatewayIp ?? ''])).code, 0);

  // a server spawned in b answers a client in a
  const srv = b.spawn('busybox', ['nc', '-l', '-p', '7000', '-e', 'echo', 'hi-from-b']);
  const reply = await waitFor(async () => {
    const r = await a.exec('busybox', ['nc', '-w', '1', b.ip, '7000'], { check: false });
    return r.stdout.includes('hi-from-b') ? r.stdout : undefined;
  }, { timeoutMs: 5000, message: 'nc reply' });
  assert.match(reply, /hi-from-b/);
  void srv;

  const names = [net.switchNs, a.ns, b.ns];
  await net.destroy();
  const left = (await run('ip', ['netns', 'list'])).stdout;
  for (const n of names) assert.ok(!left.includes(n), `${n} removed`);
  assert.ok(!(await run('ip', ['-4', 'route'])).stdout.includes(net.subnet.replace('/24', '')), 'gateway route removed');
});

test('two networks in parallel get distinct names and subnets', { timeout: 60_000 }, async (t) => {
  const nets = await Promise.all([createNetwork('p'), createNetwork('p')]);
  t.after(() => Promise.all(nets.map((n) => n.destroy())));
  const [n1, n2] = nets as [TestNetwork, TestNetwork];
  assert.notEqual(n1.switchNs, n2.switchNs);
  assert.notEqual(n1.subnet, n2.subnet);
  const h1 = await n1.addHost('x');
  const h2 = await n2.addHost('x');
  assert.notEqual(h1.ns, h2.ns);
  // isolated: without a gateway, a host of one network cannot reach the other
  assert.notEqual((await h1.exec('busybox', ['ping', '-c1', '-W1', h2.ip], { check: false })).code, 0);
});
