import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceState } from '@oak/contracts';
import { applyState, backoffDelay, decideDeploy, isSettledActive, planAdoption, runningNames } from '../src/instances.ts';
import type { Entry } from '../src/instances.ts';
import { chooseVirtualizations } from '../src/runtimes.ts';

const entry = (state: InstanceState, id = 'a.b.c.d.instance.0', deleting = false): Entry => ({ id, job_name: 'a.b.c.d', instance_number: 0, virtualization: 'process', state, detail: '', deleting });

test('deploy decisions: start, no-op, replace', () => {
  assert.equal(decideDeploy(undefined), 'start');
  assert.equal(decideDeploy(entry('CREATING')), 'report');
  assert.equal(decideDeploy(entry('RUNNING')), 'report');
  assert.equal(decideDeploy(entry('COMPLETED')), 'replace');
  assert.equal(decideDeploy(entry('FAILED')), 'replace');
  assert.equal(isSettledActive(entry('RUNNING')), true);
  assert.equal(isSettledActive(entry('RUNNING', 'x', true)), false);
  assert.equal(isSettledActive(entry('FAILED')), false);
});

test('only changes are reported; an ended instance does not come back by itself', () => {
  const e = entry('CREATING');
  assert.equal(applyState(e, 'RUNNING', 'running'), true);
  assert.equal(applyState(e, 'RUNNING', 'running'), false);
  assert.equal(applyState(e, 'COMPLETED', 'exited with code 0', 0), true);
  assert.equal(e.exit_code, 0);
  assert.equal(applyState(e, 'RUNNING', 'late start answer'), false);
  assert.equal(e.state, 'COMPLETED');
  assert.equal(applyState(e, 'UNDEPLOYED', 'undeployed'), true);
});

test('running names leave out ended and deleting instances', () => {
  assert.deepEqual(runningNames([entry('RUNNING', 'b'), entry('CREATING', 'a'), entry('FAILED', 'c'), entry('RUNNING', 'd', true)]), ['a', 'b']);
});

test('adoption keeps running instances and finishes ended ones', () => {
  const plan = planAdoption([
    { virtualization: 'process', status: { id: 'a.b.c.d.instance.0', state: 'RUNNING', detail: '', labels: { 'oak.job_name': 'a.b.c.d', 'oak.instance_number': '0' } } },
    { virtualization: 'container', status: { id: 'x.y.z.w.instance.1', state: 'FAILED', detail: 'exited with code 2', exit_code: 2, labels: {} } },
    { virtualization: 'process', status: { id: 'a.b.c.d.instance.0', state: 'RUNNING', detail: '', labels: {} } },
    { virtualization: 'process', status: { id: 'stranger', state: 'RUNNING', detail: '', labels: {} } },
  ]);
  assert.deepEqual(plan.keep.map((e) => [e.id, e.state, e.virtualization]), [['a.b.c.d.instance.0', 'RUNNING', 'process']]);
  assert.deepEqual(plan.finished.map((e) => [e.id, e.state, e.exit_code, e.job_name, e.instance_number]), [['x.y.z.w.instance.1', 'FAILED', 2, 'x.y.z.w', 1]]);
  assert.deepEqual(plan.unknown.map((s) => s.id), ['a.b.c.d.instance.0', 'stranger']);
});

test('adoption takes the restart count from the label of the driver; absent or hostile: 0', () => {
  const st = (n: number, v: string | undefined) => ({ virtualization: 'process' as const, status: { id: `a.b.c.d.instance.${n}`, state: 'RUNNING' as const, detail: '', labels: (v === undefined ? {} : { 'oak.restarts': v }) as Record<string, string> } });
  const plan = planAdoption([st(0, '2'), st(1, undefined), st(2, '-1'), st(3, '1e9'), st(4, '99999999'), st(5, ' 3')]);
  assert.deepEqual(plan.keep.map((e) => e.restarts), [2, 0, 0, 0, 0, 0]);
});

test('registration backoff doubles up to the maximum', () => {
  assert.deepEqual([0, 1, 2, 3, 10, 100].map((a) => backoffDelay(a, 500, 10_000)), [500, 1000, 2000, 4000, 10_000, 10_000]);
});

test('virtualizations offered: available ones, narrowed by --runtimes, with reasons', () => {
  const probes = [
    { virtualization: 'container' as const, result: { available: false, detail: 'no containerd socket at /run/containerd/containerd.sock' } },
    { virtualization: 'process' as const, result: { available: true, detail: 'native processes' } },
  ];
  const all = chooseVirtualizations(probes);
  assert.deepEqual(all.offered, ['process']);
  assert.ok(all.lines.includes('container: unavailable (no containerd socket at /run/containerd/containerd.sock)'));
  assert.ok(all.lines.includes('process: available (native processes)'));
  assert.ok(all.lines.some((l) => l.startsWith('wasm: unavailable (no driver')));
  assert.equal(all.lines.at(-1), 'offering: process');
  const forced = chooseVirtualizations(probes, ['container']);
  assert.deepEqual(forced.offered, []);
  assert.ok(forced.lines.some((l) => l.startsWith('process: available') && l.includes('not offered')));
});
