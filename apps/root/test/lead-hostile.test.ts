/**
 * The cross-root surfaces under hostile or heavy input: junk, huge or wrongly shaped payloads on
 * 'oak_events' and 'oak_reconcile' are ignored with a log line and never crash; a burst of events
 * never blocks the publisher (the queue is capped, the oldest go first, counted); relayed calls
 * coalesce; the follower's link listener redirects only a hello with a valid cluster token; a
 * cluster follows a bounded number of redirects. (In-memory SQLite stores: notify is in-process.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkClient } from '@oak/cluster';
import type { OakEvent, RootToCluster } from '@oak/contracts';
import { createStore, type InstanceRow, type ServiceRow, type Store } from '@oak/store';
import { waitFor } from '@oak/testkit';
import type { RootContext } from '../src/context.ts';
import { EventHub } from '../src/events.ts';
import { EVENTS_CHANNEL, EventBridge, parseEventPayload } from '../src/lead/events-bridge.ts';
import { RECONCILE_CHANNEL, listenRelayed, parseRelayMessage, relayControl } from '../src/lead/relay.ts';
import { startRedirectLink } from '../src/lead/redirect-link.ts';
import { loadRootTrust } from '../src/trust.ts';
import { RecordingControl } from './helpers.ts';
import { clusterJoinToken, rawLinkCall } from './join.ts';

function logSink() {
  const lines: { level: string; obj: object; msg: string }[] = [];
  const at = (level: string) => (obj: object, msg: string) => void lines.push({ level, obj, msg });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error') } };
}

const JUNK = ['', 'not json', '[]', 'null', '42', '{"v":2}', '{"v":1}', '{"v":1,"origin":""}', `{"v":1,"origin":"x","event":{"type":"nope"}}`, `{"v":1,"origin":"x","event":{"type":"instance"}}`, `{"v":1,"origin":"x","ref":{"type":"instance","microserviceID":"s","instance_number":-1}}`, `{"v":1,"origin":"${'o'.repeat(300)}","event":{"type":"cluster","action":"connected","cluster_id":"c","cluster_name":"n"}}`, `{"a":"${'x'.repeat(6900)}"}`, '{'.repeat(3000)];

const instanceEvent = (n: number, detail = 'ok'): OakEvent => ({
  type: 'instance',
  microserviceID: 's1',
  applicationID: 'a1',
  job_name: 'app.test.s.test',
  instance: { instance_number: n, status: 'RUNNING', status_detail: detail } as unknown as Extract<OakEvent, { type: 'instance' }>['instance'],
});

describe('oak_events: hostile payloads and bounds', () => {
  test('junk, huge or misshapen payloads are ignored with a log line; a good one after them is delivered', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const hub = new EventHub();
    const seen: OakEvent[] = [];
    hub.subscribe((e) => seen.push(e));
    const { lines, log } = logSink();
    const bridge = new EventBridge({ store, hub, origin: 'me', log });
    await bridge.start();
    try {
      for (const j of JUNK) await store.notify(EVENTS_CHANNEL, j);
      // parseEventPayload also refuses what the store would not carry
      assert.equal(typeof parseEventPayload('x'.repeat(20_000)), 'string');
      await waitFor(() => bridge.stats.ignored >= JUNK.length, { timeoutMs: 2000 });
      assert.equal(seen.length, 0);
      assert.equal(bridge.stats.ignored, JUNK.length);
      // logged, but a flood is one line per second at most
      const logged = lines.filter((l) => /ignored a payload on oak_events/.test(l.msg));
      assert.ok(logged.length >= 1 && logged.length <= 2, `${logged.length} lines`);
      assert.ok(logged.every((l) => typeof (l.obj as { reason?: unknown }).reason === 'string'));
      await store.notify(EVENTS_CHANNEL, JSON.stringify({ v: 1, origin: 'other', event: instanceEvent(3) }));
      await waitFor(() => seen.length === 1, { timeoutMs: 2000 });
      // our own events are not delivered twice
      await store.notify(EVENTS_CHANNEL, JSON.stringify({ v: 1, origin: 'me', event: instanceEvent(4) }));
      assert.equal(seen.length, 1);
      // a reference to a row that does not exist is dropped quietly
      await store.notify(EVENTS_CHANNEL, JSON.stringify({ v: 1, origin: 'other', ref: { type: 'instance', microserviceID: 'nope', instance_number: 0 } }));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.length, 1);
    } finally {
      await bridge.close();
      await store.close();
    }
  });

  test('a burst never blocks the publisher: the queue holds at most its cap, the oldest are dropped and counted', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sent: string[] = [];
    const store = {
      async notify(_c: string, p: string) {
        await gate;
        sent.push(p);
      },
      async listen() {
        return async () => {};
      },
      async getService() {
        return undefined;
      },
      async getInstance() {
        return undefined;
      },
    } as unknown as Store;
    const hub = new EventHub();
    const { lines, log } = logSink();
    const bridge = new EventBridge({ store, hub, origin: 'me', log, queueCap: 10 });
    await bridge.start();
    const t0 = performance.now();
    for (let k = 0; k < 5000; k++) hub.publish(instanceEvent(k));
    const took = performance.now() - t0;
    assert.ok(took < 500, `5000 publishes took ${took} ms`);
    await new Promise((r) => setTimeout(r, 10));
    release();
    await bridge.flushed();
    // one was in flight when the gate closed, the last 10 waited; the rest were dropped
    assert.ok(sent.length <= 11, `sent ${sent.length}`);
    assert.equal(bridge.stats.dropped, 5000 - sent.length);
    const last = JSON.parse(sent.at(-1)!) as { event: Extract<OakEvent, { type: 'instance' }> };
    assert.equal(last.event.instance.instance_number, 4999, 'the newest survive');
    assert.ok(lines.some((l) => /event queue full/.test(l.msg)));
    assert.ok(lines.filter((l) => /event queue full/.test(l.msg)).length <= 2, 'the drops are logged at most once a second');
    await bridge.close();
  });

  test('an event too big for a notify goes as a reference, other big events are dropped with a log line', async () => {
    const sent: string[] = [];
    const store = {
      async notify(_c: string, p: string) {
        sent.push(p);
      },
      async listen() {
        return async () => {};
      },
    } as unknown as Store;
    const hub = new EventHub();
    const { lines, log } = logSink();
    const bridge = new EventBridge({ store, hub, origin: 'me', log });
    await bridge.start();
    hub.publish(instanceEvent(7, 'z'.repeat(10_000)));
    hub.publish({ type: 'cluster', action: 'updated', cluster_id: 'c', cluster_name: 'n'.repeat(10_000) });
    await bridge.flushed();
    assert.equal(sent.length, 1);
    assert.deepEqual(JSON.parse(sent[0]!), { v: 1, origin: 'me', ref: { type: 'instance', microserviceID: 's1', instance_number: 7 } });
    assert.equal(bridge.stats.refs, 1);
    assert.equal(bridge.stats.lost, 1);
    assert.ok(lines.some((l) => /too big/.test(l.msg)));
    await bridge.close();
  });
});

const service = (id: string): ServiceRow => ({ id, application_id: 'a', organization_id: 'o', user_id: 'u', job_name: `app.test.${id}.test`, name: id, namespace: 'test' }) as unknown as ServiceRow;
const row = (sid: string, n: number): InstanceRow => ({ service_id: sid, instance_number: n, status: 'RUNNING', cluster_id: 'c1' }) as unknown as InstanceRow;

describe('oak_reconcile: hostile payloads, coalescing', () => {
  test('junk is ignored with a log line and calls nothing; a follower ignores even good ones', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const control = new RecordingControl();
    const { lines, log } = logSink();
    let leading = true;
    const stats = { sent: 0, dropped: 0, failed: 0, applied: 0, ignored: 0 };
    const unlisten = await listenRelayed({ store, control: () => (leading ? control : undefined), log, stats });
    try {
      const bad = [...JUNK, '{"v":1,"what":"requested"}', '{"v":1,"what":"drop_tables","service_id":"s"}', '{"v":1,"what":"requested","service_id":"s","instances":[-1]}', `{"v":1,"what":"requested","service_id":"s","instances":[${'1,'.repeat(600)}1]}`, '{"v":1,"what":"undeployed","service_id":"s","service":{"id":"other"}}', '{"v":1,"what":"undeployed","service_id":"s","rows":[{"service_id":"t","instance_number":0}]}'];
      for (const j of bad) await store.notify(RECONCILE_CHANNEL, j);
      await waitFor(() => stats.ignored >= bad.length, { timeoutMs: 2000 });
      assert.equal(stats.ignored, bad.length);
      const logged = lines.filter((l) => /ignored a payload on oak_reconcile/.test(l.msg));
      assert.ok(logged.length >= 1 && logged.length <= 2, `${logged.length} lines`);
      // well formed but about a service that does not exist: nothing to call
      await store.notify(RECONCILE_CHANNEL, JSON.stringify({ v: 1, what: 'requested', service_id: 'nope' }));
      // an undeploy of a deleted service carries its rows: the leader is told
      await store.notify(RECONCILE_CHANNEL, JSON.stringify({ v: 1, what: 'undeployed', service_id: 'gone', instances: [2], service: service('gone'), rows: [row('gone', 2)] }));
      await waitFor(() => control.undeployed.length === 1, { timeoutMs: 2000 });
      assert.deepEqual(control.undeployed[0]?.instances.map((i) => i.instance_number), [2]);
      assert.equal(control.requested.length, 0);
      leading = false;
      await store.notify(RECONCILE_CHANNEL, JSON.stringify({ v: 1, what: 'undeployed', service_id: 'gone', service: service('gone'), rows: [row('gone', 3)] }));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(control.undeployed.length, 1, 'a follower does not act');
    } finally {
      await unlisten();
      await store.close();
    }
  });

  test('the relay coalesces per service, never blocks the API, caps what waits, and its logs name the leader', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sent: string[] = [];
    const store = {
      async notify(_c: string, p: string) {
        await gate;
        sent.push(p);
      },
    } as unknown as Store;
    const { log } = logSink();
    const relay = relayControl({ store, leader: () => ({ holder: 'L', api_url: 'http://leader:10000' }), log, pendingCap: 50 });
    relay.instancesRequested(service('s0'), [row('s0', 0)]);
    await new Promise((r) => setTimeout(r, 5)); // s0 in flight
    for (let k = 1; k <= 300; k++) relay.instancesRequested(service('s1'), [row('s1', k)]);
    relay.serviceUpdated(service('s1'));
    for (let k = 0; k < 100; k++) relay.serviceUpdated(service(`t${k}`));
    assert.equal(relay.stats.dropped, 100 - 48, 'beyond 50 waiting changes, the rest are dropped');
    release();
    await relay.flushed();
    const msgs = sent.map((p) => parseRelayMessage(p));
    assert.ok(msgs.every((m) => typeof m !== 'string'));
    const s1 = msgs.find((m) => typeof m !== 'string' && m.service_id === 's1' && m.what === 'requested');
    assert.ok(s1 && typeof s1 !== 'string');
    assert.equal(s1.instances?.length, 300, 'one message with every number');
    assert.ok(sent.every((p) => Buffer.byteLength(p) <= 7000));
    assert.throws(
      () => relay.logs(service('s1'), row('s1', 1)),
      (err: Error & { code?: string; hint?: string }) => err.code === 'OAK_UNAVAILABLE' && /http:\/\/leader:10000/.test(err.hint ?? ''),
    );
    await relay.close();
  });
});

test('an undeploy of many deleted rows travels in several notifications, each under the limit, together naming every instance', async () => {
  const sent: string[] = [];
  const store = { async notify(_c: string, p: string) { sent.push(p); } } as unknown as Store;
  const { log } = logSink();
  const relay = relayControl({ store, leader: () => ({ holder: 'L', api_url: 'http://leader:10000' }), log });
  const rows = Array.from({ length: 400 }, (_, k) => ({ ...row('s9', k), cluster_id: 'c1', status: 'RUNNING' as const, epoch: 3 }));
  relay.instancesUndeployed(service('s9'), rows);
  await relay.flushed();
  assert.ok(sent.length > 1, `split: ${sent.length} notification(s)`);
  assert.ok(sent.every((p) => Buffer.byteLength(p) <= 7000));
  const msgs = sent.map((p) => parseRelayMessage(p));
  const numbers = msgs.flatMap((m) => (typeof m === 'string' ? [] : (m.rows ?? []).map((r) => r.instance_number)));
  assert.deepEqual(numbers, rows.map((r) => r.instance_number), 'every row once, in order');
  for (const m of msgs) {
    assert.ok(typeof m !== 'string' && m.service?.job_name === service('s9').job_name, 'each carries the job name (the service row may be gone at the leader)');
    assert.ok(m.rows?.every((r) => r.cluster_id === 'c1' && r.epoch === 3), 'with the cluster and epoch the undeploy needs');
  }
  await relay.close();
});

describe('follower link listener and the cluster', () => {
  test('only a hello with a valid cluster token learns the leader address; a cluster follows at most 3 redirects in a row', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const trust = loadRootTrust(store);
    const ctx = { store, trust } as unknown as RootContext;
    const { log } = logSink();
    let target: string | undefined = 'leader.example:50052';
    const link = await startRedirectLink({ host: '127.0.0.1', port: 0, store, trust: await trust, target: () => target, log });
    const clients: LinkClient[] = [];
    try {
      const ask = async (first: unknown): Promise<RootToCluster> => {
        const { client, call } = await rawLinkCall(ctx, link.address, { ownConnection: true });
        try {
          const answer = new Promise<RootToCluster>((resolve, reject) => {
            call.on('data', (m: RootToCluster) => resolve(m));
            call.on('error', reject);
          });
          call.write(first);
          return await answer;
        } finally {
          call.cancel();
          client.close();
        }
      };
      const token = await clusterJoinToken(ctx, 'c1');
      const hello = { type: 'hello', token, cluster_name: 'c1', cluster_location: null, version: 't' };
      assert.deepEqual(await ask(hello), { type: 'redirect', address: 'leader.example:50052', reason: 'this root follows; the leading root holds the cluster links' });
      assert.equal((await ask({ ...hello, token: 'oak1.c.nope.nope.nope' })).type, 'reject');
      assert.equal((await ask({ type: 'pong', t: 1 })).type, 'reject');
      assert.equal((await ask({ junk: true })).type, 'reject');
      target = 'not an address';
      const r = await ask(hello);
      assert.equal(r.type, 'reject');
      assert.match(r.type === 'reject' ? r.reason : '', /no leading root is known/);

      // a listener that redirects to itself: the cluster follows 3 in a row, then backs off
      target = link.address;
      const before = link.stats.redirected;
      const client = new LinkClient({ address: link.address, token, clusterName: 'c1', clusterLocation: null, version: 't', initialBackoffMs: 20, maxBackoffMs: 400, handlers: { onWelcome() {}, onMessage() {} } });
      clients.push(client);
      client.start();
      await new Promise((r) => setTimeout(r, 1500));
      const n = link.stats.redirected - before;
      assert.ok(n >= 4 && n <= 24, `${n} redirects in 1.5 s (unbounded it would be hundreds)`);
      assert.equal(client.connected, false);
    } finally {
      for (const c of clients) await c.close();
      await link.close();
      await store.close();
    }
  });
});

describe('the redirect message', () => {
  test('the contract bounds it and the cluster only dials a host:port', async () => {
    const { parseRootToCluster } = await import('@oak/contracts');
    const { isLinkAddress } = await import('../../cluster/src/link-client.ts');
    assert.deepEqual(parseRootToCluster({ type: 'redirect', address: 'root-b:50052' }), { type: 'redirect', address: 'root-b:50052' });
    assert.throws(() => parseRootToCluster({ type: 'redirect', address: 'x'.repeat(301) }));
    assert.throws(() => parseRootToCluster({ type: 'redirect', address: '' }));
    assert.throws(() => parseRootToCluster({ type: 'redirect', address: 'a:1', reason: 'r'.repeat(1001) }));
    for (const ok of ['root-b:50052', '10.0.0.1:1', '[fd00::1]:50052']) assert.equal(isLinkAddress(ok), true, ok);
    for (const bad of ['root-b', 'http://root-b:50052', 'a b:1', 'root-b:50052/x', '[zz]:1', `${'a'.repeat(300)}:1`, 'a:123456']) assert.equal(isLinkAddress(bad), false, bad);
  });
});

describe('leadership shell', () => {
  test('a root whose control plane fails to start gives the lease up; another root leads meanwhile', async () => {
    const { startLeadership } = await import('../src/lead/index.ts');
    const { noControlPlane } = await import('../src/control.ts');
    const store = await createStore({ sqlitePath: ':memory:' });
    const mkCtx = (): RootContext => ({ store, events: new EventHub(), control: noControlPlane, auth: { jwtSecret: new Uint8Array(32), accessTtlSec: 60, refreshTtlSec: 60 } });
    const { lines, log } = logSink();
    let attempts = 0;
    const broken = await startLeadership({
      ctx: mkCtx(),
      store,
      log,
      apiUrl: 'http://broken',
      config: { holder: 'broken', ttlMs: 600, renewMs: 50, failedStartBackoffMs: 2000 },
      control: () => {
        attempts++;
        throw new Error('link port in use');
      },
    });
    const good = new RecordingControl();
    const okCtx = mkCtx();
    const ok = await startLeadership({ ctx: okCtx, store, log, apiUrl: 'http://ok', config: { holder: 'ok', ttlMs: 600, renewMs: 50 }, control: () => good });
    try {
      await waitFor(() => ok.role === 'leader', { timeoutMs: 3000, intervalMs: 10 });
      await ok.settled();
      assert.equal(okCtx.control, good);
      assert.equal(attempts, 1);
      assert.equal(broken.role, 'follower');
      // after its backoff it competes again, finds the leader and follows it (no second start)
      await waitFor(() => broken.leader?.holder === 'ok', { timeoutMs: 4000 });
      assert.equal(attempts, 1);
      assert.ok(lines.some((l) => /failed to start; giving the lease up/.test(l.msg)));
    } finally {
      await ok.close();
      await broken.close();
      await store.close();
    }
  });

  test('stepping down while the control plane starts: it is closed as soon as it is up, and the relay takes the calls', async () => {
    const { startLeadership } = await import('../src/lead/index.ts');
    const { noControlPlane } = await import('../src/control.ts');
    const store = await createStore({ sqlitePath: ':memory:' });
    const ctx: RootContext = { store, events: new EventHub(), control: noControlPlane, auth: { jwtSecret: new Uint8Array(32), accessTtlSec: 60, refreshTtlSec: 60 } };
    const { log } = logSink();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let closed = 0;
    const slow = { instancesRequested() {}, instancesUndeployed() {}, close: async () => void closed++ };
    const p = startLeadership({ ctx, store, log, apiUrl: 'http://a', config: { holder: 'a', ttlMs: 600, renewMs: 50 }, control: async () => (await gate, slow) });
    // someone else takes the lease while the control plane is starting
    await new Promise((r) => setTimeout(r, 30));
    await store.releaseLease('reconciler', 'a');
    const other = await store.tryLease('reconciler', 'b', 5000, '{"api_url":"http://b"}');
    assert.equal(other.held, true);
    await new Promise((r) => setTimeout(r, 150));
    release();
    const lead = await p;
    await lead.settled();
    assert.equal(lead.role, 'follower');
    assert.equal(closed, 1, 'the control plane that came up late was closed');
    assert.equal(ctx.control, lead.relay);
    await lead.close();
    await store.close();
  });
});
