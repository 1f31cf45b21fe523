import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tmpDir, waitFor } from '@oak/testkit';

const BIN = fileURLToPath(new URL('../bin/NetManager.mjs', import.meta.url));

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, OAK_NODE_PUBLIC_ADDRESS: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

test('NetManager -h shows the flags with defaults; bad settings exit 2 naming the key', async () => {
  const h = await run(['-h']);
  assert.equal(h.code, 0);
  assert.match(h.out, /-p, --port <port>[\s\S]*default 6000/);
  assert.match(h.out, /-c, --config <file>[\s\S]*\/etc\/netmanager\/netcfg\.json/);
  const dir = await tmpDir('h2-cli');
  try {
    const bogus = await run(['--bogus']);
    assert.equal(bogus.code, 2);
    assert.match(bogus.err, /bogus/);
    await writeFile(`${dir.path}/netcfg.json`, JSON.stringify({ NodePublicAddress: '127.0.0.1', NodePublicPort: 'seventy' }));
    const bad = await run(['-c', `${dir.path}/netcfg.json`]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /NodePublicPort in .*netcfg\.json/);
    assert.match(bad.err, /hint:/);
    const missing = await run(['-c', `${dir.path}/nope.json`]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /does not exist/);
  } finally {
    await dir.remove();
  }
});

test('NetManager runs from a config file with strings, writes its key, stops on SIGTERM', async () => {
  const dir = await tmpDir('h2-cli');
  try {
    await writeFile(`${dir.path}/netcfg.json`, JSON.stringify({ NodePublicAddress: '127.0.0.1', NodePublicPort: '50103', ClusterUrl: '127.0.0.1', ClusterMqttPort: '10003' }));
    const child = spawn(process.execPath, [BIN, '-c', `${dir.path}/netcfg.json`, '-p', '0', '--key-dir', `${dir.path}/run`, '--data-dir', `${dir.path}/data`, '--dns', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      await waitFor(async () => (await readdir(`${dir.path}/run`).catch(() => [])).some((f) => /^netmanager-\d+\.key$/.test(f)), { message: `key file (${err})` });
      assert.match(err, /local API on 127\.0\.0\.1:\d+/);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
    assert.deepEqual(await readdir(`${dir.path}/run`), [], 'key file removed on stop');
  } finally {
    await dir.remove();
  }
});
