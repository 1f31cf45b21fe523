/**
 * Fleet upgrades on the cluster (issue 14): artifacts come from the root in order and are kept
 * only when their sha256 is the command's; the route that serves them to workers answers only a
 * registered worker's credentials.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { silentLogger } from '@oak/bus';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';
import { ArtifactCache } from '../src/artifacts.ts';
import { startCluster, type ClusterHandle } from '../src/index.ts';

type Chunk = Extract<RootToCluster, { type: 'artifact_chunk' }>;
const bytes = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) % 256));
const sha = createHash('sha256').update(bytes).digest('hex');

/** a root that answers artifact_request with `answer` (in 4,000-byte chunks by default) */
function cacheWith(answer: (req: Extract<ClusterToRoot, { type: 'artifact_request' }>) => Partial<Chunk>): { cache: ArtifactCache; asked: number[] } {
  const asked: number[] = [];
  const cache: ArtifactCache = new ArtifactCache({
    chunkTimeoutMs: 500,
    send: (m) => {
      if (m.type !== 'artifact_request') return false;
      asked.push(m.offset);
      const part = bytes.subarray(m.offset, m.offset + 4000);
      setImmediate(() => cache.onChunk({ type: 'artifact_chunk', request_id: m.request_id, sha256: m.sha256, offset: m.offset, total: bytes.length, data: part.toString('base64'), ...answer(m) }));
      return true;
    },
  });
  return { cache, asked };
}

test('an artifact is fetched chunk by chunk, checked and kept; a wrong one is refused and not kept', async () => {
  const ok = cacheWith(() => ({}));
  assert.deepEqual(await ok.cache.fetch(sha, bytes.length), bytes);
  assert.deepEqual(ok.asked, [0, 4000, 8000]);
  assert.deepEqual(ok.cache.get(sha), bytes);
  const tampered = cacheWith((m) => (m.offset === 4000 ? { data: Buffer.alloc(4000, 1).toString('base64') } : {}));
  await assert.rejects(tampered.cache.fetch(sha, bytes.length), /have sha256 [0-9a-f]{64}, not/);
  assert.equal(tampered.cache.get(sha), undefined);
  await assert.rejects(cacheWith(() => ({ total: 5 })).cache.fetch(sha, bytes.length), /the root has 5 bytes/);
  await assert.rejects(cacheWith(() => ({ error: 'no such artifact at the root' })).cache.fetch(sha, bytes.length), /no such artifact/);
  await assert.rejects(cacheWith((m) => ({ offset: m.offset + 1 })).cache.fetch(sha, bytes.length), /out of order/);
  await assert.rejects(cacheWith(() => ({})).cache.fetch(sha, 0), /out of range/);
  const silent = new ArtifactCache({ send: () => true, chunkTimeoutMs: 50 });
  await assert.rejects(silent.fetch(sha, 10), /did not answer/);
  const down = new ArtifactCache({ send: () => false });
  await assert.rejects(down.fetch(sha, 10), /unreachable/);
});

let cluster: ClusterHandle;
before(async () => {
  cluster = await startCluster({ name: 'art', host: '127.0.0.1', port: 0, mqttPort: 0, log: silentLogger });
});
after(() => cluster.close());

test('GET /api/node/artifact/<sha256> answers only a registered worker (401 otherwise, before it looks)', async () => {
  const get = (auth?: string, s = sha) => fetch(`${cluster.httpUrl}/api/node/artifact/${s}`, auth === undefined ? {} : { headers: { authorization: auth } });
  for (const auth of [undefined, 'Bearer x', `Basic ${Buffer.from('w1:wrong').toString('base64')}`, `Basic ${Buffer.from('nobody').toString('base64')}`, 'Basic !!!']) {
    const r = await get(auth);
    assert.equal(r.status, 401, String(auth));
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'OAK_UNAUTHORIZED');
  }
  assert.equal((await get(undefined, '../../etc/passwd')).status, 404, 'no such route');
});
