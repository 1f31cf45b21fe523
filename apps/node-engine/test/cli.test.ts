/**
 * The `NodeEngine` binary: registers with the cluster named by -a/-p, reports, and stops cleanly
 * on SIGTERM.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { shortId, tmpDir, waitFor } from '@oak/testkit';
import type { TmpDir } from '@oak/testkit';
import { lookupUser } from '@oak/runtimes';
import { removeInstanceNetwork } from '../src/network.ts';
import { FakeCluster } from './helpers/cluster.ts';

const namespace = `cli${shortId(3)}`;

let cluster: FakeCluster;
let dir: TmpDir;

before(async () => {
  cluster = await FakeCluster.start();
  dir = await tmpDir('oak-ne-cli');
});

after(async () => {
  await cluster.close();
  await removeInstanceNetwork({ namespace, dataDir: dir.path });
  await dir.remove();
});

const bin = fileURLToPath(new URL('../bin/NodeEngine.mjs', import.meta.url));

test('NodeEngine without a token exits 2 with a clear message', { timeout: 30_000 }, async () => {
  const env = { ...process.env };
  delete env['OAK_JOIN_TOKEN'];
  const child = spawn(process.execPath, [bin, '-a', '127.0.0.1', '-p', String(cluster.httpPort), '--data-dir', dir.path], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 2);
  assert.match(err, /join token is required: NodeEngine -t <token> \(or OAK_JOIN_TOKEN\).*oak token create worker --cluster <name>/);
  assert.equal(cluster.registrations.length + cluster.refused.length, 0);
});

test('NodeEngine -a -p -n -t registers over HTTPS, reports over MQTT/TLS, and exits 0 on SIGTERM', { timeout: 60_000 }, async () => {
  const args = ['-a', '127.0.0.1', '-p', String(cluster.httpPort), '-n', '0', '-t', cluster.token, '--name', 'cli-worker', '--data-dir', dir.path,
    '--containerd', join(dir.path, 'none.sock'), '--report-interval', '250', '--location', '48.26,11.67', '--namespace', namespace,
    ...(lookupUser('oak-workload') !== undefined ? [] : ['--run-as', 'nobody'])];
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const reg = await waitFor(() => cluster.registrations.find((r) => r.node_name === 'cli-worker'), { timeoutMs: 30_000, message: 'registration' });
    assert.equal(reg.location, '48.26,11.67');
    assert.equal(reg.netmanager_port, null);
    // containerd is absent here; process always works; unikernel and wasm where this machine can
    assert.ok(reg.virtualizations.includes('process') && !reg.virtualizations.includes('container'), reg.virtualizations.join(','));
    await waitFor(() => cluster.messages.some((m) => m.topic.endsWith('/information')), { timeoutMs: 10_000 });
    await waitFor(() => out.includes('running as node'), { timeoutMs: 5000 });
    assert.ok(out.includes(`offering: ${reg.virtualizations.join(', ')}`), 'what it registered is what it said it offers');
    assert.match(out, /container: unavailable \(.*none\.sock/);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, out);
});
