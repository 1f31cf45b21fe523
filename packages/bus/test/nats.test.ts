/**
 * The NATS users file (nats.ts) against a real nats-server in MQTT mode with JetStream (its own
 * config, ports and store; never the machine's NATS): a provisioned worker connects and works on
 * its own topics, cannot publish on (or subscribe to) another worker's, cannot forge another's
 * last will; its own will arrives; a removed worker is disconnected by the reload; a second
 * provisioner (a restarted cluster) finds the workers in the file; hostile ids are refused.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import { startNats, waitFor } from '@oak/testkit';
import type { NatsInstance } from '@oak/testkit';
import { NatsAuthProvisioner, connectBus, natsSubject, natsWorkerPermissions } from '../src/index.ts';
import type { Bus } from '../src/index.ts';

describe('NATS users file (real nats-server, MQTT + JetStream)', () => {
  let n: NatsInstance;
  let p: NatsAuthProvisioner;
  const buses: Bus[] = [];
  const admin = { user: 'oak-admin', password: 'admin-secret-1' };
  const bus = async (clientId: string, username: string, password: string, extra: Parameters<typeof connectBus>[1] = {}): Promise<Bus> => {
    const b = await connectBus(n.url, { clientId, username, password, reconnectPeriodMs: 0, ...extra });
    buses.push(b);
    return b;
  };

  before(async () => {
    n = await startNats({ adminUser: admin.user, adminPassword: admin.password });
    p = await NatsAuthProvisioner.open({ file: n.usersFile, pidFile: n.pidFile, monitorUrl: n.monitorUrl, probe }, admin);
  });
  let probes = 0;
  const probe = async (user: string, password: string): Promise<boolean> => {
    probes++;
    return connectBus(n.url, { clientId: `probe-${probes}`, username: user, password, reconnectPeriodMs: 0 }).then(async (b) => { await b.close(); return true; }, () => false);
  };
  after(async () => {
    for (const b of buses) await b.close().catch(() => undefined);
    p?.close();
    await n?.stop();
  });

  test('the server is checked at start', () => {
    assert.ok(p.info);
    assert.equal(p.info.jetstream, true);
    assert.match(p.info.version, /^\d+\.\d+/);
  });

  test('subjects and permissions follow acl.ts', () => {
    assert.equal(natsSubject('nodes/+/information'), 'nodes.*.information');
    assert.equal(natsSubject('nodes/a/control/#'), 'nodes.a.control.>');
    const perms = natsWorkerPermissions('w1');
    assert.deepEqual(perms.publish.allow, ['nodes.w1.>']);
    assert.ok(perms.subscribe.allow.includes('nodes.w1.control') && perms.subscribe.allow.includes('nodes.w1.control.>'));
    assert.ok(!perms.subscribe.allow.some((s) => s === '>' || s.startsWith('nodes.*') || s.startsWith('nodes.>')));
  });

  test('workers work on their own topics only; wills; removal disconnects', async () => {
    await Promise.all([p.upsertWorker('w1', 'pw-one-1', 'tok11111'), p.upsertWorker('w2', 'pw-two-2', 'tok22222')]);
    assert.ok(probes >= 1, 'the new credentials were probed before the change was answered');
    assert.equal((await stat(n.usersFile)).mode & 0o777, 0o600, 'the mode of the file it replaced, never wider');
    const cluster = await bus('oak-cluster-t', admin.user, admin.password);
    const heard: string[] = [];
    await cluster.subscribe('nodes/+/information', (t, pl) => { heard.push(`${t} ${pl.toString()}`); });
    await cluster.subscribe('nodes/+/gone', (t, pl) => { heard.push(`${t} ${pl.toString()}`); });

    const w2 = await bus('w2', 'w2', 'pw-two-2');
    const w2got: string[] = [];
    await w2.subscribe('nodes/w2/control/#', (t, pl) => { w2got.push(`${t} ${pl.toString()}`); });

    // w1 with its own will, and a second w1 client (its NetManager user) with a forged one
    const w1 = await bus('w1', 'w1', 'pw-one-1', { will: { topic: 'nodes/w1/gone', payload: 'w1 will', qos: 1, retain: false } });
    const forger = await mqtt.connectAsync(n.url, { clientId: 'w1-net', username: 'w1-net', password: 'pw-one-1', reconnectPeriod: 0, will: { topic: 'nodes/w2/gone', payload: Buffer.from('forged will'), qos: 1, retain: false } });
    const w1got: string[] = [];
    await w1.subscribe('nodes/w1/control/#', (t, pl) => { w1got.push(`${t} ${pl.toString()}`); });

    // wrong password, unknown user
    await assert.rejects(connectBus(n.url, { clientId: 'x1', username: 'w1', password: 'pw-two-2', reconnectPeriodMs: 0 }));
    await assert.rejects(connectBus(n.url, { clientId: 'x2', username: 'nobody', password: 'x', reconnectPeriodMs: 0 }));

    // hostile: another worker's topics, wildcards over everyone, NATS internals
    for (const f of ['nodes/w2/control/#', 'nodes/+/control/#', '#', 'nodes/#', '$MQTT/sub/#', '$JS/#']) {
      await assert.rejects(w1.subscribe(f, () => { w1got.push(`LEAK ${f}`); }), Error, `subscribe ${f}`);
    }
    await w1.publishJson('nodes/w2/information', { forged: true }, 1).catch(() => undefined);
    await w1.publishJson('nodes/w2/control/deploy', { forged: true }, 1).catch(() => undefined);
    await w1.publishJson('nodes/w1/information', { own: true }, 1);
    await cluster.publishJson('nodes/w2/control/deploy', { to: 'w2' }, 1);
    await cluster.publishJson('nodes/w1/control/deploy', { to: 'w1' }, 1);
    await waitFor(() => heard.some((h) => h.startsWith('nodes/w1/information')) && w1got.length > 0 && w2got.length > 0, { timeoutMs: 5000, message: 'own traffic' });
    // the forged will fires when that connection drops; the real one when w1's does
    forger.stream.destroy();
    await waitFor(() => !forger.connected, { timeoutMs: 3000, message: 'forger gone' });

    // removing w1 disconnects both its clients at the reload
    await p.removeWorker('w1');
    await waitFor(() => !w1.connected, { timeoutMs: 3000, message: 'w1 disconnected by the reload' });
    // a QoS 1 will goes through JetStream's file store in NATS: seconds on a loaded machine
    await waitFor(() => heard.some((h) => h === 'nodes/w1/gone w1 will'), { timeoutMs: 15_000, message: "w1's will" });
    await assert.rejects(connectBus(n.url, { clientId: 'w1', username: 'w1', password: 'pw-one-1', reconnectPeriodMs: 0 }));
    // a round trip on w2 so that anything forged would have arrived by now
    await cluster.publishJson('nodes/w2/control/deploy', { to: 'w2', n: 2 }, 1);
    await waitFor(() => w2got.length >= 2, { timeoutMs: 3000, message: 'second message to w2' });
    assert.deepEqual(heard.filter((h) => h.includes('w2')), [], `nothing forged reached the cluster: ${heard.join(' | ')}`);
    assert.deepEqual(w2got.filter((g) => g.includes('forged')), []);
    assert.deepEqual(w1got.filter((g) => g.startsWith('LEAK') || g.includes('w2')), []);
    assert.ok(w2.connected, 'w2 unaffected');
  });

  test('a restarted cluster finds its workers in the file; bad input is refused and loses nothing', async () => {
    const again = await NatsAuthProvisioner.open({ file: n.usersFile, pidFile: n.pidFile, monitorUrl: n.monitorUrl }, admin);
    try {
      assert.deepEqual([...again.workerTokens()], [['w2', 'tok22222']]);
      const before = await readFile(n.usersFile, 'utf8');
      for (const id of ['a.b', 'a/b', 'a b', '$SYS', 'x"y', 'x\ny', '', 'a>', 'a*', 'é']) {
        await assert.rejects(again.upsertWorker(id, 'pw'), /cannot be a NATS user/, JSON.stringify(id));
      }
      await assert.rejects(again.upsertWorker('ok', 'p"w'), /password/);
      await assert.rejects(again.upsertWorker('ok', 'pw', 'tok\n'), /token id/);
      assert.equal(await readFile(n.usersFile, 'utf8'), before);
      await assert.rejects(NatsAuthProvisioner.open({ file: n.usersFile, pidFile: n.pidFile }, { user: 'a.b', password: 'x' }), /user/);
      await assert.rejects(NatsAuthProvisioner.open({ file: n.usersFile, pidFile: n.pidFile }, { user: 'a', password: 'x"}]' }), /password/);
    } finally {
      again.close();
    }
  });

  test('a server that cannot be reloaded fails the change clearly', async () => {
    const bad = await NatsAuthProvisioner.open({ file: n.usersFile, pidFile: `${n.dir}/missing.pid`, monitorUrl: n.monitorUrl }, admin);
    try {
      await assert.rejects(bad.upsertWorker('w9', 'pw-nine'), /pid file/);
      await assert.rejects(bad.upsertWorker('w9', 'pw-nine'), /pid file/, 'a retry reloads again (not "unchanged")');
    } finally {
      bad.close();
    }
  });
});

describe('a refused resubscription is retried (NATS refuses QoS 1 subscriptions while JetStream recovers)', () => {
  test('subscriptions queued offline, refused at connect, granted later: the bus retries and then hears', async () => {
    const n = await startNats({ adminUser: 'adm', adminPassword: 'adm-secret' });
    const users = (allow: string[]): string => `users = [\n  ${JSON.stringify({ user: 'adm', password: 'adm-secret', permissions: { publish: '>', subscribe: '>' } })}\n  ${JSON.stringify({ user: 'late', password: 'late-pw', permissions: { publish: { allow: ['late.>'] }, subscribe: { allow: [...allow, '$MQTT.sub.>'] } } })}\n]\n`;
    const reload = async (text: string): Promise<void> => {
      const before = ((await (await fetch(`${n.monitorUrl}/varz`)).json()) as { config_load_time: string }).config_load_time;
      await writeFile(n.usersFile, text);
      process.kill(Number((await readFile(n.pidFile, 'utf8')).trim()), 'SIGHUP');
      await waitFor(async () => ((await (await fetch(`${n.monitorUrl}/varz`)).json()) as { config_load_time: string }).config_load_time !== before, { timeoutMs: 5000, message: 'reloaded' });
    };
    const warned: string[] = [];
    const log = { debug: () => {}, info: (m: string) => warned.push(m), warn: (m: string) => warned.push(m), error: (m: string) => warned.push(m) };
    let b: Bus | undefined;
    let admin: Bus | undefined;
    try {
      await reload(users(['other.>']));
      b = await connectBus(n.url, { clientId: 'late', username: 'late', password: 'late-pw', waitForConnect: false, log });
      const got: string[] = [];
      await b.subscribe('late/news/#', (t) => { got.push(t); });
      await waitFor(() => warned.some((w) => /resubscribe failed; retrying/.test(w)), { timeoutMs: 5000, message: 'the refusal' });
      await reload(users(['late.>', 'late.news']));
      await waitFor(() => warned.some((w) => /resubscribed after/.test(w)), { timeoutMs: 15_000, message: 'the retry' });
      admin = await connectBus(n.url, { clientId: 'adm', username: 'adm', password: 'adm-secret', reconnectPeriodMs: 0 });
      await admin.publishJson('late/news/1', { x: 1 });
      await waitFor(() => got.includes('late/news/1'), { timeoutMs: 5000, message: 'the message after the retry' });
    } finally {
      await admin?.close();
      await b?.close();
      await n.stop();
    }
  });
});
