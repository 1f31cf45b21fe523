/**
 * Accounts and audit over real HTTP (startRoot on 127.0.0.1, ephemeral port): streams that end on
 * demotion, password change, logout, removal, expiry and a change made through another root; the
 * audit trail (who/what/when/where, filters, paging, retention, Admin only); no secret in the
 * audit or in the log output.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { ApplicationDoc, TokenPair } from '@oak/contracts';
import { createStore, type AuditEntry, type Store } from '@oak/store';
import type { ControlPlane, LogOptions } from '../src/control.ts';
import { rootLogger, startRoot, type RootConfig, type RootHandle } from '../src/server.ts';
import { sla } from './helpers.ts';

const ADMIN_PW = 'audit-admin-pw-1';
const USER_PW = 'user-password-1';
const base: RootConfig = { host: '127.0.0.1', port: 0, logLevel: 'silent', announce: () => {}, adminPassword: ADMIN_PW };

/** a control plane whose logs follow for ever (a line every 50 ms) until the signal aborts */
const followingLogs = (): ControlPlane => ({
  instancesRequested: () => undefined,
  instancesUndeployed: () => undefined,
  async *logs(_s, _i, opts: LogOptions) {
    yield 'first line';
    while (opts.follow && !opts.signal.aborted) {
      await new Promise((r) => setTimeout(r, 50));
      if (!opts.signal.aborted) yield 'another line';
    }
  },
});

class Client {
  token = '';
  refresh = '';
  constructor(readonly url: string) {}
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(this.url + path, {
      method,
      headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T, headers: res.headers };
  }
  async login(username: string, password: string): Promise<this> {
    const r = await this.call<TokenPair>('POST', '/api/auth/login', { username, password });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    this.token = r.body.token;
    this.refresh = r.body.refresh_token;
    return this;
  }
}

/** Reads a streamed body until it ends; answers the text and how long it took. */
async function readToEnd(res: Response, timeoutMs = 10_000): Promise<{ text: string; ms: number }> {
  const start = Date.now();
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const timer = setTimeout(() => void reader.cancel(), timeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // cancelled by the timer: `text` tells what arrived
  } finally {
    clearTimeout(timer);
  }
  return { text, ms: Date.now() - start };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const roots: RootHandle[] = [];
const stores: Store[] = [];
after(async () => {
  for (const r of roots) await r.close();
  for (const s of stores) await s.close();
});

async function root(extra: Partial<RootConfig> = {}): Promise<RootHandle> {
  const r = await startRoot({ ...base, store: extra.store ?? (await createStore({ sqlitePath: ':memory:' })), ...extra });
  if (extra.store === undefined) stores.push(r.ctx.store);
  roots.push(r);
  return r;
}

async function withUser(r: RootHandle, name: string, roles = ['Application_Provider']): Promise<{ admin: Client; user: Client }> {
  const admin = await new Client(r.url).login('Admin', ADMIN_PW);
  const c = await admin.call('POST', '/api/user/', { name, password: USER_PW, roles });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  return { admin, user: await new Client(r.url).login(name, USER_PW) };
}

describe('open streams end when the account changes', () => {
  test('a demoted user\'s SSE stream closes at once, with a last "end" event', async () => {
    const r = await root({ app: { heartbeatMs: 100 } });
    const { admin, user } = await withUser(r, 'dora');
    const res = await fetch(`${r.url}/api/events?token=${user.token}`);
    assert.equal(res.status, 200);
    await until('stream registered', async () => (r.ctx.streams!.count() === 1 ? true : undefined));
    const reading = readToEnd(res);
    const started = Date.now();
    assert.equal((await admin.call('PUT', '/api/user/dora', { roles: ['Infrastructure_Provider'] })).status, 200);
    const { text } = await reading;
    assert.ok(Date.now() - started < 2000, 'closed at once');
    assert.match(text, /event: end\ndata: \{"reason":"the roles of this user changed"\}/);
    assert.equal(r.ctx.streams!.count(), 0);
    assert.equal((await fetch(`${r.url}/api/events?token=${user.token}`)).status, 401, 'and cannot reconnect with the old token');
  });

  test('SSE closes on logout, on removal, and when its token expires', async () => {
    const r = await root({ accessTtlSec: 2 });
    const { admin, user } = await withUser(r, 'ella');
    let res = await fetch(`${r.url}/api/events`, { headers: { authorization: `Bearer ${user.token}` } });
    let reading = readToEnd(res);
    assert.equal((await new Client(r.url).call('POST', '/api/auth/logout', { refresh_token: user.refresh })).status, 200);
    assert.match((await reading).text, /"reason":"logged out"/);

    await user.login('ella', USER_PW);
    res = await fetch(`${r.url}/api/events`, { headers: { authorization: `Bearer ${user.token}` } });
    reading = readToEnd(res);
    await until('stream registered', async () => (r.ctx.streams!.count() === 1 ? true : undefined));
    assert.equal((await admin.call('DELETE', '/api/user/ella')).status, 200);
    assert.match((await reading).text, /"reason":"the user was removed"/);

    const { user: fred } = await withUser(r, 'fred');
    res = await fetch(`${r.url}/api/events`, { headers: { authorization: `Bearer ${fred.token}` } });
    const expired = await readToEnd(res, 8000);
    assert.match(expired.text, /"reason":"the token of this stream has expired"/);
    assert.ok(expired.ms < 4000, `ended ${expired.ms} ms after opening (token lives 2 s)`);
  });

  test('a log follow ends with a last line when the password changes', async () => {
    const r = await root({ control: () => followingLogs() });
    const { admin, user } = await withUser(r, 'gina');
    const [app] = (await user.call<ApplicationDoc[]>('POST', '/api/application/', sla('logapp'))).body;
    const sid = app!.microservices[0]!;
    assert.equal((await user.call('POST', `/api/service/${sid}/instance`)).status, 200);
    const res = await fetch(`${r.url}/api/service/${sid}/instance/0/logs?follow=1`, { headers: { authorization: `Bearer ${user.token}` } });
    assert.equal(res.status, 200);
    const reading = readToEnd(res);
    await until('stream registered', async () => (r.ctx.streams!.count() === 1 ? true : undefined));
    assert.equal((await admin.call('PUT', '/api/user/gina/password', { password: 'another-password' })).status, 200);
    const { text } = await reading;
    assert.match(text, /^first line\n/);
    assert.match(text, /# log stream ended: the password of this user changed\n$/);
  });

  test('two roots on one store: a logout through root B ends the stream on root A (re-check)', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    stores.push(store);
    const a = await root({ store, app: { streamRecheckMs: 100 } });
    const b = await root({ store, app: { streamRecheckMs: 100 } });
    const { user } = await withUser(a, 'hans');
    const res = await fetch(`${a.url}/api/events?token=${user.token}`);
    const reading = readToEnd(res);
    await until('stream registered', async () => (a.ctx.streams!.count() === 1 ? true : undefined));
    assert.equal((await new Client(b.url).call('POST', '/api/auth/logout', { refresh_token: user.refresh })).status, 200);
    const { text, ms } = await reading;
    assert.match(text, /"reason":"the tokens of this user were revoked/);
    assert.ok(ms < 3000, `${ms} ms`);
  });
});

describe('audit trail', () => {
  test('records changes with who/what/when/where; Admin only; filters and paging; no secret in the audit or the logs', async () => {
    let logText = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logText += chunk.toString('utf8');
        cb();
      },
    });
    const r = await root({ logger: rootLogger('trace', sink) });
    const { admin, user } = await withUser(r, 'ida');
    const ENV_SECRET = 'env-secret-value-93ab1';
    const WRONG_PW = 'wrong-pw-secret-77';
    const created = await user.call<ApplicationDoc[]>('POST', '/api/application/', sla('auditapp', ['web'], { environment: [`API_KEY=${ENV_SECRET}`] }));
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const appId = created.body[0]!.applicationID;
    // a service added with an env value, a refused change, failed logins, a password change, a logout
    const svc = await user.call('POST', '/api/service/', { applicationID: appId, microservice_name: 'db', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/redis:7', memory: 100, vcpus: 1, environment: [`DB_PASSWORD=${ENV_SECRET}`] });
    assert.equal(svc.status, 200, JSON.stringify(svc.body));
    assert.equal((await user.call('POST', '/api/organization/', { name: 'nope' })).status, 403);
    assert.equal((await new Client(r.url).call('POST', '/api/auth/login', { username: 'ida', password: WRONG_PW })).status, 401);
    assert.equal((await new Client(r.url).call('POST', '/api/auth/login', { username: 'nobody', password: WRONG_PW })).status, 401);
    assert.equal((await new Client(r.url).call('POST', '/api/application/', sla('anon'))).status, 401);
    const NEW_PW = 'new-user-password-42';
    assert.equal((await user.call('PUT', '/api/user/ida/password', { old_password: USER_PW, password: NEW_PW })).status, 200);
    await user.login('ida', NEW_PW);
    // a token in a query string where it is not accepted: refused, and masked in the request line
    assert.equal((await fetch(`${r.url}/api/applications/?token=${user.token}`)).status, 401);
    assert.equal((await new Client(r.url).call('POST', '/api/auth/logout', { refresh_token: user.refresh })).status, 200);

    const all = await until('audit written', async () => {
      const a = await admin.call<{ entries: AuditEntry[]; next_before: number | null }>('GET', '/api/audit?limit=1000');
      return a.body.entries.some((e) => e.action === 'auth.logout') ? a.body.entries : undefined;
    });
    const create = all.find((e) => e.action === 'POST /api/application/');
    assert.ok(create, JSON.stringify(all));
    assert.equal(create.user_name, 'ida');
    assert.equal(create.status, 200);
    assert.equal(create.target, appId, 'the id of what was created');
    assert.equal(create.address, '127.0.0.1');
    assert.ok(Math.abs(Date.parse(create.at) - Date.now()) < 60_000);
    assert.equal(create.route, '/api/application/');
    const refused = all.find((e) => e.action === 'POST /api/organization/');
    assert.equal(refused?.status, 403);
    assert.equal(refused?.error_code, 'OAK_FORBIDDEN');
    const failed = all.filter((e) => e.action === 'auth.login_failed');
    assert.deepEqual(failed.map((e) => e.user_name).sort(), ['ida', 'nobody']);
    assert.equal(failed.find((e) => e.user_name === 'nobody')?.user_id, null);
    assert.ok(all.some((e) => e.action === 'auth.login' && e.user_name === 'ida'));
    assert.ok(all.some((e) => e.action === 'PUT /api/user/:user/password' && e.target === 'ida' && e.status === 200));
    assert.ok(all.some((e) => e.action === 'auth.logout' && e.user_name === 'ida'));
    assert.ok(!all.some((e) => e.route === '/api/application/' && e.status === 401), 'anonymous refusals are not recorded');
    assert.ok(!all.some((e) => e.method === 'GET'), 'reads are not recorded');

    // filters and paging
    const q = (query: string) => admin.call<{ entries: AuditEntry[]; next_before: number | null }>('GET', `/api/audit${query}`);
    const logins = await q('?action=login_failed');
    assert.equal(logins.body.entries.length, 2);
    assert.ok((await q('?user=ida&limit=1000')).body.entries.every((e) => e.user_name === 'ida'));
    assert.equal((await q(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).body.entries.length, 0);
    const p1 = await q('?limit=2');
    assert.equal(p1.body.entries.length, 2);
    assert.ok(p1.body.next_before !== null);
    const p2 = await q(`?limit=2&before=${p1.body.next_before}`);
    assert.ok(p2.body.entries.every((e) => e.seq < p1.body.entries[1]!.seq));
    for (const bad of ['?limit=0', '?limit=5000', '?limit=1e3', '?since=yesterday', '?before=-1', `?action=${'x'.repeat(201)}`]) {
      const b = await q(bad);
      assert.equal(b.status, 400, `${bad}: ${JSON.stringify(b.body)}`);
    }
    const notAdmin = await new Client(r.url).login('ida', NEW_PW);
    const forbidden = await notAdmin.call('GET', '/api/audit');
    assert.equal(forbidden.status, 403);
    assert.equal((await new Client(r.url).call('GET', '/api/audit')).status, 401);

    // no secret anywhere: not in the audit, not in the logs (trace level)
    const auditText = JSON.stringify((await q('?limit=1000')).body);
    for (const secret of [ENV_SECRET, WRONG_PW, USER_PW, NEW_PW, ADMIN_PW, user.token, user.refresh, admin.token, admin.refresh]) {
      assert.ok(!auditText.includes(secret), `the audit holds a secret: ${secret.slice(0, 12)}`);
      assert.ok(!logText.includes(secret), `the log holds a secret: ${secret.slice(0, 12)}`);
    }
    assert.match(logText, /"url":"\/api\/applications\/\?token=\*\*\*"/, 'the query token is masked in the request line');
  });

  test('routes added by other plugins are audited with no help from them (e.g. /api/tokens)', async () => {
    const r = await root();
    const admin = await new Client(r.url).login('Admin', ADMIN_PW);
    const created = await admin.call<{ id: string; token: string }>('POST', '/api/tokens', { kind: 'worker', cluster: 'east' });
    assert.equal(created.status, 201);
    const { id, token } = created.body;
    assert.match(token, /^oak1\.w\./);
    assert.equal((await admin.call('DELETE', `/api/tokens/${id}`)).status, 200);
    await r.ctx.audit!.idle();
    const entries = await r.ctx.store.listAudit({ action: '/api/tokens' });
    assert.deepEqual(
      entries.map((e) => [e.action, e.target, e.status, e.user_name]),
      [
        ['DELETE /api/tokens/:id', id, 200, 'Admin'],
        ['POST /api/tokens', id, 201, 'Admin'],
      ],
    );
    const secret = token.split('.')[3] ?? '';
    assert.ok(secret.length >= 32);
    assert.ok(!JSON.stringify(entries).includes(secret), 'the token shown once is not in the audit');
  });

  test('pino redaction: password, token, environment and secret keys never print', () => {
    let out = '';
    const log = rootLogger('info', new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) }));
    log.info({ password: 'p-1-secret', body: { old_password: 'p-2-secret', token: 't-secret', sla: { environment: ['K=env-secret'] } }, refresh_token: 'r-secret', mqtt_secret: 'm-secret', req: { headers: { authorization: 'Bearer b-secret' } } }, 'x');
    for (const s of ['p-1-secret', 'p-2-secret', 't-secret', 'env-secret', 'r-secret', 'm-secret', 'b-secret']) assert.ok(!out.includes(s), `${s} in ${out}`);
    assert.match(out, /\[redacted\]/);
  });

  test('retention: the table keeps at most maxRows entries', async () => {
    const r = await root({ app: { audit: { maxRows: 10, pruneEvery: 5 } } });
    const admin = await new Client(r.url).login('Admin', ADMIN_PW);
    for (let i = 0; i < 30; i++) assert.equal((await admin.call('POST', '/api/organization/', { name: `ret-${i}` })).status, 200);
    await r.ctx.audit!.idle();
    await r.ctx.audit!.prune();
    const left = await r.ctx.store.listAudit({ limit: 1000 });
    assert.equal(left.length, 10);
    assert.equal(left[0]!.target, (await r.ctx.store.getOrganizationByName('ret-29'))!.id, 'the newest stay');
    assert.equal(left[9]!.target, (await r.ctx.store.getOrganizationByName('ret-20'))!.id);
    assert.ok(left.every((e) => e.action === 'POST /api/organization/'));
  });
});
