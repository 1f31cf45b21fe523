/**
 * Fault injection (issue 9 point 6), kill -9 in the middle of 50 concurrent deploys: of the root,
 * of the cluster orchestrator, of a NodeEngine and of the cluster's Mosquitto, each restarted at
 * once on the same data (and port). After each: within a bound, exactly the desired instances
 * RUNNING (every acknowledged deploy among them), one process each, none transitional.
 * One topology: a root host, a cluster host (cluster + its own Mosquitto), two worker hosts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sla } from '../src/sla.ts';
import { FaultLab, clustersActive, converge, deleteApp, deployBurst, processWorkload, report, type Restartable } from '../src/faults.ts';
import type { Api } from '../src/api.ts';

const CONVERGE_MS = 60_000;

test('faults: kill -9 during 50 concurrent deploys', { timeout: 420_000 }, async (t) => {
  const lab = new FaultLab();
  t.after(() => lab.close());
  await lab.init('fkill');
  const rh = await lab.net.addHost('root');
  const ch = await lab.net.addHost('c1');
  const h1 = await lab.net.addHost('w1');
  const h2 = await lab.net.addHost('w2');
  const root = await lab.root(rh);
  const api: Api = root.api;
  const broker = await lab.broker(ch);
  const cluster = await lab.cluster(ch, rh.ip, 'c1', { broker });
  const w1 = await lab.worker(h1, ch.ip);
  await lab.worker(h2, ch.ip);
  await clustersActive(api, { c1: 2 });

  const victims: Record<string, Restartable | { kill9(): Promise<void>; restart(): Promise<void> }> = {
    root,
    cluster,
    nodeengine: w1,
    mosquitto: broker,
  };
  for (const [name, victim] of Object.entries(victims)) {
    await t.test(`kill -9 of the ${name}`, async () => {
      const marker = lab.marker(name);
      const [app] = await api.createApps(sla({ app: `k${name}`, ...processWorkload(marker) }));
      assert.ok(app);
      const [svc] = await api.services(app.applicationID);
      assert.ok(svc);
      const sid = svc.microserviceID;
      let result;
      let leftover = 0;
      try {
        let killedAt = 0;
        const burst = await deployBurst(api, sid, 50, {
          after: 15,
          run: async () => {
            killedAt = Date.now();
            await victim.kill9();
            await victim.restart();
          },
        });
        console.log(`${name}: ${burst.acked.length} deploys acknowledged, ${burst.failed.length} failed${burst.failed[0] ? ` (${burst.failed[0]})` : ''}`);
        result = await converge(api, [{ serviceId: sid, running: 'listed', atLeast: burst.acked.length, include: burst.acked, marker }], { from: killedAt, timeoutMs: CONVERGE_MS });
        report(`kill9-${name}`, result);
        if (!result.ok) console.error(`logs: ${lab.saveLogs(`kill9-${name}`)}`);
      } finally {
        // leave nothing for the next fault: delete the application, its processes must go
        leftover = await deleteApp(api, app.applicationID, marker, `kill9-${name}`);
      }
      assert.ok(result.ok, `converged after kill -9 of the ${name}: ${result.detail}`);
      assert.equal(result.duplicates, 0);
      assert.equal(leftover, 0, 'deleting the application ends its processes');
    });
  }
});
