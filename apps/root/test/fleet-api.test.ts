/**
 * Fleet upgrade routes (issue 14), hostile input first: only an Admin uploads (the role is checked
 * before the body is read), the size is capped, anything but a node-engine release tarball is
 * refused with the reason and nothing is stored; a rollout needs an uploaded artifact, a root with
 * a link, and only one runs at a time.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RootToCluster } from '@oak/contracts';
import { testRoot, type TestRoot } from './helpers.ts';

let t: TestRoot;
let admin = '';
let infra = '';
const dir = mkdtempSync(join(tmpdir(), 'oak-fleet-api-'));
const sent: { cluster: string; msg: RootToCluster }[] = [];

/** a tarball as scripts/dist.mjs lays it out (or not, with `top`/`manifest` changed) */
function tarball(name: string, o: { top?: string; manifest?: object | string; extra?: string } = {}): Buffer {
  const top = o.top ?? 'oak-node-engine-0.2.0-linux-amd64';
  const d = join(dir, name);
  mkdirSync(join(d, top), { recursive: true });
  const m = o.manifest ?? { program: 'node-engine', version: '0.2.0', os: 'linux', arch: 'amd64' };
  writeFileSync(join(d, top, 'oak-release.json'), typeof m === 'string' ? m : JSON.stringify(m));
  writeFileSync(join(d, top, 'NodeEngine.mjs'), 'console.log(1)\n');
  const args = ['-czf', join(dir, `${name}.tar.gz`), '-C', d, top];
  if (o.extra !== undefined) args.push('-P', o.extra);
  execFileSync('tar', args);
  return readFileSync(join(dir, `${name}.tar.gz`));
}
const upload = (token: string | undefined, body: Buffer, type = 'application/gzip') =>
  t.app.inject({ method: 'POST', url: '/api/fleet/artifacts', headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': type }, payload: body });

before(async () => {
  t = await testRoot();
  t.ctx.fleetArtifactLimit = 64 * 1024;
  admin = await t.login('Admin');
  infra = await t.user('ivy', 'orgA', ['Infrastructure_Provider']);
});
after(async () => {
  await t.close();
  rmSync(dir, { recursive: true, force: true });
});

test('upload: Admin only, size-capped, a node-engine tarball only; nothing is stored otherwise', async () => {
  const good = tarball('good');
  assert.equal((await upload(undefined, good)).statusCode, 401);
  const r403 = await upload(infra, good);
  assert.equal(r403.statusCode, 403, r403.body);
  const big = await upload(admin, randomBytes(65 * 1024));
  assert.equal(big.statusCode, 413, big.body);
  assert.equal(big.json().error.code, 'OAK_BODY_TOO_LARGE');
  const junk = await upload(admin, randomBytes(2000));
  assert.equal(junk.statusCode, 422);
  assert.match(junk.json().error.message, /not a NodeEngine release artifact: it does not gunzip/);
  const cases: [Buffer, RegExp][] = [
    [tarball('cluster', { top: 'oak-cluster-0.2.0-linux-amd64', manifest: { program: 'cluster', version: '0.2.0', arch: 'amd64' } }), /it is the "cluster" artifact/],
    [tarball('nomanifest', { manifest: 'not json' }), /oak-release.json is not JSON/],
    [tarball('mismatch', { top: 'oak-node-engine-9.9.9-linux-amd64' }), /does not match its manifest/],
    [tarball('escape', { extra: '/etc/hostname' }), /leaves the artifact's directory|more than one top directory/],
  ];
  for (const [body, why] of cases) {
    const r = await upload(admin, body);
    assert.equal(r.statusCode, 422, r.body);
    assert.match(r.json().error.message, why);
  }
  const json = await t.req('POST', '/api/fleet/artifacts', admin, { artifact: 'x' });
  assert.equal(json.statusCode, 415);
  assert.deepEqual(await t.store.listFleetArtifacts(), [], 'nothing stored by a refused upload');

  const ok = await upload(admin, good);
  assert.equal(ok.statusCode, 201, ok.body);
  const doc = ok.json() as { sha256: string; version: string; arch: string; size: number };
  assert.equal(doc.sha256, createHash('sha256').update(good).digest('hex'));
  assert.deepEqual([doc.version, doc.arch, doc.size], ['0.2.0', 'amd64', good.length]);
  assert.equal((await upload(admin, good)).statusCode, 200, 'the same bytes again: kept once');
  assert.deepEqual((await t.store.readFleetArtifact(doc.sha256, 0, good.length))?.equals(good), true);
  assert.equal((await t.req('GET', '/api/fleet/artifacts', infra)).json().length, 1);
});

test('rollout: needs the link, an uploaded artifact, a worker to upgrade; one at a time; Admin only', async () => {
  const body = { artifact: 'f'.repeat(64), batch: 1 };
  assert.equal((await t.req('POST', '/api/fleet/rollouts', admin, body)).statusCode, 503, 'no link on this root');
  t.ctx.fleet = { link: { isConnected: () => true, send: (cluster, msg) => (sent.push({ cluster, msg }), true) }, tick: async () => {} };
  assert.equal((await t.req('POST', '/api/fleet/rollouts', admin, body)).statusCode, 404, 'not uploaded');
  const [art] = await t.store.listFleetArtifacts();
  assert.ok(art);
  const b2 = { artifact: art.sha256 };
  assert.equal((await t.req('POST', '/api/fleet/rollouts', infra, b2)).statusCode, 403);
  assert.equal((await t.req('POST', '/api/fleet/rollouts', admin, { ...b2, batch: 0 })).statusCode, 422);
  assert.equal((await t.req('POST', '/api/fleet/rollouts', admin, { ...b2, url: 'http://evil/x.tgz' })).statusCode, 422, 'no URL of anyone\'s choosing');
  const none = await t.req('POST', '/api/fleet/rollouts', admin, b2);
  assert.equal(none.statusCode, 422);
  assert.match(none.json().error.message, /no connected worker/);
  const c = await t.store.upsertCluster('east', null);
  const summary = (id: string, version: string) => ({ id, name: id, cpu_cores_free: 1, memory_free_mb: 1, virtualizations: [], arch: 'amd64', version, conn: `c-${id}` });
  await t.store.updateCluster(c.id, {
    status: 'ACTIVE',
    resources: { cpu_cores_free: 1, cpu_cores_total: 1, memory_free_mb: 1, memory_total_mb: 1, gpus_free: 0, virtualizations: [], workers: 2, worker_summary: [summary('w1', '0.1.0'), summary('w2', '0.2.0')], version: '0.1.0' },
  });
  const r = await t.req('POST', '/api/fleet/rollouts', admin, b2);
  assert.equal(r.statusCode, 201, r.body);
  const doc = r.json() as { id: string; workers: { name: string; phase: string }[] };
  assert.deepEqual(doc.workers.map((w) => [w.name, w.phase]), [['w1', 'pending'], ['w2', 'skipped']]);
  assert.equal((await t.req('POST', '/api/fleet/rollouts', admin, b2)).statusCode, 409, 'one rollout at a time');
  assert.equal((await t.req('GET', `/api/fleet/rollouts/${doc.id}`, infra)).json().id, doc.id);
  const v = (await t.req('GET', '/api/fleet/versions', infra)).json() as { root: string; clusters: { version: string }[]; workers: { name: string; version: string }[] };
  assert.match(v.root, /^\d+\.\d+\.\d+/);
  assert.equal(v.clusters[0]?.version, '0.1.0');
  assert.deepEqual(v.workers.map((w) => [w.name, w.version]), [['w1', '0.1.0'], ['w2', '0.2.0']]);
  assert.equal((await t.req('GET', '/api/clusters/', infra)).json()[0].version, '0.1.0');
});
