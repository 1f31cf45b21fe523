import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterCore } from '../src/core.ts';
import type { Effect, InstanceStatusMessage } from '../src/core.ts';
import { MAX_DEAD_WORKERS, type NodeRegistration } from '@oak/contracts';
import { assignment, information, registration } from './fixtures.ts';

const JOB = 'app.ns.web.ns';
const name = (n: number, job = JOB): string => `${job}.instance.${n}`;

/** registers and sends the first report (a worker takes instances from then on) */
function join(c: ClusterCore, id: string, reg: NodeRegistration, t: number): Effect[] {
  return [...c.register(id, reg, t), ...c.information(id, information([], reg.cpu_cores, reg.memory_mb, reg.virtualizations), t)];
}

function deploys(effects: Effect[]): { worker: string; name: string }[] {
  return effects.flatMap((e) => (e.type === 'deploy' ? [{ worker: e.worker_id, name: `${e.command.job_name}.instance.${e.command.instance_number}` }] : []));
}
function deletes(effects: Effect[]): { worker: string; name: string }[] {
  return effects.flatMap((e) => (e.type === 'delete' ? [{ worker: e.worker_id, name: `${e.command.job_name}.instance.${e.command.instance_number}` }] : []));
}
function statuses(effects: Effect[]): InstanceStatusMessage[] {
  return effects.flatMap((e) => (e.type === 'status' ? [e.message] : []));
}

test('replicas spread over workers, with NODE_SCHEDULED reported', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', registration('w2'), 0);
  const e = [...c.deploy(assignment(JOB, 0), 1), ...c.deploy(assignment(JOB, 1), 1)];
  const d = deploys(e);
  assert.equal(d.length, 2);
  assert.notEqual(d[0]?.worker, d[1]?.worker, 'replicas on distinct workers');
  assert.deepEqual(statuses(e).map((s) => s.status), ['NODE_SCHEDULED', 'NODE_SCHEDULED']);
  // deploying the same instance again changes nothing
  assert.deepEqual(deploys(c.deploy(assignment(JOB, 0), 2)), []);
});

test('capacity is reserved at once; what does not fit waits with a reason and is placed when a bigger worker registers', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'small', registration('small', 2, 1000), 0);
  assert.equal(deploys(c.deploy(assignment('a.a.a.a', 0, { vcpus: 1 }), 1)).length, 1);
  assert.equal(deploys(c.deploy(assignment('b.b.b.b', 0, { vcpus: 1 }), 1)).length, 1);
  const e = c.deploy(assignment('c.c.c.c', 0, { vcpus: 1 }), 1);
  assert.deepEqual(deploys(e), []);
  const s = statuses(e);
  assert.equal(s[0]?.status, 'CLUSTER_SCHEDULED');
  assert.equal(s[0]?.status_detail, 'NO_WORKER_CAPACITY');
  // the same reason is not reported again on every retry
  assert.deepEqual(statuses(c.tick(2)), []);
  assert.equal(c.aggregate().cpu_cores_free, 0);
  const later = join(c, 'big', registration('big', 8, 8000), 3);
  assert.deepEqual(deploys(later), [{ worker: 'big', name: 'c.c.c.c.instance.0' }]);
  assert.equal(statuses(later)[0]?.status, 'NODE_SCHEDULED');
});

test('a registered worker takes instances only after its first report', () => {
  const c = new ClusterCore();
  c.register('w1', registration('w1'), 0);
  const e = c.deploy(assignment(JOB, 0), 1);
  assert.deepEqual(deploys(e), []);
  assert.deepEqual(deploys(c.information('w1', information([]), 2)), [{ worker: 'w1', name: name(0) }]);
});

test('a worker without the virtualization gets nothing; the reason says so', () => {
  const c = new ClusterCore();
  join(c, 'w1', registration('w1', 4, 4096, ['container']), 0);
  const e = c.deploy(assignment(JOB, 0, { virtualization: 'wasm' }), 1);
  assert.deepEqual(deploys(e), []);
  assert.equal(statuses(e)[0]?.status_detail, 'NoWorkerWithVirtualization');
});

test('arch (issue 10): a service listing architectures goes only to a worker of one of them, and carries its list; the summary says each worker\'s', () => {
  const c = new ClusterCore();
  join(c, 'x86', registration('x86'), 0);
  join(c, 'arm', { ...registration('arm'), arch: 'arm64' }, 0);
  const a = assignment(JOB, 0);
  a.service.arch = ['aarch64'];
  const e = c.deploy(a, 1);
  assert.deepEqual(deploys(e), [{ worker: 'arm', name: name(0) }]);
  const cmd = e.find((x) => x.type === 'deploy');
  assert.ok(cmd?.type === 'deploy');
  assert.deepEqual(cmd.command.arch, ['aarch64'], 'the worker gets the list (a unikernel matches its code URLs to it)');
  const b = assignment(JOB, 1);
  b.service.arch = ['riscv64'];
  const none = c.deploy(b, 1);
  assert.deepEqual(deploys(none), []);
  assert.equal(statuses(none)[0]?.status_detail, 'NoWorkerWithVirtualization');
  assert.deepEqual(c.aggregate().worker_summary.map((w) => [w.id, w.arch]), [['arm', 'arm64'], ['x86', 'x86_64']]);
});

test('reservations are replaced by reports: no double counting', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1', 4, 4096), 0);
  c.deploy(assignment(JOB, 0, { vcpus: 1, memory: 1000 }), 1);
  assert.equal(c.aggregate().cpu_cores_free, 3);
  c.information('w1', information([name(0)], 4, 4096), 50);
  const a = c.aggregate();
  assert.equal(a.cpu_cores_free, 3);
  assert.equal(a.memory_free_mb, 3096);
  assert.equal(c.ledger.size, 0);
});

test('a silent worker is declared dead: DEAD reported, instance rescheduled, worker dropped from the aggregate', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  c.deploy(assignment(JOB, 0), 0);
  const onW1 = c.workerOf(JOB, 0);
  assert.equal(onW1, 'w1');
  join(c, 'w2', registration('w2'), 0);
  c.information('w1', information([name(0)]), 10);
  for (let t = 20; t <= 300; t += 20) c.information('w2', information([]), t);
  assert.equal(c.aggregate().workers, 2);
  const e = c.tick(320);
  const s = statuses(e);
  assert.equal(s[0]?.status, 'DEAD');
  assert.match(s[0]?.status_detail ?? '', /worker w1 lost/);
  assert.equal(s[1]?.status, 'NODE_SCHEDULED');
  assert.equal(s[1]?.worker_id, 'w2');
  assert.deepEqual(deploys(e), [{ worker: 'w2', name: name(0) }]);
  assert.ok(e.some((x) => x.type === 'aggregate'));
  assert.equal(c.aggregate().workers, 1);
  // w1 comes back still running the instance: it is deleted there
  const back = c.information('w1', information([name(0)]), 400);
  assert.deepEqual(deletes(back), [{ worker: 'w1', name: name(0) }]);
  assert.equal(c.workerOf(JOB, 0), 'w2');
  assert.equal(c.aggregate().workers, 2);
});

test('a dead worker stays listed as dead (since when, why) until it comes back or is removed; never as capacity', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', registration('w2'), 0);
  c.information('w1', information([]), 10);
  for (let t = 20; t <= 300; t += 20) c.information('w2', information([]), t);
  assert.equal(c.aggregate().dead_workers, undefined, 'no dead worker yet');
  c.tick(320);
  let a = c.aggregate();
  assert.deepEqual(a.worker_summary.map((w) => w.id), ['w2']);
  assert.deepEqual(a.dead_workers, [{ id: 'w1', name: 'w1', location: null, dead_since: new Date(320).toISOString(), last_seen: new Date(10).toISOString(), reason: 'no report for 0.3 s' }]);
  // still there much later (no forgetting by age)
  for (let t = 340; t <= 3_600_000; t += 60_000) {
    c.information('w2', information([]), t);
    c.tick(t + 1);
  }
  assert.deepEqual(c.aggregate().dead_workers?.map((w) => w.id), ['w1']);
  // back: alive again, no longer dead
  c.information('w1', information([]), 3_600_010);
  a = c.aggregate();
  assert.equal(a.dead_workers, undefined);
  assert.deepEqual(a.worker_summary.map((w) => w.id), ['w1', 'w2']);
  // lost its broker connection, then removed: gone from both lists
  const ce = new ClusterCore({ reportIntervalMs: 100, goneGraceMs: 0 });
  join(ce, 'w3', registration('w3'), 0);
  ce.information('w3', information([]), 10);
  ce.connectionLost('w3', undefined, 20);
  assert.equal(ce.aggregate().dead_workers?.[0]?.reason, 'lost its connection to the broker');
  ce.removeWorker('w3', 30);
  assert.equal(ce.aggregate().dead_workers, undefined);
  assert.equal(ce.aggregate().workers, 0);
});

test('at most MAX_DEAD_WORKERS dead workers are kept: the ones dead longest are forgotten first', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  const n = MAX_DEAD_WORKERS + 5;
  // worker i joins at i s, the one before it is declared dead then (silent for 1 s)
  for (let i = 0; i < n; i++) {
    c.tick(i * 1000);
    const id = `d${String(i).padStart(5, '0')}`;
    join(c, id, registration(id), i * 1000);
  }
  c.tick(n * 1000);
  const dead = c.aggregate().dead_workers ?? [];
  assert.equal(dead.length, MAX_DEAD_WORKERS);
  assert.equal(c.workers.size, MAX_DEAD_WORKERS);
  assert.ok(!dead.some((w) => w.id === 'd00000'), 'the first dead is forgotten');
});

test('a dead worker whose instance found no other place gets it back when it returns', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  c.deploy(assignment(JOB, 0), 0);
  c.information('w1', information([name(0)]), 10);
  const e = c.tick(400);
  assert.deepEqual(statuses(e).map((s) => [s.status, s.status_detail]), [['DEAD', statuses(e)[0]?.status_detail], ['CLUSTER_SCHEDULED', 'NO_WORKER_CAPACITY']]);
  const back = c.information('w1', information([name(0)]), 450);
  assert.deepEqual(deletes(back), []);
  // adopted: asked for its status with an (idempotent) deploy
  assert.deepEqual(deploys(back), [{ worker: 'w1', name: name(0) }]);
  assert.equal(c.workerOf(JOB, 0), 'w1');
});

test('job statuses are forwarded from the assigned worker only', () => {
  const c = new ClusterCore();
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', registration('w2'), 0);
  c.deploy(assignment(JOB, 0), 0);
  const w = c.workerOf(JOB, 0) ?? '';
  const other = w === 'w1' ? 'w2' : 'w1';
  const s = statuses(c.jobStatus(w, { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '', publicip: '10.0.0.1' }, 1));
  assert.deepEqual(s, [{ type: 'instance_status', job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '', worker_id: w, publicip: '10.0.0.1' }]);
  assert.deepEqual(c.jobStatus(other, { job_name: JOB, instance_number: 0, status: 'FAILED', status_detail: 'x' }, 2), []);
  assert.deepEqual(c.jobStatus(w, { job_name: 'unknown.a.b.c', instance_number: 0, status: 'RUNNING', status_detail: '' }, 2), []);
});

test('sync: undesired instances go, desired ones are placed, unknown instances on workers are deleted only after a sync', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  // before any sync, an unknown instance is left alone (the cluster may just have restarted)
  assert.deepEqual(deletes(c.information('w1', information(['old.a.b.c.instance.0']), 0)), []);
  const e = c.sync([assignment(JOB, 0), assignment(JOB, 1, { worker_id: 'w1' })], 10);
  assert.deepEqual(deletes(e), [{ worker: 'w1', name: 'old.a.b.c.instance.0' }]);
  assert.deepEqual(deploys(e), [{ worker: 'w1', name: name(0) }]);
  // instance 1 was assigned to w1 by the root: not redeployed at once...
  assert.equal(c.workerOf(JOB, 1), 'w1');
  // ...but when w1 keeps not running it after the grace time, it is sent again
  const later = c.information('w1', information([name(0)]), 10 + c.opts.missingGraceMs + 1);
  assert.deepEqual(deploys(later), [{ worker: 'w1', name: name(1) }]);
  // a sync without instance 0 deletes it
  const e2 = c.sync([assignment(JOB, 1, { worker_id: 'w1' })], 20_000);
  assert.deepEqual(deletes(e2), [{ worker: 'w1', name: name(0) }]);
  assert.equal(c.workerOf(JOB, 0), null);
  assert.deepEqual(deletes(c.undeploy(JOB, 1)), [{ worker: 'w1', name: name(1) }]);
});

test('after a cluster restart: the root names a worker that has not re-registered yet; it is given time, then declared dead', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  const e = c.sync([assignment(JOB, 0, { worker_id: 'gone' }), assignment(JOB, 1, { worker_id: 'back' })], 0);
  assert.deepEqual(deploys(e), []);
  assert.equal(c.aggregate().workers, 0, 'placeholders are not capacity');
  join(c, 'back', registration('back'), 50);
  const info = c.information('back', information([name(1)]), 60);
  // it is kept where it runs (no other placement); the worker is asked for its status once
  // (an idempotent deploy), since the root may wait for a state the worker told a dead cluster
  assert.deepEqual(deploys(info), [{ worker: 'back', name: name(1) }], 'the running instance is kept and its status asked for');
  assert.equal(c.workerOf(JOB, 1), 'back');
  assert.deepEqual(deploys(c.information('back', information([name(1)]), 70)), [], 'asked once per grace period');
  assert.deepEqual(statuses(c.jobStatus('back', { job_name: JOB, instance_number: 1, status: 'RUNNING', status_detail: '' }, 80)).map((m) => m.status), ['RUNNING'], 'its answer goes to the root');
  for (let t = 100; t <= 400; t += 50) assert.deepEqual(deploys(c.information('back', information([name(1)]), t)), [], 'known now: not asked again');
  assert.deepEqual(statuses(c.tick(400)), [], 'more time than a live worker gets (it may still be reconnecting)');
  for (let t = 450; t <= 5100; t += 50) c.information('back', information([name(1)]), t);
  const dead = c.tick(5100);
  assert.equal(statuses(dead)[0]?.status, 'DEAD');
  assert.deepEqual(deploys(dead), [{ worker: 'back', name: name(0) }]);
});

test('aggregate: totals, free, virtualizations, worker summary', () => {
  const c = new ClusterCore();
  join(c, 'a', { ...registration('a', 2, 2048, ['container']), location: '48.1,11.5' }, 0);
  join(c, 'b', registration('b', 4, 1024, ['process']), 0);
  c.deploy(assignment(JOB, 0, { vcpus: 1, memory: 512, virtualization: 'process' }), 0);
  const a = c.aggregate();
  assert.equal(a.workers, 2);
  assert.equal(a.cpu_cores_total, 6);
  assert.equal(a.cpu_cores_free, 5);
  assert.equal(a.memory_total_mb, 3072);
  assert.equal(a.memory_free_mb, 2560);
  assert.deepEqual(a.virtualizations, ['container', 'process']);
  assert.deepEqual(a.worker_summary.map((w) => [w.id, w.cpu_cores_free, w.location]), [['a', 2, '48.1,11.5'], ['b', 3, null]]);
});

test('reports of a worker that never registered (a phantom) change nothing and attract no placement', () => {
  const c = new ClusterCore();
  c.deploy(assignment(JOB, 0), 0);
  const before = JSON.stringify([...c.desired.values()]);
  assert.deepEqual(c.information('phantom', information([], 64, 1_000_000), 1), []);
  c.jobResources('phantom', { instances: [{ job_name: JOB, instance_number: 0, cpu_percent: 1, memory_mb: 1 }] }, 1);
  assert.deepEqual(c.jobStatus('phantom', { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '' }, 2), []);
  assert.equal(c.workers.has('phantom'), false, 'no worker record');
  assert.equal(c.isRegistered('phantom'), false);
  assert.deepEqual(deploys(c.tick(3)), []);
  assert.equal(c.aggregate().workers, 0);
  assert.equal(JSON.stringify([...c.desired.values()]), before);
  // a worker only named by the root's sync (placeholder) cannot report for that id either
  c.sync([assignment(JOB, 0, { worker_id: 'named' })], 4);
  assert.deepEqual(c.information('named', information([name(0)]), 5), []);
  assert.equal(c.isRegistered('named'), false);
});

test('a removed worker: its instances are rescheduled, its later reports and statuses change nothing', () => {
  const c = new ClusterCore();
  join(c, 'w1', registration('w1'), 0);
  join(c, 'w2', registration('w2'), 0);
  c.deploy(assignment(JOB, 0), 0);
  const w = c.workerOf(JOB, 0) ?? '';
  const other = w === 'w1' ? 'w2' : 'w1';
  c.jobStatus(w, { job_name: JOB, instance_number: 0, status: 'RUNNING', status_detail: '' }, 1);
  const e = c.removeWorker(w, 2, 'removed (token revoked)');
  const s = statuses(e);
  assert.equal(s[0]?.status, 'DEAD');
  assert.match(s[0]?.status_detail ?? '', /removed \(token revoked\)/);
  assert.deepEqual(deploys(e), [{ worker: other, name: name(0) }], 'rescheduled on the other worker');
  assert.equal(c.workers.has(w), false);
  // the removed worker's reports and a forged FAILED are ignored
  assert.deepEqual(c.information(w, information([name(0)]), 3), []);
  assert.deepEqual(c.jobStatus(w, { job_name: JOB, instance_number: 0, status: 'FAILED', status_detail: 'forged' }, 3), []);
  assert.equal(c.workerOf(JOB, 0), other);
  assert.equal(c.desired.get(name(0))?.status, 'NODE_SCHEDULED');
  assert.equal(c.aggregate().workers, 1);
  assert.deepEqual(c.removeWorker('nobody', 4), []);
});

test('a report that races a delete does not send the delete again; a worker still running it later gets it again', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  c.sync([], 0);
  c.deploy(assignment(JOB, 0), 0);
  c.information('w1', information([name(0)]), 10);
  assert.deepEqual(deletes(c.undeploy(JOB, 0, 20)), [{ worker: 'w1', name: name(0) }]);
  // the worker's next report still lists it (it has not handled the delete yet)
  assert.deepEqual(deletes(c.information('w1', information([name(0)]), 30)), []);
  // long after, it still runs it: the delete is sent again
  assert.deepEqual(deletes(c.information('w1', information([name(0)]), 30 + c.opts.missingGraceMs)), [{ worker: 'w1', name: name(0) }]);
});

test('the deploy command carries the overlay addresses of the assignment (the worker translates them)', () => {
  const c = new ClusterCore({ reportIntervalMs: 100 });
  join(c, 'w1', registration('w1'), 0);
  const overlay = { service_ip: '10.30.0.1', service_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', instance_ip: '10.30.1.0', instance_ip_v6: 'fdff::1:0' };
  const e = c.deploy({ ...assignment(JOB, 0), overlay }, 1);
  const cmd = e.find((x) => x.type === 'deploy');
  assert.ok(cmd?.type === 'deploy');
  assert.deepEqual(cmd.command.overlay, overlay);
  const plain = c.deploy(assignment(JOB, 1), 1).find((x) => x.type === 'deploy');
  assert.ok(plain?.type === 'deploy');
  assert.equal('overlay' in plain.command, false, 'none without one');
});

test('GPUs (issue 10): only a worker with free GPUs gets a vgpus instance; held ones are subtracted; the summary carries devices', () => {
  const c = new ClusterCore();
  const gpus = [
    { index: 0, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-aaaa' },
    { index: 1, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-bbbb' },
  ];
  c.register('g', { ...registration('g', 8, 8192), gpus: 2, gpu_devices: gpus }, 0);
  c.information('g', { ...information([], 8, 8192), gpus: 2, gpu_devices: gpus }, 0);
  join(c, 'cpu', registration('cpu', 64, 65536), 0);
  const gpuJob = 'app.ns.train.ns';
  const withGpu = (n: number) => {
    const a = assignment(gpuJob, n);
    a.service.vgpus = 1;
    return a;
  };
  const placed = [...c.deploy(withGpu(0), 1), ...c.deploy(withGpu(1), 1)];
  assert.deepEqual(deploys(placed).map((d) => d.worker), ['g', 'g'], 'both on the GPU worker, although the other has more cores');
  const third = c.deploy(withGpu(2), 1);
  assert.deepEqual(deploys(third), []);
  assert.deepEqual(statuses(third).map((m) => [m.status, m.status_detail]), [['CLUSTER_SCHEDULED', 'NO_WORKER_CAPACITY']], 'it waits for a GPU');
  const a = c.aggregate();
  assert.equal(a.gpus_free, 0);
  const g = a.worker_summary.find((w) => w.id === 'g');
  assert.equal(g?.gpus_free, 0, 'reserved GPUs are not free');
  assert.deepEqual(g?.gpus, gpus);
  const cpu = a.worker_summary.find((w) => w.id === 'cpu');
  assert.equal(cpu?.gpus_free, 0);
  assert.equal(cpu?.gpus, undefined, 'no device list without GPUs');
  // once the worker reports them running, its report holds them (no double count)
  c.information('g', { ...information([name(0, gpuJob), name(1, gpuJob)], 8, 8192), gpus: 2, gpu_devices: gpus }, 10);
  assert.equal(c.aggregate().worker_summary.find((w) => w.id === 'g')?.gpus_free, 0);
  assert.equal(c.aggregate().gpus_free, 0);
});
