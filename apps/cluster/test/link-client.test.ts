/**
 * LinkClient's side of the trust boundary, against stand-in roots on TLS: it pins the CA named by
 * its join token, requires SAN oak-root, and says nothing (no hello, no token) to a root that
 * fails either check; checkWorkerToken times out as "unreachable".
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { LINK_CONNECT_METHOD, formatJoinToken } from '@oak/contracts';
import type { RootToCluster } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { caFingerprint, createCa, issueIdentity, type Ca } from '@oak/trust';
import { LinkClient } from '../src/index.ts';
import { MAX_PENDING_TOKEN_CHECKS, MAX_QUEUED_TOKEN_CHECKS } from '../src/link-client.ts';

interface StandIn {
  address: string;
  /** messages received from clusters */
  received: unknown[];
  close(): void;
}

async function standIn(ca: Ca, dnsNames: string[], onHello?: (call: grpc.ServerDuplexStream<unknown, RootToCluster>) => void): Promise<StandIn> {
  const id = await issueIdentity(ca, { commonName: 'root', dnsNames });
  const received: unknown[] = [];
  const server = new grpc.Server();
  server.addService({ Connect: LINK_CONNECT_METHOD }, {
    Connect: (call: grpc.ServerDuplexStream<unknown, RootToCluster>) => {
      call.on('data', (m: unknown) => {
        received.push(m);
        if ((m as { type?: string }).type === 'hello') onHello?.(call);
      });
      call.on('error', () => {});
    },
  });
  const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(id.chainPem), private_key: Buffer.from(id.keyPem) }], false);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));
  return { address: `127.0.0.1:${port}`, received, close: () => server.forceShutdown() };
}

const tokenFor = (ca: Ca): string => formatJoinToken({ kind: 'cluster', id: 'abcd1234', secret: randomBytes(24).toString('base64url'), caHash: caFingerprint(ca.certPem) });

const clients: LinkClient[] = [];
const roots: StandIn[] = [];
after(async () => {
  for (const c of clients) await c.close();
  for (const r of roots) r.close();
});

function client(address: string, token: string, tokenCheckTimeoutMs = 5000): LinkClient {
  const c = new LinkClient({
    address, token, clusterName: 'c1', clusterLocation: null, version: 't', initialBackoffMs: 20, maxBackoffMs: 100, tokenCheckTimeoutMs,
    handlers: { onWelcome: () => {}, onMessage: () => {} },
  });
  clients.push(c);
  c.start();
  return c;
}

test('a root whose certificate names another service (SAN oak-cluster) gets no hello, though its CA matches', async () => {
  const ca = await createCa();
  const r = await standIn(ca, ['oak-cluster']);
  roots.push(r);
  const c = client(r.address, tokenFor(ca));
  await waitFor(() => c.attempts >= 4, { message: 'several attempts' });
  assert.equal(c.connected, false);
  assert.deepEqual(r.received, [], 'nothing was sent to it');
  assert.ok(c.caPem, 'the CA itself matched the token');
});

test('a root presenting another CA: refused with both fingerprints, nothing sent', async () => {
  const [real, fake] = [await createCa(), await createCa()];
  const r = await standIn(fake, ['oak-root']);
  roots.push(r);
  const c = client(r.address, tokenFor(real));
  await waitFor(() => c.lastReject !== null, { message: 'refusal' });
  assert.match(c.lastReject ?? '', new RegExp(`presents a CA with fingerprint ${caFingerprint(fake.certPem)}, the join token expects ${caFingerprint(real.certPem)}`));
  assert.deepEqual(r.received, []);
  assert.equal(c.caPem, undefined);
});

test('the right root: hello carries the token and a P-256 public key; an unanswered token check is "unreachable"', async () => {
  const ca = await createCa();
  const r = await standIn(ca, ['oak-root'], (call) => call.write({ type: 'welcome', cluster_id: 'cid' }));
  roots.push(r);
  const token = tokenFor(ca);
  const c = client(r.address, token, 300);
  await waitFor(() => c.connected, { message: 'welcome' });
  const hello = r.received[0] as { type: string; token: string; public_key?: string };
  assert.equal(hello.type, 'hello');
  assert.equal(hello.token, token);
  assert.match(hello.public_key ?? '', /^-----BEGIN PUBLIC KEY-----/);
  const t0 = Date.now();
  const res = await c.checkWorkerToken('oak1.w.x', 'w1');
  assert.ok(!res.ok && /unreachable/.test(res.reason));
  assert.ok(Date.now() - t0 < 3000);
  assert.ok(r.received.some((m) => (m as { type?: string }).type === 'token_check'));
});

test('token checks beyond the root\'s slots wait in a queue and go out as answers come; beyond the queue, "unavailable" at once (retry), never a refused token', async () => {
  const ca = await createCa();
  let rootCall: grpc.ServerDuplexStream<unknown, RootToCluster> | undefined;
  const r = await standIn(ca, ['oak-root'], (call) => {
    rootCall = call;
    call.write({ type: 'welcome', cluster_id: 'cid' });
  });
  roots.push(r);
  const c = client(r.address, tokenFor(ca), 3000);
  await waitFor(() => c.connected, { message: 'welcome' });
  const sentChecks = (): { request_id: string; worker_id?: string }[] => r.received.filter((m) => (m as { type?: string }).type === 'token_check') as { request_id: string; worker_id?: string }[];
  const pending = Array.from({ length: MAX_PENDING_TOKEN_CHECKS }, (_, i) => c.checkWorkerToken('oak1.w.x', `w${i}`));
  const queued = Array.from({ length: MAX_QUEUED_TOKEN_CHECKS }, (_, i) => c.checkWorkerToken('oak1.w.x', `q${i}`));
  const over = await c.checkWorkerToken('oak1.w.x', 'one-too-many');
  assert.deepEqual(over, { ok: false, reason: 'too many registrations are being checked at once; try again in a moment', unavailable: true });
  await waitFor(() => sentChecks().length === MAX_PENDING_TOKEN_CHECKS, { message: 'the first 256 sent' });
  const first = sentChecks()[0];
  assert.equal(first?.worker_id, 'w0');
  rootCall?.write({ type: 'token_result', request_id: first?.request_id ?? '', ok: true, token_id: 'tok1' } as RootToCluster);
  assert.deepEqual(await pending[0], { ok: true, tokenId: 'tok1' });
  // its slot went to the oldest queued check
  await waitFor(() => sentChecks().length === MAX_PENDING_TOKEN_CHECKS + 1, { message: 'a queued check sent' });
  assert.equal(sentChecks()[MAX_PENDING_TOKEN_CHECKS]?.worker_id, 'q0');
  // no more answers: every other one ends "unreachable" (unavailable) at its deadline, none refused
  const rest = await Promise.all([...pending.slice(1), ...queued]);
  assert.ok(rest.every((x) => !x.ok && x.unavailable === true));
});
