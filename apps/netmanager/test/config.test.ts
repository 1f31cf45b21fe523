import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, fallbackBrokerUrl, parseCli, usage } from '../src/config.ts';

const files = (m: Record<string, string>) => (p: string): string | undefined => m[p];

test('defaults: -p 6000, -c /etc/netmanager/netcfg.json, NodePublicPort 50103, ClusterMqttPort 10003', () => {
  const s = parseCli([], {}, files({ '/etc/netmanager/netcfg.json': '{"NodePublicAddress":"192.0.2.10","ClusterUrl":"192.0.2.1"}' }));
  assert.equal(s.port, 6000);
  assert.equal(s.configPath, '/etc/netmanager/netcfg.json');
  assert.equal(s.publicAddress, '192.0.2.10');
  assert.equal(s.publicPort, 50103);
  assert.equal(s.clusterMqttPort, 10003);
  assert.equal(s.dns, true);
  assert.equal(s.probeIntervalMs, 5000);
  assert.equal(s.clean, false);
  assert.equal(fallbackBrokerUrl(s), 'mqtt://192.0.2.1:10003');
});

test('config values may be strings or numbers', () => {
  const doc = '{"NodePublicAddress":"10.0.0.5","NodePublicPort":"50200","ClusterUrl":"cluster.example","ClusterMqttPort":10010}';
  const s = parseCli(['-c', '/x.json', '-p', '6001'], {}, files({ '/x.json': doc }));
  assert.equal(s.publicPort, 50200);
  assert.equal(s.clusterMqttPort, 10010);
  assert.equal(s.port, 6001);
  assert.equal(fallbackBrokerUrl(s), 'mqtt://cluster.example:10010');
  const n = parseCli(['-c', '/y.json'], {}, files({ '/y.json': '{"NodePublicAddress":"10.0.0.5","NodePublicPort":50300}' }));
  assert.equal(n.publicPort, 50300);
});

test('a missing default file is fine when flags give the rest; flags and env override the file', () => {
  const s = parseCli(['--public-address', '127.0.0.1', '--public-port', '40000', '--dns', 'off', '--probe-interval-ms', '250'], { OAK_DATA_DIR: '/tmp/d', OAK_LOG_LEVEL: 'debug' }, files({}));
  assert.equal(s.publicAddress, '127.0.0.1');
  assert.equal(s.publicPort, 40000);
  assert.equal(s.dns, false);
  assert.equal(s.probeIntervalMs, 250);
  assert.equal(s.dataDir, '/tmp/d');
  assert.equal(s.logLevel, 'debug');
  const o = parseCli(['--public-address', '127.0.0.2'], {}, files({ '/etc/netmanager/netcfg.json': '{"NodePublicAddress":"10.0.0.5"}' }));
  assert.equal(o.publicAddress, '127.0.0.2');
  const e = parseCli([], { OAK_NODE_PUBLIC_ADDRESS: '127.0.0.3', OAK_NETMANAGER_PORT: '0' }, files({}));
  assert.equal(e.publicAddress, '127.0.0.3');
  assert.equal(e.port, 0);
});

function refuses(argv: string[], m: Record<string, string>, pattern: RegExp): void {
  assert.throws(() => parseCli(argv, {}, files(m)), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
}

test('bad values are refused naming the key', () => {
  const c = (doc: string) => ({ '/c.json': doc });
  refuses(['-c', '/c.json'], c('{"NodePublicAddress":"not-an-ip"}'), /NodePublicAddress in \/c\.json/);
  refuses(['-c', '/c.json'], c('{"NodePublicAddress":"10.0.0.1","NodePublicPort":"70000"}'), /NodePublicPort in \/c\.json/);
  refuses(['-c', '/c.json'], c('{"NodePublicAddress":"10.0.0.1","NodePublicPort":true}'), /NodePublicPort/);
  refuses(['-c', '/c.json'], c('{"NodePublicAddress":"10.0.0.1","ClusterMqttPort":"x"}'), /ClusterMqttPort/);
  refuses(['-c', '/c.json'], c('{"NodePublicAddress":"10.0.0.1","ClusterUrl":"a b"}'), /ClusterUrl/);
  refuses(['-c', '/c.json'], c('{"NodePublicAddress":12}'), /NodePublicAddress/);
  refuses(['-c', '/c.json'], c('{not json'), /not JSON/);
  refuses(['-c', '/c.json'], c('[1,2]'), /JSON object/);
  refuses(['-c', '/missing.json'], {}, /does not exist/);
  refuses([], {}, /no NodePublicAddress/);
  refuses(['--public-address', '10.0.0.1', '-p', '65536'], {}, /--port/);
  refuses(['--public-address', '10.0.0.1', '--dns', 'maybe'], {}, /--dns/);
  refuses(['--public-address', '10.0.0.1', '--probe-interval-ms', '5'], {}, /--probe-interval-ms/);
  refuses(['--public-address', '10.0.0.1', '--log-level', 'loud'], {}, /--log-level/);
  refuses(['--public-address', '10.0.0.1', '--bogus'], {}, /bogus/);
  refuses(['--public-address', '10.0.0.1', '--dns-upstream', 'x'], {}, /--dns-upstream/);
});

test('--clean and -h need no public address; help lists the defaults', () => {
  assert.equal(parseCli(['--clean'], {}, files({})).clean, true);
  assert.equal(parseCli(['-h'], {}, files({})).help, true);
  const u = usage();
  for (const s of ['-p, --port', 'default 6000', '/etc/netmanager/netcfg.json', '--clean', 'default 50103', 'default 10003', 'OAK_DATA_DIR', '--probe-interval-ms']) assert.ok(u.includes(s), s);
});


test("the seed's netcfg.json as written (1-DOC and M-DOC), every port as a string, and `NetManager -p 6000`", () => {
  // 1-DOC: the cluster on this machine ("localhost"), the ports quoted as the seed writes them
  const one = parseCli(['-p', '6000'], {}, files({ '/etc/netmanager/netcfg.json': '{\n  "NodePublicAddress": "192.0.2.21",\n  "NodePublicPort": "50103",\n  "ClusterUrl": "localhost",\n  "ClusterMqttPort": "10003"\n}\n' }));
  assert.deepEqual([one.port, one.publicAddress, one.publicPort, one.clusterUrl, one.clusterMqttPort], [6000, '192.0.2.21', 50103, 'localhost', 10003]);
  assert.equal(fallbackBrokerUrl(one), 'mqtt://localhost:10003');
  // M-DOC: the cluster orchestrator's address; the same keys as numbers
  const many = parseCli(['-p', '6000'], {}, files({ '/etc/netmanager/netcfg.json': '{"NodePublicAddress":"192.0.2.22","NodePublicPort":50103,"ClusterUrl":"192.0.2.1","ClusterMqttPort":10003}' }));
  assert.deepEqual([many.publicPort, many.clusterMqttPort], [50103, 10003]);
  assert.equal(fallbackBrokerUrl(many), 'mqtt://192.0.2.1:10003');
  // the seed's placeholder left in is refused naming the key
  refuses([], { '/etc/netmanager/netcfg.json': '{"NodePublicAddress":"192.0.2.21","NodePublicPort":"<PORT REACHABLE FROM OUTSIDE, use 50103 as default>"}' }, /NodePublicPort in \/etc\/netmanager\/netcfg\.json/);
});
