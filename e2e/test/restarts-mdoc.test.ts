/**
 * Issue 10 in an M-DOC (a root+cluster host and two worker hosts, the real binaries):
 * - probing is the truth: a worker whose containerd cannot be reached does not offer `container`,
 *   says why in its log, and no scheduler sends it a container (one pinned to it waits at the root
 *   with the reason; an unpinned one goes to the other worker);
 * - health -> restarts -> elsewhere: a service whose health probe keeps failing is restarted on its
 *   worker (counted), then FAILED there and moved to the other worker, fails there too, and stays
 *   FAILED once no worker it has not failed on is left; no copy of it is left anywhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceDoc } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { Matrix, copies, shellFixtures } from '../src/runtimes.ts';
import { Topology, soleClusterWith, type Worker } from '../src/topology.ts';

test('M-DOC: a worker offers only what it can run (and says why); a failing health probe restarts, then moves the instance, then FAILS it', { timeout: 300_000 }, async (t) => {
  const topo = new Topology();
  t.after(() => topo.close());
  try {
    await topo.init('rsm');
    const ctl = await topo.net.addHost('ctl');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    const api = await topo.root(ctl);
    await topo.cluster(ctl, '127.0.0.1', 'edge1');
    const missing = `${topo.dir.path}/no-containerd.sock`;
    const workers: Worker[] = await Promise.all([topo.worker(h1, ctl.ip), topo.worker(h2, ctl.ip, undefined, { args: ['--containerd', missing] })]);
    const cluster = await soleClusterWith(api, 2);
    const summary = (name: string) => cluster.resources?.worker_summary.find((w) => w.name === name);
    assert.ok(summary('w1')?.virtualizations.includes('container'), 'w1 offers container');
    assert.ok(summary('w2')?.virtualizations.includes('process'), 'w2 offers process');
    assert.equal(summary('w2')?.virtualizations.includes('container'), false, 'w2 does not offer container');
    await waitFor(() => (workers[1]!.proc.log().includes(`container: unavailable (`) && workers[1]!.proc.log().includes(missing) ? true : undefined), { timeoutMs: 10_000, message: 'w2 says why it offers no container' });

    const [ctr, proc] = shellFixtures(topo.image);
    const m = new Matrix(api, `rsmd${process.pid}`);
    // pinned to w2: the root already sees (in the cluster's worker summary) that w2 has no
    // container, so the cluster never gets it: it waits with the reason
    const pinned = await m.deploy(ctr!, 'pin', { ...ctr!.service(m.marker(ctr!, 'pin')), extra: { constraints: [{ type: 'direct', node: 'w2' }] } });
    const waiting = await m.one(pinned, (i) => i.status === 'REQUESTED' && i.status_detail === 'NoClusterMatchesConstraints', 'waiting: no cluster has w2 with container', 30_000);
    assert.equal(waiting.worker_id, null);
    assert.equal(waiting.cluster_id, null);
    // unpinned: placed on w1, the only worker that offers it
    // (it ends on SIGTERM: a shell loop as the container's PID 1 ignores it, and the delete at the
    // end would wait out the runtime's 10 s stop grace)
    const freeMarker = m.marker(ctr!, 'free');
    const free = await m.deploy(ctr!, 'free', { ...ctr!.service(freeMarker), cmd: ['sh', '-c', 'trap "exit 0" TERM; echo "$0 up"; while :; do sleep 1; done', freeMarker] });
    const running = await m.one(free, (i) => i.status === 'RUNNING', 'RUNNING', 30_000);
    assert.equal(running.worker_id, summary('w1')?.id, 'on w1');
    assert.equal((await api.service(pinned.svc.microserviceID)).instance_list[0]?.worker_id ?? null, null, 'the pinned one still waits');

    // health -> restarts counted -> moved -> FAILED: nothing listens on the probed port
    const sick = await m.deploy(proc!, 'sick', {
      ...proc!.service(m.marker(proc!, 'sick')),
      extra: { health: { type: 'tcp', port: 1, interval_s: 0.2, timeout_s: 0.5, failure_threshold: 2 }, restart_max: 1 },
    });
    const seen = new Set<string>();
    let maxRestarts = 0;
    let last: InstanceDoc | undefined;
    await waitFor(async () => {
      last = (await api.service(sick.svc.microserviceID)).instance_list[0];
      if (last?.worker_id !== null && last?.worker_id !== undefined) seen.add(last.worker_id);
      maxRestarts = Math.max(maxRestarts, last?.restarts ?? 0);
      return last?.status === 'FAILED' && /no other worker can take it/.test(last.status_detail) ? true : undefined;
    }, { timeoutMs: 120_000, message: 'FAILED after the moves' }).catch((err: unknown) => {
      throw new Error(`${String(err)}: ${JSON.stringify(last)}`);
    });
    const f = last as InstanceDoc;
    // the second worker gave up too: its move has nowhere to go
    assert.match(f.status_detail, /^moved off worker (w[12]) \(move 2 of 2\) after 1 local restart\(s\): unhealthy: 2 health probes failed .*gave up after 1 local restart\(s\) \(restart_max 1\); no other worker can take it/);
    const moves = (f.history ?? []).filter((h) => h.status === 'NODE_SCHEDULED' && /^moved off worker/.test(h.status_detail));
    assert.ok(moves.length >= 1, `a move in the history: ${JSON.stringify(f.history)}`);
    const first = /^moved off worker (w[12]) \(move 1 of 2\) after 1 local restart\(s\): unhealthy/.exec(moves[0]?.status_detail ?? '')?.[1];
    const second = /^moved off worker (w[12])/.exec(f.status_detail)?.[1];
    assert.ok(first !== undefined && second !== undefined && first !== second, `moved off one worker, then off the other: ${moves[0]?.status_detail} / ${f.status_detail}`);
    // it ran on both workers (the one it was moved off, and the other one)
    assert.equal(seen.size, 2, `placed on both workers: ${[...seen].join(', ')}`);
    // the count the API showed never went past restart_max (the detail above says it was reached)
    assert.ok(maxRestarts <= 1, `restarts seen: ${maxRestarts}`);
    await waitFor(() => (copies(sick.marker).length === 0 ? true : undefined), { timeoutMs: 20_000, message: 'no copy of the failed instance left' });

    await m.deleteAll();
  } catch (err) {
    console.error(topo.procs.logs());
    throw err;
  }
});
