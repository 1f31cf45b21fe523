import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { helpText, parseFlags } from '../src/flags.ts';

const TOKEN = `oak1.w.abcdefgh.${'A'.repeat(32)}.${'a'.repeat(64)}`;
const env = { OAK_DATA_DIR: '/tmp/oak-flags-test', OAK_JOIN_TOKEN: TOKEN };

function run(argv: string[]) {
  const r = parseFlags(argv, env);
  if (r.kind !== 'run') assert.fail(`expected a config, got ${JSON.stringify(r)}`);
  return r.config;
}

function error(argv: string[]): string {
  const r = parseFlags(argv, env);
  if (r.kind !== 'error') assert.fail(`expected an error, got ${r.kind}`);
  return r.message;
}

test('defaults are the seed defaults', () => {
  const c = run([]);
  assert.equal(c.clusterAddress, 'localhost');
  assert.equal(c.clusterPort, 10100);
  assert.equal(c.netmanagerPort, 6000);
  assert.equal(c.name, hostname());
  assert.equal(c.dataDir, '/tmp/oak-flags-test');
  assert.equal(c.containerdSocket, '/run/containerd/containerd.sock');
  assert.equal(c.reportIntervalMs, undefined);
  assert.equal(c.runtimes, undefined);
});

test('seed flags, short, long and with =', () => {
  const c = run(['-a', '10.0.0.5', '-p', '10200', '-n', '6001']);
  assert.deepEqual([c.clusterAddress, c.clusterPort, c.netmanagerPort], ['10.0.0.5', 10200, 6001]);
  const d = run(['--clusterAddr=example.org', '--clusterPort', '1', '--netmanagerPort=0']);
  assert.deepEqual([d.clusterAddress, d.clusterPort, d.netmanagerPort], ['example.org', 1, null]);
  assert.equal(run(['-n', '-1']).netmanagerPort, null);
  assert.equal(run(['-p10101']).clusterPort, 10101);
});

test("the seed's command lines: NodeEngine -n 6000 -p 10100 [-a <cluster address>]", () => {
  const one = run(['-n', '6000', '-p', '10100']);
  assert.deepEqual([one.clusterAddress, one.clusterPort, one.netmanagerPort, one.useNetManager], ['localhost', 10100, 6000, true]);
  const many = run(['-n', '6000', '-p', '10100', '-a', '192.0.2.1']);
  assert.deepEqual([many.clusterAddress, many.clusterPort, many.netmanagerPort], ['192.0.2.1', 10100, 6000]);
  assert.equal(run(['-p', '10100', '-a', 'cluster.example']).clusterAddress, 'cluster.example');
  assert.match(error(['-n', '6000', '-p', '10100', '-a', 'http://192.0.2.1:10100']), /without scheme, port or path/);
  // address:port as users write it
  const hp = run(['-n', '6000', '-a', '192.0.2.1:10200']);
  assert.deepEqual([hp.clusterAddress, hp.clusterPort], ['192.0.2.1', 10200]);
  assert.deepEqual([run(['-a', '[fd00::1]:10100']).clusterAddress, run(['-a', 'fd00::1']).clusterAddress, run(['-a', '[fd00::1]']).clusterAddress], ['fd00::1', 'fd00::1', 'fd00::1']);
  assert.equal(run(['-a', '192.0.2.1:10100', '-p', '10100']).clusterPort, 10100, 'the same port twice is fine');
  assert.match(error(['-a', '192.0.2.1:10200', '-p', '10100']), /give the port once/);
  assert.match(error(['-a', '192.0.2.1:99999']), /between 1 and 65535/);
});

test('our flags', () => {
  const c = run(['--name', 'w1', '--data-dir', '/x', '--containerd', 'unix:///s.sock', '--report-interval', '500', '--location', '48.1, 11.5', '--runtimes', 'process,container,process', '--mqtt-url', 'mqtt://h:1883']);
  assert.equal(c.name, 'w1');
  assert.equal(c.dataDir, '/x');
  assert.equal(c.containerdSocket, '/s.sock');
  assert.equal(c.reportIntervalMs, 500);
  assert.equal(c.location, '48.1,11.5');
  assert.deepEqual(c.runtimes, ['process', 'container']);
  assert.equal(c.mqttUrl, 'mqtt://h:1883');
});

test('the join token: -t, --token, OAK_JOIN_TOKEN; required, and a worker one', () => {
  assert.equal(run([]).joinToken, TOKEN, 'from OAK_JOIN_TOKEN');
  const other = TOKEN.replace('abcdefgh', 'zzzzzzzz');
  assert.equal(run(['-t', other]).joinToken, other, 'the flag wins');
  assert.equal(run([`--token=${other}`]).joinToken, other);
  const none = parseFlags([], { OAK_DATA_DIR: '/tmp/x' });
  assert.equal(none.kind, 'error');
  assert.match(none.kind === 'error' ? none.message : '', /join token is required: NodeEngine -t <token> \(or OAK_JOIN_TOKEN\); create one on the root with `oak token create worker --cluster <name>`/);
  assert.match(error(['-t', 'secret']), /not an oak join token/);
  assert.match(error(['-t', TOKEN.replace('oak1.w.', 'oak1.c.')]), /cluster join token/);
  // -h works without a token
  assert.equal(parseFlags(['-h'], {}).kind, 'help');
});

test('bad flags and values are named', () => {
  assert.match(error(['--bogus']), /unknown flag --bogus/);
  assert.match(error(['-x']), /unknown flag -x/);
  assert.match(error(['stray']), /unexpected argument "stray"/);
  assert.match(error(['-a']), /-a needs a value/);
  assert.match(error(['-p', 'abc']), /cluster port must be a number/);
  assert.match(error(['-p', '70000']), /between 1 and 65535/);
  assert.match(error(['-n', '-2']), /NetManager port/);
  assert.match(error(['-a', 'http://x:1/']), /without scheme/);
  assert.match(error(['--report-interval', '5']), /milliseconds/);
  assert.match(error(['--location', '91,0']), /latitude 91/);
  assert.match(error(['--location', 'Munich']), /not "lat,long"/);
  assert.match(error(['--runtimes', 'docker,process']), /unknown docker/);
  assert.match(error(['--mqtt-url', 'localhost:1883']), /mqtt:\/\//);
  assert.match(error(['--help=yes']), /takes no value/);
});

test('-h lists every flag with its default', () => {
  const r = parseFlags(['-h'], env);
  assert.equal(r.kind, 'help');
  const text = helpText(env);
  for (const f of ['-a, --clusterAddr', '-t, --token', '-p, --clusterPort', '-n, --netmanagerPort', '--name', '--data-dir', '--containerd', '--report-interval', '--location', '--runtimes', '--mqtt-url', '-h, --help']) {
    assert.ok(text.includes(f), `help mentions ${f}`);
  }
  for (const d of ['(default: localhost)', '(default: 10100)', '(default: 6000)', '(default: /tmp/oak-flags-test)', '(default: /run/containerd/containerd.sock)', '(default: 2000']) {
    assert.ok(text.includes(d), `help shows ${d}`);
  }
});

test('the binary: -h exits 0, an unknown flag exits 2 with a message', () => {
  const bin = fileURLToPath(new URL('../bin/NodeEngine.mjs', import.meta.url));
  const h = spawnSync(process.execPath, [bin, '-h'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--clusterAddr/);
  const bad = spawnSync(process.execPath, [bin, '--nope'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown flag --nope/);
});

test('--microvm-kernel and OAK_MICROVM_KERNEL: an absolute directory, nothing else', () => {
  assert.equal(run(['--microvm-kernel', '/srv/kernel']).microvmKernel, '/srv/kernel');
  const e = parseFlags([], { ...env, OAK_MICROVM_KERNEL: '/opt/k' });
  assert.equal(e.kind === 'run' ? e.config.microvmKernel : undefined, '/opt/k');
  assert.equal(run([]).microvmKernel, undefined, 'the driver\'s default');
  for (const bad of ['relative/dir', '/a/../etc', `/${'x'.repeat(2000)}`]) assert.match(error(['--microvm-kernel', bad]), /--microvm-kernel .*absolute directory path/);
});

test('--addons (or OAK_ADDONS): the addon labels sent as supported_addons; bad labels refused', async () => {
  assert.equal(run([]).addons, undefined);
  assert.deepEqual(run(['--addons', 'image-builder, FLOps-learner,image-builder']).addons, ['image-builder', 'FLOps-learner']);
  const fromEnv = parseFlags([], { ...env, OAK_ADDONS: 'gpu-drv' });
  assert.ok(fromEnv.kind === 'run' && fromEnv.config.addons?.[0] === 'gpu-drv');
  assert.match(error(['--addons', 'ok,not ok']), /"not ok" is not an addon label/);
  assert.match(error(['--addons', '-x']), /not an addon label/);
  assert.match(error(['--addons', Array.from({ length: 65 }, (_, i) => `a${i}`).join(',')]), /at most 64/);
  const { registrationBody } = await import('../src/host.ts');
  const body = await registrationBody({ name: 'w', host: 'h', virtualizations: ['container'], netmanagerPort: null, dataDir: '/tmp', addons: ['image-builder'] });
  assert.deepEqual(body.supported_addons, ['image-builder']);
  const none = await registrationBody({ name: 'w', host: 'h', virtualizations: ['container'], netmanagerPort: null, dataDir: '/tmp' });
  assert.equal(none.supported_addons, undefined);
});
