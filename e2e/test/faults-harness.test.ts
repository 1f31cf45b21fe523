/**
 * The fault-injection harness itself (e2e/src/faults.ts), quickly and without the control plane:
 * the process census counts one copy per supervised instance (not the wrapper's subshell) and
 * finds a second copy; a partition cuts TCP between two hosts and heals; the loss rules drop and
 * count; the delay relay adds its delay to a TCP exchange and goes away on heal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetwork, waitFor, type NetHost } from '@oak/testkit';
import { killMarked, netem, partition, workloads } from '../src/faults.ts';

test('faults harness: process census of supervised copies', async (t) => {
  const marker = `oakfault-harness-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'oak-fault-harness-'));
  t.after(async () => {
    await killMarked(marker);
    rmSync(dir, { recursive: true, force: true });
  });
  // like the process runtime: a session-leading sh wrapper whose subshell runs the workload
  const wrapper = (instance: string): void => {
    spawn('/bin/sh', ['-c', 'exitfile=$1; shift; ( exec "$@" ); echo $? > "$exitfile"', 'oak-wrap', join(dir, instance, 'exit'), '/bin/sh', '-c', 'while :; do sleep 1; done', marker, 'v1'], { detached: true, stdio: 'ignore' }).unref();
  };
  wrapper('job.instance.0');
  wrapper('job.instance.1');
  wrapper('job.instance.1');
  const copies = await waitFor(() => {
    const w = workloads(marker);
    return w.length === 3 ? w : undefined;
  }, { timeoutMs: 5000, message: 'three supervised copies' });
  assert.deepEqual(copies.map((c) => c.instance).sort(), ['job.instance.0', 'job.instance.1', 'job.instance.1']);
  assert.ok(copies.every((c) => c.argv.includes('v1') && c.argv.includes(marker)));
  await killMarked(marker);
  assert.equal(workloads(marker).length, 0);
});

test('faults harness: partition, loss and delay between two namespace hosts', { timeout: 60_000 }, async (t) => {
  const net = await createNetwork('fharn', { gateway: true });
  t.after(() => net.destroy());
  const a = await net.addHost('a');
  const b = await net.addHost('b');
  // an echo server on b:7000 (inside b's namespace), a client in a
  const server = b.spawn('sh', ['-c', 'exec python3 -c "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((\'0.0.0.0\',7000));s.listen(50)\nwhile True:\n  c,_=s.accept();d=c.recv(100);c.sendall(d);c.close()"'], { stdio: 'ignore' });
  t.after(() => void server.kill('SIGKILL'));
  const echo = async (from: NetHost, timeoutS = 2): Promise<{ ok: boolean; ms: number }> => {
    // timed inside the client (connect to answer), not with python's start-up, which a loaded machine stretches
    // python's start-up is outside the timed part and gets its own generous limit (a loaded machine stretches it)
    const r = await from.exec('python3', ['-c', `import socket,time\nt=time.monotonic()\ns=socket.create_connection(('${b.ip}',7000),timeout=${timeoutS});s.sendall(b'ping');a=s.recv(100).decode()\nprint(a, round((time.monotonic()-t)*1000))`], { check: false, timeoutMs: (timeoutS + 15) * 1000 });
    const [answer, ms] = r.stdout.trim().split(' ');
    return { ok: answer === 'ping', ms: Number(ms ?? 0) };
  };
  await waitFor(async () => (await echo(a)).ok, { timeoutMs: 30_000, message: 'echo server up' });

  const cut = await partition(a, b);
  assert.equal((await echo(a, 1)).ok, false, 'no TCP across the partition');
  await cut.heal();
  await waitFor(async () => ((await echo(a)).ok ? true : undefined), { timeoutMs: 10_000, message: 'TCP again after healing' });

  // loss alone: the counters see drops over a few exchanges
  const lossy = await netem(a, { lossPct: 50, delayMs: 0, peer: b });
  try {
    for (let i = 0; i < 8; i++) await echo(a, 1);
    const dropped = await lossy.dropped();
    if (lossy.mode !== 'netem') assert.ok((dropped ?? 0) > 0, `packets dropped: ${dropped}`);
  } finally {
    await lossy.heal();
  }

  // delay: each exchange waits at least the relay's delay each way (or netem's)
  const slow = await netem(a, { lossPct: 0, delayMs: 150, peer: b, ports: [7000] });
  try {
    // the first exchange may meet the relay still starting on a loaded machine: the first that answers counts
    const d = await waitFor(async () => { const r = await echo(a, 5); return r.ok ? r : undefined; }, { timeoutMs: 20_000, message: 'echo through the delay' });
    assert.ok(d.ok, 'echo through the delay');
    // against the delay alone, not a direct exchange timed once: that one may meet a load spike
    assert.ok(d.ms >= 150, `delayed: ${d.ms} ms`);
    if (slow.mode === 'nft+proxy') assert.ok(slow.relayed() >= 1, 'went through the relay');
  } finally {
    await slow.heal();
  }
  await waitFor(async () => ((await echo(a)).ok ? true : undefined), { timeoutMs: 10_000, message: 'direct again after healing' });
});
