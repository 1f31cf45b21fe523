/**
 * Private registries API: roles, organisations, input limits (hostile input), the password never
 * answered, logged or stored in clear, the audit trail, and the login handed to deploys only for
 * images on its host.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ERROR_CODES, type Microservice } from '@oak/contracts';
import { MAX_REGISTRY_LOGINS } from '../src/plugins/registries.ts';
import { openPassword, registryAuthFor, registryKey, sealPassword } from '../src/registries.ts';
import { testRoot, type TestRoot } from './helpers.ts';

const LIMIT_STATUS = ERROR_CODES.OAK_LIMIT_EXCEEDED;
const PW = 'reg-Pa55word-that-must-never-show-9f3c';
const HOST = '127.0.0.1:5000';

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const image = (code: string, virtualization = 'container'): Microservice => ({ microservice_name: 's', microservice_namespace: 'n', virtualization, code, memory: 10, vcpus: 1 }) as Microservice;

describe('registries API', () => {
  let t: TestRoot;
  let admin: string;
  let boss: string;
  let dev: string;
  let infra: string;
  let otherBoss: string;
  let acmeId: string;
  let otherId: string;
  let logText = '';
  const answers: string[] = [];

  const req = async (method: 'GET' | 'PUT' | 'DELETE', url: string, token?: string, body?: unknown) => {
    const r = await t.req(method, url, token, body);
    answers.push(r.body);
    return r;
  };

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logText += chunk.toString();
        cb();
      },
    });
    t = await testRoot({ appOptions: { loggerInstance: pino({ level: 'trace' }, sink) } });
    admin = await t.login('Admin');
    boss = await t.user('boss', 'acme', ['Organization_Admin']);
    dev = await t.user('dev', 'acme', ['Application_Provider']);
    infra = await t.user('infra', 'acme', ['Infrastructure_Provider']);
    otherBoss = await t.user('otherboss', 'other', ['Organization_Admin']);
    acmeId = (await t.store.getOrganizationByName('acme'))!.id;
    otherId = (await t.store.getOrganizationByName('other'))!.id;
  });
  after(() => t.close());

  test('Organization_Admin stores a login (201), replaces it (200); the answer never has the password', async () => {
    const r = await req('PUT', `/api/registries/${HOST}`, boss, { username: 'alice', password: PW });
    assert.equal(r.statusCode, 201, r.body);
    const doc = r.json() as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc).sort(), ['created_at', 'created_by', 'host', 'organization_id', 'updated_at', 'username']);
    assert.deepEqual([doc.host, doc.username, doc.organization_id], [HOST, 'alice', acmeId]);
    const again = await req('PUT', `/api/registries/${HOST}`, boss, { username: 'alice', password: `${PW}-2` });
    assert.equal(again.statusCode, 200, again.body);
    await req('PUT', `/api/registries/${HOST}`, boss, { username: 'alice', password: PW });
    // stored encrypted: the row has no trace of it, and it opens with the root's key
    const row = (await t.store.getRegistryCredential(acmeId, HOST))!;
    assert.ok(!row.secret.includes(PW) && !Buffer.from(row.secret).toString('base64').includes(Buffer.from(PW).toString('base64')));
    assert.match(row.secret, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.equal(openPassword(await registryKey(t.store), row), PW);
  });

  test('reading: Organization_Admin and Application_Provider see host and username; other roles are refused', async () => {
    for (const tok of [boss, dev]) {
      const list = await req('GET', '/api/registries', tok);
      assert.equal(list.statusCode, 200, list.body);
      assert.deepEqual((list.json() as { host: string; username: string }[]).map((x) => [x.host, x.username]), [[HOST, 'alice']]);
      const one = await req('GET', `/api/registries/${HOST}`, tok);
      assert.equal(one.statusCode, 200);
      assert.equal((one.json() as { username: string }).username, 'alice');
    }
    assert.equal((await req('GET', '/api/registries', infra)).statusCode, 403);
    assert.equal((await req('GET', '/api/registries')).statusCode, 401);
  });

  test('changing: Application_Provider and Infrastructure_Provider are refused and change nothing', async () => {
    for (const tok of [dev, infra]) {
      assert.equal((await req('PUT', `/api/registries/${HOST}`, tok, { username: 'mallory', password: 'x' })).statusCode, 403);
      assert.equal((await req('DELETE', `/api/registries/${HOST}`, tok)).statusCode, 403);
    }
    assert.equal((await t.store.getRegistryCredential(acmeId, HOST))?.username, 'alice');
  });

  test('another organisation sees nothing of it, cannot remove it, and keeps its own login for the same host', async () => {
    assert.deepEqual((await req('GET', '/api/registries', otherBoss)).json(), []);
    assert.equal((await req('GET', `/api/registries/${HOST}`, otherBoss)).statusCode, 404);
    assert.equal((await req('DELETE', `/api/registries/${HOST}`, otherBoss)).statusCode, 404);
    assert.equal((await req('GET', `/api/registries?organization=acme`, otherBoss)).statusCode, 403);
    assert.equal((await req('PUT', `/api/registries/${HOST}?organization=${acmeId}`, otherBoss, { username: 'x', password: 'y' })).statusCode, 403);
    const own = await req('PUT', `/api/registries/${HOST}`, otherBoss, { username: 'olga', password: 'other-org-pw' });
    assert.equal(own.statusCode, 201, own.body);
    assert.equal((await t.store.getRegistryCredential(acmeId, HOST))?.username, 'alice');
    // deploys: each organisation gets its own login, nobody else's
    assert.deepEqual(await registryAuthFor(t.store, acmeId, image(`${HOST}/team/app:1`)), { host: HOST, username: 'alice', password: PW });
    assert.deepEqual(await registryAuthFor(t.store, otherId, image(`${HOST}/team/app:1`)), { host: HOST, username: 'olga', password: 'other-org-pw' });
  });

  test('Admin manages any organisation with ?organization= (id or name); unknown ones are 404', async () => {
    const list = await req('GET', '/api/registries?organization=acme', admin);
    assert.equal(list.statusCode, 200, list.body);
    assert.equal((list.json() as unknown[]).length, 1);
    assert.equal((await req('GET', `/api/registries?organization=${otherId}`, admin)).statusCode, 200);
    assert.equal((await req('GET', '/api/registries?organization=nope', admin)).statusCode, 404);
    const put = await req('PUT', '/api/registries/registry.example.com?organization=acme', admin, { username: 'ci', password: 'ci-pw' });
    assert.equal(put.statusCode, 201, put.body);
    assert.equal((await req('DELETE', '/api/registries/registry.example.com?organization=acme', admin)).statusCode, 200);
  });

  test('hostile input: bad hosts, logins and bodies are refused with a reason and store nothing', async () => {
    const before = JSON.stringify(await t.store.listRegistryCredentials(acmeId));
    const badHosts = [
      'HTTPS:%2F%2Fx.example.com',
      'Upper.Example.com',
      'a..b',
      '-lead.example.com',
      'x.example.com:99999',
      'x.example.com:0',
      `${'a'.repeat(64)}.com`,
      `${'abcdefghi.'.repeat(27)}com`,
      'h%00st',
      'h%20st',
      'h%C3%A9st.com',
      'x.example.com%2Fpath',
      '%5B%3A%3A1',
      'user@host.com',
    ];
    for (const h of badHosts) {
      const r = await req('PUT', `/api/registries/${h}`, boss, { username: 'u', password: 'p' });
      assert.ok(r.statusCode === 422 || r.statusCode === 400 || r.statusCode === 404, `${h}: ${r.statusCode} ${r.body}`);
      if (r.statusCode === 422) assert.match(r.body, /registry host|characters|port/, h);
    }
    const bodies: unknown[] = [
      {},
      { username: 'u' },
      { password: 'p' },
      { username: '', password: 'p' },
      { username: 'u', password: '' },
      { username: 'a:b', password: 'p' },
      { username: 'u\nx', password: 'p' },
      { username: 'u', password: 'p\u0000q' },
      { username: 'u', password: 'line\nbreak' },
      { username: 'x'.repeat(257), password: 'p' },
      { username: 'u', password: 'x'.repeat(8193) },
      { username: 'u', password: 'p', extra: 1 },
      { username: 7, password: 'p' },
      { username: 'u', password: ['p'] },
      'username=u&password=p',
    ];
    for (const b of bodies) {
      const r = await req('PUT', '/api/registries/ok.example.com', boss, b);
      assert.ok(r.statusCode === 422 || r.statusCode === 400 || r.statusCode === 415, `${JSON.stringify(b).slice(0, 60)}: ${r.statusCode} ${r.body}`);
    }
    assert.equal((await req('GET', '/api/registries/UPPER.com', boss)).statusCode, 422);
    assert.equal((await req('DELETE', '/api/registries/bad..host', boss)).statusCode, 422);
    assert.equal(JSON.stringify(await t.store.listRegistryCredentials(acmeId)), before, 'nothing stored');
    // the longest accepted values are accepted
    const long = await req('PUT', '/api/registries/[::1]:5000', boss, { username: 'u'.repeat(256), password: 'p'.repeat(8192) });
    assert.equal(long.statusCode, 201, long.body);
    assert.equal((await req('DELETE', '/api/registries/[::1]:5000', boss)).statusCode, 200);
  });

  test(`at most ${MAX_REGISTRY_LOGINS} logins per organisation; replacing one is always allowed`, async () => {
    const org = await t.store.createOrganization('many');
    const key = await registryKey(t.store);
    for (let i = 0; i < MAX_REGISTRY_LOGINS; i++) {
      const host = `r${i}.example.com`;
      await t.store.putRegistryCredential({ organization_id: org.id, host, username: 'u', secret: sealPassword(key, org.id, host, 'u', 'p'), created_by: null });
    }
    const manyBoss = await t.user('manyboss', 'many', ['Organization_Admin']);
    const r = await req('PUT', '/api/registries/one-more.example.com', manyBoss, { username: 'u', password: 'p' });
    assert.equal(r.statusCode, LIMIT_STATUS);
    assert.match(r.body, /OAK_LIMIT_EXCEEDED/);
    assert.equal((await req('PUT', '/api/registries/r1.example.com', manyBoss, { username: 'v', password: 'q' })).statusCode, 200);
  });

  test('DELETE removes it (then 404); deploys no longer get it', async () => {
    await req('PUT', '/api/registries/gone.example.com', boss, { username: 'g', password: 'gone-pw' });
    const d = await req('DELETE', '/api/registries/gone.example.com', boss);
    assert.equal(d.statusCode, 200, d.body);
    assert.equal((d.json() as { username: string }).username, 'g');
    assert.equal((await req('DELETE', '/api/registries/gone.example.com', boss)).statusCode, 404);
    assert.equal(await registryAuthFor(t.store, acmeId, image('gone.example.com/app:1')), undefined);
  });

  test('deploys get the login only for images on its host and only for image virtualizations', async () => {
    assert.equal((await registryAuthFor(t.store, acmeId, image(`${HOST}/team/app:1`)))?.password, PW);
    assert.equal(await registryAuthFor(t.store, acmeId, image('registry.example.com/team/app:1')), undefined);
    assert.equal(await registryAuthFor(t.store, acmeId, image('busybox')), undefined, 'docker.io has no login here');
    assert.equal(await registryAuthFor(t.store, acmeId, image(`http://${HOST}/x`, 'unikernel')), undefined);
    assert.equal(await registryAuthFor(t.store, acmeId, image(`${HOST}/x`, 'process')), undefined);
    // docker.io images match a login for docker.io
    await req('PUT', '/api/registries/docker.io', boss, { username: 'hub', password: 'hub-pw' });
    assert.equal((await registryAuthFor(t.store, acmeId, image('team/app')))?.username, 'hub');
    assert.equal((await registryAuthFor(t.store, acmeId, image('busybox:1')))?.username, 'hub');
  });

  test('a ciphertext changed, or moved to another organisation or username, does not open', async () => {
    const key = await registryKey(t.store);
    const row = (await t.store.getRegistryCredential(acmeId, HOST))!;
    const parts = row.secret.split('.');
    const flipped = Buffer.from(parts[2]!, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    assert.throws(() => openPassword(key, { ...row, secret: [parts[0], parts[1], flipped.toString('base64url'), parts[3]].join('.') }));
    assert.throws(() => openPassword(key, { ...row, organization_id: otherId }));
    assert.throws(() => openPassword(key, { ...row, username: 'bob' }));
    assert.throws(() => openPassword(key, { ...row, secret: 'garbage' }), /not in a known format/);
  });

  test('every change is in the audit trail (with the host, never the password)', async () => {
    const entries = await until('audit entries', async () => {
      const all = await t.store.listAudit({});
      const mine = all.filter((e) => e.route.startsWith('/api/registries'));
      return mine.some((e) => e.method === 'DELETE' && e.target === 'gone.example.com' && e.status === 200) ? mine : undefined;
    });
    assert.ok(entries.some((e) => e.method === 'PUT' && e.target === HOST && e.status === 201 && e.user_name === 'boss'));
    assert.ok(entries.some((e) => e.method === 'PUT' && e.status === 403 && e.user_name === 'dev'));
    assert.ok(entries.some((e) => e.method === 'PUT' && e.status === 422));
    assert.ok(!entries.some((e) => e.method === 'GET'), 'reads are not audited');
    assert.ok(!JSON.stringify(await t.store.listAudit({})).includes(PW));
  });

  test('the password is in no API answer and no log line', () => {
    assert.ok(answers.length > 50);
    for (const a of answers) assert.ok(!a.includes(PW) && !a.includes('other-org-pw') && !a.includes('hub-pw'), a.slice(0, 200));
    assert.ok(logText.includes('registry login stored'), 'the changes are logged');
    assert.ok(!logText.includes(PW) && !logText.includes('other-org-pw') && !logText.includes('hub-pw'));
  });
});
