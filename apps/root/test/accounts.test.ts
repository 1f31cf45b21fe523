/**
 * Accounts (issue 7, point 6) through fastify inject: login rate limit, token revocation on
 * logout / password change / role change / deletion, the password rule, no user enumeration.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TokenPair } from '@oak/contracts';
import { OakError } from '@oak/contracts';
import { createStore } from '@oak/store';
import { LoginLimiter } from '../src/auth/limiter.ts';
import { bootstrapAdmin } from '../src/bootstrap.ts';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromArgs } from '../src/main.ts';
import { startRoot } from '../src/server.ts';
import { ADMIN_PASSWORD, PASSWORD, testRoot, type TestRoot } from './helpers.ts';

const login = (t: TestRoot, username: string, password: string, remoteAddress = '127.0.0.1') =>
  t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password }, remoteAddress });

describe('login rate limit', () => {
  let t: TestRoot;
  before(async () => {
    t = await testRoot({ appOptions: { loginLimit: { maxPerUser: 3, maxPerAddress: 8, windowSec: 60 } } });
    await t.user('rita', 'rl-org', ['Application_Provider']);
  });
  after(() => t.close());

  test('brute force on a known user: 429 OAK_RATE_LIMITED with Retry-After, even with the right password', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await login(t, 'rita', `guess-${i}`, '10.0.0.1')).statusCode, 401);
    const blocked = await login(t, 'rita', 'guess-x', '10.0.0.2');
    assert.equal(blocked.statusCode, 429, 'per user name, from any address');
    assert.equal((blocked.json() as { error: { code: string } }).error.code, 'OAK_RATE_LIMITED');
    const retry = Number(blocked.headers['retry-after']);
    assert.ok(Number.isInteger(retry) && retry > 0 && retry <= 60, `Retry-After ${blocked.headers['retry-after']}`);
    assert.equal((await login(t, 'rita', PASSWORD, '10.0.0.3')).statusCode, 429, 'the right password does not get through while blocked');
  });

  test('an unknown user name is limited the same way, with the same answers', async () => {
    const known: string[] = [];
    const unknown: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await login(t, 'rita2-does-not-exist', 'x', '10.1.0.1');
      unknown.push(`${a.statusCode} ${a.body.replaceAll('rita2-does-not-exist', 'NAME')}`);
    }
    await t.user('rita2', 'rl-org', ['Application_Provider']);
    for (let i = 0; i < 4; i++) {
      const a = await login(t, 'rita2', 'x', '10.1.0.2');
      known.push(`${a.statusCode} ${a.body.replaceAll('rita2', 'NAME')}`);
    }
    assert.deepEqual(known, unknown);
    assert.deepEqual(known.map((k) => k.slice(0, 3)), ['401', '401', '401', '429']);
  });

  test('a success resets the user name counter', async () => {
    await t.user('sam', 'rl-org', ['Application_Provider']);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) assert.equal((await login(t, 'sam', 'wrong', `10.2.0.${round}`)).statusCode, 401);
      assert.equal((await login(t, 'sam', PASSWORD, `10.2.0.${round}`)).statusCode, 200, `round ${round}`);
    }
  });

  test('per source address: many user names from one address are blocked', async () => {
    for (let i = 0; i < 8; i++) assert.equal((await login(t, `spray-${i}`, 'x', '10.3.0.1')).statusCode, 401);
    const r = await login(t, 'spray-new', 'x', '10.3.0.1');
    assert.equal(r.statusCode, 429);
    assert.ok(Number(r.headers['retry-after']) > 0);
    assert.equal((await login(t, 'spray-new', 'x', '10.3.0.2')).statusCode, 401, 'another address still may try');
  });

  test('the old password of a password change is limited like a login', async () => {
    const tok = await t.user('olaf', 'rl-org', ['Application_Provider']);
    for (let i = 0; i < 3; i++) {
      const r = await t.req('PUT', '/api/user/olaf/password', tok, { old_password: `nope-${i}`, password: 'new-password-1' });
      assert.equal(r.statusCode, 401);
    }
    const r = await t.req('PUT', '/api/user/olaf/password', tok, { old_password: PASSWORD, password: 'new-password-1' });
    assert.equal(r.statusCode, 429);
    assert.ok(Number(r.headers['retry-after']) > 0);
  });

  test('memory is bounded: 50,000 random names from 50,000 addresses keep at most maxEntries keys', () => {
    const l = new LoginLimiter({ maxEntries: 1000 });
    const heap = process.memoryUsage().heapUsed;
    for (let i = 0; i < 50_000; i++) l.failed(randomBytes(12).toString('hex'), `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.deepEqual(l.size, { users: 1000, addresses: 1000 });
    assert.ok(process.memoryUsage().heapUsed - heap < 50 * 1024 * 1024, 'well below 50 MB');
  });

  test('the window ends: a blocked name may try again', () => {
    let now = 1_000_000;
    const l = new LoginLimiter({ maxPerUser: 2, windowSec: 10, now: () => now });
    l.failed('u', 'a');
    l.failed('u', 'a');
    assert.equal(l.retryAfter('u', 'b'), 10);
    now += 9_500;
    assert.equal(l.retryAfter('u', 'b'), 1);
    now += 600;
    assert.equal(l.retryAfter('u', 'b'), 0);
  });
});

describe('revocation', () => {
  let t: TestRoot;
  let admin: string;
  before(async () => {
    t = await testRoot();
    admin = await t.login('Admin');
  });
  after(() => t.close());

  async function pair(name: string, password = PASSWORD): Promise<TokenPair> {
    const r = await login(t, name, password);
    assert.equal(r.statusCode, 200, r.body);
    return r.json() as TokenPair;
  }
  const refresh = (rt: string) => t.req('POST', '/api/auth/refresh', undefined, { refresh_token: rt });

  test('logout revokes every access and refresh token of the user (all sessions); others keep theirs', async () => {
    await t.user('lena', 'rv-org', ['Application_Provider']);
    await t.user('lars', 'rv-org', ['Application_Provider']);
    const a = await pair('lena');
    const b = await pair('lena');
    const other = await pair('lars');
    assert.equal((await refresh(a.refresh_token)).statusCode, 200);
    const out = await t.req('POST', '/api/auth/logout', undefined, { refresh_token: a.refresh_token });
    assert.equal(out.statusCode, 200, out.body);
    for (const rt of [a.refresh_token, b.refresh_token]) {
      const r = await refresh(rt);
      assert.equal(r.statusCode, 401);
      assert.match(r.body, /revoked/);
    }
    assert.equal((await t.req('GET', '/api/applications/', a.token)).statusCode, 401, 'access tokens die at once too');
    assert.equal((await t.req('GET', '/api/applications/', b.token)).statusCode, 401);
    assert.equal((await refresh(other.refresh_token)).statusCode, 200, "another user's session is untouched");
    assert.equal((await t.req('POST', '/api/auth/logout', undefined, { refresh_token: a.refresh_token })).statusCode, 401, 'a revoked token cannot log out again');
    // a new login works; logout by bearer access token works too
    const c = await pair('lena');
    assert.equal((await t.req('POST', '/api/auth/logout', c.token)).statusCode, 200);
    assert.equal((await refresh(c.refresh_token)).statusCode, 401);
    assert.equal((await t.req('POST', '/api/auth/logout')).statusCode, 401, 'no token: 401');
    assert.equal((await t.req('POST', '/api/auth/logout', undefined, { refresh_token: 'garbage' })).statusCode, 401);
    assert.equal((await t.req('POST', '/api/auth/logout', undefined, { refresh_token: c.token })).statusCode, 401, 'an access token is not a refresh token');
    // hostile input: huge or wrongly typed tokens are refused before any work, nothing changes
    const before = (await t.store.getUserByName('lena'))!.token_version;
    for (const body of [{ refresh_token: 'x'.repeat(10_000) }, { refresh_token: 42 }, { refresh_token: ['a'] }]) {
      assert.equal((await t.req('POST', '/api/auth/logout', undefined, body)).statusCode, 422);
      assert.equal((await t.req('POST', '/api/auth/refresh', undefined, body)).statusCode, 422);
    }
    assert.equal((await t.store.getUserByName('lena'))!.token_version, before);
  });

  test('own password change and an admin reset: old refresh and access tokens -> 401', async () => {
    await t.user('pia', 'rv-org', ['Application_Provider']);
    const p1 = await pair('pia');
    const r = await t.req('PUT', '/api/user/pia/password', p1.token, { old_password: PASSWORD, password: 'pia-new-password' });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal((await refresh(p1.refresh_token)).statusCode, 401);
    assert.equal((await t.req('GET', '/api/user/pia', p1.token)).statusCode, 401);
    const p2 = await pair('pia', 'pia-new-password');
    assert.equal((await t.req('PUT', '/api/user/pia/password', admin, { password: 'reset-by-admin' })).statusCode, 200);
    assert.equal((await refresh(p2.refresh_token)).statusCode, 401);
    assert.equal((await login(t, 'pia', 'pia-new-password')).statusCode, 401);
    await pair('pia', 'reset-by-admin');
  });

  test('a role change revokes; an email change does not; a deleted user\'s refresh token is dead', async () => {
    await t.user('rolf', 'rv-org', ['Application_Provider']);
    const p = await pair('rolf');
    assert.equal((await t.req('PUT', '/api/user/rolf', admin, { email: 'r@x.example' })).statusCode, 200);
    assert.equal((await refresh(p.refresh_token)).statusCode, 200, 'email only: still valid');
    assert.equal((await t.req('PUT', '/api/user/rolf', admin, { roles: ['Infrastructure_Provider'] })).statusCode, 200);
    assert.equal((await refresh(p.refresh_token)).statusCode, 401);
    assert.equal((await t.req('GET', '/api/clusters/', p.token)).statusCode, 401);
    const q = await pair('rolf');
    assert.equal((await t.req('DELETE', '/api/user/rolf', admin)).statusCode, 200);
    assert.equal((await refresh(q.refresh_token)).statusCode, 401);
  });
});

describe('passwords: at least 8 characters everywhere', () => {
  let t: TestRoot;
  let admin: string;
  before(async () => {
    t = await testRoot();
    admin = await t.login('Admin');
  });
  after(() => t.close());

  test('user creation and password change refuse 7 characters with a clear 422 and change nothing', async () => {
    const short = await t.req('POST', '/api/user/', admin, { name: 'shorty', password: '1234567' });
    assert.equal(short.statusCode, 422);
    const e = short.json() as { error: { code: string; message: string; path: string } };
    assert.equal(e.error.code, 'OAK_VALIDATION');
    assert.equal(e.error.path, 'password');
    assert.match(e.error.message, /at least 8 characters/);
    assert.equal(await t.store.getUserByName('shorty'), undefined);
    assert.equal((await t.req('POST', '/api/user/', admin, { name: 'shorty', password: '12345678' })).statusCode, 201);
    assert.equal((await t.req('POST', '/api/user/', admin, { name: 'unicody', password: 'äöüßéèêë' })).statusCode, 201, '8 characters, more bytes');
    const before = (await t.store.getUserByName('shorty'))!.password_hash;
    const pw = await t.req('PUT', '/api/user/shorty/password', admin, { password: 'short' });
    assert.equal(pw.statusCode, 422);
    assert.match(pw.body, /at least 8 characters/);
    assert.equal((await t.store.getUserByName('shorty'))!.password_hash, before);
    assert.equal((await t.req('PUT', '/api/user/shorty/password', admin, { password: 'x'.repeat(1025) })).statusCode, 422);
  });

  test('the first Admin password (OAK_ADMIN_PASSWORD) is refused when shorter, and nothing is created', async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    try {
      await assert.rejects(bootstrapAdmin(store, 'short'), (err: unknown) => err instanceof OakError && err.code === 'OAK_VALIDATION' && /OAK_ADMIN_PASSWORD/.test(err.message) && /at least 8/.test(err.message));
      assert.equal(await store.getUserByName('Admin'), undefined);
      const ok = await bootstrapAdmin(store, '12345678');
      assert.equal(ok.created, true);
      // later starts ignore the variable (the hash is kept), even a short one
      assert.equal((await bootstrapAdmin(store, 'short')).created, false);
    } finally {
      await store.close();
    }
    const fresh = await createStore({ sqlitePath: ':memory:' });
    try {
      await assert.rejects(startRoot({ host: '127.0.0.1', port: 0, logLevel: 'silent', store: fresh, adminPassword: 'abc' }), /at least 8 characters/);
      assert.equal(await fresh.getUserByName('Admin'), undefined);
    } finally {
      await fresh.close();
    }
  });
});

describe('no user enumeration', () => {
  let t: TestRoot;
  let provider: string;
  let orgAdmin: string;
  before(async () => {
    t = await testRoot({ appOptions: { loginLimit: { maxPerUser: 1000, maxPerAddress: 1000 } } });
    provider = await t.user('eve', 'enum-org', ['Application_Provider']);
    orgAdmin = await t.user('otto', 'enum-org2', ['Organization_Admin']);
    await t.user('victim', 'enum-org3', ['Application_Provider']);
  });
  after(() => t.close());

  test('login: unknown user and wrong password answer the same status and body, in about the same time', async () => {
    const a = await login(t, 'victim', 'wrong-password');
    const b = await login(t, 'nobody-at-all', 'wrong-password');
    assert.equal(a.statusCode, 401);
    assert.equal(a.statusCode, b.statusCode);
    assert.equal(a.body, b.body);
    assert.deepEqual(Object.keys(a.headers).sort(), Object.keys(b.headers).sort());
    // alternating samples, so that load from elsewhere on the machine hits both sides alike
    const known: number[] = [];
    const unknown: number[] = [];
    const once = async (name: string, into: number[]): Promise<void> => {
      const s = process.hrtime.bigint();
      await login(t, name, 'wrong-password');
      into.push(Number(process.hrtime.bigint() - s) / 1e6);
    };
    for (let i = 0; i < 15; i++) {
      await once('victim', known);
      await once('nobody-at-all', unknown);
    }
    const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const ratio = median(known) / median(unknown);
    assert.ok(ratio > 0.5 && ratio < 2, `median known ${median(known).toFixed(1)} ms vs unknown ${median(unknown).toFixed(1)} ms`);
  });

  test('a non-admin gets the same answer for an existing and a missing user, on every user route', async () => {
    const routes: [string, string, unknown?][] = [
      ['GET', '/api/user/NAME'],
      ['PUT', '/api/user/NAME', { email: 'x@y.example' }],
      ['PUT', '/api/user/NAME', { roles: ['Admin'] }],
      ['DELETE', '/api/user/NAME'],
      ['PUT', '/api/user/NAME/password', { password: 'hijacked-1' }],
    ];
    const before = JSON.stringify(await t.store.listUsers());
    for (const tok of [provider, orgAdmin]) {
      for (const [method, url, body] of routes) {
        const exists = await t.req(method as 'GET', url.replace('NAME', 'victim'), tok, body);
        const missing = await t.req(method as 'GET', url.replace('NAME', 'ghost-user'), tok, body);
        assert.ok(exists.statusCode === 403 || exists.statusCode === 404, `${method} ${url}: ${exists.statusCode}`);
        assert.equal(exists.statusCode, missing.statusCode, `${method} ${url}`);
        assert.equal(exists.body.replaceAll('victim', 'X'), missing.body.replaceAll('ghost-user', 'X'), `${method} ${url}`);
      }
    }
    assert.equal(JSON.stringify(await t.store.listUsers()), before, 'nothing changed');
    // own user still works
    assert.equal((await t.req('GET', '/api/user/eve', provider)).statusCode, 200);
  });
});

describe('oak-root settings', () => {
  test('a short OAK_ADMIN_PASSWORD stops the first start with a clear message, no stack, nothing created', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oak-accounts-'));
    try {
      const bin = new URL('../bin/oak-root.mjs', import.meta.url).pathname;
      const child = spawn(process.execPath, [bin, '--port', '0', '--link-port', '0', '--host', '127.0.0.1', '--log-level', 'silent'], {
        env: { ...process.env, OAK_DATA_DIR: dir, OAK_ADMIN_PASSWORD: 'short', DATABASE_URL: '' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      assert.equal(code, 1, err);
      assert.match(err, /^oak-root: the Admin password \(OAK_ADMIN_PASSWORD\) must have at least 8 characters\n {2}hint: choose a longer password\n$/);
      const store = await createStore({ sqlitePath: join(dir, 'oak.db') });
      try {
        assert.equal(await store.getUserByName('Admin'), undefined);
      } finally {
        await store.close();
      }
      assert.ok(readdirSync(dir).includes('oak.db'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('audit retention flags and variables; bad values are refused', () => {
    const cfg = configFromArgs(['--audit-max-rows', '500'], { OAK_AUDIT_MAX_AGE_DAYS: '7' });
    assert.ok(cfg !== 'help');
    assert.deepEqual(cfg.app?.audit, { maxRows: 500, maxAgeDays: 7 });
    for (const bad of ['0', '-1', '1e3', 'lots']) assert.throws(() => configFromArgs([`--audit-max-rows=${bad}`], {}), /--audit-max-rows must be a whole number/);
  });
});

test('ADMIN_PASSWORD of the test helpers keeps the rule', () => {
  assert.ok(ADMIN_PASSWORD.length >= 8 && PASSWORD.length >= 8);
});
