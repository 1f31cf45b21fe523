/**
 * M-DOC and MDNC end to end, hosts made of network namespaces (SPEC §1 deployment shapes):
 * - M-DOC: one root+cluster host, two worker hosts; 2 replicas land on both workers; a NodeEngine
 *   killed and restarted leaves no duplicate container; a worker lost for good has its
 *   instance rescheduled (DEAD, then RUNNING on the other worker) and its stale copy removed when it
 *   returns; undeploy removes containers.
 * - MDNC: one root host, two cluster hosts with a worker each; `direct` and `geo` constraints route
 *   to the right cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '@oak/testkit';
import type { Api } from '../src/api.ts';
import { sla, sleeper } from '../src/sla.ts';
import { Topology } from '../src/topology.ts';

async function clustersActive(api: Api, n: number, workersEach: number): Promise<{ _id: string; cluster_name: string }[]> {
  return waitFor(async () => {
    const cs = await api.call<{ _id: string; cluster_name: string; resources: { workers: number } | null }[]>('GET', '/api/clusters/active');
    return cs.length === n && cs.every((c) => c.resources?.workers === workersEach) ? cs : undefined;
  }, { timeoutMs: 30_000, message: `${n} active cluster(s) with ${workersEach} worker(s) each` });
}

test('M-DOC: root+cluster host and two worker hosts', { timeout: 240_000 }, async (t) => {
  const topo = new Topology();
  t.after(() => topo.close());
  try {
    await topo.init('mdoc');
    const ctl = await topo.net.addHost('ctl');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    const api = await topo.root(ctl);
    await topo.cluster(ctl, '127.0.0.1', 'edge1');
    const [w1, w2] = await Promise.all([topo.worker(h1, ctl.ip), topo.worker(h2, ctl.ip)]);
    await clustersActive(api, 1, 2);

    const [app] = await api.createApps(sla({ code: topo.image, cmd: sleeper(600), replicas: 2 }), true);
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    const s = await api.waitStatus(svc.microserviceID, 'RUNNING', 2, 40_000);
    const workers = new Set(s.instance_list.map((i) => i.worker_id));
    assert.equal(workers.size, 2, 'the two replicas run on two different workers');
    assert.equal((await w1.tasks()).length, 1);
    assert.equal((await w2.tasks()).length, 1);

    // a NodeEngine killed -9 and restarted: no duplicate, both instances RUNNING, the API and the
    // containers agree. Its MQTT last will has the cluster declare it lost 200 ms after the kill,
    // so its instance may be placed again on w2, and then the copy the restarted NodeEngine
    // re-adopts is deleted once it registers (a `sleep` that ignored SIGTERM used to hide that
    // deletion behind the runtime's 10 s stop grace). Its log file goes on across restarts: the
    // restarted one has registered and adopted when the line is there once more.
    const ids = await waitFor(async () => {
      const cs = await api.call<{ resources: { worker_summary: { id: string; name: string }[] } | null }[]>('GET', '/api/clusters/active');
      const by = new Map((cs[0]?.resources?.worker_summary ?? []).map((w) => [w.name, w.id]));
      return by.has('w1') && by.has('w2') ? by : undefined;
    }, { timeoutMs: 20_000, message: 'workers w1 and w2 listed by name' });
    const adoptions = (): number => (w1.proc.log().match(/re-adopted 1 running instance/g) ?? []).length;
    const adoptedBefore = adoptions();
    await w1.proc.kill('SIGKILL');
    w1.start();
    await waitFor(() => adoptions() > adoptedBefore, { timeoutMs: 30_000, intervalMs: 100, message: 'the restarted NodeEngine re-adopted its instance' });
    const settled = await waitFor(async () => {
      const l = (await api.service(svc.microserviceID)).instance_list;
      if (l.length !== 2 || !l.every((i) => i.status === 'RUNNING')) return undefined;
      const t1 = (await w1.tasks()).length;
      const t2 = (await w2.tasks()).length;
      return t1 + t2 === 2 ? { l, t1, t2 } : undefined;
    }, { timeoutMs: 30_000, message: '2 instances RUNNING and 2 containers in all after the NodeEngine restart' });
    console.log(`after the NodeEngine restart: ${settled.t1} container(s) on w1, ${settled.t2} on w2`);
    assert.equal(settled.l.filter((i) => i.worker_id === ids.get('w1')).length, settled.t1, 'w1 runs the containers the API places there, no duplicate');
    assert.equal(settled.l.filter((i) => i.worker_id === ids.get('w2')).length, settled.t2, 'w2 runs the containers the API places there, no duplicate');

    // a worker that disappears (its NodeEngine killed and not restarted) is declared dead within
    // seconds and its instance is rescheduled onto the other worker
    // (the restarted w1 is listed again with the cluster's next aggregate)
    const w1Id = await waitFor(async () => {
      const summary = await api.call<{ resources: { worker_summary: { id: string; name: string }[] } | null }[]>('GET', '/api/clusters/active');
      return summary[0]?.resources?.worker_summary.find((w) => w.name === 'w1')?.id;
    }, { timeoutMs: 20_000, message: 'worker w1 is listed by name' });
    await w2.proc.kill('SIGKILL');
    const lost = Date.now();
    const moved = await api.waitInstances(
      svc.microserviceID,
      (l) => l.length === 2 && l.every((i) => i.status === 'RUNNING' && i.worker_id === w1Id),
      40_000,
      'both instances RUNNING on w1',
    );
    console.log(`worker loss to RUNNING elsewhere: ${Date.now() - lost} ms`);
    await waitFor(async () => ((await w1.tasks()).length === 2 ? true : undefined), { timeoutMs: 10_000, message: 'two containers on w1' });
    const hist = moved.instance_list.flatMap((i) => i.history ?? []).map((h) => h.status);
    assert.ok(hist.includes('DEAD'), 'the lost instance went through DEAD');
    // when w2 comes back, the copy it still runs is deleted (it runs on w1 now)
    w2.start();
    await clustersActive(api, 1, 2);
    await waitFor(async () => ((await w2.tasks()).length === 0 ? true : undefined), { timeoutMs: 30_000, message: 'stale copy removed from w2' });
    assert.equal((await w1.tasks()).length, 2);

    // undeploy removes the containers
    await api.call('DELETE', `/api/application/${app.applicationID}`);
    await waitFor(async () => ((await w1.tasks()).length + (await w2.tasks()).length === 0 ? true : undefined), {
      timeoutMs: 30_000,
      message: 'containers removed on both workers',
    });
  } catch (err) {
    console.error(topo.procs.logs());
    throw err;
  }
});

test('MDNC: one root, two clusters at two sites; direct and geo constraints pick the cluster', { timeout: 240_000 }, async (t) => {
  const topo = new Topology();
  t.after(() => topo.close());
  try {
    await topo.init('mdnc');
    const rootHost = await topo.net.addHost('root');
    const c1 = await topo.net.addHost('c1');
    const c2 = await topo.net.addHost('c2');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    const api = await topo.root(rootHost);
    // Munich and Lisbon
    await topo.cluster(c1, rootHost.ip, 'munich', '48.14,11.58');
    await topo.cluster(c2, rootHost.ip, 'lisbon', '38.72,-9.14');
    const [w1, w2] = await Promise.all([topo.worker(h1, c1.ip), topo.worker(h2, c2.ip)]);
    const clusters = await clustersActive(api, 2, 1);
    const byName = new Map(clusters.map((c) => [c.cluster_name, c._id]));

    /** creates and deploys a one-instance service with the constraints; its service id */
    const create = async (app: string, constraints: unknown[], cmd?: string[]): Promise<string> => {
      const [a] = await api.createApps(sla({ app, code: topo.image, ...(cmd ? { cmd } : {}), constraints }), true);
      assert.ok(a);
      const [svc] = await api.services(a.applicationID);
      assert.ok(svc);
      return svc.microserviceID;
    };
    // the three services are independent: created side by side, each checked on its own
    const [dsid, gsid, nsid] = await Promise.all([
      create('direct', [{ type: 'direct', cluster: 'lisbon' }], sleeper(600)),
      // Augsburg is ~60 km from Munich and ~1900 km from Lisbon
      create('geo', [{ type: 'geo', location: '48.37,10.90', threshold: 200 }], sleeper(600)),
      // a constraint no cluster meets stays pending with a reason
      create('nowhere', [{ type: 'geo', location: '-33.86,151.21', threshold: 100 }]),
    ]);
    const [d, g, n] = await Promise.all([
      api.waitStatus(dsid, 'RUNNING', 1, 40_000),
      api.waitStatus(gsid, 'RUNNING', 1, 40_000),
      api.waitInstances(nsid, (l) => (l[0]?.status_detail ?? '') !== '', 15_000, 'a pending reason'),
    ]);
    assert.equal(d.instance_list[0]?.cluster_id, byName.get('lisbon'));
    assert.equal((await w2.tasks()).length, 1);
    assert.equal(g.instance_list[0]?.cluster_id, byName.get('munich'));
    assert.equal((await w1.tasks()).length, 1);
    assert.equal(n.instance_list[0]?.status, 'REQUESTED');
    assert.match(n.instance_list[0]?.status_detail ?? '', /NoClusterMatchesConstraints|constraint/i);
  } catch (err) {
    console.error(topo.procs.logs());
    throw err;
  }
});
