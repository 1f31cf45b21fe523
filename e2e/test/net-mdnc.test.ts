/**
 * The overlay across two clusters (MDNC, issue 8): one root host, two cluster hosts with one worker
 * each, every worker with a real NetManager. A client on the first cluster's worker reaches a
 * server on the second cluster's worker by service IP, instance IP and DNS name: the table comes
 * through the root (table_query / table_result), the peer through the root's `peers`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceDoc } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { deploy, gatewayOf, lookupIn, overlayWorkers, url, waitNetns, waitReach, whoamiServer } from '../src/overlay.ts';
import { sla } from '../src/sla.ts';
import { Topology } from '../src/topology.ts';

test('overlay on an MDNC: across two clusters, and an instance calling itself', { timeout: 300_000 }, async (t) => {
  const topo = new Topology();
  t.after(() => topo.close());
  try {
    await topo.init('nmdnc');
    const rootHost = await topo.net.addHost('root');
    const c1 = await topo.net.addHost('c1');
    const c2 = await topo.net.addHost('c2');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    const api = await topo.root(rootHost);
    await topo.cluster(c1, rootHost.ip, 'munich');
    await topo.cluster(c2, rootHost.ip, 'lisbon');
    // the two workers join side by side (containerd, NetManager, NodeEngine each)
    const [w1, w2] = await Promise.all([topo.worker(h1, c1.ip, undefined, { net: true }), topo.worker(h2, c2.ip, undefined, { net: true })]);
    const rows = await overlayWorkers(api, ['w1', 'w2']);
    const s1 = rows.get('w1')?.w.net?.subnet as string;
    const s2 = rows.get('w2')?.w.net?.subnet as string;
    assert.notEqual(s1, s2, 'the root gives the two clusters\' workers distinct subnets');
    assert.notEqual(rows.get('w1')?.cluster, rows.get('w2')?.cluster, 'the workers are in two clusters');

    // client and server deployed side by side
    const [cli, srv] = await Promise.all([
      deploy(api, sla({ app: 'cli', svc: 'cli', code: topo.image, cmd: whoamiServer(80), constraints: [{ type: 'direct', cluster: 'munich' }] }), 1),
      deploy(api, sla({ app: 'web', svc: 'srv', code: topo.image, cmd: whoamiServer(80), constraints: [{ type: 'direct', cluster: 'lisbon' }] }), 1),
    ]);
    const cliNs = await waitNetns([w1, w2], cli.job_name, 0);
    const inst = srv.instance_list[0] as InstanceDoc;
    assert.equal(rows.get('w2')?.w.id, inst.worker_id, 'the server runs in the other cluster');

    await t.test('across clusters: service IP, instance IP, DNS name, both ways', async () => {
      const running = Date.now();
      assert.equal(await waitReach(cliNs, url(srv.service_ip as string), 30_000), inst.nsip, 'service IP across clusters');
      console.log(`RUNNING -> reachable from the other cluster's worker by service IP: ${Date.now() - running} ms`);
      assert.equal(await waitReach(cliNs, url(inst.instance_ip as string)), inst.nsip, 'instance IP across clusters');
      const name = 'srv.test.web.test.oak';
      const a = await waitFor(async () => {
        const r = await lookupIn(cliNs, name, gatewayOf(s1));
        return r.length > 0 ? r : undefined;
      }, { timeoutMs: 15_000, message: `${name} resolved on w1` });
      assert.deepEqual(a, [srv.service_ip]);
      assert.deepEqual(await lookupIn(cliNs, `0.${name}`, gatewayOf(s1)), [inst.instance_ip]);

      // and the other way: the server's side calls the client's service (new flows both ways)
      const srvNs = await waitNetns([w1, w2], srv.job_name, 0);
      assert.equal(await waitReach(srvNs, url(cli.service_ip as string), 30_000), cli.instance_list[0]?.nsip, 'service IP across clusters, back');
    });

    await t.test('an instance reaches its own service IP and instance IP (hairpin)', async () => {
      // an instance calling its own service (round robin may pick itself): the packet leaves its
      // veth and must come back through the same bridge port after the DNAT (hairpin)
      const self = cli.instance_list[0]?.nsip;
      assert.equal(await waitReach(cliNs, url(cli.service_ip as string), 10_000).catch(() => undefined), self, 'an instance reaches its own service IP (with br_netfilter loaded the translated frame must go back out its ingress port: the veth needs hairpin on)');
      assert.equal(await waitReach(cliNs, url(cli.instance_list[0]?.instance_ip as string), 10_000).catch(() => undefined), self, 'an instance reaches its own instance IP');
    });

    await topo.close();
    assert.deepEqual(await topo.leftovers(), [], 'nothing left behind');
  } catch (err) {
    console.error(topo.procs.logs());
    throw err;
  }
});
