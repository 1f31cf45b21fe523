import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseGeoPoint } from '@oak/scheduler';
import { linkAddress } from '../src/config.ts';
import { configFromArgs } from '../src/main.ts';

test('linkAddress: host, host:port, URLs, OAK_ROOT_LINK_PORT', () => {
  assert.equal(linkAddress('10.0.0.1'), '10.0.0.1:50052');
  assert.equal(linkAddress('root.example'), 'root.example:50052');
  assert.equal(linkAddress('root.example:6000'), 'root.example:6000');
  assert.equal(linkAddress('http://root.example:10000'), 'root.example:50052', 'the REST port is not the link port');
  assert.equal(linkAddress('https://root.example'), 'root.example:50052');
  assert.equal(linkAddress('grpc://root.example:7000'), 'root.example:7000');
  assert.equal(linkAddress('http://root.example:10000', '6001'), 'root.example:6001');
  assert.equal(linkAddress('[::1]'), '[::1]:50052');
  assert.equal(linkAddress('http://[::1]:10000'), '[::1]:50052');
  assert.throws(() => linkAddress(''), /empty/);
  assert.throws(() => linkAddress('a b c'), /not a host/);
  assert.throws(() => linkAddress('root', 'x'), /OAK_ROOT_LINK_PORT/);
});

test("the seed's SYSTEM_MANAGER_URL forms: an address, address:port (Oakestra's REST port 10000 too) or a URL", () => {
  assert.equal(linkAddress('192.0.2.7'), '192.0.2.7:50052');
  assert.equal(linkAddress(' 192.0.2.7 '), '192.0.2.7:50052', 'spaces around the value');
  assert.equal(linkAddress('192.0.2.7:10000'), '192.0.2.7:50052', "10000 is the root's REST port, not the link's");
  assert.equal(linkAddress('192.0.2.7:50052'), '192.0.2.7:50052');
  assert.equal(linkAddress('192.0.2.7:6100'), '192.0.2.7:6100', 'another port is the link port');
  assert.equal(linkAddress('http://192.0.2.7'), '192.0.2.7:50052');
  assert.equal(linkAddress('http://192.0.2.7:10000/'), '192.0.2.7:50052');
  assert.equal(linkAddress('192.0.2.7:10000', '7000'), '192.0.2.7:7000', 'OAK_ROOT_LINK_PORT wins');
  for (const bad of ['192.0.2.7:', 'http://', '192.0.2.7:port', 'root;rm -rf /', 'x'.repeat(300) + ' y']) assert.throws(() => linkAddress(bad), Error, bad);
});

test("the seed's CLUSTER_LOCATION forms: free text, lat,long and lat,long,radius, kept as written", () => {
  for (const loc of ['My_Awesome_Apartment', 'Garching lab 2', '48.262,11.668', '48.262, 11.668', '48.262,11.668,25']) {
    const cfg = configFromArgs([], { CLUSTER_LOCATION: loc });
    assert.ok(cfg !== 'help');
    assert.equal(cfg.location, loc);
  }
  // what the schedulers read from them: free text places nowhere in particular, the others are points
  assert.equal(parseGeoPoint('My_Awesome_Apartment'), null);
  assert.deepEqual(parseGeoPoint('48.262, 11.668'), { lat: 48.262, long: 11.668 });
  assert.deepEqual(parseGeoPoint('48.262,11.668,25'), { lat: 48.262, long: 11.668, radius_km: 25 });
  const none = configFromArgs([], {});
  assert.ok(none !== 'help');
  assert.equal(none.location, null);
});

test('configFromArgs: environment variables and flags (flags win)', () => {
  const env = { CLUSTER_NAME: 'edge1', CLUSTER_LOCATION: '48.1,11.6,5', SYSTEM_MANAGER_URL: 'http://10.0.0.1:10000', OAK_JOIN_TOKEN: 'tok', MQTT_URL: 'mqtt://127.0.0.1:1883' };
  const cfg = configFromArgs([], env);
  assert.notEqual(cfg, 'help');
  if (cfg === 'help') return;
  assert.equal(cfg.name, 'edge1');
  assert.equal(cfg.location, '48.1,11.6,5');
  assert.deepEqual(cfg.root, { address: '10.0.0.1:50052', token: 'tok' });
  assert.equal(cfg.mqttUrl, 'mqtt://127.0.0.1:1883');
  assert.equal(cfg.port, 10100);
  assert.equal(cfg.mqttPort, 10003);
  const flags = configFromArgs(['--name', 'x', '-p', '0', '--root-link-port', '6000', '--mqtt-port', '0'], env);
  assert.ok(flags !== 'help');
  assert.equal(flags.name, 'x');
  assert.equal(flags.port, 0);
  assert.equal(flags.root?.address, '10.0.0.1:6000');
  assert.equal(configFromArgs(['-h'], {}), 'help');
  assert.throws(() => configFromArgs(['--port', 'abc'], {}), /--port/);
  assert.throws(() => configFromArgs(['--bogus'], {}));
});

test('oak-cluster --help prints the settings', () => {
  const bin = fileURLToPath(new URL('../bin/oak-cluster.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  for (const word of ['SYSTEM_MANAGER_URL', 'CLUSTER_NAME', 'CLUSTER_LOCATION', 'MQTT_URL', 'OAK_JOIN_TOKEN', '10100', '10003']) assert.ok(r.stdout.includes(word), word);
});
