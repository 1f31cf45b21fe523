import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags } from '../src/flags.ts';

const TOKEN = `oak1.w.abcdefgh.${'A'.repeat(32)}.${'a'.repeat(64)}`;
const env = { OAK_DATA_DIR: '/tmp/oak-flags-test', OAK_JOIN_TOKEN: TOKEN };

function run(argv: string[], e: NodeJS.ProcessEnv = env) {
  const r = parseFlags(argv, e);
  if (r.kind !== 'run') assert.fail(`expected a config, got ${JSON.stringify(r)}`);
  return r.config;
}

test('-n given: the NodeEngine talks to the NetManager; not given: only the port is reported, as before', () => {
  const none = run([]);
  assert.equal(none.netmanagerPort, 6000);
  assert.equal(none.useNetManager, undefined);
  assert.equal(none.netmanagerKeyDir, undefined);
  const n = run(['-n', '6000']);
  assert.deepEqual([n.netmanagerPort, n.useNetManager], [6000, true]);
  assert.equal(run(['--netmanagerPort=6100']).useNetManager, true);
  const off = run(['-n', '0']);
  assert.deepEqual([off.netmanagerPort, off.useNetManager], [null, undefined]);
  assert.equal(run(['-n', '-1']).useNetManager, undefined);
});

test('--netmanager-key-dir / OAK_NETMANAGER_KEY_DIR: absolute paths only', () => {
  assert.equal(run(['-n', '6000', '--netmanager-key-dir', '/tmp/keys']).netmanagerKeyDir, '/tmp/keys');
  assert.equal(run(['-n', '6000'], { ...env, OAK_NETMANAGER_KEY_DIR: '/run/other' }).netmanagerKeyDir, '/run/other');
  for (const bad of ['keys', '../keys', '/run/../etc']) {
    const r = parseFlags(['--netmanager-key-dir', bad], env);
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.message : '', /--netmanager-key-dir .*absolute directory path/);
  }
  const help = parseFlags(['-h'], env);
  assert.match(help.kind === 'help' ? help.text : '', /--netmanager-key-dir <dir>/);
});
