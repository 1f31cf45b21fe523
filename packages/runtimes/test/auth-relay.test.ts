/**
 * The authenticating relay against a fake registry on 127.0.0.1 that uses the distribution API's
 * bearer token flow: 401 with a Bearer challenge, a token service that wants the login, then the
 * manifest with the token. Also the challenge parser and the relay's own refusals.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseChallenge, startAuthRelay } from '../src/containerd/auth-relay.ts';

const login = { username: 'bob', password: 'p@ss:word with spaces' };
let server: Server;
let base: string;
const seen: string[] = [];

before(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    seen.push(`${req.method} ${url.pathname}${url.search} ${req.headers.authorization ?? '-'}`);
    if (url.pathname === '/token') {
      const want = `Basic ${Buffer.from(`${login.username}:${login.password}`).toString('base64')}`;
      if (req.headers.authorization !== want) return void res.writeHead(401).end('{}');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `tok-${url.searchParams.get('scope')}` }));
      return;
    }
    if (url.pathname === '/v2/team/app/manifests/1') {
      if (req.headers.authorization !== 'Bearer tok-repository:team/app:pull') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${base}/token",service="fake",scope="repository:team/app:pull"` }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': 'sha256:abc' }).end('{"ok":true}');
      return;
    }
    if (url.pathname === '/v2/team/app/blobs/sha256:1') {
      res.writeHead(307, { location: 'http://storage.invalid/blob' }).end();
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((r) => server.close(() => r())));

test('parseChallenge reads Basic and Bearer challenges with quoted parameters', () => {
  assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' },
  });
  assert.equal(parseChallenge(null), undefined);
  assert.equal(parseChallenge(''), undefined);
});

test('bearer token flow: the relay fetches a token with the login and answers with the manifest', async () => {
  const relay = await startAuthRelay(base, login);
  try {
    const res = await fetch(`${relay.url}/v2/team/app/manifests/1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), 'sha256:abc');
    assert.equal(await res.text(), '{"ok":true}');
    assert.equal(relay.denied(), undefined);
    // the token is reused for the next request of that repository (no second token fetch)
    const tokenFetches = seen.filter((s) => s.startsWith('GET /token')).length;
    assert.equal((await fetch(`${relay.url}/v2/team/app/manifests/1`)).status, 200);
    assert.equal(seen.filter((s) => s.startsWith('GET /token')).length, tokenFetches);
    assert.ok(seen.some((s) => s.startsWith('GET /token?service=fake&scope=repository%3Ateam%2Fapp%3Apull Basic ')));
    // redirects go back unfollowed (blob storage is reached by ctr, without the login)
    const r = await fetch(`${relay.url}/v2/team/app/blobs/sha256:1`, { redirect: 'manual' });
    assert.equal(r.status, 307);
    assert.equal(r.headers.get('location'), 'http://storage.invalid/blob');
  } finally {
    await relay.close();
  }
});

test('a wrong login: the token service refuses, the relay says so without the password', async () => {
  const relay = await startAuthRelay(base, { username: 'bob', password: 'nope-wrong' });
  try {
    const res = await fetch(`${relay.url}/v2/team/app/manifests/1`);
    assert.equal(res.status, 401);
    assert.match(relay.denied() ?? '', /token service refused the login of bob/);
    assert.ok(!(relay.denied() ?? '').includes('nope-wrong'));
  } finally {
    await relay.close();
  }
});

test('hostile requests: other paths, methods and path tricks get nothing from the registry', async () => {
  const relay = await startAuthRelay(base, login);
  const before = seen.length;
  try {
    const origin = new URL(relay.url).origin;
    assert.equal((await fetch(`${origin}/v2/team/app/manifests/1`)).status, 404, 'without the secret path');
    assert.equal((await fetch(`${origin}/wrongsecret/v2/team/app/manifests/1`)).status, 404);
    assert.equal((await fetch(`${relay.url}/v2/team/app/manifests/1`, { method: 'PUT', body: 'x' })).status, 405, 'pull only');
    assert.equal((await fetch(`${relay.url}/v2/team/app/manifests/1`, { method: 'DELETE' })).status, 405);
    assert.equal(seen.length, before, 'none of these reached the registry');
  } finally {
    await relay.close();
  }
});

test('after close the relay answers nothing', async () => {
  const relay = await startAuthRelay(base, login);
  await relay.close();
  await assert.rejects(fetch(`${relay.url}/v2/`));
});
