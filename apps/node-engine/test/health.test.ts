/**
 * Health probes and local restarts: the pure state machine, the restart decision and backoff, the
 * monitor on a fake clock, and the probes against real sockets and processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import {
  HealthMonitor,
  decideRestart,
  execProbe,
  httpProbe,
  initialHealth,
  probeSettings,
  restartBackoffMs,
  restartSettings,
  stepHealth,
  tcpProbe,
} from '../src/health.ts';
import type { Clock, HealthView, ProbeOutcome } from '../src/health.ts';

const OK: ProbeOutcome = { ok: true, detail: 'fine' };
const BAD: ProbeOutcome = { ok: false, detail: 'refused' };

test('probe settings: defaults (10 s, 2 s, 3) and the SLA values in ms', () => {
  assert.deepEqual(probeSettings({ type: 'tcp', port: 80 }), { type: 'tcp', port: 80, path: '/', command: [], intervalMs: 10_000, timeoutMs: 2000, failureThreshold: 3 });
  const s = probeSettings({ type: 'http', port: 8080, path: '/healthz', interval_s: 0.5, timeout_s: 0.25, failure_threshold: 1 });
  assert.equal(s.intervalMs, 500);
  assert.equal(s.timeoutMs, 250);
  assert.equal(s.failureThreshold, 1);
  assert.equal(s.path, '/healthz');
  // out of range (a message that skipped validation) is clamped, never 0 ms
  assert.equal(probeSettings({ type: 'tcp', port: 1, interval_s: 0, failure_threshold: 0 }).intervalMs, 100);
  assert.equal(probeSettings({ type: 'tcp', port: 1, interval_s: 0, failure_threshold: 0 }).failureThreshold, 1);
});

test('state machine: starting -> unhealthy after the threshold; one success heals and resets the count', () => {
  let h = initialHealth();
  assert.equal(h.status, 'starting');
  let r = stepHealth(h, BAD, 3);
  assert.deepEqual([r.next.status, r.next.failures, r.changed], ['starting', 1, false]);
  r = stepHealth(r.next, BAD, 3);
  assert.deepEqual([r.next.status, r.next.failures, r.changed], ['starting', 2, false]);
  r = stepHealth(r.next, BAD, 3);
  assert.deepEqual([r.next.status, r.next.failures, r.changed], ['unhealthy', 3, true]);
  r = stepHealth(r.next, BAD, 3);
  assert.deepEqual([r.next.status, r.changed], ['unhealthy', false]);
  r = stepHealth(r.next, OK, 3);
  assert.deepEqual([r.next.status, r.next.failures, r.changed], ['healthy', 0, true]);
  h = r.next;
  // healthy -> two failures stay healthy -> a success resets -> two more still healthy
  for (const x of [BAD, BAD, OK, BAD, BAD]) h = stepHealth(h, x, 3).next;
  assert.equal(h.status, 'healthy');
  assert.equal(h.failures, 2);
  assert.equal(stepHealth(h, BAD, 3).next.status, 'unhealthy');
  assert.equal(stepHealth(initialHealth(), BAD, 1).next.status, 'unhealthy');
});

test('restart settings: on-failure for services, never for one_shot, restart_max 3', () => {
  assert.deepEqual(restartSettings({}), { policy: 'on-failure', max: 3 });
  assert.deepEqual(restartSettings({ one_shot: true }), { policy: 'never', max: 3 });
  assert.deepEqual(restartSettings({ one_shot: true, restart: 'always', restart_max: 0 }), { policy: 'always', max: 0 });
});

test('backoff: 1 s doubling, capped at 30 s', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => restartBackoffMs(n)), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  assert.equal(restartBackoffMs(1000), 30_000);
  assert.deepEqual([1, 2, 3].map((n) => restartBackoffMs(n, 50, 120)), [50, 100, 120]);
});

test('restart decision by policy, cause and count', () => {
  const of = { policy: 'on-failure' as const, max: 3 };
  assert.deepEqual(decideRestart(of, 0, 'failed'), { restart: true, attempt: 1, delayMs: 1000 });
  assert.deepEqual(decideRestart(of, 2, 'unhealthy'), { restart: true, attempt: 3, delayMs: 4000 });
  assert.deepEqual(decideRestart(of, 3, 'failed'), { restart: false, reason: 'exhausted' });
  assert.deepEqual(decideRestart(of, 0, 'completed'), { restart: false, reason: 'policy' });
  assert.deepEqual(decideRestart({ policy: 'always', max: 2 }, 1, 'completed'), { restart: true, attempt: 2, delayMs: 2000 });
  assert.deepEqual(decideRestart({ policy: 'always', max: 2 }, 2, 'completed'), { restart: false, reason: 'exhausted' });
  assert.deepEqual(decideRestart({ policy: 'never', max: 3 }, 0, 'failed'), { restart: false, reason: 'policy' });
  assert.deepEqual(decideRestart({ policy: 'on-failure', max: 0 }, 0, 'failed'), { restart: false, reason: 'exhausted' });
});

/** a clock that moves only when told */
class FakeClock implements Clock {
  now = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  pending(): number {
    return this.#timers.size;
  }
  /** runs every timer due up to now + ms, in order, letting promises settle in between */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await new Promise((r) => setImmediate(r));
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
    await new Promise((r) => setImmediate(r));
  }
}

test('monitor on a fake clock: probes every interval, unhealthy after the threshold, healthy again, stop ends it', async () => {
  const clock = new FakeClock();
  const answers: ProbeOutcome[] = [OK, BAD, BAD, BAD, OK];
  const calls: number[] = [];
  const changes: { at: number; v: HealthView }[] = [];
  const m = new HealthMonitor(
    probeSettings({ type: 'tcp', port: 1, interval_s: 5, failure_threshold: 3 }),
    () => {
      calls.push(clock.now);
      return Promise.resolve(answers.shift() ?? OK);
    },
    (v) => changes.push({ at: clock.now, v }),
    clock,
  );
  m.start();
  await clock.advance(4999);
  assert.deepEqual(calls, [], 'the first probe comes one interval after the start');
  await clock.advance(1);
  assert.deepEqual(calls, [5000]);
  assert.deepEqual(changes.map((c) => [c.at, c.v.status]), [[5000, 'healthy']]);
  await clock.advance(15_000);
  assert.deepEqual(calls, [5000, 10_000, 15_000, 20_000]);
  assert.deepEqual(changes.map((c) => [c.at, c.v.status]), [[5000, 'healthy'], [20_000, 'unhealthy']]);
  assert.equal(changes[1]?.v.failures, 3);
  await clock.advance(5000);
  assert.deepEqual(changes.map((c) => c.v.status), ['healthy', 'unhealthy', 'healthy']);
  m.stop();
  assert.equal(clock.pending(), 0);
  await clock.advance(60_000);
  assert.equal(calls.length, 5, 'no probe after stop');
});

test('monitor: a probe that never answers fails at its timeout; the next waits for it (one at a time)', async () => {
  const clock = new FakeClock();
  let calls = 0;
  let aborted = 0;
  const changes: string[] = [];
  const m = new HealthMonitor(
    probeSettings({ type: 'tcp', port: 1, interval_s: 1, timeout_s: 2, failure_threshold: 2 }),
    (signal) => {
      calls++;
      signal.addEventListener('abort', () => aborted++);
      return new Promise<ProbeOutcome>(() => {});
    },
    (v) => changes.push(`${v.status}: ${v.detail}`),
    clock,
  );
  m.start();
  await clock.advance(1000);
  assert.equal(calls, 1);
  await clock.advance(1999);
  assert.equal(calls, 1, 'no second probe while the first is out');
  await clock.advance(1);
  assert.equal(aborted, 1, 'the timed-out probe is aborted');
  await clock.advance(1000);
  assert.equal(calls, 2);
  await clock.advance(2000);
  assert.deepEqual(changes, ['unhealthy: no answer within 2000 ms']);
  m.stop();
});

async function listen<T extends Server | HttpServer>(s: T): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

test('http probe against a real server: 200 healthy, 500 and a closed port unhealthy, a silent server times out', async () => {
  const srv = createServer((req, res) => {
    if (req.url === '/ok') res.writeHead(200).end('fine');
    else if (req.url === '/hang') return;
    else res.writeHead(500).end('broken');
  });
  const port = await listen(srv);
  try {
    const ctl = new AbortController();
    assert.deepEqual(await httpProbe('127.0.0.1', port, '/ok', ctl.signal, 1000), { ok: true, detail: 'http 200' });
    const bad = await httpProbe('127.0.0.1', port, '/x', ctl.signal, 1000);
    assert.equal(bad.ok, false);
    assert.match(bad.detail, /answered 500/);
    const t0 = Date.now();
    const hang = await httpProbe('127.0.0.1', port, '/hang', ctl.signal, 200);
    assert.equal(hang.ok, false);
    assert.ok(Date.now() - t0 < 2000, 'bounded by the timeout');
  } finally {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  }
  const closed = await httpProbe('127.0.0.1', port, '/ok', new AbortController().signal, 500);
  assert.equal(closed.ok, false);
  assert.match(closed.detail, /ECONNREFUSED/);
});

test('tcp probe against a real listener: accepted healthy, closed port unhealthy', async () => {
  const srv = createTcpServer((c) => c.end());
  const port = await listen(srv);
  assert.equal((await tcpProbe('127.0.0.1', port, new AbortController().signal, 1000)).ok, true);
  await new Promise((r) => srv.close(r));
  const r = await tcpProbe('127.0.0.1', port, new AbortController().signal, 1000);
  assert.equal(r.ok, false);
  assert.match(r.detail, /ECONNREFUSED/);
});

test('exec probe: exit 0 healthy, another code unhealthy with its output, a hanging command is killed at the timeout; inside a pid\'s namespaces', async () => {
  const sig = new AbortController().signal;
  assert.equal((await execProbe(['/bin/true'], { host: '127.0.0.1' }, sig, 1000)).ok, true);
  const bad = await execProbe(['/bin/sh', '-c', 'echo not ready; exit 4'], { host: '127.0.0.1' }, sig, 1000);
  assert.equal(bad.ok, false);
  assert.match(bad.detail, /exited 4: not ready/);
  const t0 = Date.now();
  const hang = await execProbe(['/bin/sleep', '30'], { host: '127.0.0.1' }, sig, 200);
  assert.equal(hang.ok, false);
  assert.ok(Date.now() - t0 < 5000);
  const missing = await execProbe(['/nonexistent/check'], { host: '127.0.0.1' }, sig, 1000);
  assert.equal(missing.ok, false);
  if (process.getuid?.() === 0) {
    // entering the namespaces of a live process (ours): the same filesystem, so /bin/true runs
    assert.equal((await execProbe(['/bin/true'], { host: '127.0.0.1', pid: process.pid }, sig, 2000)).ok, true);
  }
});
