/**
 * Fault injection (issue 9 point 6), several roots: three roots on one PostgreSQL (a schema of
 * this test), a cluster dialing them through a TCP balancer (the first root that accepts; with
 * the lease, the leader or a follower that redirects to it), two workers. The root that holds the cluster's link (the leader) is killed -9 in
 * the middle of 50 concurrent deploys sent to another root, and not restarted: another root must
 * take the lease within 5 s (the issue's bound; where the schema has a lease table), the cluster's
 * link within 10 s (plus its reconnect backoff), and every instance must converge.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '@oak/testkit';
import { sla } from '../src/sla.ts';
import { FaultLab, balancer, clustersActive, converge, deleteApp, deployBurst, processWorkload, report, type ConvergeResult, type RootHandle } from '../src/faults.ts';

test('faults: kill -9 of the leading root among 3 roots on PostgreSQL', { timeout: 300_000 }, async (t) => {
  const lab = new FaultLab();
  t.after(() => lab.close());
  await lab.init('froots');
  const db = await lab.postgres();
  const hosts = [await lab.net.addHost('r1'), await lab.net.addHost('r2'), await lab.net.addHost('r3')];
  const ch = await lab.net.addHost('c1');
  const h1 = await lab.net.addHost('w1');
  const h2 = await lab.net.addHost('w2');
  // the first one alone: it takes the lease (and migrates the schema); then the other two side by side
  const roots: RootHandle[] = [await lab.root(hosts[0]!, { databaseUrl: db })];
  roots.push(...(await Promise.all(hosts.slice(1).map((h) => lab.root(h, { databaseUrl: db })))));
  const [, r2] = roots as [RootHandle, RootHandle, RootHandle];
  // the cluster dials a TCP balancer across the three link ports (docs/operations.md: a name of
  // every root or a balancer), which passes each connection to the first root that accepts it
  const lb = await balancer(lab, roots.map((r) => `${r.host.ip}:50052`));
  await lab.cluster(ch, lb.address, 'c1');
  await lab.worker(h1, ch.ip);
  await lab.worker(h2, ch.ip);
  await clustersActive(r2.api, { c1: 2 }).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; logs: ${lab.saveLogs('roots-setup')}`);
  });
  const linked = (): RootHandle | undefined => roots.find((r) => lb.open().includes(`${r.host.ip}:50052`));
  const leader = await waitFor(linked, { timeoutMs: 20_000, message: 'the root holding the cluster link' });
  const survivor = roots.find((r) => r !== leader) as RootHandle;
  console.log(`roots: the cluster's link is held by ${leader.host.name}; deploys go to ${survivor.host.name}`);
  const api = survivor.api;

  const marker = lab.marker('leader');
  const [app] = await api.createApps(sla({ app: 'kleader', ...processWorkload(marker) }));
  assert.ok(app);
  const [svc] = await api.services(app.applicationID);
  assert.ok(svc);
  let r: ConvergeResult;
  let failoverMs = -1;
  let leaseMs: number | undefined;
  // the holder of the reconciler's lease row (issue 9 point 5; no table on a root without leadership)
  const leaseHolder = (): Promise<string | undefined> => lab.pg(`select holder from leases where name = 'reconciler'`);
  const hasLease = (await lab.pg('select count(*) from leases')) !== undefined;
  const firstHolder = hasLease ? await leaseHolder() : undefined;
  let leftover: number;
  try {
    let killedAt = 0;
    const burst = await deployBurst(api, svc.microserviceID, 50, {
      after: 15,
      run: async () => {
        killedAt = Date.now();
        await leader.kill9();
      },
    });
    console.log(`roots: ${burst.acked.length} deploys acknowledged, ${burst.failed.length} failed${burst.failed[0] ? ` (${burst.failed[0]})` : ''}`);
    const [holder, next] = await Promise.all([
      hasLease
        ? waitFor(async () => {
          const h = await leaseHolder();
          return h && h !== firstHolder ? h : undefined;
        }, { timeoutMs: 30_000, intervalMs: 100, message: 'another root holding the lease' }).then((h) => {
          leaseMs = Date.now() - killedAt;
          return h;
        }, () => undefined)
        : Promise.resolve(undefined),
      waitFor(() => {
        const l = linked();
        return l && l !== leader ? l : undefined;
      }, { timeoutMs: 30_000, intervalMs: 100, message: 'another root holding the cluster link' }).then((l) => {
        failoverMs = Date.now() - killedAt;
        return l;
      }, () => undefined),
    ]);
    if (hasLease) console.log(`roots: the lease passed ${holder ? `to another holder after ${leaseMs} ms` : 'to nobody'}`);
    console.log(`roots: after the kill the link is held by ${next?.host.name ?? 'no root'}${next ? ` (${failoverMs} ms)` : ''}`);
    r = await converge(api, [{ serviceId: svc.microserviceID, running: 'listed', atLeast: burst.acked.length, include: burst.acked, marker }], { from: killedAt, timeoutMs: 60_000, stableMs: 3000 });
    report('kill9-leading-root-of-3', r, `lease_takeover_ms=${leaseMs ?? (hasLease ? 'none' : 'n/a(no lease table)')} link_failover_ms=${failoverMs}`);
    if (!r.ok) console.error(`logs: ${lab.saveLogs('kill9-leading-root')}`);
  } finally {
    leftover = await deleteApp(api, app.applicationID, marker, 'kill9-leading-root-of-3');
  }
  // the issue's bound: another root leads within 5 s; the cluster then reconnects within its
  // backoff (at most 5 s, docs/operations.md), so its link moves within 10 s
  if (hasLease) assert.ok(leaseMs !== undefined && leaseMs <= 5000, `another root took the lease within 5 s (${leaseMs} ms)`);
  assert.ok(failoverMs >= 0 && failoverMs <= 10_000, `another root holds the cluster link within 10 s (${failoverMs} ms)`);
  assert.ok(r.ok, `converged after the leader's kill -9: ${r.detail}`);
  assert.equal(r.duplicates, 0);
  assert.equal(leftover, 0, 'deleting the application (through a surviving root) ends its processes');
});
