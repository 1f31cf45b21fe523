/**
 * CPU and latency of one root -> cluster -> root round trip on the cluster link, gRPC + TLS on
 * loopback against the in-process stream of the 1-DOC (issue 9), in this one process: the root
 * sends a deploy, the cluster answers with an instance_status, N times one after the other, for
 * each transport in turn (alternating, R repeats). Both go through the same session code, codec
 * and validation; only the transport differs.
 *   node --import tsx bench/tools/link-cost.ts [rounds=2000] [repeats=3]
 */
import { silentLogger } from '@oak/bus';
import { LinkClient, type LinkConnector } from '@oak/cluster';
import type { ClusterToRoot, RootToCluster } from '@oak/contracts';
import { createStore } from '@oak/store';
import { waitFor } from '@oak/testkit';
import { startRootLink, type RootLink } from '../../apps/root/src/link/index.ts';
import { startRoot } from '../../apps/root/src/server.ts';
import { clusterJoinToken } from '../../apps/root/test/join.ts';
import { assignment } from '../../apps/cluster/test/fixtures.ts';

const N = Number(process.argv[2] ?? 2000);
const R = Number(process.argv[3] ?? 3);
const store = await createStore({ sqlitePath: ':memory:' });
let link: RootLink | undefined;
const root = await startRoot({
  host: '127.0.0.1', port: 0, store, adminPassword: 'bench-secret-1', logLevel: 'silent', announce: () => {},
  control: async (ctx) => (link = await startRootLink(ctx, { host: '127.0.0.1', port: 0 })).control,
});
if (!link) throw new Error('no link');
const l = link;
let answered: ((m: ClusterToRoot) => void) | undefined;
l.link.setListener({ message: (_id, m) => answered?.(m) });

async function client(name: string, connect?: LinkConnector): Promise<LinkClient> {
  const c: LinkClient = new LinkClient({
    address: l.address, token: await clusterJoinToken(root.ctx, name), clusterName: name, clusterLocation: null, version: 'bench', log: silentLogger,
    ...(connect ? { connect } : {}),
    handlers: {
      onWelcome: () => {},
      onMessage: (m: RootToCluster) => {
        if (m.type !== 'deploy') return;
        c.send({ type: 'instance_status', job_name: m.instance.job_name, instance_number: m.instance.instance_number, status: 'NODE_SCHEDULED', status_detail: 'on its way', worker_id: 'w1', epoch: 1 });
      },
    },
  });
  c.start();
  await waitFor(() => (c.connected ? true : undefined), { timeoutMs: 20_000 });
  return c;
}
const grpcClient = await client('over-grpc');
const inproc = await client('in-process', (r) => l.link.connectInProcess(r));
const deploy = (n: number): RootToCluster => ({ type: 'deploy', instance: { ...assignment('app.ns.svc.ns', n, { worker_id: null }), epoch: 1 } });
console.log(`deploy message ${JSON.stringify(deploy(1)).length} bytes`);

async function run(c: LinkClient): Promise<{ cpuUs: number; wallUs: number }> {
  const id = c.clusterId;
  if (id === null) throw new Error('not connected');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const back = new Promise<ClusterToRoot>((resolve) => (answered = resolve));
    l.link.send(id, deploy(i));
    await back;
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / N, wallUs: (wall * 1000) / N };
}
await run(grpcClient); // warm-up
await run(inproc);
for (let r = 0; r < R; r++) {
  for (const [label, c] of [['grpc+tls', grpcClient], ['in-process', inproc]] as const) {
    const m = await run(c);
    console.log(`${label.padEnd(10)} round trip: ${m.wallUs.toFixed(0)} µs wall, ${m.cpuUs.toFixed(0)} µs CPU (deploy + status, both sides)`);
  }
}
await grpcClient.close();
await inproc.close();
await root.close();
await store.close();
