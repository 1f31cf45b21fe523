/**
 * Several roots on one PostgreSQL schema (lead/): exactly one leads the control plane; another
 * takes over within 5 s when the leader stops renewing (a crash: the lease is not released) and
 * at once when it closes cleanly; an API write on a follower reaches the leader's control plane;
 * SSE on a follower sees what the leader publishes (a huge event as a reference re-read from the
 * store); a cluster that dials a follower is redirected to the leader's link and comes back to
 * its configured root when that leader goes. (PostgreSQL at OAK_TEST_PG_URL or 127.0.0.1:5432/test.)
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import pg from 'pg';
import { LinkClient } from '@oak/cluster';
import { parseJoinToken, type ApplicationDoc, type OakEvent, type TokenPair } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { linkControl } from '../src/link/index.ts';
import { startRoot, type RootConfig, type RootHandle } from '../src/server.ts';
import type { ControlPlane } from '../src/control.ts';
import { RecordingControl, sla } from './helpers.ts';
import { clusterJoinToken } from './join.ts';

const PG_URL = process.env.OAK_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const PASSWORD = 'lead-password-1';
const schemas: string[] = [];
const schema = (): string => {
  const s = `oak_lead_${process.pid}_${randomBytes(4).toString('hex')}`;
  schemas.push(s);
  return s;
};
after(async () => {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  for (const s of schemas) await c.query(`drop schema if exists "${s}" cascade`);
  await c.end();
});

/** a free loopback port (bound and let go: the root binds it next) */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A recording control plane that knows whether it is open (started by the root that leads). */
class FakeControl extends RecordingControl implements ControlPlane {
  open = true;
  async close(): Promise<void> {
    this.open = false;
  }
}

interface Root {
  name: string;
  handle: RootHandle;
  /** every control plane this root started (one per time it led) */
  controls: FakeControl[];
  token: string;
}

const base = (s: string): RootConfig => ({ host: '127.0.0.1', port: 0, logLevel: 'silent', announce: () => {}, databaseUrl: PG_URL, pgSchema: s, adminPassword: PASSWORD, app: { heartbeatMs: 200 } });

async function login(url: string): Promise<string> {
  const r = await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin', password: PASSWORD }) });
  assert.equal(r.status, 200);
  return ((await r.json()) as TokenPair).token;
}

async function call<T>(root: Root, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(root.handle.url + path, {
    method,
    headers: { authorization: `Bearer ${root.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
}

async function startFakeRoot(s: string, name: string): Promise<Root> {
  const controls: FakeControl[] = [];
  const handle = await startRoot({
    ...base(s),
    control: () => {
      const c = new FakeControl();
      controls.push(c);
      return c;
    },
    lead: { linkUrl: `127.0.0.1:1`, holder: `${name}-${randomBytes(3).toString('hex')}` },
  });
  return { name, handle, controls, token: await login(handle.url) };
}

const leaders = (roots: Root[]): Root[] => roots.filter((r) => r.handle.lead?.role === 'leader');
const openControls = (roots: Root[]): FakeControl[] => roots.flatMap((r) => r.controls.filter((c) => c.open));

async function readEvents(res: Response, want: (e: OakEvent) => boolean, timeoutMs = 5000): Promise<OakEvent | undefined> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const chunk = await Promise.race([reader.read(), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), deadline - Date.now()))]);
      if (chunk === 'timeout' || chunk.done) return undefined;
      buf += dec.decode(chunk.value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (!data) continue;
        const e = JSON.parse(data.slice(6)) as OakEvent;
        if (want(e)) return e;
      }
    }
    return undefined;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

describe('three roots on one PostgreSQL', () => {
  test('one leads; writes and events cross roots; a crashed leader is replaced within 5 s, a closed one at once', async () => {
    const s = schema();
    // the first start creates the schema; the others join it
    const roots: Root[] = [await startFakeRoot(s, 'r1')];
    roots.push(...(await Promise.all([startFakeRoot(s, 'r2'), startFakeRoot(s, 'r3')])));
    try {
      assert.equal(leaders(roots).length, 1, `exactly one leads: ${roots.map((r) => `${r.name}=${r.handle.lead?.role}`).join(' ')}`);
      const leader = leaders(roots)[0]!;
      assert.equal(openControls(roots).length, 1, 'only the leader runs a control plane');
      // one open control plane on the leader (a leader whose renewal came late under load may have led twice; the old one is closed)
      assert.equal(leader.controls.filter((c) => c.open).length, 1, `control planes of the leader: ${leader.controls.length}`);
      const followers = roots.filter((r) => r !== leader);
      for (const f of followers) {
        assert.equal(f.handle.lead?.leader?.holder, leader.handle.lead?.holder);
        assert.equal(f.handle.lead?.leader?.api_url, leader.handle.url);
      }

      // an API write on a follower reaches the leader's control plane
      const f1 = followers[0]!;
      const app = (await call<ApplicationDoc[]>(f1, 'POST', '/api/application/', sla('leadapp'))).body[0]!;
      const sid = app.microservices[0]!;
      assert.equal((await call(f1, 'POST', `/api/service/${sid}/instance`)).status, 200);
      const got = await waitFor(() => leader.controls[0]!.requested.find((x) => x.service.id === sid), { timeoutMs: 5000 });
      assert.deepEqual(got.instances.map((i) => i.instance_number), [0]);
      assert.equal(got.instances[0]?.status, 'REQUESTED');
      assert.equal(f1.controls.length, 0, 'the follower placed nothing');
      // an undeploy too (the follower deletes the row: the leader gets it from the payload)
      assert.equal((await call(f1, 'DELETE', `/api/service/${sid}/instance/0`)).status, 200);
      const undeployed = await waitFor(() => leader.controls[0]!.undeployed.find((x) => x.service.id === sid), { timeoutMs: 5000 });
      assert.deepEqual(undeployed.instances.map((i) => i.instance_number), [0]);

      // SSE on a follower sees an instance event published on the leader (plain, and one too big for a notify)
      const f2 = followers[1]!;
      const stream = await fetch(`${f2.handle.url}/api/events?types=instance`, { headers: { authorization: `Bearer ${f2.token}` } });
      assert.equal(stream.status, 200);
      await new Promise((r) => setTimeout(r, 100)); // subscribed (the connected comment came)
      assert.equal((await call(leader, 'POST', `/api/service/${sid}/instance`)).status, 200);
      const e = await readEvents(stream, (x) => x.type === 'instance' && x.microserviceID === sid && x.instance.instance_number === 1);
      assert.ok(e, 'the follower streamed the leader event');
      // an SLA change on a follower: the leader's control plane is told, with the stored row
      assert.equal((await call(f1, 'PUT', `/api/service/${sid}`, { memory: 64 })).status, 200);
      const updated = await waitFor(() => leader.controls[0]!.updated.find((x) => x.id === sid), { timeoutMs: 5000 });
      assert.equal((updated.sla as { memory?: number }).memory, 64);

      // logs on a follower: 503 naming the leader's API
      const logs = await call<{ error: { code?: string; hint?: string } }>(f1, 'GET', `/api/service/${sid}/instance/1/logs`);
      assert.equal(logs.status, 503, JSON.stringify(logs.body));
      assert.equal(logs.body.error.code, 'OAK_UNAVAILABLE');
      assert.ok(logs.body.error.hint?.includes(leader.handle.url), JSON.stringify(logs.body));

      const row = (await leader.handle.ctx.store.listInstances({ service_id: sid })).find((i) => i.instance_number === 1)!;
      const stream2 = await fetch(`${f2.handle.url}/api/events?types=instance`, { headers: { authorization: `Bearer ${f2.token}` } });
      await new Promise((r) => setTimeout(r, 100));
      leader.handle.ctx.events.publish({ type: 'instance', microserviceID: sid, applicationID: app.applicationID, job_name: 'x', instance: { ...(await import('../src/docs.ts')).instanceDoc(row), status_detail: 'y'.repeat(20_000) } });
      const big = await readEvents(stream2, (x) => x.type === 'instance' && x.instance.instance_number === 1);
      assert.ok(big && big.type === 'instance');
      assert.equal(big.instance.status_detail, row.status_detail, 'the reference was re-read from the store');
      assert.ok((leader.handle.lead?.events.stats.refs ?? 0) >= 1);

      // a crash: the leader stops renewing and keeps the lease row; another leads within 5 s
      const t0 = Date.now();
      await leader.handle.lead!.close({ release: false });
      const rest = followers;
      const next = await waitFor(() => leaders(rest)[0], { timeoutMs: 6000, intervalMs: 20 });
      const took = Date.now() - t0;
      assert.ok(took < 5000, `taken over after ${took} ms`);
      assert.ok(took >= 1500, `not before the crashed leader's lease ran out (${took} ms)`);
      await next.handle.lead!.settled();
      assert.equal(openControls(roots).length, 1, 'one control plane again');
      assert.equal(leaders(rest).length, 1);
      const other = rest.find((r) => r !== next)!;
      await waitFor(() => other.handle.lead?.leader?.holder === next.handle.lead?.holder, { timeoutMs: 3000 });

      // a clean close releases: the last one leads within about one renewal
      const t1 = Date.now();
      await next.handle.close();
      await waitFor(() => other.handle.lead?.role === 'leader', { timeoutMs: 3000, intervalMs: 20 });
      assert.ok(Date.now() - t1 < 2000, `handed over in ${Date.now() - t1} ms`);
      await other.handle.lead!.settled();
      assert.equal(other.controls.filter((c) => c.open).length, 1);
    } finally {
      for (const r of roots) await r.handle.close();
    }
    assert.equal(openControls(roots).length, 0, 'every control plane closed');
  });
});

describe('one root on SQLite', () => {
  test('always leads: no lease loop, its control plane runs from the start', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'oak-lead-sqlite-'));
    const c = new FakeControl();
    const r = await startRoot({ host: '127.0.0.1', port: 0, logLevel: 'silent', announce: () => {}, dataDir: dir, adminPassword: PASSWORD, control: () => c });
    try {
      assert.equal(r.lead, undefined);
      assert.equal(r.ctx.control, c);
    } finally {
      await r.close();
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(c.open, false);
  });
});

describe('a cluster that dials a follower', () => {
  test('is redirected to the leader link; when the leader goes it returns to its configured root, which leads by then', async () => {
    const s = schema();
    const ports = [await freePort(), await freePort()];
    const mk = async (k: number): Promise<RootHandle> => {
      const port = ports[k]!;
      return startRoot({
        ...base(s),
        control: linkControl({ host: '127.0.0.1', port }),
        lead: { linkUrl: `127.0.0.1:${port}`, redirectListen: { host: '127.0.0.1', port } },
      });
    };
    const a = await mk(0);
    const b = await mk(1);
    let client: LinkClient | undefined;
    try {
      assert.equal(a.lead?.role, 'leader');
      assert.equal(b.lead?.role, 'follower');
      assert.equal(b.lead?.redirectLink?.port, ports[1], 'the follower listens on its link port');
      // a token revoked on the follower: the leader's link drops the cluster that used it
      const t0 = await clusterJoinToken(a.ctx, 'c0');
      const c0 = new LinkClient({ address: `127.0.0.1:${ports[1]}`, token: t0, clusterName: 'c0', clusterLocation: null, version: 'test', initialBackoffMs: 50, maxBackoffMs: 300, handlers: { onWelcome() {}, onMessage() {} } });
      c0.start();
      try {
        await waitFor(() => c0.connected, { timeoutMs: 8000 });
        const bRoot: Root = { name: 'b', handle: b, controls: [], token: await login(b.url) };
        assert.equal((await call(bRoot, 'DELETE', `/api/tokens/${parseJoinToken(t0).id}`)).status, 200);
        await waitFor(() => !c0.connected && /revoked/.test(c0.lastReject ?? ''), { timeoutMs: 5000 });
        // removing a worker is the leader's: the follower says so, naming it
        const rm = await call<{ error: { code: string; hint?: string } }>(bRoot, 'DELETE', `/api/cluster/c0/node/w1`);
        assert.equal(rm.status, 503);
        assert.ok(rm.body.error.hint?.includes(a.url), JSON.stringify(rm.body));
      } finally {
        await c0.close();
      }

      const token = await clusterJoinToken(a.ctx, 'c1');
      const welcomes: string[] = [];
      client = new LinkClient({
        address: `127.0.0.1:${ports[1]}`,
        token,
        clusterName: 'c1',
        clusterLocation: null,
        version: 'test',
        initialBackoffMs: 50,
        maxBackoffMs: 300,
        handlers: { onWelcome: (w) => welcomes.push(w.cluster_id), onMessage: () => {} },
      });
      client.start();
      await waitFor(() => client?.connected, { timeoutMs: 8000 });
      assert.equal(client.address, `127.0.0.1:${ports[0]}`, 'connected to the leader');
      assert.equal(b.lead?.redirectLink?.stats.redirected, 2);
      const cluster = await waitFor(async () => (await b.ctx.store.listClusters()).find((c) => c.name === 'c1' && c.status === 'ACTIVE'), { timeoutMs: 3000 });
      assert.ok(cluster);

      // the leader closes: b leads, binds its link port, and the cluster comes back to it
      await a.close();
      await waitFor(() => b.lead?.role === 'leader', { timeoutMs: 5000, intervalMs: 20 });
      await b.lead!.settled();
      assert.equal(b.lead?.redirectLink, undefined, 'the leader gave its link port to the control plane');
      await waitFor(() => client?.connected && client.address === `127.0.0.1:${ports[1]}`, { timeoutMs: 10_000 });
      assert.equal(welcomes.length, 2);
    } finally {
      await client?.close();
      await b.close();
      await a.close();
    }
  });
});
