/**
 * The root as it runs: startRoot on a real port (127.0.0.1, ephemeral), first-start bootstrap,
 * the full flow over HTTP on SQLite and PostgreSQL, restart on the same data, SSE, metrics,
 * OpenAPI, and the oak-root binary with SIGTERM.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ApplicationDoc, InstanceDoc, OakEvent, ServiceDoc, TokenPair } from '@oak/contracts';
import { createStore } from '@oak/store';
import { startRoot, type RootConfig, type RootHandle } from '../src/server.ts';
import { configFromArgs, usage } from '../src/main.ts';
import { sla } from './helpers.ts';

const PG_URL = process.env.OAK_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const tmpDirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'oak-root-test-'));
  tmpDirs.push(d);
  return d;
}
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

const base: RootConfig = { host: '127.0.0.1', port: 0, logLevel: 'silent', announce: () => {} };

class Client {
  token = '';
  constructor(readonly url: string) {}
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(this.url + path, {
      method,
      headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    return { status: res.status, body: (type.includes('json') ? JSON.parse(text) : text) as T, headers: res.headers };
  }
  async login(username: string, password: string): Promise<TokenPair> {
    const r = await this.call<TokenPair>('POST', '/api/auth/login', { username, password });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    this.token = r.body.token;
    return r.body;
  }
}

async function fullFlow(root: RootHandle, password: string): Promise<void> {
  const c = new Client(root.url);
  const health = await c.call<{ status: string; store: string }>('GET', '/healthz');
  assert.equal(health.status, 200);
  assert.equal(health.body.store, root.ctx.store.kind);
  await c.login('Admin', password);

  const created = await c.call<ApplicationDoc[]>('POST', '/api/application/', sla('flow', ['api', 'worker']));
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const app = created.body[0]!;
  assert.equal(app.microservices.length, 2);

  const list = await c.call<ApplicationDoc[]>('GET', '/api/applications/');
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.map((a) => a.applicationID), [app.applicationID]);

  const upd = await c.call<ApplicationDoc>('PUT', `/api/application/${app.applicationID}`, { application_desc: 'updated over HTTP' });
  assert.equal(upd.status, 200);
  assert.equal(upd.body.application_desc, 'updated over HTTP');

  const sid = app.microservices[0]!;
  const inst = await c.call<InstanceDoc>('POST', `/api/service/${sid}/instance`);
  assert.equal(inst.status, 200);
  assert.equal(inst.body.status, 'REQUESTED');
  const svc = await c.call<ServiceDoc>('GET', `/api/service/${sid}`);
  assert.deepEqual(svc.body.instance_list.map((i) => i.status), ['REQUESTED']);

  const del = await c.call('DELETE', `/api/application/${app.applicationID}`);
  assert.equal(del.status, 200);
  const after = await c.call<ApplicationDoc[]>('GET', '/api/applications/');
  assert.deepEqual(after.body, []);
  assert.equal((await c.call('GET', `/api/service/${sid}`)).status, 404);
  assert.equal((await root.ctx.store.listInstances()).length, 0);
}

describe('first start', () => {
  test('generates an Admin password, prints it once, stores only an argon2 hash', async () => {
    const dataDir = tmp();
    const printed: string[] = [];
    const r1 = await startRoot({ ...base, dataDir, announce: (t) => printed.push(t) });
    let password = '';
    try {
      assert.equal(printed.length, 1);
      const m = /generated password: (\S+)/.exec(printed[0] ?? '');
      assert.ok(m?.[1], printed[0]);
      password = m[1];
      assert.ok(password.length >= 16);
      const admin = await r1.ctx.store.getUserByName('Admin');
      assert.deepEqual(admin?.roles, ['Admin']);
      assert.equal((await r1.ctx.store.getOrganization(admin?.organization_id ?? ''))?.name, 'root');
      assert.match(admin?.password_hash ?? '', /^\$argon2id\$/);
      assert.ok(!admin?.password_hash.includes(password));
      await new Client(r1.url).login('Admin', password);
    } finally {
      await r1.close();
    }
    const r2 = await startRoot({ ...base, dataDir, adminPassword: 'ignored-on-second-start', announce: (t) => printed.push(t) });
    try {
      assert.equal(printed.length, 1, 'not printed again');
      await new Client(r2.url).login('Admin', password);
      assert.equal(r2.bootstrap.created, false);
    } finally {
      await r2.close();
    }
  });

  test('OAK_ADMIN_PASSWORD is honoured and nothing is printed', async () => {
    const printed: string[] = [];
    const cfg = configFromArgs(['--port', '0', '--link-port', '0', '--host', '127.0.0.1', '--data-dir', tmp()], { OAK_ADMIN_PASSWORD: 'from-the-env-1' });
    assert.notEqual(cfg, 'help');
    if (cfg === 'help') return;
    assert.equal(cfg.adminPassword, 'from-the-env-1');
    const r = await startRoot({ ...cfg, logLevel: 'silent', announce: (t) => printed.push(t) });
    try {
      assert.equal(printed.length, 0);
      await new Client(r.url).login('Admin', 'from-the-env-1');
      assert.match((await r.ctx.store.getUserByName('Admin'))?.password_hash ?? '', /^\$argon2/);
    } finally {
      await r.close();
    }
  });

  test('flags win over the environment; --help lists every setting with defaults', () => {
    const cfg = configFromArgs(['--port', '12345', '--database-url', 'postgres://x/y'], { OAK_ROOT_PORT: '999', DATABASE_URL: 'postgres://env/db', OAK_DATA_DIR: '/d' });
    assert.ok(cfg !== 'help');
    assert.equal(cfg.port, 12345);
    assert.equal(cfg.databaseUrl, 'postgres://x/y');
    assert.equal(cfg.dataDir, '/d');
    assert.equal(configFromArgs(['-h']), 'help');
    assert.throws(() => configFromArgs(['--port', 'abc']));
    assert.throws(() => configFromArgs(['--bogus']));
    const text = usage();
    for (const s of ['--port', 'OAK_ROOT_PORT', '10000', '--data-dir', 'OAK_DATA_DIR', '--database-url', 'DATABASE_URL', 'OAK_ADMIN_PASSWORD', '--host', '0.0.0.0']) assert.ok(text.includes(s), s);
  });
});

describe('full flow over HTTP', () => {
  test('SQLite: login, create, list, update, deploy, delete; then data and tokens survive a restart', async () => {
    const dataDir = tmp();
    const r1 = await startRoot({ ...base, dataDir, adminPassword: 'flow-password-1' });
    let token = '';
    let appId = '';
    try {
      await fullFlow(r1, 'flow-password-1');
      const c = new Client(r1.url);
      token = (await c.login('Admin', 'flow-password-1')).token;
      const kept = await c.call<ApplicationDoc[]>('POST', '/api/application/', sla('kept'));
      appId = kept.body[0]!.applicationID;
      await c.call('POST', `/api/service/${kept.body[0]!.microservices[0]}/instance`);
    } finally {
      await r1.close();
    }
    const r2 = await startRoot({ ...base, dataDir });
    try {
      const c = new Client(r2.url);
      c.token = token; // the JWT secret lives in the store: old tokens stay valid
      const list = await c.call<ApplicationDoc[]>('GET', '/api/applications/');
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.map((a) => a.applicationID), [appId]);
      const svcs = await c.call<ServiceDoc[]>('GET', `/api/services/${appId}`);
      assert.deepEqual(svcs.body[0]?.instance_list.map((i) => i.status), ['REQUESTED']);
    } finally {
      await r2.close();
    }
  });

  test('PostgreSQL: the same flow, in its own schema', async () => {
    const schema = `oak_root_${randomBytes(6).toString('hex')}`;
    const r = await startRoot({ ...base, databaseUrl: PG_URL, pgSchema: schema, adminPassword: 'pg-password-1' });
    try {
      assert.equal(r.ctx.store.kind, 'postgres');
      await fullFlow(r, 'pg-password-1');
    } finally {
      await r.close();
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`drop schema if exists "${schema}" cascade`);
      await client.end();
    }
  });
});

/** Reads SSE events from a fetch body until `want` matches or time runs out. */
async function readEvents(res: Response, want: (e: OakEvent) => boolean, timeoutMs = 5000): Promise<OakEvent[]> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  const got: OakEvent[] = [];
  let buf = '';
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const chunk = await Promise.race([reader.read(), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), deadline - Date.now()))]);
      if (chunk === 'timeout' || chunk.done) break;
      buf += dec.decode(chunk.value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (!data) continue;
        const e = JSON.parse(data.slice(6)) as OakEvent;
        const type = frame.split('\n').find((l) => l.startsWith('event: '))?.slice(7);
        assert.equal(type, e.type);
        got.push(e);
        if (want(e)) return got;
      }
    }
    return got;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

describe('live surfaces', () => {
  test('SSE: an instance event arrives after POST instance; other organisations do not see it', async () => {
    const r = await startRoot({ ...base, dataDir: tmp(), adminPassword: 'sse-password-1', app: { heartbeatMs: 200 } });
    try {
      const admin = new Client(r.url);
      await admin.login('Admin', 'sse-password-1');
      for (const [name, org] of [['alice', 'orgA'], ['bob', 'orgB']]) {
        if (org !== 'root') await admin.call('POST', '/api/organization/', { name: org });
        assert.equal((await admin.call('POST', '/api/user/', { name, password: 'password-123', organization: org })).status, 201);
      }
      const alice = new Client(r.url);
      await alice.login('alice', 'password-123');
      const bob = new Client(r.url);
      await bob.login('bob', 'password-123');
      const appA = (await alice.call<ApplicationDoc[]>('POST', '/api/application/', sla('ssea'))).body[0]!;
      const appB = (await bob.call<ApplicationDoc[]>('POST', '/api/application/', sla('sseb'))).body[0]!;

      // alice by header, bob by ?token= (as EventSource does)
      const aliceStream = await fetch(`${r.url}/api/events`, { headers: { authorization: `Bearer ${alice.token}` } });
      assert.equal(aliceStream.status, 200);
      assert.match(aliceStream.headers.get('content-type') ?? '', /text\/event-stream/);
      const bobStream = await fetch(`${r.url}/api/events?token=${bob.token}&types=instance`);
      assert.equal(bobStream.status, 200);
      assert.equal((await fetch(`${r.url}/api/events`)).status, 401);

      await new Promise((res) => setTimeout(res, 300)); // heartbeats flow meanwhile
      assert.equal((await alice.call('POST', `/api/service/${appA.microservices[0]}/instance`)).status, 200);
      assert.equal((await bob.call('POST', `/api/service/${appB.microservices[0]}/instance`)).status, 200);

      const aliceEvents = await readEvents(aliceStream, (e) => e.type === 'instance');
      const first = aliceEvents.find((e) => e.type === 'instance');
      assert.ok(first && first.type === 'instance');
      assert.equal(first.microserviceID, appA.microservices[0]);
      assert.equal(first.instance.status, 'REQUESTED');
      assert.equal(first.job_name, 'ssea.test.server.test');

      const bobEvents = await readEvents(bobStream, (e) => e.type === 'instance');
      assert.ok(bobEvents.length >= 1);
      assert.ok(bobEvents.every((e) => e.type === 'instance' && e.applicationID === appB.applicationID), JSON.stringify(bobEvents));
    } finally {
      await r.close();
    }
  });

  test('SSE streams do not keep the server from closing', async () => {
    const r = await startRoot({ ...base, dataDir: tmp(), adminPassword: 'close-password-1' });
    const c = new Client(r.url);
    await c.login('Admin', 'close-password-1');
    const res = await fetch(`${r.url}/api/events?token=${c.token}`);
    assert.equal(res.status, 200);
    const t0 = Date.now();
    await r.close();
    assert.ok(Date.now() - t0 < 3000);
    await res.body?.cancel().catch(() => undefined);
  });

  test('/metrics, /healthz and /api/docs', async () => {
    const r = await startRoot({ ...base, dataDir: tmp(), adminPassword: 'metrics-password-1' });
    try {
      const c = new Client(r.url);
      await c.login('Admin', 'metrics-password-1');
      const app = (await c.call<ApplicationDoc[]>('POST', '/api/application/', sla('metrics'))).body[0]!;
      await c.call('POST', `/api/service/${app.microservices[0]}/instance`);
      const cl = await r.ctx.store.upsertCluster('m1', null);
      await r.ctx.store.updateCluster(cl.id, { status: 'ACTIVE' });
      await c.call('GET', '/api/application/nope');

      const m = await fetch(`${r.url}/metrics`);
      assert.equal(m.status, 200);
      assert.match(m.headers.get('content-type') ?? '', /text\/plain/);
      const text = await m.text();
      assert.match(text, /oak_http_requests_total\{method="POST",route="\/api\/application\/",status="200"\} 1/);
      assert.match(text, /oak_http_requests_total\{method="GET",route="\/api\/application\/:id",status="404"\} 1/);
      assert.match(text, /oak_http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/api\/auth\/login"\}/);
      assert.match(text, /oak_instances\{status="REQUESTED"\} 1/);
      assert.match(text, /oak_instances\{status="RUNNING"\} 0/);
      assert.match(text, /oak_clusters_active 1/);
      assert.match(text, /process_cpu_seconds_total/);
      assert.match(text, /nodejs_heap_size_used_bytes/);

      const h = await c.call<{ status: string; store: string; uptime_s: number }>('GET', '/healthz');
      assert.deepEqual([h.status, h.body.status, h.body.store], [200, 'ok', 'sqlite']);
      assert.equal(typeof h.body.uptime_s, 'number');

      const docs = await fetch(`${r.url}/api/docs/json`);
      assert.equal(docs.status, 200);
      const spec = (await docs.json()) as { openapi: string; paths: Record<string, Record<string, { responses?: object; requestBody?: object }>>; components: { securitySchemes: object } };
      assert.match(spec.openapi, /^3\./);
      for (const p of [
        '/api/auth/login',
        '/api/auth/refresh',
        '/api/application/',
        '/api/applications/',
        '/api/application/{id}',
        '/api/service/',
        '/api/service/{id}',
        '/api/services/{appId}',
        '/api/service/{id}/instance',
        '/api/service/{id}/instance/{n}',
        '/api/service/{id}/instance/{n}/logs',
        '/api/clusters/',
        '/api/clusters/active',
        '/api/cluster/{id}',
        '/api/users/',
        '/api/user/',
        '/api/user/{user}',
        '/api/user/{user}/password',
        '/api/organizations/',
        '/api/organization/',
        '/api/organization/{id}',
        '/api/events',
        '/healthz',
        '/metrics',
      ]) {
        assert.ok(spec.paths[p], `OpenAPI lists ${p}`);
      }
      assert.ok(spec.paths['/api/application/']?.post?.requestBody, 'the SLA body is documented');
      assert.ok(spec.paths['/api/application/{id}']?.get?.responses, 'responses documented');
      assert.ok(spec.components.securitySchemes);
      const ui = await fetch(`${r.url}/api/docs`);
      assert.equal(ui.status, 200);
      assert.match(ui.headers.get('content-type') ?? '', /html/);
    } finally {
      await r.close();
    }
  });

  test('healthz answers 503 when the store is gone', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    const r = await startRoot({ ...base, store, adminPassword: 'x-password-1' });
    try {
      await store.close();
      const h = await fetch(`${r.url}/healthz`);
      assert.equal(h.status, 503);
      assert.equal(((await h.json()) as { error: { code: string } }).error.code, 'OAK_UNAVAILABLE');
    } finally {
      await r.close();
    }
  });
});

describe('logs -f over HTTP', () => {
  test('lines stream as they come; the control plane sees the abort when the client leaves', async () => {
    let aborted: () => void = () => {};
    const abortedP = new Promise<void>((r) => (aborted = r));
    const r = await startRoot({
      ...base,
      dataDir: tmp(),
      adminPassword: 'logs-password-1',
      control: () => ({
        instancesRequested() {},
        instancesUndeployed() {},
        async *logs(_s, _i, opts) {
          opts.signal.addEventListener('abort', () => aborted());
          for (let n = 0; !opts.signal.aborted; n++) {
            yield `line ${n}`;
            await new Promise((res) => setTimeout(res, 20));
          }
        },
      }),
    });
    try {
      const c = new Client(r.url);
      await c.login('Admin', 'logs-password-1');
      const app = (await c.call<ApplicationDoc[]>('POST', '/api/application/?deploy=true', sla('logsf'))).body[0]!;
      const res = await fetch(`${r.url}/api/service/${app.microservices[0]}/instance/0/logs?follow=1&token=${c.token}`);
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      let text = '';
      while (!text.includes('line 2\n')) {
        const chunk = await reader.read();
        assert.ok(!chunk.done);
        text += new TextDecoder().decode(chunk.value);
      }
      assert.match(text, /^line 0\nline 1\nline 2\n/);
      await reader.cancel();
      await Promise.race([abortedP, new Promise((_, rej) => setTimeout(() => rej(new Error('no abort')), 3000))]);
    } finally {
      await r.close();
    }
  });
});

describe('oak-root binary', () => {
  test('starts from flags and env, serves, and exits 0 on SIGTERM', async () => {
    const bin = new URL('../bin/oak-root.mjs', import.meta.url).pathname;
    const child = spawn(process.execPath, [bin, '--port', '0', '--link-port', '0', '--host', '127.0.0.1', '--log-level', 'info'], {
      env: { ...process.env, OAK_DATA_DIR: tmp(), OAK_ADMIN_PASSWORD: 'binary-password-1', DATABASE_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line; stdout=${out} stderr=${err}`)), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
    });
    const c = new Client(url);
    await c.login('Admin', 'binary-password-1');
    assert.equal((await c.call('GET', '/api/applications/')).status, 200);
    assert.doesNotMatch(err, /generated password/);
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', (c2) => resolve(c2));
      child.kill('SIGTERM');
    });
    assert.equal(code, 0, err);
  });
});
