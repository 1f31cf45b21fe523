/**
 * The in-process link (issue 9): a cluster in the root's own process joins through
 * `link.connectInProcess()` instead of gRPC + TLS. Only the transport differs: the hello needs the
 * cluster join token, what arrives is validated with the same limits, a closed stream marks the
 * cluster INACTIVE at once, and a closed root ends the cluster's stream.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@oak/bus';
import { LinkClient } from '@oak/cluster';
import type { LinkClientHandlers, LinkConnector } from '@oak/cluster';
import { MAX_LINK_MESSAGE_BYTES, decodeLinkMessage, formatJoinToken, tryParseJoinToken } from '@oak/contracts';
import type { RootToCluster } from '@oak/contracts';
import { createStore } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { IN_PROCESS_PEER, LINK_MAX_RECEIVE_BYTES, MAX_HELLO_BYTES, inProcessLinkPair, startRootLink, type RootLink } from '../src/link/index.ts';
import { startRoot, type RootHandle } from '../src/server.ts';
import { clusterJoinToken } from './join.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
});

interface Warned {
  obj: object;
  msg: string | undefined;
}

/** a root with its link (pings every 100 ms, but a silent cluster is dropped only after a minute) */
async function rootWithLink(): Promise<{ root: RootHandle; link: RootLink; warned: Warned[] }> {
  const store = await createStore({ sqlitePath: ':memory:' });
  let link: RootLink | undefined;
  const root = await startRoot({
    host: '127.0.0.1',
    port: 0,
    store,
    adminPassword: 'admin-secret-1',
    logLevel: 'silent',
    announce: () => {},
    control: async (ctx) => {
      link = await startRootLink(ctx, { host: '127.0.0.1', port: 0, pingIntervalMs: 100, pingTimeoutMs: 60_000 });
      return link.control;
    },
  });
  cleanups.push(async () => {
    await root.close();
    await store.close();
  });
  assert.ok(link);
  // the link's warnings (ctx.log is the root's pino logger, silent here)
  const warned: Warned[] = [];
  const log = root.ctx.log;
  assert.ok(log);
  const warn = log.warn.bind(log);
  log.warn = ((obj: object, msg?: string) => {
    warned.push({ obj, msg });
    warn(obj, msg);
  }) as typeof log.warn;
  return { root, link, warned };
}

interface Seen {
  welcomes: number;
  messages: RootToCluster[];
  downs: string[];
}

function inProcessClient(link: RootLink, token: string, name = 'local'): { client: LinkClient; seen: Seen } {
  const seen: Seen = { welcomes: 0, messages: [], downs: [] };
  const handlers: LinkClientHandlers = {
    onWelcome: () => seen.welcomes++,
    onMessage: (m) => seen.messages.push(m),
    onDown: (reason) => seen.downs.push(reason),
  };
  const connect: LinkConnector = (receiver) => link.link.connectInProcess(receiver);
  const client = new LinkClient({
    // nothing listens here: the stream goes through connect
    address: '127.0.0.1:9',
    connect,
    token,
    clusterName: name,
    clusterLocation: null,
    version: 'test',
    handlers,
    log: silentLogger,
    initialBackoffMs: 50,
    maxBackoffMs: 200,
  });
  cleanups.push(() => client.close());
  return { client, seen };
}

test('a cluster joins in process with its join token: ACTIVE, pinged, and its messages are copies', { timeout: 30_000 }, async () => {
  const { root, link } = await rootWithLink();
  const token = await clusterJoinToken(root.ctx, 'local');
  const { client, seen } = inProcessClient(link, token);
  client.start();
  await waitFor(() => (client.connected ? true : undefined), { timeoutMs: 10_000 });
  const id = client.clusterId;
  assert.ok(id !== null);
  assert.equal(seen.welcomes, 1);
  assert.ok(link.link.isConnected(id));
  assert.equal((await root.ctx.store.getCluster(id))?.status, 'ACTIVE');
  // the root's pings are answered (rtt measured), as over gRPC
  await waitFor(() => (link.link.rttMs(id) !== undefined ? true : undefined), { timeoutMs: 5000 });
  // the root keeps its object: what the cluster gets is a decoded copy taken at the write
  const msg: RootToCluster = { type: 'undeploy', job_name: 'app.ns.svc.ns', instance_number: 3 };
  assert.equal(link.link.send(id, msg), true);
  msg.instance_number = 99;
  const got = await waitFor(() => seen.messages.find((m) => m.type === 'undeploy'), { timeoutMs: 5000 });
  assert.deepEqual(got, { type: 'undeploy', job_name: 'app.ns.svc.ns', instance_number: 3 });
  assert.notEqual(got, msg);
});

test('a wrong, revoked or foreign join token is refused over the in-process link as over gRPC', { timeout: 30_000 }, async () => {
  const { root, link } = await rootWithLink();
  const good = await clusterJoinToken(root.ctx, 'local');
  const parsed = tryParseJoinToken(good);
  assert.ok(parsed);
  const wrongSecret = formatJoinToken({ ...parsed, secret: 'x'.repeat(parsed.secret.length) });
  const other = await clusterJoinToken(root.ctx, 'other');
  const revoked = await clusterJoinToken(root.ctx, 'gone');
  const revokedId = tryParseJoinToken(revoked)?.id;
  assert.ok(revokedId !== undefined);
  await root.ctx.store.revokeJoinToken(revokedId);
  for (const [token, name] of [
    [wrongSecret, 'local'],
    [other, 'local'],
    [revoked, 'gone'],
  ] as const) {
    const { client, seen } = inProcessClient(link, token, name);
    client.start();
    await waitFor(() => (client.lastReject !== null ? true : undefined), { timeoutMs: 10_000 });
    assert.equal(client.connected, false, `${name}: not connected`);
    assert.equal(seen.welcomes, 0);
    await client.close();
  }
  assert.deepEqual(link.link.connectedClusters(), []);
  // nothing was created for the refused names
  assert.deepEqual((await root.ctx.store.listClusters()).map((c) => c.name), []);
});

test('the in-process stream is bounded like a gRPC one: hello first, hello size, message size', { timeout: 30_000 }, async () => {
  const { root, link } = await rootWithLink();
  const token = await clusterJoinToken(root.ctx, 'local');
  const receiver = { maxBytes: MAX_LINK_MESSAGE_BYTES, decode: decodeLinkMessage };
  const open = (): { got: unknown[]; ended: Promise<void>; end: ReturnType<RootLink['link']['connectInProcess']> } => {
    const end = link.link.connectInProcess(receiver);
    const got: unknown[] = [];
    end.on('data', (m) => got.push(m));
    const ended = new Promise<void>((resolve) => end.on('close', () => resolve()));
    end.on('error', () => {});
    return { got, ended, end };
  };
  const hello = { type: 'hello', token, cluster_name: 'local', cluster_location: null, version: 'test' } as const;

  const notHello = open();
  notHello.end.write({ type: 'pong', t: 1 });
  await notHello.ended;
  assert.deepEqual(notHello.got, [{ type: 'reject', reason: 'the first message must be hello' }]);

  const big = open();
  big.end.write({ ...hello, version: 'v'.repeat(MAX_HELLO_BYTES) });
  await big.ended;
  assert.match(String((big.got[0] as { reason?: string }).reason), /first message must be a hello of at most/);

  // a welcomed stream that sends more than the root reads fails (RESOURCE_EXHAUSTED over gRPC) and the cluster is INACTIVE
  const ok = open();
  ok.end.write(hello);
  await waitFor(() => (link.link.connectedClusters().length === 1 ? true : undefined), { timeoutMs: 10_000 });
  const id = link.link.connectedClusters()[0];
  assert.ok(id !== undefined);
  assert.equal(ok.end.write({ type: 'logs_end', request_id: 'r'.repeat(LINK_MAX_RECEIVE_BYTES), reason: 'x' } as never), false);
  await ok.ended;
  assert.equal(link.link.isConnected(id), false);
  await waitFor(async () => ((await root.ctx.store.getCluster(id))?.status === 'INACTIVE' ? true : undefined), { timeoutMs: 5000 });
});

test('an invalid message in process is dropped by the same validation, the session stays', { timeout: 30_000 }, async () => {
  const { root, link, warned } = await rootWithLink();
  const token = await clusterJoinToken(root.ctx, 'local');
  const end = link.link.connectInProcess({ maxBytes: MAX_LINK_MESSAGE_BYTES, decode: decodeLinkMessage });
  end.on('error', () => {});
  end.write({ type: 'hello', token, cluster_name: 'local', cluster_location: null, version: 'test' });
  await waitFor(() => (link.link.connectedClusters().length === 1 ? true : undefined), { timeoutMs: 10_000 });
  end.write({ type: 'instance_status', job_name: 42 } as never);
  await waitFor(() => (warned.some((w) => w.msg === 'link: invalid message dropped') ? true : undefined), { timeoutMs: 5000 });
  assert.equal(link.link.connectedClusters().length, 1);
  end.cancel();
});

test('closing the cluster marks it disconnected on the root at once (no ping timeout)', { timeout: 30_000 }, async () => {
  const { root, link } = await rootWithLink();
  const token = await clusterJoinToken(root.ctx, 'local');
  const { client } = inProcessClient(link, token);
  client.start();
  await waitFor(() => (client.connected ? true : undefined), { timeoutMs: 10_000 });
  const id = client.clusterId;
  assert.ok(id !== null);
  const events: string[] = [];
  const unsubscribe = root.ctx.events.subscribe((e) => {
    if (e.type === 'cluster') events.push(e.action);
  });
  cleanups.push(unsubscribe);
  const t0 = Date.now();
  await client.close();
  // the ping timeout is a minute: only the stream's close can do this
  await waitFor(async () => (!link.link.isConnected(id) && (await root.ctx.store.getCluster(id))?.status === 'INACTIVE' ? true : undefined), { timeoutMs: 5000, intervalMs: 5 });
  assert.ok(Date.now() - t0 < 2000, `disconnected after ${Date.now() - t0} ms`);
  await waitFor(() => (events.includes('disconnected') ? true : undefined), { timeoutMs: 5000 });
});

test('closing the root ends the cluster\'s stream: it is down at once and retries without crashing', { timeout: 30_000 }, async () => {
  const { root, link } = await rootWithLink();
  const token = await clusterJoinToken(root.ctx, 'local');
  const { client, seen } = inProcessClient(link, token);
  client.start();
  await waitFor(() => (client.connected ? true : undefined), { timeoutMs: 10_000 });
  const before = client.attempts;
  await link.link.close();
  await waitFor(() => (seen.downs.length > 0 ? true : undefined), { timeoutMs: 2000, intervalMs: 5 });
  assert.equal(client.connected, false);
  assert.match(seen.downs[0] ?? '', /root (ended the stream|closed)|stream (closed|error)/);
  // it dials again (and is refused: the root is gone), as a cluster whose root went away
  await waitFor(() => (client.attempts > before + 1 ? true : undefined), { timeoutMs: 5000 });
  assert.equal(client.connected, false);
});

test('the in-process pair: later than the writer\'s promise chain, in order, copies, and ends like a gRPC call', async () => {
  const decoded: string[] = [];
  const pair = inProcessLinkPair(
    { maxBytes: 1000, decode: (b) => (decoded.push('root'), decodeLinkMessage(b)) },
    { maxBytes: 200, decode: (b) => (decoded.push('cluster'), decodeLinkMessage(b)) },
  );
  const events: string[] = [];
  for (const ev of ['data', 'end', 'error', 'close', 'cancelled'] as const) {
    pair.root.on(ev, (x: unknown) => events.push(`root ${ev}${ev === 'data' ? ` ${(x as { type: string }).type}` : ''}`));
    pair.cluster.on(ev, (x: unknown) => events.push(`cluster ${ev}${ev === 'data' ? ` ${(x as { type: string }).type}` : ''}`));
  }
  assert.equal(pair.root.write({ type: 'ping', t: 1 }), true);
  assert.equal(pair.cluster.write({ type: 'pong', t: 1 }), true);
  assert.equal(pair.root.write({ type: 'ping', t: 2 }), true);
  // not within the writer's call nor its promise chain (what a socket gives too)
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.deepEqual(events, []);
  assert.deepEqual(decoded, [], 'decoded by the reader, when it reads');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(events, ['cluster data ping', 'root data pong', 'cluster data ping']);
  // over the cluster's limit: the call fails on both ends (RESOURCE_EXHAUSTED over gRPC)
  assert.equal(pair.root.write({ type: 'logs_cancel', request_id: 'r'.repeat(300) }), false);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(events.slice(3), ['root error', 'root close', 'cluster error', 'cluster close']);
  assert.equal(pair.cluster.write({ type: 'pong', t: 3 }), false, 'nothing goes into a failed call');

  // the root ends the call: the cluster sees the stream end; the cluster cancels: the root sees it cancelled
  const a = inProcessLinkPair({ maxBytes: 1000, decode: decodeLinkMessage }, { maxBytes: 1000, decode: decodeLinkMessage });
  const seenA: string[] = [];
  a.cluster.on('end', () => seenA.push('end'));
  a.cluster.on('close', () => seenA.push('close'));
  a.root.end();
  assert.equal(a.root.write({ type: 'ping', t: 1 }), false);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seenA, ['end', 'close']);
  const b = inProcessLinkPair({ maxBytes: 1000, decode: decodeLinkMessage }, { maxBytes: 1000, decode: decodeLinkMessage });
  const seenB: string[] = [];
  b.root.on('cancelled', () => seenB.push('cancelled'));
  b.root.on('close', () => seenB.push('close'));
  b.cluster.cancel();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seenB, ['cancelled', 'close']);
  assert.equal(b.root.cancelled, true);
  assert.equal(b.root.write({ type: 'ping', t: 1 }), false);
  assert.equal(b.root.getPeer(), IN_PROCESS_PEER);
});
