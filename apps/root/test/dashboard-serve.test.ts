/**
 * The dashboard served by the root (plugins/dashboard.ts): index.html for non-/api paths and not
 * cached, hashed assets cached for a year and sent gzipped, the API's 404s unchanged, path
 * traversal and dot files refused, and a CSP without inline script or eval on every page.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { testRoot, type TestRoot } from './helpers.ts';

describe('dashboard served at /', () => {
  let t: TestRoot;
  let dir: string;
  const outside = 'SECRET-OUTSIDE-THE-ASSETS';
  before(async () => {
    const base = mkdtempSync(join(tmpdir(), 'oak-dash-'));
    dir = join(base, 'dist');
    mkdirSync(join(dir, 'assets'), { recursive: true });
    writeFileSync(join(base, 'secret.txt'), outside);
    writeFileSync(join(dir, 'secret.txt'), outside);
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>oak</title><script type="module" src="/assets/index-abc123.js"></script>');
    const js = 'console.log("dashboard")';
    writeFileSync(join(dir, 'assets/index-abc123.js'), js);
    writeFileSync(join(dir, 'assets/index-abc123.js.gz'), gzipSync(js));
    writeFileSync(join(dir, 'assets/.hidden'), outside);
    t = await testRoot({ appOptions: { dashboardDir: dir } });
  });
  after(async () => {
    await t.close();
    rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it('answers index.html, not cached, with a strict CSP, for / and deep links', async () => {
    for (const url of ['/', '/applications', '/applications/abc/def?x=1', '/services/s1/instances/0/logs']) {
      const r = await t.req('GET', url);
      assert.equal(r.statusCode, 200, url);
      assert.match(r.headers['content-type'] as string, /^text\/html/);
      assert.equal(r.headers['cache-control'], 'no-cache');
      const csp = r.headers['content-security-policy'] as string;
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.match(r.body, /<title>oak<\/title>/);
    }
  });

  it('serves hashed assets immutable for a year, gzipped when accepted', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/assets/index-abc123.js', headers: { 'accept-encoding': 'gzip' } });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-encoding'], 'gzip');
    assert.match(r.headers['cache-control'] as string, /max-age=31536000.*immutable/);
    const plain = await t.req('GET', '/assets/index-abc123.js');
    assert.equal(plain.statusCode, 200);
    assert.equal(plain.body, 'console.log("dashboard")');
  });

  it('keeps the API and its 404s unchanged', async () => {
    const r = await t.req('GET', '/api/nothing/here');
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().error.code, 'OAK_NOT_FOUND');
    const h = await t.req('GET', '/healthz');
    assert.equal(h.statusCode, 200);
    assert.equal((await t.req('GET', '/api/applications/')).statusCode, 401);
    // a missing asset is a 404, not index.html (a stale page asking for old chunks must see the error)
    assert.equal((await t.req('GET', '/assets/gone-123.js')).statusCode, 404);
    // only GET is answered by the page
    assert.equal((await t.req('POST', '/applications')).statusCode, 404);
  });

  it('refuses path traversal and dot files (hostile input)', async () => {
    const urls = [
      '/assets/../secret.txt',
      '/assets/..%2fsecret.txt',
      '/assets/..%2f..%2fsecret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
      '/assets/....//secret.txt',
      '/assets/..\\..\\secret.txt',
      '/assets/%5c..%5c..%5csecret.txt',
      '/assets/.hidden',
      '/assets/%00index-abc123.js',
      '/assets/index-abc123.js%00.html',
      '/secret.txt',
      '/../secret.txt',
      `/assets/${'a'.repeat(5000)}`,
    ];
    for (const url of urls) {
      const r = await t.req('GET', url);
      assert.ok(!r.body.includes(outside), `${url} leaked a file outside assets (${r.statusCode})`);
      // refused, or (a path the URL parser normalised out of /assets/) the page itself
      if (r.statusCode === 200) assert.match(r.body, /<title>oak<\/title>/, url);
      else assert.ok([400, 403, 404].includes(r.statusCode), `${url}: ${r.statusCode}`);
    }
  });

  it('without a build, / says how to build the dashboard', async () => {
    const bare = await testRoot({ appOptions: { dashboardDir: join(dir, 'nowhere') } });
    try {
      const r = await bare.req('GET', '/');
      assert.equal(r.statusCode, 404);
      assert.equal(r.json().error.code, 'OAK_NOT_FOUND');
      assert.match(r.json().error.hint, /scripts\/build\.mjs/);
    } finally {
      await bare.close();
    }
  });
});
