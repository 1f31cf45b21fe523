/** The in-memory history of instance readings (usage.ts): bounds, order, and metrics events across roots. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { OakEvent } from '@oak/contracts';
import { EventHub } from '../src/events.ts';
import { parseEventPayload } from '../src/lead/events-bridge.ts';
import { DEFAULT_USAGE_INSTANCES, UsageBook, usageIntake } from '../src/usage.ts';

type Metrics = Extract<OakEvent, { type: 'metrics' }>;
const ev = (sid: string, at: number, n: number, cpu: number): Metrics => ({ type: 'metrics', microserviceID: sid, applicationID: 'a', job_name: 'j', at, instances: [{ instance_number: n, cpu_percent: cpu, memory_mb: cpu * 2 }] });

test('a ring per instance: the last maxSamples readings, oldest first; the instance updated longest ago goes first', () => {
  const hub = new EventHub();
  const book = new UsageBook(hub, { maxSamples: 3, maxInstances: 2 });
  for (let i = 1; i <= 5; i++) hub.publish(ev('s1', i, 0, i));
  assert.deepEqual(book.history('s1', 0), [3, 4, 5].map((i) => ({ at: i, cpu_percent: i, memory_mb: i * 2 })));
  hub.publish(ev('s2', 6, 0, 1));
  hub.publish(ev('s1', 7, 0, 7)); // s1/0 is now the freshest
  hub.publish(ev('s3', 8, 0, 1)); // evicts s2/0
  assert.equal(book.instances, 2);
  assert.deepEqual(book.history('s2', 0), []);
  assert.equal(book.history('s1', 0).length, 3);
  assert.equal(book.history('s3', 0).length, 1);
  // junk never enters: negative numbers, NaN, fractional instance numbers
  hub.publish({ ...ev('s3', 9, 0, 1), instances: [{ instance_number: 0.5, cpu_percent: 1, memory_mb: 1 }, { instance_number: 0, cpu_percent: Number.NaN, memory_mb: 1 }] });
  assert.equal(book.history('s3', 0).length, 1);
  book.close();
  hub.publish(ev('s1', 10, 0, 1));
  assert.deepEqual(book.history('s1', 0), [], 'closed: forgets and listens no more');
});

test("by default the book holds the readings of issue 13's 10,000 instances (the cap was 5,000: half of them charted nothing)", () => {
  const hub = new EventHub();
  const book = new UsageBook(hub);
  assert.ok(DEFAULT_USAGE_INSTANCES >= 10_000);
  for (let s = 0; s < 500; s++) {
    hub.publish({ type: 'metrics', microserviceID: `s${s}`, applicationID: 'a', job_name: 'j', at: 1000, instances: Array.from({ length: 20 }, (_, n) => ({ instance_number: n, cpu_percent: 1, memory_mb: 1 })) });
  }
  assert.equal(book.instances, 10_000);
  assert.equal(book.history('s0', 0).length, 1, 'the first instance still charted');
  book.close();
});

test('intake: only instances placed on the sending cluster; chunked events; one intake per cluster at a time', async () => {
  const published: Metrics[] = [];
  const instances = Array.from({ length: 120 }, (_, n) => ({ service_id: 'sid', instance_number: n, cluster_id: 'c1', desired: 'run' }));
  let lists = 0;
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const store = {
    async listInstances(f?: { cluster_id?: string }) {
      lists++;
      await gate;
      return instances.filter((i) => i.cluster_id === f?.cluster_id) as never;
    },
    async getServiceByJobName(job: string) {
      return job === 'app.ns.web.ns' ? ({ id: 'sid', application_id: 'aid', job_name: job } as never) : undefined;
    },
  };
  const intake = usageIntake({ store, events: { publish: (e) => published.push(e as Metrics) }, now: () => 1000 });
  const readings = instances.map((i) => ({ job_name: 'app.ns.web.ns', instance_number: i.instance_number, worker_id: 'w', cpu_percent: 1, memory_mb: 2 }));
  intake('c1', [...readings, { job_name: 'other.ns.web.ns', instance_number: 0, worker_id: 'w', cpu_percent: 1, memory_mb: 1 }, { job_name: 'app.ns.web.ns', instance_number: 500, worker_id: 'w', cpu_percent: 1, memory_mb: 1 }]);
  intake('c1', readings); // while the first runs: dropped
  release();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(lists, 1);
  assert.equal(published.length, 3, 'chunks of 50');
  assert.deepEqual(published.flatMap((e) => e.instances.map((i) => i.instance_number)), instances.map((i) => i.instance_number));
  assert.ok(published.every((e) => e.microserviceID === 'sid' && e.applicationID === 'aid' && e.at === 1000));
  // another cluster claiming the same instances gets nothing published
  intake('c2', readings);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(published.length, 3);
});

test('metrics events across roots: well-formed ones pass, junk is refused', () => {
  const ok = parseEventPayload(JSON.stringify({ v: 1, origin: 'r1', event: ev('s', 1, 0, 3) }));
  assert.equal(typeof ok, 'object');
  for (const bad of [
    { ...ev('s', 1, 0, 3), at: 'now' },
    { ...ev('s', 1, 0, 3), instances: 'x' },
    { ...ev('s', 1, 0, 3), instances: [{ instance_number: -1, cpu_percent: 1, memory_mb: 1 }] },
    { ...ev('s', 1, 0, 3), instances: [{ instance_number: 0, cpu_percent: -1, memory_mb: 1 }] },
    { ...ev('s', 1, 0, 3), instances: [null] },
    { ...ev('', 1, 0, 3) },
  ]) {
    assert.equal(parseEventPayload(JSON.stringify({ v: 1, origin: 'r1', event: bad })), 'bad metrics event', JSON.stringify(bad).slice(0, 80));
  }
});

test('across roots, readings give way to state events when the bridge queue backs up', async () => {
  const { EventBridge } = await import('../src/lead/events-bridge.ts');
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
  };
  const hub = new EventHub();
  const noop = (): void => {};
  const bridge = new EventBridge({ store: store as never, hub, origin: 'me', log: { debug: noop, info: noop, warn: noop, error: noop } as never, queueCap: 10 });
  await bridge.start();
  for (let i = 0; i < 100; i++) hub.publish(ev('s', i, 0, 1));
  for (let i = 0; i < 4; i++) hub.publish({ type: 'cluster', action: 'updated', cluster_id: `c${i}`, cluster_name: `c${i}` });
  release();
  await bridge.flushed();
  const kinds = sent.map((p) => (JSON.parse(p) as { event: OakEvent }).event.type);
  assert.equal(kinds.filter((k) => k === 'cluster').length, 4, 'every state event got through');
  assert.ok(kinds.filter((k) => k === 'metrics').length <= 6, `${kinds.length} sent`);
  assert.equal(bridge.stats.dropped, 0, 'nothing pushed out');
  assert.ok(bridge.stats.shed >= 94);
  await bridge.close();
});
