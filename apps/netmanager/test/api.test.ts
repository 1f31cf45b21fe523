import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { readFile, stat } from 'node:fs/promises';
import { OakError } from '@oak/contracts';
import type { NetInstanceDeploy, NetRegister } from '@oak/contracts';
import { silentLogger } from '@oak/bus';
import { tmpDir } from '@oak/testkit';
import { MAX_API_BODY, isLoopback, startApi } from '../src/api.ts';
import type { ApiHandlers } from '../src/api.ts';

interface Answer { status: number; body: unknown; headers: Record<string, string | string[] | undefined> }

function call(port: number, method: string, path: string, opts: { key?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers };
    if (opts.key !== undefined) headers['authorization'] = `Bearer ${opts.key}`;
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : (JSON.parse(text) as unknown), headers: res.headers });
      });
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

const REG: NetRegister = { worker_id: 'w1', mqtt_url: 'mqtt://127.0.0.1:1', namespace: 'oak', bridge: 'oak0' };

async function withApi(fn: (a: { port: number; key: string; keyPath: string; calls: unknown[] }) => Promise<void>, handlers: Partial<ApiHandlers> = {}): Promise<void> {
  const dir = await tmpDir('h2-api');
  const calls: unknown[] = [];
  const api = await startApi({
    port: 0,
    keyDir: `${dir.path}/run`,
    log: silentLogger,
    requestTimeoutMs: 1000,
    handlers: {
      register: async (r) => { calls.push(['register', r]); return { subnet: '10.18.0.64/26', subnet_v6: null, gateway: '10.18.0.65', gateway_v6: null, tunnel_device: 'oakx0', mtu: 1450, dns: '10.18.0.65' }; },
      deploy: async (d) => { calls.push(['deploy', d]); },
      undeploy: async (u) => { calls.push(['undeploy', u]); },
      status: () => ({ subnet: '10.18.0.64/26' }),
      ...handlers,
    },
  });
  try {
    await fn({ port: api.port, key: api.key, keyPath: api.keyPath, calls });
  } finally {
    await api.close();
    await assert.rejects(stat(api.keyPath), 'key file removed on close');
    await dir.remove();
  }
}

test('the key file is 0600 and holds the key; authorized requests reach the handlers', async () => {
  await withApi(async ({ port, key, keyPath, calls }) => {
    assert.match(keyPath, /netmanager-\d+\.key$/);
    assert.equal((await readFile(keyPath, 'utf8')).trim(), key);
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal((await stat(keyPath)).mode & 0o777, 0o600);
    const r = await call(port, 'POST', '/register', { key, body: JSON.stringify(REG) });
    assert.equal(r.status, 200);
    assert.equal((r.body as { subnet: string }).subnet, '10.18.0.64/26');
    const d: NetInstanceDeploy = { job_name: 'a.b.c.d', instance_number: 0, nsip: '10.18.0.66' };
    assert.equal((await call(port, 'POST', '/instance/deploy', { key, body: JSON.stringify(d) })).status, 204);
    assert.equal((await call(port, 'POST', '/instance/undeploy', { key, body: JSON.stringify({ job_name: 'a.b.c.d', instance_number: 0 }) })).status, 204);
    const s = await call(port, 'GET', '/status', { key });
    assert.deepEqual([s.status, s.body], [200, { subnet: '10.18.0.64/26' }]);
    assert.deepEqual(calls.map((c) => (c as [string])[0]), ['register', 'deploy', 'undeploy']);
  });
});

test('hostile: no key, wrong key, a key of another length, Basic auth: 401 and nothing reaches the handlers', async () => {
  await withApi(async ({ port, key, calls }) => {
    for (const headers of [{} as Record<string, string>, { authorization: `Bearer ${'0'.repeat(64)}` }, { authorization: `Bearer ${key}x` }, { authorization: `Bearer ${key.slice(1)}` }, { authorization: `Basic ${Buffer.from(`x:${key}`).toString('base64')}` }, { authorization: 'Bearer' }, { authorization: `bearer  ${key} extra` }]) {
      const r = await call(port, 'POST', '/register', { body: JSON.stringify(REG), headers });
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal((r.body as { error: { code: string } }).error.code, 'OAK_UNAUTHORIZED');
      assert.equal(r.headers['www-authenticate'], 'Bearer');
    }
    assert.equal((await call(port, 'GET', '/nope')).status, 401, 'unknown routes need the key too');
    assert.equal(calls.length, 0);
  });
});

test('hostile: oversize, malformed JSON, wrong shape, unknown route, wrong method, not JSON', async () => {
  await withApi(async ({ port, key, calls }) => {
    const big = JSON.stringify({ ...REG, pad: 'x'.repeat(MAX_API_BODY) });
    const r413 = await call(port, 'POST', '/register', { key, body: big });
    assert.equal(r413.status, 413);
    assert.equal((r413.body as { error: { code: string } }).error.code, 'OAK_BODY_TOO_LARGE');
    // oversize without a content length (chunked)
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/instance/deploy', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
      req.on('error', reject);
      for (let i = 0; i < 80; i++) req.write('x'.repeat(1024));
      req.end();
    }).catch(() => 413);
    assert.equal(chunked, 413);
    const bad = await call(port, 'POST', '/register', { key, body: '{"worker_id": ' });
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { error: { code: string } }).error.code, 'OAK_MALFORMED_JSON');
    assert.equal((await call(port, 'POST', '/register', { key, body: '' })).status, 400);
    const shape = await call(port, 'POST', '/register', { key, body: JSON.stringify({ ...REG, bridge: 'a-bridge-name-too-long' }) });
    assert.equal(shape.status, 400);
    assert.match((shape.body as { error: { message: string; path: string } }).error.message, /bridge/);
    const shape2 = await call(port, 'POST', '/instance/deploy', { key, body: JSON.stringify({ job_name: 'a', instance_number: -1, nsip: '10.18.0.66' }) });
    assert.equal(shape2.status, 400);
    assert.match((shape2.body as { error: { message: string } }).error.message, /instance_number/);
    const deep = await call(port, 'POST', '/instance/undeploy', { key, body: '['.repeat(5000) + ']'.repeat(5000) });
    assert.equal(deep.status, 400);
    const nf = await call(port, 'GET', '/etc/passwd', { key });
    assert.equal(nf.status, 404);
    assert.match((nf.body as { error: { hint: string } }).error.hint, /POST \/register/);
    const wm = await call(port, 'GET', '/register', { key });
    assert.equal(wm.status, 405);
    assert.equal(wm.headers['allow'], 'POST');
    assert.equal((await call(port, 'POST', '/register', { key, body: JSON.stringify(REG), headers: { 'content-type': 'text/plain' } })).status, 415);
    assert.equal(calls.length, 0);
  });
});

test('handler errors come back with their code and hint; a slow request times out', async () => {
  await withApi(async ({ port, key }) => {
    const r = await call(port, 'POST', '/register', { key, body: JSON.stringify(REG) });
    assert.equal(r.status, 503);
    assert.deepEqual(r.body, { error: { code: 'OAK_UNAVAILABLE', message: 'no subnet from the cluster', hint: 'check the broker' } });
    const d = await call(port, 'POST', '/instance/deploy', { key, body: JSON.stringify({ job_name: 'a', instance_number: 0, nsip: '1.2.3.4' }) });
    assert.equal(d.status, 500);
    assert.equal((d.body as { error: { code: string } }).error.code, 'OAK_INTERNAL');
    // headers that never finish: the server closes the connection (request timeout)
    const closed = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write('POST /register HTTP/1.1\r\nHost: x\r\n'));
      s.on('data', () => {});
      s.on('close', () => resolve(true));
      setTimeout(() => { s.destroy(); resolve(false); }, 8000).unref();
    });
    assert.equal(closed, true);
  }, {
    register: async () => { throw new OakError('OAK_UNAVAILABLE', 'no subnet from the cluster', { hint: 'check the broker' }); },
    deploy: async () => { throw new Error('boom'); },
  });
});

test('only loopback binds', async () => {
  assert.equal(isLoopback('127.0.0.1'), true);
  assert.equal(isLoopback('::1'), true);
  assert.equal(isLoopback('0.0.0.0'), false);
  assert.equal(isLoopback('::'), false);
  assert.equal(isLoopback('192.0.2.1'), false);
  await assert.rejects(startApi({ host: '0.0.0.0', port: 0, keyDir: '/nonexistent', log: silentLogger, handlers: {} as ApiHandlers }), /loopback only/);
});
