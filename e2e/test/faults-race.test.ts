/**
 * Fault injection (issue 9 point 6), the control plane's own races: the root killed (-9) in the
 * middle of a rolling update of 3 replicas (after a restart on the same data the rollout finishes:
 * 3 instances, all on the new SLA, no surplus), and 50 concurrent deploys racing 50 undeploys of
 * the same service (whatever the API lists at the end runs, once; nothing else runs).
 * One topology: a root host, a cluster host, two worker hosts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '@oak/testkit';
import { ApiError } from '../src/api.ts';
import { sla } from '../src/sla.ts';
import { FaultLab, clustersActive, converge, deleteApp, processWorkload, report, workloads, type ConvergeResult } from '../src/faults.ts';

test('faults: root killed mid-rollout, deploys racing undeploys', { timeout: 420_000 }, async (t) => {
  const lab = new FaultLab();
  t.after(() => lab.close());
  await lab.init('frace');
  const rh = await lab.net.addHost('root');
  const ch = await lab.net.addHost('c1');
  const h1 = await lab.net.addHost('w1');
  const h2 = await lab.net.addHost('w2');
  const root = await lab.root(rh);
  const api = root.api;
  await lab.cluster(ch, rh.ip, 'c1');
  await lab.worker(h1, ch.ip);
  await lab.worker(h2, ch.ip);
  await clustersActive(api, { c1: 2 });

  await t.test('kill -9 of the root in the middle of a rolling update of 3 replicas', async () => {
    const marker = lab.marker('roll');
    const v1 = processWorkload(marker, 'v1');
    // each replacement counts as ready after 1 s RUNNING: the overlap of v1 and v2 copies lasts
    // long enough to be seen (a deploy takes a few ms now, and the census below polls /proc)
    const [app] = await api.createApps(sla({ app: 'roll', ...v1, replicas: 3, extra: { update: { max_surge: 1, max_unavailable: 0, health_grace_s: 1 } } }), true);
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    const sid = svc.microserviceID;
    let r: ConvergeResult;
    let leftover: number;
    try {
      const up = await converge(api, [{ serviceId: sid, running: 3, marker, tag: 'v1' }], { timeoutMs: 30_000, stableMs: 500 });
      assert.ok(up.ok, `3 replicas of v1 first: ${up.detail}`);
      const v2 = processWorkload(marker, 'v2');
      await api.call('PUT', `/api/service/${sid}`, { cmd: v2.cmd });
      // in the middle: the first v2 copy runs, old copies are still there
      await waitFor(() => {
        const copies = workloads(marker);
        return copies.some((c) => c.argv.includes('v2')) && copies.some((c) => c.argv.includes('v1'));
      }, { timeoutMs: 30_000, intervalMs: 50, message: 'the rollout under way (v1 and v2 copies)' });
      const killedAt = Date.now();
      await root.kill9();
      await root.restart();
      r = await converge(api, [{ serviceId: sid, running: 3, marker, tag: 'v2' }], { from: killedAt, timeoutMs: 60_000, stableMs: 3000 });
      report('kill9-root-mid-rollout', r);
      if (!r.ok) console.error(`logs: ${lab.saveLogs('kill9-root-mid-rollout')}`);
    } finally {
      leftover = await deleteApp(api, app.applicationID, marker, 'kill9-root-mid-rollout');
    }
    assert.ok(r.ok, `the rollout finished after the restart: ${r.detail}`);
    assert.equal(r.duplicates, 0);
    assert.equal(leftover, 0, 'deleting the application ends its processes');
  });

  /**
   * 50 concurrent deploys and 50 concurrent undeploys of instances 0..49. `blind`: each DELETE is
   * sent once, at the start (the form the fuzzer found: most answer 404, the few that hit an
   * instance being placed are the race); `chasing`: each DELETE of instance i is repeated while it
   * answers 404, so it lands as soon as instance i exists, in the middle of its placement.
   */
  const race = async (mode: 'blind' | 'chasing'): Promise<void> => {
    const marker = lab.marker(`race${mode}`);
    const [app] = await api.createApps(sla({ app: `race${mode}`, ...processWorkload(marker) }));
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    const sid = svc.microserviceID;
    let r: ConvergeResult;
    let leftover: number;
    try {
      const from = Date.now();
      const outcomes = { deployed: 0, undeployed: 0, refused: 0 };
      const until = Date.now() + 5000;
      const undeploy = async (n: number): Promise<void> => {
        for (;;) {
          try {
            await api.undeployInstance(sid, n);
            outcomes.undeployed++;
            return;
          } catch (err) {
            if (mode === 'blind' || !(err instanceof ApiError) || err.status !== 404 || Date.now() > until) {
              outcomes.refused++;
              return;
            }
            await new Promise((res) => setTimeout(res, 10));
          }
        }
      };
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        jobs.push(api.deployInstance(sid).then(() => void outcomes.deployed++, () => void outcomes.refused++));
        jobs.push(undeploy(i));
      }
      await Promise.all(jobs);
      console.log(`race ${mode}: ${outcomes.deployed} deploys and ${outcomes.undeployed} undeploys answered 2xx, ${outcomes.refused} refused`);
      r = await converge(api, [{ serviceId: sid, running: 'listed', atLeast: outcomes.deployed - outcomes.undeployed, marker }], { from, timeoutMs: 45_000, stableMs: 3000 });
      report(`deploys-racing-undeploys-${mode}`, r, `undeploys_ok=${outcomes.undeployed} listed_at_end=${(await api.service(sid)).instance_list.length}`);
      if (!r.ok) console.error(`logs: ${lab.saveLogs(`race-${mode}`)}`);
    } finally {
      leftover = await deleteApp(api, app.applicationID, marker, `deploys-racing-undeploys-${mode}`);
    }
    assert.ok(r.ok, `desired and actual state agree: ${r.detail}`);
    assert.equal(r.duplicates, 0);
    assert.equal(leftover, 0, 'deleting the application ends its processes');
  };
  await t.test('50 concurrent deploys racing 50 undeploys of the same service (each DELETE sent once)', () => race('blind'));
  await t.test('50 concurrent deploys racing 50 undeploys of the same service (each DELETE chases its instance)', () => race('chasing'));
});
