import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { canConnectTcp, startMosquitto } from '../src/index.ts';

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
