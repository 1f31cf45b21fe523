/**
 * Issue 10: the overlay balances only over healthy instances. The cluster's table leaves out an
 * instance whose probe says unhealthy or has not answered yet (starting); it comes back once
 * healthy. Instances without a probe are served as before. The status that carries the net info
 * to the root carries health and restarts too (so the root's copy does not reset them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceTable } from '@oak/contracts';
import { NetCore, servesTraffic } from '../src/net.ts';
import type { NetEffect, NetInstanceView, NetView } from '../src/net.ts';

const JOB = 'app.ns.web.ns';
const T0 = 1_000_000;

function world(): { net: NetCore; inst: Map<number, NetInstanceView> } {
  const inst = new Map<number, NetInstanceView>();
  const view: NetView = {
    instance: (job, n) => (job === JOB ? inst.get(n) : undefined),
    *instancesOf(job) {
      if (job === JOB) yield* inst.values();
    },
    allInstances: () => inst.values(),
    workerKnown: (id) => id === 'w1',
    workerAlive: (id) => id === 'w1',
    synced: () => true,
  };
  const net = new NetCore(view, {});
  net.linkConnected('c1', T0);
  return { net, inst };
}

const links = (e: NetEffect[]) => e.flatMap((x) => (x.type === 'link' ? [x.message] : []));

test('servesTraffic: RUNNING without a probe or healthy', () => {
  assert.equal(servesTraffic({ status: 'RUNNING' }), true);
  assert.equal(servesTraffic({ status: 'RUNNING', health: 'healthy' }), true);
  assert.equal(servesTraffic({ status: 'RUNNING', health: 'unhealthy' }), false);
  assert.equal(servesTraffic({ status: 'RUNNING', health: 'starting' }), false);
  assert.equal(servesTraffic({ status: 'CREATING' }), false);
});

test('the table leaves out unhealthy and starting instances; a healthy one comes back', () => {
  const { net, inst } = world();
  const e = net.subnetRequest('w1', { host_ip: '192.0.2.10', host_port: 50103 }, T0);
  const ask = links(e).find((m) => m.type === 'subnet_request');
  assert.ok(ask?.type === 'subnet_request');
  net.subnetResult({ type: 'subnet_result', request_id: ask.request_id, subnet: '10.18.0.64/26' }, T0);
  for (const n of [0, 1, 2]) {
    inst.set(n, {
      job_name: JOB, instance_number: n, worker_id: 'w1', status: 'RUNNING', status_detail: '', publicip: null,
      overlay: { service_ip: '10.30.0.1', instance_ip: `10.30.1.${n}` },
      health: n === 0 ? undefined : 'healthy', restarts: n,
    });
    const up = net.serviceDeployed('w1', { job_name: JOB, instance_number: n, nsip: `10.18.0.${66 + n}`, nsip_v6: null, host_ip: '192.0.2.10', host_port: 50103, subnet: '10.18.0.64/26' }, T0);
    // the status with the net info keeps the instance's health and restarts
    const st = links(up).find((m) => m.type === 'instance_status');
    assert.ok(st?.type === 'instance_status');
    assert.equal(st.restarts, n);
    assert.equal(st.health, n === 0 ? undefined : 'healthy');
  }
  const nums = (t: ServiceTable | undefined): number[] => (t?.instances ?? []).map((x) => x.instance_number);
  assert.deepEqual(nums(net.table(JOB)), [0, 1, 2]);
  (inst.get(1) as NetInstanceView).health = 'unhealthy';
  (inst.get(2) as NetInstanceView).health = 'starting';
  assert.deepEqual(nums(net.table(JOB)), [0], 'only the instance without a probe is left');
  (inst.get(1) as NetInstanceView).health = 'healthy';
  assert.deepEqual(nums(net.table(JOB)), [0, 1]);
});
