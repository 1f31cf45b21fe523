/** Join tokens API: roles, bad input, shown once, stored hashed, expiry, revocation, limits, never logged. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseJoinToken } from '@oak/contracts';
import type { JoinTokenRow } from '@oak/store';
import { caFingerprint } from '@oak/trust';
import { MAX_ACTIVE_TOKENS } from '../src/plugins/tokens.ts';
import { checkJoinToken, clusterMqttSecret, mintJoinToken, rootTrust } from '../src/trust.ts';
import { testRoot, type TestRoot } from './helpers.ts';

interface Created {
  id: string;
  kind: string;
  name: string | null;
  cluster: string | null;
  state: string;
  token: string;
  ca_sha256: string;
  expires_at: string | null;
  created_by: string | null;
}

describe('join tokens API', () => {
  let t: TestRoot;
  let admin: string;
  let infra: string;
  let appProvider: string;
  let orgAdmin: string;
  const revoked: JoinTokenRow[] = [];
  let logText = '';

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logText += chunk.toString();
        cb();
      },
    });
    t = await testRoot({ appOptions: { loggerInstance: pino({ level: 'trace' }, sink) } });
    t.ctx.tokenRevoked = (row) => revoked.push(row);
    admin = await t.login('Admin');
    infra = await t.user('infra', 'ops', ['Infrastructure_Provider']);
    appProvider = await t.user('dev', 'apps', ['Application_Provider']);
    orgAdmin = await t.user('boss', 'apps', ['Organization_Admin']);
  });
  after(() => t.close());

  test('Admin creates a cluster token: shown once, with the CA fingerprint, stored hashed', async () => {
    const r = await t.req('POST', '/api/tokens', admin, { kind: 'cluster', name: 'east' });
    assert.equal(r.statusCode, 201, r.body);
    const c = r.json() as Created;
    const parsed = parseJoinToken(c.token, 'cluster');
    assert.equal(parsed.id, c.id);
    const trust = await rootTrust(t.ctx);
    assert.equal(parsed.caHash, caFingerprint(trust.ca.certPem));
    assert.equal(c.ca_sha256, parsed.caHash);
    assert.equal(c.name, 'east');
    assert.equal(c.state, 'active');
    assert.equal(c.expires_at, null);
    assert.equal(c.created_by, (await t.store.getUserByName('Admin'))?.id);
    const row = await t.store.getJoinToken(c.id);
    assert.equal(row?.secret_hash, createHash('sha256').update(parsed.secret).digest('hex'));
    // never again: not in the list, not in the store
    const list = await t.req('GET', '/api/tokens', admin);
    assert.equal(list.statusCode, 200);
    assert.ok(!list.body.includes(parsed.secret));
    assert.ok(!JSON.stringify(await t.store.listJoinTokens()).includes(parsed.secret));
    const listed = (list.json() as Created[]).find((x) => x.id === c.id);
    assert.ok(listed && !('token' in listed));
    assert.ok((await checkJoinToken(t.store, c.token, 'cluster')).ok);
  });

  test('Infrastructure_Provider creates a worker token with a ttl; other roles and anonymous callers are refused', async () => {
    const r = await t.req('POST', '/api/tokens', infra, { kind: 'worker', cluster: 'east', ttl_s: 3600 });
    assert.equal(r.statusCode, 201, r.body);
    const w = r.json() as Created;
    assert.equal(parseJoinToken(w.token, 'worker').id, w.id);
    assert.equal(w.cluster, 'east');
    const left = (Date.parse(w.expires_at ?? '') - Date.now()) / 1000;
    assert.ok(left > 3590 && left <= 3600, String(left));
    assert.equal((await t.req('GET', '/api/tokens', infra)).statusCode, 200);

    const before = await t.store.listJoinTokens();
    for (const tok of [appProvider, orgAdmin]) {
      assert.equal((await t.req('POST', '/api/tokens', tok, { kind: 'cluster', name: 'x' })).statusCode, 403);
      assert.equal((await t.req('GET', '/api/tokens', tok)).statusCode, 403);
      assert.equal((await t.req('DELETE', `/api/tokens/${w.id}`, tok)).statusCode, 403);
    }
    assert.equal((await t.req('POST', '/api/tokens', undefined, { kind: 'cluster' })).statusCode, 401);
    assert.equal((await t.req('GET', '/api/tokens')).statusCode, 401);
    assert.equal((await t.req('DELETE', `/api/tokens/${w.id}`)).statusCode, 401);
    assert.deepEqual(await t.store.listJoinTokens(), before);
  });

  test('bad input answers 422/400 with the path and creates nothing', async () => {
    const before = await t.store.listJoinTokens();
    const bad: [unknown, string][] = [
      [{}, 'kind'],
      [{ kind: 'admin' }, 'kind'],
      [{ kind: 'worker' }, 'cluster'],
      [{ kind: 'worker', cluster: 'east', name: 'east' }, 'name'],
      [{ kind: 'cluster', cluster: 'east' }, 'cluster'],
      [{ kind: 'cluster', name: 'bad name!' }, 'name'],
      [{ kind: 'cluster', name: 'x'.repeat(100_000) }, 'name'],
      [{ kind: 'cluster', name: '' }, 'name'],
      [{ kind: 'cluster', ttl_s: 5 }, 'ttl_s'],
      [{ kind: 'cluster', ttl_s: 1.5 }, 'ttl_s'],
      [{ kind: 'cluster', ttl_s: '3600' }, 'ttl_s'],
      [{ kind: 'cluster', ttl_s: 10 ** 12 }, 'ttl_s'],
      [{ kind: 'cluster', secret: 'mine' }, 'secret'],
      [['cluster'], '(root)'],
    ];
    for (const [body, path] of bad) {
      const r = await t.req('POST', '/api/tokens', admin, body);
      assert.equal(r.statusCode, 422, `${JSON.stringify(body).slice(0, 80)}: ${r.body.slice(0, 200)}`);
      const e = (r.json() as { error: { code: string; path?: string } }).error;
      // a string past the root's JSON limits is refused before the route's schema sees it
      const huge = JSON.stringify(body).length > 10_000;
      assert.equal(e.code, huge ? 'OAK_LIMIT_EXCEEDED' : 'OAK_VALIDATION');
      assert.ok(e.path?.startsWith(path), `${e.path} vs ${path}`);
    }
    const notJson = await t.app.inject({ method: 'POST', url: '/api/tokens', headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/plain' }, payload: 'kind=cluster' });
    assert.equal(notJson.statusCode, 415);
    assert.equal((await t.req('DELETE', '/api/tokens/NOT-AN-ID', admin)).statusCode, 400);
    assert.equal((await t.req('DELETE', '/api/tokens/zzzzzzzz', admin)).statusCode, 404);
    assert.deepEqual(await t.store.listJoinTokens(), before);
  });

  test('an expired token is listed as expired and refused', async () => {
    const trust = await rootTrust(t.ctx);
    const { row, token } = await mintJoinToken(t.store, trust, { kind: 'worker', cluster: 'east', ttlSec: -1 });
    const listed = ((await t.req('GET', '/api/tokens', admin)).json() as Created[]).find((x) => x.id === row.id);
    assert.equal(listed?.state, 'expired');
    const check = await checkJoinToken(t.store, token, 'worker');
    assert.ok(!check.ok && /expired/.test(check.reason));
  });

  test('revoke: state revoked, the link is told once, the token is refused; a wrong secret or kind is unknown', async () => {
    const w = (await t.req('POST', '/api/tokens', admin, { kind: 'worker', cluster: 'east' })).json() as Created;
    assert.ok((await checkJoinToken(t.store, w.token, 'worker')).ok);
    const r = await t.req('DELETE', `/api/tokens/${w.id}`, infra);
    assert.equal(r.statusCode, 200, r.body);
    const d = r.json() as Created & { revoked_at: string };
    assert.equal(d.state, 'revoked');
    assert.ok(d.revoked_at);
    assert.deepEqual(revoked.map((x) => x.id), [w.id]);
    const again = await t.req('DELETE', `/api/tokens/${w.id}`, admin);
    assert.equal(again.statusCode, 200);
    assert.equal((again.json() as { revoked_at: string }).revoked_at, d.revoked_at);
    assert.equal(revoked.length, 1, 'told only once');
    const check = await checkJoinToken(t.store, w.token, 'worker');
    assert.ok(!check.ok && /revoked/.test(check.reason));

    const fresh = (await t.req('POST', '/api/tokens', admin, { kind: 'worker', cluster: 'east' })).json() as Created;
    const p = parseJoinToken(fresh.token);
    const wrongSecret = fresh.token.replace(p.secret, p.secret.slice(0, -1) + (p.secret.endsWith('A') ? 'B' : 'A'));
    for (const [text, kind] of [[wrongSecret, 'worker'], [fresh.token, 'cluster'], ['garbage', 'worker'], [fresh.token.replace('oak1.w.', 'oak1.c.'), 'cluster']] as const) {
      const c = await checkJoinToken(t.store, text, kind);
      assert.ok(!c.ok, text);
    }
  });

  test('at most MAX_ACTIVE_TOKENS active tokens', async () => {
    const now = (await t.store.listJoinTokens()).length;
    for (let i = now; i < MAX_ACTIVE_TOKENS + 5; i++) {
      await t.store.createJoinToken({ id: `l${String(i).padStart(7, '0')}`, kind: 'worker', name: null, cluster: 'bulk', secret_hash: '0'.repeat(64), created_by: null, expires_at: null });
    }
    const before = (await t.store.listJoinTokens()).length;
    const r = await t.req('POST', '/api/tokens', admin, { kind: 'worker', cluster: 'east' });
    assert.equal(r.statusCode, 422);
    assert.equal((r.json() as { error: { code: string } }).error.code, 'OAK_LIMIT_EXCEEDED');
    assert.equal((await t.store.listJoinTokens()).length, before);
  });

  test('the MQTT secret of a cluster is stable and differs between clusters', async () => {
    const trust = await rootTrust(t.ctx);
    const a = clusterMqttSecret(trust, 'c1');
    assert.equal(a, clusterMqttSecret(await rootTrust(t.ctx), 'c1'));
    assert.notEqual(a, clusterMqttSecret(trust, 'c2'));
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  });

  test('no token text ever reaches the log', async () => {
    assert.ok(logText.includes('join token created'));
    for (const m of logText.matchAll(/"token_id":"([a-z0-9]{8})"/g)) assert.ok(m[1]);
    assert.ok(!/oak1\.[cw]\./.test(logText), 'a join token was logged');
  });

  test('the OpenAPI document lists the tokens routes', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/api/docs/json' })).json() as { paths: Record<string, Record<string, unknown>> };
    assert.ok(doc.paths['/api/tokens']?.post && doc.paths['/api/tokens']?.get);
    assert.ok(doc.paths['/api/tokens/{id}']?.delete);
  });
});

describe('join tokens API under hostile input (fast-check)', () => {
  test('random bodies: never a 5xx, a token only for a valid body; random token texts never pass', async () => {
    const fc = (await import('fast-check')).default;
    const t = await testRoot();
    try {
      const admin = await t.login('Admin');
      const kinds = fc.oneof(fc.constantFrom('cluster', 'worker', 'admin', ''), fc.string(), fc.integer(), fc.constant(null));
      const body = fc.oneof(
        fc.anything(),
        fc.record({ kind: kinds, name: fc.oneof(fc.string({ maxLength: 80 }), fc.integer()), cluster: fc.oneof(fc.string({ maxLength: 80 }), fc.constant(null)), ttl_s: fc.oneof(fc.integer(), fc.double(), fc.string()) }, { requiredKeys: [] }),
      );
      await fc.assert(
        fc.asyncProperty(body, async (b) => {
          const before = (await t.store.listJoinTokens()).length;
          const r = await t.req('POST', '/api/tokens', admin, b === undefined ? null : b);
          assert.ok(r.statusCode < 500, `${r.statusCode} ${r.body.slice(0, 200)}`);
          const after = (await t.store.listJoinTokens()).length;
          if (r.statusCode === 201) assert.equal(after, before + 1);
          else assert.equal(after, before, `${r.statusCode} created something`);
        }),
        { numRuns: 400 },
      );
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.string(), fc.stringMatching(/^oak1\.[cw]\.[a-z0-9]{8}\.[A-Za-z0-9_-]{32}\.[0-9a-f]{64}$/)), fc.constantFrom('cluster', 'worker' as const), async (text, kind) => {
          const c = await checkJoinToken(t.store, text, kind);
          assert.equal(c.ok, false);
        }),
        { numRuns: 400 },
      );
      for (const id of ['%00', '..%2f..', 'a'.repeat(300), 'AAAAAAAA']) {
        const r = await t.req('DELETE', `/api/tokens/${id}`, admin);
        assert.ok([400, 404, 414].includes(r.statusCode), `${id}: ${r.statusCode}`);
      }
    } finally {
      await t.close();
    }
  });
});
