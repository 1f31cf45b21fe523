/**
 * The link's trust boundary with a real root and real LinkClients over TLS: welcome with a
 * certificate and the MQTT secret, worker token checks, revoke_workers, impostor clusters (wrong
 * token, right token under another name, another CA) refused with nothing changed, and the caps
 * on streams that have not said hello.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPublicKey, randomBytes } from 'node:crypto';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { LinkClient } from '@oak/cluster';
import type { WelcomeMessage } from '@oak/cluster';
import { formatJoinToken, parseClusterToRoot, parseJoinToken } from '@oak/contracts';
import type { RootToCluster, TokenPair } from '@oak/contracts';
import { createStore, type Store } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { pinnedTlsOptions } from '@oak/trust';
import { MAX_HELLO_BYTES, MAX_PENDING_STREAMS, LINK_MAX_RECEIVE_BYTES, linkControl, type LinkControlPlane } from '../src/link/index.ts';
import { startRoot, type RootHandle } from '../src/server.ts';
import { clusterMqttSecret, mintJoinToken, rootTrust } from '../src/trust.ts';
import { clusterJoinToken, rawLinkCall, workerJoinToken } from './join.ts';

const ADMIN_PASSWORD = 'admin-secret-1';

interface Recorder {
  client: LinkClient;
  welcomes: WelcomeMessage[];
  messages: RootToCluster[];
}

describe('link trust boundary', () => {
  let store: Store;
  let root: RootHandle;
  let control: LinkControlPlane;
  let address: string;
  let apiToken: string;
  const clients: LinkClient[] = [];

  const connect = (name: string, token: string, extra: { maxBackoffMs?: number } = {}): Recorder => {
    const welcomes: WelcomeMessage[] = [];
    const messages: RootToCluster[] = [];
    const client = new LinkClient({
      address,
      token,
      clusterName: name,
      clusterLocation: null,
      version: 'test',
      initialBackoffMs: 50,
      maxBackoffMs: extra.maxBackoffMs ?? 300,
      tokenCheckTimeoutMs: 2000,
      handlers: { onWelcome: (w) => welcomes.push(w), onMessage: (m) => messages.push(m) },
    });
    clients.push(client);
    client.start();
    return { client, welcomes, messages };
  };

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${root.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
  };

  /** what an impostor could change */
  const snapshot = async (): Promise<string> => JSON.stringify({ clusters: await store.listClusters(), tokens: await store.listJoinTokens() });

  before(async () => {
    store = await createStore({ sqlitePath: ':memory:' });
    root = await startRoot({
      host: '127.0.0.1',
      port: 0,
      store,
      adminPassword: ADMIN_PASSWORD,
      logLevel: 'silent',
      announce: () => {},
      control: linkControl({ host: '127.0.0.1', port: 0, graceMs: 60_000, pingIntervalMs: 200, pingTimeoutMs: 2000 }),
    });
    control = root.ctx.control as LinkControlPlane;
    address = control.link.address;
    const login = await fetch(`${root.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: ADMIN_PASSWORD }) });
    apiToken = ((await login.json()) as TokenPair).token;
  });
  after(async () => {
    for (const c of clients) await c.close();
    await root.close();
    await store.close();
  });

  test('welcome: a certificate for the cluster key (SAN oak-cluster + name) from the root CA, and a stable MQTT secret', async () => {
    const trust = await rootTrust(root.ctx);
    assert.equal(control.link.caHash, trust.caHash);
    const east = connect('east', await clusterJoinToken(root.ctx, 'east'));
    await waitFor(() => east.welcomes.length === 1, { message: 'welcome' });
    const w = east.welcomes[0];
    assert.ok(w?.tls && w.mqtt_secret);
    assert.equal(east.client.caPem, trust.ca.certPem.trim() + '\n');
    assert.equal(w.mqtt_secret, clusterMqttSecret(trust, w.cluster_id));
    assert.equal(w.tls.ca, trust.ca.certPem);
    const leaf = new X509Certificate(w.tls.cert);
    assert.ok(leaf.verify(new X509Certificate(trust.ca.certPem).publicKey));
    assert.match(leaf.subjectAltName ?? '', /DNS:oak-cluster/);
    assert.match(leaf.subjectAltName ?? '', /DNS:east/);
    assert.equal(
      leaf.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
      createPublicKey(east.client.privateKeyPem).export({ type: 'spki', format: 'der' }).toString('hex'),
    );
    // usable as is: a TLS server with welcome.tls.cert + the client's key passes pinned verification
    const srv = tls.createServer({ key: east.client.privateKeyPem, cert: w.tls.cert }, (s) => s.end('ok'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ...pinnedTlsOptions(w.tls?.ca ?? '', 'oak-cluster') }, () => {
          s.once('data', (d: Buffer) => resolve(d.toString()));
        });
        s.on('error', reject);
      });
      assert.equal(got, 'ok');
    } finally {
      srv.close();
    }
    const row = (await store.listJoinTokens()).find((t) => t.name === 'east');
    assert.equal(row?.uses, 1);
  });

  test('checkWorkerToken: valid for this cluster only, not revoked or expired; recorded; unreachable when down', async () => {
    const west = connect('west', await clusterJoinToken(root.ctx, 'west'));
    await waitFor(() => west.client.connected, { message: 'west connected' });
    const good = await workerJoinToken(root.ctx, 'west');
    const r = await west.client.checkWorkerToken(good.token, 'worker-1');
    assert.deepEqual(r, { ok: true, tokenId: good.id });
    const row = await store.getJoinToken(good.id);
    assert.equal(row?.uses, 1);
    assert.ok(row?.last_used_at);

    const other = await workerJoinToken(root.ctx, 'east');
    const expired = await workerJoinToken(root.ctx, 'west', -1);
    const revoked = await workerJoinToken(root.ctx, 'west');
    assert.equal((await api('DELETE', `/api/tokens/${revoked.id}`)).status, 200);
    const t = parseJoinToken(good.token);
    const forged = formatJoinToken({ ...t, secret: randomBytes(24).toString('base64url') });
    const cases: [string, RegExp][] = [
      [other.token, /another cluster/],
      [expired.token, /expired/],
      [revoked.token, /revoked/],
      [forged, /unknown join token/],
      [await clusterJoinToken(root.ctx, 'west'), /cluster join token, not a worker/],
      ['x'.repeat(10_000), /not an oak join token/],
      ['', /not an oak join token/],
    ];
    for (const [text, reason] of cases) {
      const c = await west.client.checkWorkerToken(text, 'w');
      assert.ok(!c.ok && reason.test(c.reason), `${text.slice(0, 30)}: ${JSON.stringify(c)}`);
    }
    assert.equal((await store.getJoinToken(other.id))?.uses, 0, 'a refused check records nothing');
    await west.client.close();
    const down = await west.client.checkWorkerToken(good.token);
    assert.ok(!down.ok && /unreachable/.test(down.reason));
  });

  test('revoking a worker token sends revoke_workers to every connected cluster', async () => {
    const a = connect('rev-a', await clusterJoinToken(root.ctx, 'rev-a'));
    const b = connect('rev-b', await clusterJoinToken(root.ctx, 'rev-b'));
    await waitFor(() => a.client.connected && b.client.connected, { message: 'both connected' });
    const w = await workerJoinToken(root.ctx, 'rev-a');
    const res = await api('DELETE', `/api/tokens/${w.id}`);
    assert.equal(res.status, 200);
    for (const c of [a, b]) {
      await waitFor(() => c.messages.some((m) => m.type === 'revoke_workers' && m.token_id === w.id), { message: 'revoke_workers' });
    }
    // revoking a cluster token sends nothing of the kind
    const ct = await mintJoinToken(store, await rootTrust(root.ctx), { kind: 'cluster', name: 'unused' });
    assert.equal((await api('DELETE', `/api/tokens/${ct.row.id}`)).status, 200);
    await control.idle();
    assert.equal(a.messages.filter((m) => m.type === 'revoke_workers').length, 1);
    await a.client.close();
    // revoking a cluster's own token disconnects it, and it cannot come back
    const bToken = (await store.listJoinTokens({ kind: 'cluster' })).find((x) => x.name === 'rev-b');
    assert.ok(bToken);
    assert.equal((await api('DELETE', `/api/tokens/${bToken.id}`)).status, 200);
    await waitFor(() => !b.client.connected && /revoked/.test(b.client.lastReject ?? ''), { message: 'rev-b dropped' });
    await waitFor(async () => (await store.listClusters()).find((c) => c.name === 'rev-b')?.status === 'INACTIVE', { message: 'rev-b INACTIVE' });
    await b.client.close();
  });

  test('attack: impostor clusters are refused, the store does not change and they receive nothing', async () => {
    // the real cluster, connected, with an application placed on it
    const realToken = await clusterJoinToken(root.ctx, 'prod');
    const real = connect('prod', realToken);
    await waitFor(() => real.client.connected, { message: 'prod connected' });
    const prodId = real.client.clusterId ?? '';
    const spare = await mintJoinToken(store, await rootTrust(root.ctx), { kind: 'cluster' });
    const worker = await workerJoinToken(root.ctx, 'prod');
    const before = await snapshot();
    const t = parseJoinToken(realToken);
    const attempts: [string, string, RegExp][] = [
      ['prod', formatJoinToken({ ...t, secret: randomBytes(24).toString('base64url') }), /unknown join token/],
      ['evil', realToken, /bound to another cluster name/],
      ['prod', spare.token, /belongs to another join token/],
      ['prod', formatJoinToken({ ...t, caHash: 'ab'.repeat(32) }), /presents a CA with fingerprint [0-9a-f]{64}, the join token expects (ab){32}/],
      ['prod', worker.token, /worker token/],
      ['prod', 'shared-secret-of-old', /no valid join token/],
    ];
    for (const [name, token, reason] of attempts) {
      const imp = connect(name, token, { maxBackoffMs: 5000 });
      await waitFor(() => imp.client.lastReject !== null, { message: `refusal of ${name} with ${token.slice(0, 12)}` });
      assert.match(imp.client.lastReject ?? '', reason);
      assert.equal(imp.client.connected, false);
      await imp.client.close();
      assert.deepEqual(imp.welcomes, []);
      assert.deepEqual(imp.messages, [], 'an impostor receives nothing (not even a sync)');
    }
    assert.ok((await snapshot()) === before, 'clusters and tokens unchanged');
    assert.ok(control.link.isConnected(prodId), 'the real cluster is still connected');
    // an accepted cluster gets at least a sync (its desired set) right after welcome; the real one did
    assert.ok(real.messages.some((m) => m.type === 'sync'));
    await real.client.close();
  });

  test('streams that have not said hello: first message must be a small hello; hostile keys refused; too many pending refused', async () => {
    const token = await clusterJoinToken(root.ctx, 'capped');
    await waitFor(async () => (await store.listClusters()).every((c) => c.name === 'east' || c.status === 'INACTIVE'), { message: 'earlier clusters gone' });
    const before = await snapshot();
    const firstReject = async (msg: unknown): Promise<string> => {
      const { client, call } = await rawLinkCall(root.ctx, address);
      try {
        return await new Promise<string>((resolve, reject) => {
          call.on('data', (m: { type?: string; reason?: string }) => {
            if (m.type === 'reject') resolve(m.reason ?? '');
          });
          call.on('error', (e: Error) => reject(e));
          call.write(msg);
        });
      } finally {
        call.cancel();
        client.close();
      }
    };
    assert.match(await firstReject({ type: 'pong', t: 1 }), /first message must be hello/);
    assert.match(await firstReject({ type: 'hello', token, cluster_name: 'capped', cluster_location: 'x'.repeat(MAX_HELLO_BYTES), version: 't' }), new RegExp(`at most ${MAX_HELLO_BYTES} bytes`));
    assert.match(await firstReject({ type: 'hello', token, cluster_name: 'capped', cluster_location: null, version: 't', public_key: 'not a key' }), /public_key/);

    // a message over the receive limit is refused by gRPC from its length prefix
    {
      const { client, call } = await rawLinkCall(root.ctx, address);
      const err = await new Promise<Error & { code?: number }>((resolve) => {
        call.on('error', resolve);
        call.on('data', () => {});
        call.write({ type: 'hello', token, cluster_name: 'capped', cluster_location: 'y'.repeat(LINK_MAX_RECEIVE_BYTES + 10), version: 't' });
      });
      assert.equal(err.code, 8, String(err)); // RESOURCE_EXHAUSTED
      client.close();
    }

    // MAX_PENDING_STREAMS silent streams: the next one is refused at once
    const silent: { close(): void }[] = [];
    try {
      for (let i = 0; i < MAX_PENDING_STREAMS; i++) {
        const { client, call } = await rawLinkCall(root.ctx, address, { ownConnection: true });
        call.on('error', () => {});
        call.on('data', () => {});
        call.write({ type: 'hello-not-yet' });
        silent.push({ close: () => { call.cancel(); client.close(); } });
      }
      // the invalid messages above are dropped: those streams still wait for their hello
      const { client, call } = await rawLinkCall(root.ctx, address, { ownConnection: true });
      const reason = await new Promise<string>((resolve, reject) => {
        call.on('data', (m: { type?: string; reason?: string }) => m.type === 'reject' && resolve(m.reason ?? ''));
        call.on('error', reject);
        call.write({ type: 'hello', token, cluster_name: 'capped', cluster_location: null, version: 't' });
      });
      assert.match(reason, /too many streams waiting/);
      call.cancel();
      client.close();
    } finally {
      for (const s of silent) s.close();
    }
    assert.ok((await snapshot()) === before, 'nothing changed');
    // once they are gone, a proper hello is welcome again
    const ok = connect('capped', token);
    await waitFor(() => ok.client.connected, { message: 'capped connects after the flood' });
    await ok.client.close();
  });

  test('fuzz: hostile first messages on fresh streams change nothing and leak no pending slot', async () => {
    const fc = (await import('fast-check')).default;
    await waitFor(async () => (await store.listClusters()).every((c) => c.name === 'east' || c.status === 'INACTIVE'), { message: 'earlier clusters gone' });
    const before = await snapshot();
    const realToken = await clusterJoinToken(root.ctx, 'fuzzed');
    const before2 = await snapshot();
    const hello = fc.record({
      type: fc.constant('hello'),
      token: fc.oneof(fc.string({ maxLength: 600 }), fc.constant(realToken.slice(0, -1) + '0'), fc.constant(realToken.replace('oak1.c.', 'oak1.w.'))),
      cluster_name: fc.oneof(fc.string({ maxLength: 80 }), fc.constant('east')),
      cluster_location: fc.oneof(fc.constant(null), fc.string({ maxLength: 50 })),
      version: fc.string({ maxLength: 10 }),
      public_key: fc.option(fc.string({ maxLength: 300 }), { nil: undefined }),
    }, { requiredKeys: ['type'] });
    const msg = fc.oneof(fc.anything({ maxDepth: 3 }), hello, fc.record({ type: fc.constantFrom('token_check', 'aggregate', 'logs_data', 'pong'), request_id: fc.string(), token: fc.string() }));
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(msg, async (m) => {
        const { client, call } = await rawLinkCall(root.ctx, address);
        const got = new Promise<void>((resolve) => {
          call.on('data', (x: { type?: string }) => {
            assert.notEqual(x.type, 'welcome', `welcomed: ${JSON.stringify(m).slice(0, 200)}`);
            if (x.type === 'reject') refused++;
            resolve();
          });
          call.on('error', () => resolve());
          call.on('end', () => resolve());
        });
        call.write(m === undefined || m === null ? 0 : m);
        // a valid hello, or a valid message that is not a hello, is answered (reject); an invalid one is dropped (no waiting for the hello timeout)
        let answered = false;
        try {
          parseClusterToRoot(JSON.parse(JSON.stringify(m ?? 0)));
          answered = true;
        } catch {
          answered = false;
        }
        if (answered) await got;
        call.cancel();
        client.close();
      }),
      { numRuns: 120 },
    );
    assert.ok(refused > 0);
    assert.ok((await snapshot()) === before2, 'nothing changed');
    assert.ok(before2.length >= before.length);
    assert.equal((await fetch(`${root.url}/healthz`)).status, 200);
    // every slot came back: a real cluster still gets in
    const ok = connect('fuzzed', realToken);
    await waitFor(() => ok.client.connected, { message: 'connects after the fuzz' });
    await ok.client.close();
  });
});
