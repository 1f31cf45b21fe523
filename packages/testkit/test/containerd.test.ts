import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { buildBusyboxImage, startContainerd, startRegistry, waitFor } from '../src/index.ts';
import type { ContainerdInstance, RegistryInstance } from '../src/index.ts';

function shimsOf(socket: string): number {
  let n = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('containerd-shim-runc-v2') && argv.includes(socket)) n++;
    } catch { /* gone */ }
  }
  return n;
}

test('private containerd + registry + busybox image: run a container, stop cleans everything', { timeout: 120_000 }, async (t) => {
  const ctd: ContainerdInstance = await startContainerd();
  t.after(() => ctd.stop());
  const reg: RegistryInstance = await startRegistry();
  t.after(() => reg.stop());
  assert.match(reg.url, /^127\.0\.0\.1:\d+$/);
  assert.match(ctd.namespace, /^oaktest-[0-9a-f]+$/);
  const version = await ctd.ctr(['version']);
  assert.match(version.stdout, /Server:[\s\S]*Version:\s+1\.6/);

  const ref = await buildBusyboxImage(reg);
  assert.equal(ref, `${reg.url}/library/busybox:1`);
  // built once, then cached: a second build is a push only
  const t0 = Date.now();
  const ref2 = await buildBusyboxImage(reg, { tag: 'again' });
  assert.equal(ref2, `${reg.url}/library/busybox:again`);
  assert.ok(Date.now() - t0 < 5000);

  await ctd.ctr(['images', 'pull', '--plain-http', ref]);
  await ctd.ctr(['run', '-d', '--net-host', ref, 'c1', 'sh', '-c', 'echo $((6*7)) > /tmp/x; sleep 600']);
  // attached `ctr run --rm` sometimes loses a short container's output (fifo race), so check the
  // applets through an exec in the running container instead
  const applets = await waitFor(async () => {
    const r = await ctd.ctr(['tasks', 'exec', '--exec-id', 'e0', 'c1', 'sh', '-c', 'ls /bin/httpd /bin/wget /bin/nc /bin/ping /bin/env /bin/cat >/dev/null && echo ok'], { check: false });
    return /ok/.test(r.stdout) ? r.stdout : undefined;
  }, { timeoutMs: 5000, message: 'busybox applets present' });
  assert.match(applets, /ok/);
  const tasks = await ctd.ctr(['tasks', 'ls']);
  assert.match(tasks.stdout, /c1\s+\d+\s+RUNNING/);
  const out = await waitFor(async () => {
    const r = await ctd.ctr(['tasks', 'exec', '--exec-id', 'e1', 'c1', 'cat', '/tmp/x'], { check: false });
    return r.stdout.trim() === '42' ? r.stdout : undefined;
  }, { timeoutMs: 5000, message: 'file written in the container' });
  assert.equal(out.trim(), '42');
  assert.equal(shimsOf(ctd.socket), 1);

  const { socket, dir, namespace } = ctd;
  await ctd.stop();
  assert.equal(shimsOf(socket), 0, 'no shim of this containerd left');
  assert.ok(!existsSync(dir), 'temp dir removed');
  assert.ok(!existsSync(`/run/containerd/runc/${namespace}`), 'runc state removed');
  assert.ok(!existsSync(`/sys/fs/cgroup/memory/${namespace}`), 'cgroups removed');
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(dir), 'no mounts left');
  await ctd.stop(); // idempotent

  const regDir = reg.dir;
  await reg.stop();
  assert.ok(!existsSync(regDir));
});
