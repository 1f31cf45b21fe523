/** `oak node rm` against a real root: by id or name (found in the summaries), --cluster, errors. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_PASSWORD, CliHome, startTestRoot, type TestRoot } from './helpers.ts';

describe('oak node rm', () => {
  let root: TestRoot;
  const home = new CliHome();
  const sent: { cluster: string; ids: string[] }[] = [];
  let connected = true;
  let run: (args: string[], opts?: { stdin?: string }) => ReturnType<CliHome['run']>;

  before(async () => {
    root = await startTestRoot({ cluster: true });
    root.root.ctx.removeWorkers = (cluster, ids) => {
      if (!connected) return false;
      sent.push({ cluster, ids });
      return true;
    };
    run = (args, opts = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url } });
    const login = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(login.code, 0, login.stderr);
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('removes a worker named by id or by name; the root tells its cluster', async () => {
    const cid = root.cluster?.clusterId ?? '';
    const byId = await run(['node', 'rm', 'worker-1']);
    assert.equal(byId.code, 0, byId.stderr);
    assert.match(byId.stdout, /worker worker-1 removed from cluster fake/);
    const byName = await run(['node', 'rm', 'edge-worker-1', '-o', 'json']);
    assert.equal(byName.code, 0, byName.stderr);
    assert.deepEqual(JSON.parse(byName.stdout), { cluster_id: cid, cluster_name: 'fake', node_id: 'worker-1', removed: true });
    // a worker the summaries do not show (e.g. dead), with its cluster named
    const dead = await run(['node', 'rm', 'gone-7', '--cluster', 'fake']);
    assert.equal(dead.code, 0, dead.stderr);
    assert.deepEqual(sent.map((s) => s.ids[0]), ['worker-1', 'worker-1', 'gone-7']);
  });

  it('an unknown worker, or a cluster that is not connected: a clear error, nothing sent', async () => {
    const before = sent.length;
    const unknown = await run(['node', 'rm', 'nobody']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no cluster reports a worker "nobody"/);
    assert.match(unknown.stderr, /--cluster/);
    connected = false;
    const off = await run(['node', 'rm', 'worker-1']);
    connected = true;
    assert.equal(off.code, 1);
    assert.match(off.stderr, /not connected/);
    assert.equal(sent.length, before);
  });
});
