import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DeployCommand } from '@oak/contracts';
import { deployToSpec, exitToJobStatus, identityOf, jobNameProblem, statusToJobStatus, unavailableReason } from '../src/spec.ts';

const base: DeployCommand = {
  microservice_name: 'server',
  microservice_namespace: 'test',
  virtualization: 'process',
  code: '/bin/sleep',
  cmd: ['30'],
  environment: ['A=1', 'B=x=y'],
  memory: 64,
  vcpus: 0.5,
  port: '8080:80/tcp;9000/udp',
  one_shot: false,
  labels: { team: 'a', 'oak.job_name': 'spoofed' },
  job_name: 'app.ns.server.test',
  instance_number: 2,
};

test('a deploy command becomes an instance spec', () => {
  const r = deployToSpec(base);
  assert.ok(r.ok);
  assert.deepEqual(r.spec, {
    id: 'app.ns.server.test.instance.2',
    job_name: 'app.ns.server.test',
    instance_number: 2,
    virtualization: 'process',
    code: '/bin/sleep',
    cmd: ['30'],
    env: ['A=1', 'B=x=y'],
    memory_mb: 64,
    vcpus: 0.5,
    ports: [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { containerPort: 9000, protocol: 'udp' },
    ],
    one_shot: false,
    labels: { team: 'a', 'oak.job_name': 'app.ns.server.test', 'oak.instance_number': '2', 'oak.virtualization': 'process' },
  });
});

test('optional fields: zero limits and empty cmd mean none', () => {
  const r = deployToSpec({ ...base, memory: 0, vcpus: 0, cmd: [], port: '', environment: undefined, one_shot: true, labels: undefined });
  assert.ok(r.ok);
  assert.equal(r.spec.memory_mb, undefined);
  assert.equal(r.spec.vcpus, undefined);
  assert.equal(r.spec.cmd, undefined);
  assert.deepEqual(r.spec.ports, []);
  assert.deepEqual(r.spec.env, []);
  assert.equal(r.spec.one_shot, true);
});

test('args and storage: args kept; storage becomes a tmpfs size for processes only', () => {
  const p = deployToSpec({ ...base, args: ['--x'], storage: 16 });
  assert.ok(p.ok);
  assert.deepEqual(p.spec.args, ['--x']);
  assert.equal(p.spec.storage_mb, 16);
  const c = deployToSpec({ ...base, virtualization: 'container', code: 'busybox', args: [], storage: 16 });
  assert.ok(c.ok);
  assert.equal(c.spec.args, undefined);
  assert.equal(c.spec.storage_mb, undefined);
});

test('arch: carried to the driver as the label oak.arch; a list without this worker is a reason', () => {
  const uni: DeployCommand = { ...base, virtualization: 'unikernel', code: 'http://h/a.tgz,http://h/b.tgz', arch: ['x86_64', 'arm64'] };
  const r = deployToSpec(uni, 'amd64');
  assert.ok(r.ok);
  assert.equal(r.spec.labels['oak.arch'], 'x86_64,arm64');
  const no = deployToSpec(uni, 'riscv64');
  assert.ok(!no.ok);
  assert.match(no.reason, /this worker is riscv64; the service runs only on x86_64, arm64/);
  // no list: any worker, and a label of the SLA's own cannot pose as one
  const plain = deployToSpec({ ...base, labels: { 'oak.arch': 'evil' } }, 'riscv64');
  assert.ok(plain.ok);
  assert.equal(plain.spec.labels['oak.arch'], undefined);
});

test('bad port strings and environment entries are reasons', () => {
  const p = deployToSpec({ ...base, port: '80:abc' });
  assert.ok(!p.ok);
  assert.match(p.reason, /invalid port "80:abc"/);
  const e = deployToSpec({ ...base, environment: ['NOEQUALS'] });
  assert.ok(!e.ok);
  assert.match(e.reason, /KEY=value/);
});

test('job names that could escape a path or topic are refused', () => {
  assert.equal(jobNameProblem('a.b.c.d'), undefined);
  assert.ok(jobNameProblem('a/b'));
  assert.ok(jobNameProblem('a+b'));
  assert.ok(jobNameProblem('..'));
  assert.ok(jobNameProblem(''));
});

test('identity from labels, else from the instance name', () => {
  assert.deepEqual(identityOf({ id: 'x', labels: { 'oak.job_name': 'a.b.c.d', 'oak.instance_number': '3' } }), { id: 'x', job_name: 'a.b.c.d', instance_number: 3 });
  assert.deepEqual(identityOf({ id: 'a.b.c.d.instance.7', labels: {} }), { id: 'a.b.c.d.instance.7', job_name: 'a.b.c.d', instance_number: 7 });
  assert.equal(identityOf({ id: 'random', labels: {} }), undefined);
});

test('driver states and exits map to job status', () => {
  const who = { job_name: 'a.b.c.d', instance_number: 0 };
  assert.deepEqual(statusToJobStatus(who, { state: 'RUNNING', detail: 'running', exit_code: undefined }), { ...who, status: 'RUNNING', status_detail: 'running' });
  assert.deepEqual(statusToJobStatus(who, { state: 'FAILED', detail: 'exited with code 3', exit_code: 3 }), { ...who, status: 'FAILED', status_detail: 'exited with code 3', exit_code: 3 });
  assert.deepEqual(exitToJobStatus(who, { id: 'x', exit_code: 0, state: 'COMPLETED', detail: '' }), { ...who, status: 'COMPLETED', status_detail: 'exited with code 0', exit_code: 0 });
  assert.deepEqual(exitToJobStatus(who, { id: 'x', exit_code: 137, state: 'FAILED', detail: 'out of memory (limit 64 MB)' }), { ...who, status: 'FAILED', status_detail: 'out of memory (limit 64 MB)', exit_code: 137 });
  assert.equal(unavailableReason('wasm', ['process']), 'virtualization wasm not available on this worker (it offers process)');
});
