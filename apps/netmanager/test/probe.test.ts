import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { silentLogger } from '@oak/bus';
import { waitFor } from '@oak/testkit';
import { PROBE_SIZE, Prober, parseProbePacket, probePacket } from '../src/probe.ts';

test('packet format: only 16-byte OAKP packets of version 1 parse', () => {
  const n = randomBytes(8);
  const p = probePacket(1, n);
  assert.equal(p.length, PROBE_SIZE);
  assert.deepEqual(parseProbePacket(p), { type: 1, nonce: n });
  assert.equal(parseProbePacket(Buffer.concat([p, Buffer.from([0])])), undefined);
  assert.equal(parseProbePacket(p.subarray(0, 15)), undefined);
  const wrong = Buffer.from(p);
  wrong[5] = 2;
  assert.equal(parseProbePacket(wrong), undefined);
  const t = Buffer.from(p);
  t[4] = 3;
  assert.equal(parseProbePacket(t), undefined);
  const m = Buffer.from(p);
  m[0] = 0x58;
  assert.equal(parseProbePacket(m), undefined);
});

test('two probers measure each other; a silent peer turns null after 3 missed probes', async () => {
  let last = new Map<string, number | null>();
  const a = new Prober({ host: '127.0.0.1', port: 0, intervalMs: 100, log: silentLogger, onResults: (r) => { last = r; } });
  const b = new Prober({ host: '127.0.0.1', port: 0, intervalMs: 100, log: silentLogger });
  a.start();
  b.start();
  try {
    await Promise.all([a.ready, b.ready]);
    a.setTargets([{ worker_id: 'wb', address: '127.0.0.1', port: b.port }]);
    const rtt = await waitFor(() => { const v = last.get('wb'); return typeof v === 'number' ? v : undefined; }, { timeoutMs: 5000 });
    assert.ok(rtt >= 0 && rtt < 100, String(rtt));
    b.close();
    await waitFor(() => last.has('wb') && last.get('wb') === null, { timeoutMs: 5000 });
    a.setTargets([]);
    assert.equal(a.results().size, 0, 'targets that went are forgotten');
  } finally {
    a.close();
    b.close();
  }
});

function client(): Promise<{ s: Socket; answers: Buffer[] }> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const answers: Buffer[] = [];
    s.on('message', (m) => answers.push(m));
    s.bind(0, '127.0.0.1', () => resolve({ s, answers }));
  });
}

test('hostile: anything but a probe packet gets no answer; answers are rate limited', async () => {
  const p = new Prober({ host: '127.0.0.1', port: 0, intervalMs: 60_000, answerRate: 5, log: silentLogger });
  p.start();
  const { s, answers } = await client();
  try {
    await p.ready;
    const send = (b: Buffer): void => { s.send(b, p.port, '127.0.0.1'); };
    send(Buffer.from('hello'));
    send(Buffer.alloc(1400));
    const n = randomBytes(8);
    const answerToProbe = probePacket(2, randomBytes(8));
    send(answerToProbe);
    send(probePacket(1, n));
    // loopback keeps the order: the first answer is the one to the valid probe
    await waitFor(() => answers.length >= 1);
    assert.deepEqual(parseProbePacket(answers[0] as Buffer), { type: 2, nonce: n });
    assert.equal(p.ignored, 3);
    // a burst: at most the bucket (5, one answer was spent) is answered
    const burst = Array.from({ length: 40 }, () => randomBytes(8));
    for (const b of burst) send(probePacket(1, b));
    await waitFor(() => p.ignored >= 3 + 30, { timeoutMs: 5000 });
    const marker = randomBytes(8);
    // the bucket refills (5/s): a later probe is answered again
    await waitFor(() => {
      send(probePacket(1, marker));
      return answers.some((a) => parseProbePacket(a)?.nonce.equals(marker));
    }, { timeoutMs: 5000, intervalMs: 300 });
    const burstAnswered = answers.filter((a) => burst.some((b) => parseProbePacket(a)?.nonce.equals(b))).length;
    assert.ok(burstAnswered <= 6, `${burstAnswered} burst answers`);
  } finally {
    s.close();
    p.close();
  }
});

test('an answer from another address than the one probed, or with an unknown nonce, is ignored', async () => {
  const p = new Prober({ host: '127.0.0.1', port: 0, intervalMs: 60_000, log: silentLogger });
  p.start();
  const { s } = await client();
  const peer = createSocket('udp4');
  try {
    await p.ready;
    await new Promise<void>((r) => peer.bind(0, '127.0.0.2', () => r()));
    let relayed = 0;
    // the probed peer (127.0.0.2) gets the probe; the answer comes from 127.0.0.1
    peer.on('message', (m) => {
      const q = parseProbePacket(m);
      if (q) s.send(probePacket(2, q.nonce), p.port, '127.0.0.1', () => { relayed++; });
    });
    p.setTargets([{ worker_id: 'w', address: '127.0.0.2', port: peer.address().port }]);
    p.round();
    await waitFor(() => relayed === 1 && p.ignored === 1);
    // an unknown nonce from the right address
    peer.send(probePacket(2, randomBytes(8)), p.port, '127.0.0.1');
    await waitFor(() => p.ignored === 2);
    assert.equal(p.results().size, 0);
  } finally {
    peer.close();
    s.close();
    p.close();
  }
});

test('binding an address that is not there yet keeps retrying quietly until closed', async () => {
  const p = new Prober({ host: '192.0.2.77', port: 0, intervalMs: 100, bindRetryMs: 20, log: silentLogger });
  p.start();
  let bound = false;
  void p.ready.then(() => { bound = true; });
  await new Promise<void>((r) => setImmediate(r));
  p.round();
  assert.equal(bound, false);
  p.close();
});
