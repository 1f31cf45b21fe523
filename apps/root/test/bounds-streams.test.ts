/**
 * Long-lived answers are bounded (issue 7, findings c, d): /api/events never leaks a subscriber
 * (requests with a body, clients gone within milliseconds), event and log streams are capped per
 * user (429 OAK_TOO_MANY_STREAMS), log streams per worker too, and a follow on a quiet instance
 * sends its headers at once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ServiceDoc } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import type { ControlPlane, LogOptions } from '../src/control.ts';
import { createApp, testRoot, type TestRoot } from './helpers.ts';

/** Sends a raw request and closes the connection after `closeAfterMs` (0: right after writing). */
function rawRequest(port: number, text: string, closeAfterMs: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(text);
      setTimeout(() => s.destroy(), closeAfterMs);
    });
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
  });
}

/** Opens a stream and resolves once the status line and headers are in; `close()` ends it. */
function openStream(port: number, path: string, token: string): Promise<{ head: string; close: () => void }> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`));
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\r\n\r\n')) resolve({ head: got, close: () => s.destroy() });
    });
    s.on('error', reject);
    s.on('close', () => resolve({ head: got, close: () => undefined }));
  });
}

describe('/api/events', () => {
  let t: TestRoot;
  let port: number;
  let tok: string;
  before(async () => {
    t = await testRoot({ appOptions: { maxStreamsPerUser: 4 } });
    tok = await t.user('carol', 'acme', ['Application_Provider']);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
  });
  after(() => t.close());

  test('(c) 500 requests that carry a body or close within milliseconds leave no subscriber behind', async () => {
    const baseline = t.ctx.events.size;
    const body = '{"types":"instance"}';
    const withBody = `GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const plain = `GET /api/events?token=${tok} HTTP/1.1\r\nHost: x\r\n\r\n`;
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => rawRequest(port, i % 2 === 0 ? withBody : plain, i % 4 < 2 ? 0 : 1 + (i % 7))));
    }
    await waitFor(() => t.ctx.events.size === baseline, { timeoutMs: 10_000, message: 'subscribers back to baseline' }).catch(() => undefined);
    assert.equal(t.ctx.events.size, baseline, `${t.ctx.events.size - baseline} subscribers leaked`);
    // and the streams of the cap are free again: a user can open their full quota
    const streams = await Promise.all(Array.from({ length: 4 }, () => openStream(port, '/api/events', tok)));
    for (const s of streams) assert.match(s.head, /^HTTP\/1.1 200/);
    for (const s of streams) s.close();
    await waitFor(() => t.ctx.events.size === baseline, { timeoutMs: 10_000, message: 'streams closed' });
  });

  test('(c) event streams are capped per user: 429 OAK_TOO_MANY_STREAMS, free again once one closes', async () => {
    const baseline = t.ctx.events.size;
    const streams = [];
    for (let i = 0; i < 4; i++) streams.push(await openStream(port, '/api/events', tok));
    const fifth = await fetch(`http://127.0.0.1:${port}/api/events`, { headers: { authorization: `Bearer ${tok}` } });
    assert.equal(fifth.status, 429);
    assert.equal(((await fifth.json()) as { error: { code: string } }).error.code, 'OAK_TOO_MANY_STREAMS');
    // another user is not affected
    const other = await t.user('dave', 'acme', ['Application_Provider']);
    const theirs = await openStream(port, '/api/events', other);
    assert.match(theirs.head, /^HTTP\/1.1 200/);
    theirs.close();
    streams.pop()?.close();
    await waitFor(() => t.ctx.events.size === baseline + 3, { timeoutMs: 10_000, message: 'one stream closed' });
    const again = await openStream(port, '/api/events', tok);
    assert.match(again.head, /^HTTP\/1.1 200/);
    again.close();
    for (const s of streams) s.close();
    await waitFor(() => t.ctx.events.size === baseline, { timeoutMs: 10_000, message: 'all closed' });
  });
});

describe('instance logs', () => {
  let t: TestRoot;
  let port: number;
  let tok: string;
  let sid = '';
  const open = new Set<LogOptions>();
  before(async () => {
    // a quiet instance: no line ever comes until the client leaves
    const control: ControlPlane = {
      instancesRequested() {},
      instancesUndeployed() {},
      logs(_s, _i, opts) {
        open.add(opts);
        return (async function* quiet(): AsyncGenerator<string> {
          try {
            if (!opts.follow) {
              yield 'one line';
              return;
            }
            await new Promise<void>((r) => opts.signal.addEventListener('abort', () => r(), { once: true }));
          } finally {
            open.delete(opts);
          }
        })();
      },
    };
    t = await testRoot({ control, appOptions: { streamLimits: { logStreamsPerUser: 2, logStreamsPerWorker: 3, logStreams: 4, logHeartbeatMs: 100 } } });
    tok = await t.user('erin', 'acme', ['Application_Provider']);
    const a = await createApp(t, tok, 'quiet');
    sid = ((await t.req('GET', `/api/services/${a.applicationID}`, tok)).json() as ServiceDoc[])[0]?.microserviceID ?? '';
    await t.req('POST', `/api/service/${sid}/instance`, tok);
    await t.req('POST', `/api/service/${sid}/instance`, tok);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
  });
  after(() => t.close());

  test('(d) a follow on a quiet instance sends its status and headers at once', async () => {
    const ac = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/api/service/${sid}/instance/0/logs?follow=1`, { headers: { authorization: `Bearer ${tok}` }, signal: AbortSignal.any([ac.signal, AbortSignal.timeout(10_000)]) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(open.size, 1, 'the stream is open and no line came');
    ac.abort();
    await waitFor(() => open.size === 0, { timeoutMs: 10_000, message: 'the control plane saw the client leave' });
    // a non-follow request still answers its lines and ends
    const once = await fetch(`http://127.0.0.1:${port}/api/service/${sid}/instance/0/logs`, { headers: { authorization: `Bearer ${tok}` } });
    assert.equal(await once.text(), 'one line\n');
  });

  test('(d) a follow asked as server-sent events gets its headers at once and `: ping` comments while quiet', async () => {
    const s = await new Promise<{ got: () => string; close: () => void }>((resolve, reject) => {
      let got = '';
      const sock = net.connect(port, '127.0.0.1', () => sock.write(`GET /api/service/${sid}/instance/0/logs?follow=1 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${tok}\r\n\r\n`));
      sock.on('data', (d: Buffer) => (got += d.toString()));
      sock.on('error', reject);
      resolve({ got: () => got, close: () => sock.destroy() });
    });
    await waitFor(() => (s.got().match(/: ping/g) ?? []).length >= 2, { timeoutMs: 10_000, message: 'heartbeats' });
    assert.match(s.got(), /^HTTP\/1.1 200[\s\S]*content-type: text\/event-stream[\s\S]*: connected/i);
    s.close();
    await waitFor(() => open.size === 0, { timeoutMs: 10_000, message: 'released' });
  });

  test('(d) log streams are capped per user, per worker and in all (429), and released when they end', async () => {
    const path = (n: number) => `/api/service/${sid}/instance/${n}/logs?follow=1`;
    const a = await openStream(port, path(0), tok);
    const b = await openStream(port, path(1), tok);
    assert.match(a.head, /^HTTP\/1.1 200/);
    assert.match(b.head, /^HTTP\/1.1 200/);
    const third = await fetch(`http://127.0.0.1:${port}${path(0)}`, { headers: { authorization: `Bearer ${tok}` } });
    assert.equal(third.status, 429);
    assert.match(((await third.json()) as { error: { code: string; message: string } }).error.message, /at most 2/);
    // per worker (both instances are unplaced: they count under one key): a second user gets 1 more, then 429
    const other = await t.user('frank', 'acme', ['Application_Provider']);
    const c = await openStream(port, path(0), other);
    assert.match(c.head, /^HTTP\/1.1 200/);
    const d = await fetch(`http://127.0.0.1:${port}${path(1)}`, { headers: { authorization: `Bearer ${other}` } });
    assert.equal(d.status, 429);
    assert.equal(((await d.json()) as { error: { code: string } }).error.code, 'OAK_TOO_MANY_STREAMS');
    for (const s of [a, b, c]) s.close();
    await waitFor(() => open.size === 0, { timeoutMs: 10_000, message: 'streams released' });
    const again = await openStream(port, path(0), tok);
    assert.match(again.head, /^HTTP\/1.1 200/);
    again.close();
    await waitFor(() => open.size === 0, { timeoutMs: 10_000, message: 'released' });
  });
});
