/**
 * Slow requests are closed (issue 7, finding e): a request whose body (or headers) never arrive
 * is answered 408 and its connection closed after the request timeout, on the root API and on
 * the cluster's registration server; long answers (event streams) are not cut by it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '@oak/bus';
import { startCluster, type ClusterHandle } from '@oak/cluster';
import { waitFor } from '@oak/testkit';
import { testRoot, type TestRoot } from './helpers.ts';

const TIMEOUT_MS = 600;

interface Conn {
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
  write(s: string): void;
  destroy(): void;
}

function connect(port: number, first: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    let got = '';
    let closed = false;
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(first);
      resolve({ received: () => got, closed: closedP, isClosed: () => closed, write: (x) => s.write(x), destroy: () => s.destroy() });
    });
    const closedP = new Promise<void>((r) => s.on('close', () => ((closed = true), r())));
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('error', reject);
  });
}

/** A stalled body, a stalled header block, and a slow but complete body (which must work). */
async function checkServer(port: number, path: string, body: string, okStatus: RegExp, extraHeaders = ''): Promise<void> {
  const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n${extraHeaders}\r\n`;
  const stalled = await connect(port, head + body.slice(0, 5));
  const noHeaders = await connect(port, `POST ${path} HTTP/1.1\r\nHost: x\r\n`);
  // polled, with a generous guard: each must be closed by the server, not by us
  await waitFor(() => stalled.isClosed() && noHeaders.isClosed(), { timeoutMs: 20 * TIMEOUT_MS, message: 'the server closed the stalled connections' });
  assert.match(stalled.received(), /^HTTP\/1.1 408/);
  // a body that comes in pieces within the timeout is served
  const slow = await connect(port, head);
  for (const piece of [body.slice(0, Math.floor(body.length / 2)), body.slice(Math.floor(body.length / 2))]) {
    await new Promise((r) => setTimeout(r, TIMEOUT_MS / 6));
    slow.write(piece);
  }
  await waitFor(() => /\r\n\r\n/.test(slow.received()), { timeoutMs: 20 * TIMEOUT_MS, message: 'answer to the slow request' });
  assert.match(slow.received(), okStatus);
  slow.destroy();
}

describe('slow requests', () => {
  let t: TestRoot;
  let cluster: ClusterHandle;
  before(async () => {
    t = await testRoot({ appOptions: { requestTimeoutMs: TIMEOUT_MS, heartbeatMs: 100 } });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    cluster = await startCluster({ name: 'slowc', host: '127.0.0.1', port: 0, mqttPort: 0, log: silentLogger, requestTimeoutMs: TIMEOUT_MS });
  });
  after(async () => {
    await cluster.close();
    await t.close();
  });

  test('(e) the root API closes a request whose body never arrives; long answers stay open', async () => {
    const port = (t.app.server.address() as AddressInfo).port;
    const body = JSON.stringify({ username: 'Admin', password: 'wrong-password' });
    await checkServer(port, '/api/auth/login', body, /^HTTP\/1.1 401/);
    // an event stream lives on past the request timeout
    const tok = await t.login('Admin');
    const sse = await connect(port, `GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 3 * TIMEOUT_MS));
    assert.equal(sse.isClosed(), false, 'the event stream is still open');
    assert.match(sse.received(), /^HTTP\/1.1 200[\s\S]*: ping/);
    sse.destroy();
  });

  test('(e) the cluster registration server closes a request whose body never arrives', async () => {
    const port = cluster.port;
    const body = JSON.stringify({ node_name: 'w', host: '127.0.0.1', cpu_cores: 1, memory_mb: 1, arch: 'amd64', os: 'linux', virtualizations: ['container'] });
    await checkServer(port, '/api/node/register', body, /^HTTP\/1.1 (200|401)/);
  });
});
