/** Registration bodies are bounded (issue 7): size (413) and depth/width (422) before anything reads them. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { silentLogger } from '@oak/bus';
import { startCluster, type ClusterHandle } from '../src/index.ts';
import { registration } from './fixtures.ts';

let cluster: ClusterHandle;
before(async () => {
  cluster = await startCluster({ name: 'rb', host: '127.0.0.1', port: 0, mqttPort: 0, log: silentLogger });
});
after(() => cluster.close());

const post = async (body: string): Promise<{ status: number; code: string | undefined }> => {
  const r = await fetch(cluster.registrationUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const j = (await r.json()) as { error?: { code?: string } };
  return { status: r.status, code: j.error?.code };
};

test('a registration nested 5,000 deep or too wide is refused with 422, a huge one with 413; nothing is recorded', async () => {
  const base = JSON.stringify(registration('w'));
  const deep = `${base.slice(0, -1)},"extra":${'['.repeat(5_000)}1${']'.repeat(5_000)}}`;
  assert.ok(deep.length < 16 * 1024, 'within the body limit: refused for its depth');
  assert.deepEqual(await post(deep), { status: 422, code: 'OAK_LIMIT_EXCEEDED' });
  const wide = `${base.slice(0, -1)},"virtualizations":[${Array.from({ length: 1_000 }, () => '"container"').join(',')}]}`;
  assert.ok(wide.length < 16 * 1024, 'within the body limit: refused for its width');
  assert.deepEqual(await post(wide), { status: 422, code: 'OAK_LIMIT_EXCEEDED' });
  const huge = `${base.slice(0, -1)},"node_name":"${'n'.repeat(100_000)}"}`;
  assert.deepEqual(await post(huge), { status: 413, code: 'OAK_BODY_TOO_LARGE' });
  const long = `${base.slice(0, -1)},"node_name":"${'n'.repeat(5_000)}"}`;
  assert.deepEqual(await post(long), { status: 422, code: 'OAK_LIMIT_EXCEEDED' });
  assert.equal(cluster.core.workers.size, 0, 'no worker was recorded');
  // a normal registration is not refused by the limits (401 once registration needs a join token)
  const ok = await post(base);
  assert.ok(ok.status === 200 || ok.code === 'OAK_JOIN_TOKEN_INVALID' || ok.code === 'OAK_UNAUTHORIZED', JSON.stringify(ok));
  const nodes = await fetch(`${cluster.httpUrl}/api/nodes`);
  assert.equal(nodes.status, 200);
});

test('supported_addons: a bad label or more than 64 are refused before anything is recorded', async () => {
  const base = registration('w');
  for (const addons of [['ok', 'not ok'], ['x'.repeat(65)], Array.from({ length: 65 }, (_, i) => `a${i}`), 'image-builder', [7]]) {
    const r = await post(JSON.stringify({ ...base, supported_addons: addons }));
    assert.ok(r.status === 400 || r.status === 422, `${JSON.stringify(addons).slice(0, 40)}: ${JSON.stringify(r)}`);
  }
  assert.equal(cluster.core.workers.size, 0, 'no worker was recorded');
  const ok = await post(JSON.stringify({ ...base, supported_addons: ['image-builder'] }));
  assert.ok(ok.status === 200 || ok.code === 'OAK_JOIN_TOKEN_INVALID' || ok.code === 'OAK_UNAUTHORIZED', JSON.stringify(ok));
});

test('a registration\'s connection is closed after the answer, refused or not (a fleet does not hold an idle socket each); other routes keep theirs', async () => {
  const agent = new Agent({ keepAlive: true });
  const ask = (method: string, path: string, body?: string): Promise<{ status: number; connection: string | undefined }> => new Promise((resolve, reject) => {
    const u = new URL(cluster.httpUrl);
    const req = request({ host: u.hostname, port: u.port, path, method, agent, headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
    });
    req.on('error', reject);
    req.end(body);
  });
  try {
    const base = JSON.stringify(registration('w'));
    const refused = await ask('POST', '/api/node/register', base);
    assert.notEqual(refused.status, 200);
    assert.equal(refused.connection, 'close');
    const huge = await ask('POST', '/api/node/register', `${base.slice(0, -1)},"node_name":"${'n'.repeat(100_000)}"}`);
    assert.deepEqual(huge, { status: 413, connection: 'close' });
    const nodes = await ask('GET', '/api/nodes');
    assert.equal(nodes.status, 200);
    assert.equal(nodes.connection, 'keep-alive');
  } finally {
    agent.destroy();
  }
});
