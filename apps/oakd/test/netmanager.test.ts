import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultPublicAddress, parseConfig, startBuiltInNetManager, UsageError } from '../src/index.ts';
import type { OakdConfig } from '../src/index.ts';

const cfg = (argv: string[], env: NodeJS.ProcessEnv = {}): OakdConfig => parseConfig(argv, env) as OakdConfig;

test('the built-in NetManager is on by default; --netmanager / OAK_NETMANAGER switch it, flags win', () => {
  const d = cfg([]);
  assert.equal(d.netmanager, true);
  assert.equal(d.netmanagerExplicit, false);
  assert.equal(d.netmanagerPort, 6000);
  assert.equal(d.publicPort, 50103);
  assert.equal(d.publicAddress, undefined);
  assert.equal(cfg(['--netmanager', 'off']).netmanager, false);
  assert.equal(cfg([], { OAK_NETMANAGER: 'off' }).netmanager, false);
  assert.equal(cfg(['--netmanager', 'on'], { OAK_NETMANAGER: 'off' }).netmanager, true);
  assert.equal(cfg(['--netmanager', 'on']).netmanagerExplicit, true);
  const p = cfg(['--public-address', '192.168.7.2', '--public-port', '50200', '--netmanager-port', '0']);
  assert.deepEqual([p.publicAddress, p.publicPort, p.netmanagerPort], ['192.168.7.2', 50200, 0]);
  assert.equal(cfg([], { OAK_PUBLIC_ADDRESS: '10.1.2.3' }).publicAddress, '10.1.2.3');
});

test('hostile NetManager settings are refused with the flag named', () => {
  assert.throws(() => parseConfig(['--netmanager', 'maybe']), (e: unknown) => e instanceof UsageError && /--netmanager must be on or off/.test(e.message));
  assert.throws(() => parseConfig(['--public-address', 'http://x/y']), /--public-address/);
  assert.throws(() => parseConfig(['--public-address', 'a b']), /--public-address/);
  assert.throws(() => parseConfig(['--public-address', 'x'.repeat(300)]), /--public-address/);
  assert.throws(() => parseConfig(['--public-port', '0']), /--public-port/);
  assert.throws(() => parseConfig(['--public-port', '70000']), /--public-port/);
  assert.throws(() => parseConfig(['--netmanager-port', '-1']), /--netmanager-port/);
});

test('NodePublicAddress: the listen address when specific, else the first non-internal IPv4, else loopback', () => {
  const ifs = {
    lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true, netmask: '255.0.0.0', mac: '00:00:00:00:00:00', cidr: '127.0.0.1/8' }],
    eth0: [
      { address: 'fe80::1', family: 'IPv6', internal: false, netmask: 'ffff:ffff:ffff:ffff::', mac: '02:00:00:00:00:01', cidr: 'fe80::1/64', scopeid: 2 },
      { address: '192.168.1.5', family: 'IPv4', internal: false, netmask: '255.255.255.0', mac: '02:00:00:00:00:01', cidr: '192.168.1.5/24' },
    ],
  } as unknown as Parameters<typeof defaultPublicAddress>[1];
  assert.equal(defaultPublicAddress('10.0.0.7', ifs), '10.0.0.7');
  assert.equal(defaultPublicAddress('0.0.0.0', ifs), '192.168.1.5');
  assert.equal(defaultPublicAddress('::', ifs), '192.168.1.5');
  assert.equal(defaultPublicAddress('0.0.0.0', { lo: ifs?.['lo'] } as Parameters<typeof defaultPublicAddress>[1]), '127.0.0.1');
});

test('startBuiltInNetManager calls the module\'s startNetManager with oakd\'s options, or says why not', async () => {
  const seen: unknown[] = [];
  const handle = { port: 6123, keyPath: '/run/oak/netmanager-6123.key', close: async () => {}, clean: async () => {} };
  const opts = { port: 0, dataDir: '/tmp/x/netmanager', publicAddress: '192.168.1.5', publicPort: 50103, fallbackMqttUrl: 'mqtts://127.0.0.1:10003' };
  const nm = await startBuiltInNetManager(opts, async () => ({ startNetManager: async (o: unknown) => { seen.push(o); return handle; } }));
  assert.equal(nm, handle);
  assert.deepEqual(seen, [opts]);
  await assert.rejects(startBuiltInNetManager(opts, async () => { throw new Error('Cannot find module'); }), /not part of this build .*--netmanager off/);
  await assert.rejects(startBuiltInNetManager(opts, async () => ({})), /no startNetManager/);
});
