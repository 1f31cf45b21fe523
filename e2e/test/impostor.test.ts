/**
 * Attack on a real 1-DOC (the `oakd` binary, no worker): impostor clusters (the real `oak-cluster`
 * binary) with a forged token, with the 1-DOC's own cluster token under another name and with the
 * printed spare token under the 1-DOC's own cluster name are refused; the cluster list and the
 * tokens do not change and the real cluster stays connected. The printed join command works, and
 * oakd prints its join commands again (tokens kept in its data dir, 0600) at the next start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatJoinToken, parseJoinToken } from '@oak/contracts';
import { freePort, tmpDir, waitFor } from '@oak/testkit';
import { Api, waitHealthy } from '../src/api.ts';
import { Procs, bins, type Proc } from '../src/procs.ts';

interface ClusterDoc {
  _id: string;
  cluster_name: string;
  status: string;
}

test('1-DOC: printed join commands; impostor clusters refused, nothing changes', { timeout: 180_000 }, async (t) => {
  const dir = await tmpDir('oak-e2e-impostor');
  t.after(() => dir.remove());
  const procs = new Procs();
  t.after(() => procs.stopAll());
  const port = await freePort();
  const linkPort = await freePort();
  const args = ['--host', '127.0.0.1', '--port', String(port), '--link-port', String(linkPort), '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()), '--data-dir', dir.path, '--no-worker'];
  const env = { OAK_ADMIN_PASSWORD: 'e2e-secret-1' };
  let oakd = procs.spawn('oakd', bins.oakd, args, { dir: dir.path, env });
  const base = `http://127.0.0.1:${port}`;
  const printed = async (p: Proc): Promise<{ worker: string; cluster: string }> =>
    waitFor(() => {
      const log = p.log();
      const w = /add a worker: +NodeEngine -a <this device> -p \d+ -t (oak1\.w\.\S+)/.exec(log);
      const c = new RegExp(`add a cluster: +OAK_JOIN_TOKEN=(oak1\\.c\\.\\S+) SYSTEM_MANAGER_URL=<this device>:${linkPort} CLUSTER_NAME=<name> oak-cluster`).exec(log);
      return w?.[1] && c?.[1] ? { worker: w[1], cluster: c[1] } : undefined;
    }, { timeoutMs: 30_000, message: 'join commands printed' });
  const impostor = (name: string, token: string): Proc =>
    procs.spawn(`cluster-${name}-${randomBytes(2).toString('hex')}`, bins.cluster, [], {
      dir: dir.path,
      env: { SYSTEM_MANAGER_URL: `127.0.0.1:${linkPort}`, CLUSTER_NAME: name, OAK_JOIN_TOKEN: token, OAK_CLUSTER_HOST: '127.0.0.1', OAK_CLUSTER_PORT: '0', OAK_MQTT_PORT: '0' },
    });
  try {
    await waitHealthy(`${base}/healthz`);
    const api = new Api(base);
    await api.login('Admin', 'e2e-secret-1');
    const first = await printed(oakd);
    const file = join(dir.path, 'join-tokens.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { cluster: string; worker: string; spareCluster: string };
    assert.equal(kept.worker, first.worker);
    assert.equal(kept.spareCluster, first.cluster);
    const local = await waitFor(async () => (await api.call<ClusterDoc[]>('GET', '/api/clusters/active')).find((c) => c.cluster_name === 'local'), { timeoutMs: 20_000, message: 'local ACTIVE' });

    const state = async (): Promise<string> => JSON.stringify({ clusters: (await api.call<ClusterDoc[]>('GET', '/api/clusters/')).map((c) => [c._id, c.cluster_name, c.status]), tokens: await api.call('GET', '/api/tokens') });
    const before = await state();
    const own = parseJoinToken(kept.cluster);
    const attacks: [string, string, RegExp][] = [
      ['local', formatJoinToken({ ...own, secret: randomBytes(24).toString('base64url') }), /unknown join token/],
      ['evil', kept.cluster, /bound to another cluster name/],
      ['local', first.cluster, /belongs to another join token/],
      ['local', first.worker, /worker token/],
    ];
    for (const [name, token, reason] of attacks) {
      const p = impostor(name, token);
      await waitFor(() => (reason.test(p.log()) ? true : undefined), { timeoutMs: 20_000, message: `${name}: ${reason}` });
      await p.kill();
      assert.doesNotMatch(p.log(), /connected to the root as cluster/);
    }
    assert.equal(await state(), before, 'clusters and tokens unchanged');
    const still = (await api.call<ClusterDoc[]>('GET', '/api/clusters/active')).map((c) => c._id);
    assert.deepEqual(still, [local._id], 'the real cluster is still the only one connected');

    // the printed command adds a cluster
    const east = impostor('east', first.cluster);
    await waitFor(async () => (await api.call<ClusterDoc[]>('GET', '/api/clusters/active')).some((c) => c.cluster_name === 'east'), { timeoutMs: 20_000, message: 'east ACTIVE' });
    await east.kill();

    // next start: the same worker token; a new spare cluster token (the old one is bound to east now)
    await oakd.kill();
    oakd = procs.spawn('oakd-2', bins.oakd, args, { dir: dir.path, env });
    const second = await printed(oakd);
    assert.equal(second.worker, first.worker);
    assert.notEqual(second.cluster, first.cluster);
    assert.equal(parseJoinToken(second.cluster).caHash, parseJoinToken(first.cluster).caHash, 'the same root CA');
  } catch (err) {
    console.error(procs.logs());
    throw err;
  }
});
