import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { canConnectTcp, createTestJoin, startMosquitto } from '../src/index.ts';

/** sends a minimal MQTT 3.1.1 CONNECT and returns the CONNACK return code */
function mqttConnect(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    const clientId = Buffer.from('oaktk');
    const vh = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]);
    const payload = Buffer.concat([Buffer.from([0x00, clientId.length]), clientId]);
    s.on('connect', () => s.write(Buffer.concat([Buffer.from([0x10, vh.length + payload.length]), vh, payload])));
    s.on('data', (d) => {
      s.destroy();
      if (d[0] === 0x20) resolve(d[3] ?? -1);
      else reject(new Error('no CONNACK'));
    });
    s.on('error', reject);
  });
}

test('private mosquitto accepts MQTT on its own port and stops cleanly', { timeout: 30_000 }, async (t) => {
  const m = await startMosquitto();
  t.after(() => m.stop());
  assert.equal(m.url, `mqtt://127.0.0.1:${m.port}`);
  assert.notEqual(m.port, 1883);
  assert.equal(await mqttConnect(m.port), 0);
  await m.stop();
  assert.equal(await canConnectTcp('127.0.0.1', m.port), false);
  assert.ok(!existsSync(m.dir));
});

test('mosquitto with anonymous access disabled refuses a client without credentials', { timeout: 30_000 }, async (t) => {
  const m = await startMosquitto({ allowAnonymous: false });
  t.after(() => m.stop());
  // 5 = not authorized
  assert.equal(await mqttConnect(m.port), 5);
});

test('with dynsec: anonymous refused (CONNACK 5); with tls: a second listener speaks MQTT over TLS', { timeout: 30_000 }, async (t) => {
  const join = await createTestJoin();
  const m = await startMosquitto({ dynsec: { adminUser: 'adm', adminPassword: 'adm-secret' }, tls: { cert: join.clusterTls.cert, key: join.clusterTls.key } });
  t.after(() => m.stop());
  assert.equal(await mqttConnect(m.port), 5, 'anonymous refused');
  assert.equal(m.adminUrl, `mqtt://adm:adm-secret@127.0.0.1:${m.port}`);
  assert.ok(m.tlsPort !== undefined && m.tlsPort !== m.port);
  // the TLS listener presents the certificate of the test CA under the name oak-cluster
  const ok = await new Promise<boolean>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: m.tlsPort ?? 0, ...join.clientTls() }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
  assert.equal(ok, true);
});
