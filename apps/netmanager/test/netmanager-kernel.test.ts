/**
 * The NetManager with the real Datapath on a real kernel: one worker is a network namespace
 * `h2-<id>-w` (a veth uplink with NodePublicAddress, the NodeEngine's bridge with the gateway);
 * the Datapath runs its commands there (`ip netns exec`), the broker and a fake cluster run on
 * loopback. Checks the tunnel device, the peer route, the service rules before and after an
 * update, adoption after a restart, and that `NetManager --clean` leaves nothing. Needs root, iproute2, nft.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { netTopics } from '@oak/contracts';
import type { NetRegisterAnswer } from '@oak/contracts';
import { serviceTable, tunnelDevice } from '@oak/net';
import { onProcessExit, shortId, waitFor } from '@oak/testkit';
import { Datapath } from '../src/datapath.ts';
import { startNetManager } from '../src/netmanager.ts';
import type { NetManagerHandle } from '../src/netmanager.ts';
import type { DatapathFactory } from '../src/ports.ts';
import { statePath } from '../src/state.ts';
import { WEB, api, entry, options, publishPeers, withEnv } from './harness.ts';

const BIN = fileURLToPath(new URL('../bin/NetManager.mjs', import.meta.url));
const id = shortId(2);
const W = `h2-${id}-w`;
const NAMESPACE = `h2k${id}`;
const BRIDGE = `h2b${id}`;

function sh(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function inW(...args: string[]): string {
  return sh('ip', 'netns', 'exec', W, ...args);
}
function tryInW(...args: string[]): string | undefined {
  try {
    return inW(...args);
  } catch {
    return undefined;
  }
}
const removeAll = (): void => {
  try { sh('ip', 'netns', 'del', W); } catch { /* gone */ }
};
const unregister = onProcessExit(removeAll);
after(() => {
  removeAll();
  unregister();
});

test('the real datapath: tunnel, peer route, service rules follow an update within 1 s, restart adopts, NetManager --clean leaves nothing', async () => {
  assert.equal(process.getuid?.(), 0, 'this test needs root (network namespaces, nft)');
  sh('ip', 'netns', 'add', W);
  inW('ip', 'link', 'set', 'lo', 'up');
  inW('ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1');
  inW('ip', 'link', 'set', 'up1', 'up');
  inW('ip', 'addr', 'add', '192.0.2.10/24', 'dev', 'up0');
  inW('ip', 'link', 'set', 'up0', 'up');
  inW('ip', 'link', 'add', BRIDGE, 'type', 'bridge');
  inW('ip', 'addr', 'add', '10.18.0.65/26', 'dev', BRIDGE);
  inW('ip', 'link', 'set', BRIDGE, 'up');
  const factory: DatapathFactory = (o) => new Datapath({ ...o, exec: ['ip', 'netns', 'exec', W] });
  const dev = tunnelDevice(NAMESPACE);
  const table = serviceTable(NAMESPACE);

  await withEnv(async (env) => {
    const { cluster } = env;
    cluster.tables.set(WEB, { job_name: WEB, service_ip: '10.30.1.2', service_ip_v6: null, closest_ip: '10.30.1.3', closest_ip_v6: null, instances: [entry(0, 'w1', '10.18.0.66'), entry(1, 'w2', '10.18.0.130')] });
    await publishPeers(env, [
      { worker_id: 'w1', subnet: '10.18.0.64/26', host_ip: '192.0.2.10', host_port: 50103 },
      { worker_id: 'w2', subnet: '10.18.0.128/26', host_ip: '192.0.2.20', host_port: 50103 },
    ]);
    const opts = options(env, { publicAddress: '192.0.2.10', datapath: factory, resolver: null });
    let nm: NetManagerHandle = await startNetManager(opts);
    try {
      const reg = await api(nm, 'POST', '/register', { worker_id: 'w1', mqtt_url: env.broker.url, mqtt_username: 'w1', mqtt_password: 'x', namespace: NAMESPACE, bridge: BRIDGE });
      assert.equal(reg.status, 200, JSON.stringify(reg.json));
      const answer = reg.json as NetRegisterAnswer;
      assert.equal(answer.tunnel_device, dev);
      assert.equal(answer.mtu, 1450);
      assert.equal(answer.dns, null);
      const link = JSON.parse(inW('ip', '-j', '-d', 'link', 'show', 'dev', dev)) as Array<{ ifindex: number; linkinfo: { info_kind: string; info_data: { id: number; port: number } } }>;
      assert.equal(link[0]?.linkinfo.info_kind, 'vxlan');
      assert.equal(link[0]?.linkinfo.info_data.id, 18);
      assert.equal(link[0]?.linkinfo.info_data.port, 50103);
      const ifindex = link[0]?.ifindex;
      await waitFor(() => /via 10\.18\.0\.129/.test(inW('ip', 'route', 'show', '10.18.0.128/26')), { message: 'route to the peer subnet' });

      assert.equal((await api(nm, 'POST', '/instance/deploy', { job_name: WEB, instance_number: 0, nsip: '10.18.0.66' })).status, 204);
      await waitFor(() => { const t = tryInW('nft', 'list', 'table', 'inet', table) ?? ''; return t.includes('10.30.1.2') && t.includes('10.18.0.130'); }, { message: 'service rules for both instances' });

      const t0 = Date.now();
      await cluster.bus.publishJson(netTopics.jobUpdates(WEB), { ...cluster.tables.get(WEB), instances: [entry(0, 'w1', '10.18.0.66')] });
      await waitFor(() => { const t = tryInW('nft', 'list', 'table', 'inet', table) ?? ''; return t.includes('10.30.1.2') && !t.includes('10.18.0.130'); }, { timeoutMs: 1000, intervalMs: 20, message: 'rules follow the update within 1 s' });
      assert.ok(Date.now() - t0 < 1000);

      // restart: the device and the table stay and are adopted
      await nm.close();
      assert.ok(tryInW('nft', 'list', 'table', 'inet', table)?.includes('10.30.1.2'), 'table kept across the stop');
      nm = await startNetManager(opts);
      const st = await waitFor(async () => { const s = await api(nm, 'GET', '/status'); const j = s.json as { subnet: string | null; datapath: unknown; tables: unknown[] }; return j.datapath !== null && j.tables.length === 1 ? j : undefined; }, { message: 're-attached' });
      assert.equal(st.subnet, '10.18.0.64/26');
      const again = JSON.parse(inW('ip', '-j', 'link', 'show', 'dev', dev)) as Array<{ ifindex: number }>;
      assert.equal(again[0]?.ifindex, ifindex, 'the same device (not re-created)');

      // NetManager --clean (the binary, inside the worker's namespace) removes what the state names
      await nm.close();
      const key = nm.keyPath;
      const out = sh('ip', 'netns', 'exec', W, process.execPath, BIN, '--clean', '-p', String(nm.port), '--data-dir', opts.dataDir, '--key-dir', opts.keyDir ?? '', '--public-address', '192.0.2.10');
      assert.equal(typeof out, 'string');
      await assert.rejects(stat(statePath(opts.dataDir)), 'state removed');
      await assert.rejects(stat(key), 'key removed');
      assert.equal(tryInW('ip', 'link', 'show', 'dev', dev), undefined, 'tunnel device gone');
      assert.equal(tryInW('nft', 'list', 'table', 'inet', table), undefined, 'table gone');
      assert.doesNotMatch(inW('ip', 'route'), /10\.18\.0\.128/);
    } finally {
      await nm.close();
    }
  });
});
