import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  OakError,
  decodeJson,
  makeParser,
  parseClusterToRoot,
  parseDeleteCommand,
  parseDeployCommand,
  parseInstanceAssignment,
  parseJobResources,
  parseJobStatus,
  parseNodeInformation,
  parseNodeRegistration,
  parseNodeRegistrationAnswer,
  parseRootToCluster,
  type ClusterResources,
  type Microservice,
} from '../src/index.ts';

type Json = Record<string, unknown>;
const spec = JSON.parse(readFileSync(new URL('./fixtures/sla-spec-example.json', import.meta.url), 'utf8')) as {
  applications: { microservices: Microservice[] }[];
};
const service = spec.applications[0]?.microservices[0] as Microservice;

/** Asserts that `fn` throws OAK_VALIDATION whose first problem is at `path`, with a hint. */
function rejects(fn: () => unknown, path: string, message?: RegExp): OakError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof OakError, 'expected an OakError');
  assert.equal(caught.code, 'OAK_VALIDATION');
  assert.equal(caught.status, 422);
  assert.equal(caught.path, path, `${caught.message} ${JSON.stringify(caught.details)}`);
  assert.ok(caught.hint && caught.hint.length > 0, 'hint');
  assert.ok(caught.message.includes(path), 'the message names the path');
  assert.ok((caught.details?.length ?? 0) >= 1);
  if (message) assert.match(caught.message, message);
  return caught;
}

test('decodeJson parses buffers and strings, and rejects what is not JSON', () => {
  assert.deepEqual(decodeJson(Buffer.from('{"a":1}')), { a: 1 });
  assert.deepEqual(decodeJson('[1,2]'), [1, 2]);
  assert.equal(decodeJson(new Uint8Array([0x34, 0x32])), 42);
  for (const bad of ['', '   ', '{a:1}', '{"a":1', Buffer.from([0xff, 0xfe, 0x00]), Buffer.alloc(0)]) {
    assert.throws(
      () => decodeJson(bad),
      (e: unknown) => e instanceof OakError && e.code === 'OAK_MALFORMED_JSON' && e.status === 400 && typeof e.hint === 'string',
      String(bad),
    );
  }
});

const registration: Json = {
  node_name: 'w1',
  host: '10.0.0.5',
  cpu_cores: 4,
  memory_mb: 8192,
  arch: 'amd64',
  os: 'linux',
  virtualizations: ['container', 'process'],
  netmanager_port: null,
  location: '48.1,11.5',
};

test('parseNodeRegistration', () => {
  assert.deepEqual(parseNodeRegistration(registration), registration);
  assert.equal(parseNodeRegistration({ ...registration, id: 'n1', port: 10100, netmanager_port: 6000, gpus: 1, disk_mb: 1000, extra: 'ok' }).id, 'n1');
  rejects(() => parseNodeRegistration({ ...registration, cpu_cores: -1 }), 'cpu_cores', /negative/);
  rejects(() => parseNodeRegistration({ ...registration, memory_mb: '8192' }), 'memory_mb');
  rejects(() => parseNodeRegistration({ ...registration, virtualizations: ['docker'] }), 'virtualizations[0]', /not one of/);
  rejects(() => parseNodeRegistration({ ...registration, port: 70000 }), 'port');
  const { node_name: _, ...noName } = registration;
  rejects(() => parseNodeRegistration(noName), 'node_name', /required/);
  const e = rejects(() => parseNodeRegistration({ ...registration, host: 1, arch: 2 }), 'host', /and 1 more/);
  assert.deepEqual(e.details?.map((d) => d.path), ['host', 'arch']);
  rejects(() => parseNodeRegistration(null), '', /object/);
});

test('parseNodeRegistration: the GPU list (issue 10) is bounded and typed', () => {
  const gpu = { index: 0, name: 'NVIDIA A100-SXM4-40GB', memory_mb: 40960, uuid: 'GPU-8f3c2a1e' };
  assert.deepEqual(parseNodeRegistration({ ...registration, gpus: 1, gpu_devices: [gpu] }).gpu_devices, [gpu]);
  rejects(() => parseNodeRegistration({ ...registration, gpu_devices: Array.from({ length: 65 }, (_, i) => ({ ...gpu, index: i })) }), 'gpu_devices');
  rejects(() => parseNodeRegistration({ ...registration, gpu_devices: [{ ...gpu, name: 'x'.repeat(129) }] }), 'gpu_devices[0].name');
  rejects(() => parseNodeRegistration({ ...registration, gpu_devices: [{ ...gpu, index: -1 }] }), 'gpu_devices[0].index');
  rejects(() => parseNodeRegistration({ ...registration, gpu_devices: [{ ...gpu, memory_mb: 1.5 }] }), 'gpu_devices[0].memory_mb');
  rejects(() => parseNodeRegistration({ ...registration, gpu_devices: [{ index: 0, name: 'x', memory_mb: 1 }] }), 'gpu_devices[0].uuid', /required/);
});

test('parseNodeRegistrationAnswer', () => {
  const a = { id: 'n1', MQTT_BROKER_PORT: 10003, report_interval_ms: 2000 };
  assert.deepEqual(parseNodeRegistrationAnswer(a), a);
  assert.ok(parseNodeRegistrationAnswer({ ...a, MQTT_BROKER_URL: 'mqtt://10.0.0.1:1883' }));
  rejects(() => parseNodeRegistrationAnswer({ ...a, MQTT_BROKER_PORT: '10003' }), 'MQTT_BROKER_PORT');
  rejects(() => parseNodeRegistrationAnswer({ ...a, report_interval_ms: 0 }), 'report_interval_ms');
  rejects(() => parseNodeRegistrationAnswer({ ...a, id: '' }), 'id', /empty/);
});

test('parseNodeInformation', () => {
  const info = {
    cpu_percent: 12.5,
    cpu_cores: 4,
    memory_free_mb: 1000,
    memory_total_mb: 8000,
    disk_free_mb: 5000,
    gpus: 0,
    virtualizations: ['container'],
    running_instances: ['a.b.c.d.instance.0'],
    timestamp: 1700000000000,
  };
  assert.deepEqual(parseNodeInformation(info), info);
  rejects(() => parseNodeInformation({ ...info, running_instances: 'x' }), 'running_instances', /list/);
  rejects(() => parseNodeInformation({ ...info, gpus: 0.5 }), 'gpus', /whole number/);
  assert.equal(parseNodeInformation({ ...info, gpus: 1, gpu_devices: [{ index: 3, name: 'T4', memory_mb: 15360, uuid: '' }] }).gpu_devices?.[0]?.index, 3);
  rejects(() => parseNodeInformation({ ...info, gpu_devices: [{ index: 'a', name: 'T4', memory_mb: 1, uuid: '' }] }), 'gpu_devices[0].index');
  const { timestamp: _, ...noTs } = info;
  rejects(() => parseNodeInformation(noTs), 'timestamp', /required/);
});

test('parseJobStatus', () => {
  const s = { job_name: 'a.b.c.d', instance_number: 0, status: 'RUNNING', status_detail: '', publicip: null, exit_code: null };
  assert.deepEqual(parseJobStatus(s), s);
  assert.ok(parseJobStatus({ job_name: 'a.b.c.d', instance_number: 2, status: 'FAILED', status_detail: 'exit 1', exit_code: 1 }));
  rejects(() => parseJobStatus({ ...s, status: 'running' }), 'status', /not one of REQUESTED/);
  rejects(() => parseJobStatus({ ...s, instance_number: -1 }), 'instance_number');
  rejects(() => parseJobStatus({ ...s, publicip: 5 }), 'publicip');
});

test('parseJobResources', () => {
  const r = { instances: [{ job_name: 'a.b.c.d', instance_number: 0, cpu_percent: 3, memory_mb: 12 }] };
  assert.deepEqual(parseJobResources(r), r);
  assert.deepEqual(parseJobResources({ instances: [] }), { instances: [] });
  rejects(() => parseJobResources({ instances: [{ job_name: 'a', instance_number: 0, cpu_percent: 3 }] }), 'instances[0].memory_mb', /required/);
  rejects(() => parseJobResources({}), 'instances');
});

test('parseDeployCommand and parseDeleteCommand', () => {
  const d = { ...service, job_name: 'clientsrvr.test.server.test', instance_number: 1 };
  assert.deepEqual(parseDeployCommand(d), d);
  rejects(() => parseDeployCommand({ ...service, instance_number: 1 }), 'job_name', /required/);
  rejects(() => parseDeployCommand({ ...d, virtualization: 'vm' }), 'virtualization');
  rejects(() => parseDeployCommand({ ...d, constraints: [{ type: 'x' }] }), 'constraints[0].type', /unknown/);
  const del = { job_name: 'a.b.c.d', virtualization: 'container', instance_number: 0 };
  assert.deepEqual(parseDeleteCommand(del), del);
  rejects(() => parseDeleteCommand({ ...del, virtualization: 'docker' }), 'virtualization', /container, unikernel/);
  rejects(() => parseDeleteCommand({ job_name: 'a.b.c.d', virtualization: 'container' }), 'instance_number', /required/);
});

const resources: ClusterResources = {
  cpu_cores_free: 3.5,
  cpu_cores_total: 4,
  memory_free_mb: 1000,
  memory_total_mb: 4000,
  gpus_free: 0,
  virtualizations: ['container'],
  workers: 1,
  worker_summary: [{ id: 'n1', name: 'w1', cpu_cores_free: 3.5, memory_free_mb: 1000, virtualizations: ['container'], location: null }],
};

test('parseClusterToRoot, every message type', () => {
  const msgs = [
    { type: 'hello', token: 't', cluster_name: 'c1', cluster_location: null, version: '0.1.0' },
    { type: 'aggregate', resources },
    { type: 'instance_status', job_name: 'a.b.c.d', instance_number: 0, status: 'RUNNING', status_detail: '', worker_id: 'n1', publicip: '10.0.0.5' },
    { type: 'pong', t: 5 },
  ];
  for (const m of msgs) assert.deepEqual(parseClusterToRoot(m), m);
  const hello = parseClusterToRoot(msgs[0]);
  if (hello.type === 'hello') assert.equal(hello.cluster_name, 'c1');
  rejects(() => parseClusterToRoot({ type: 'hi' }), 'type', /"hi" is unknown/);
  rejects(() => parseClusterToRoot({ token: 't' }), 'type', /no "type"/);
  rejects(() => parseClusterToRoot({ type: 'aggregate', resources: { ...resources, workers: -1 } }), 'resources.workers');
  // addons (issue 12): the pattern and the bound of the SLA's labels
  assert.equal(parseClusterToRoot({ type: 'aggregate', resources: { ...resources, supported_addons: ['image-builder'] } }).type, 'aggregate');
  rejects(() => parseClusterToRoot({ type: 'aggregate', resources: { ...resources, supported_addons: ['not a label'] } }), 'resources.supported_addons[0]');
  rejects(() => parseClusterToRoot({ type: 'aggregate', resources: { ...resources, supported_addons: Array.from({ length: 65 }, (_, i) => `a${i}`) } }), 'resources.supported_addons');
  rejects(() => parseClusterToRoot({ type: 'aggregate', resources: { ...resources, worker_summary: [{ id: 'n1' }] } }), 'resources.worker_summary[0].name', /required/);
  rejects(() => parseClusterToRoot({ ...msgs[2], status: 'UP' }), 'status');
  rejects(() => parseClusterToRoot('hello'), '', /object/);
});

test('parseRootToCluster and parseInstanceAssignment', () => {
  const assignment = { microserviceID: 'm1', job_name: 'clientsrvr.test.server.test', instance_number: 0, service, worker_id: null };
  assert.deepEqual(parseInstanceAssignment(assignment), assignment);
  const msgs = [
    { type: 'welcome', cluster_id: 'c1' },
    { type: 'reject', reason: 'bad token' },
    { type: 'sync', instances: [assignment] },
    { type: 'deploy', instance: assignment },
    { type: 'undeploy', job_name: 'a.b.c.d', instance_number: 3 },
    { type: 'ping', t: 1 },
  ];
  for (const m of msgs) assert.deepEqual(parseRootToCluster(m), m);
  rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, service: { ...service, code: '' } } }), 'instance.service.code', /empty/);
  rejects(() => parseRootToCluster({ type: 'sync', instances: [{ ...assignment, instance_number: 'one' }] }), 'instances[0].instance_number');
  rejects(() => parseRootToCluster({ type: 'welcome' }), 'cluster_id', /required/);
  rejects(() => parseInstanceAssignment({ ...assignment, microserviceID: undefined }), 'microserviceID', /required/);
});

test('connectivity rules on the link (issue 12): bounded, shaped, refused at their path otherwise', () => {
  const peer = { target: 'a.b.db.d', threshold_ms: 10, rigidness: 1, workers: ['w1'] };
  const assignment = { microserviceID: 'm1', job_name: 'clientsrvr.test.server.test', instance_number: 0, service, peers: [peer] };
  assert.deepEqual(parseRootToCluster({ type: 'deploy', instance: assignment }), { type: 'deploy', instance: assignment });
  rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, peers: [{ ...peer, rigidness: 2 }] } }), 'instance.peers[0].rigidness');
  rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, peers: [{ ...peer, threshold_ms: -1 }] } }), 'instance.peers[0].threshold_ms');
  rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, peers: [{ ...peer, workers: Array.from({ length: 1001 }, (_, i) => `w${i}`) }] } }), 'instance.peers[0].workers');
  rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, peers: Array.from({ length: 101 }, () => peer) } }), 'instance.peers');
  rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, peers: [{ ...peer, target: '' }] } }), 'instance.peers[0].target');
});

test('makeParser exposes the schema and an issue finder', () => {
  assert.deepEqual(parseJobStatus.issues({ job_name: 'a', instance_number: 0, status: 'RUNNING', status_detail: '' }), []);
  const issues = parseJobStatus.issues({ job_name: 'a', instance_number: 0, status: 'X', status_detail: '' }, 'payload');
  assert.equal(issues[0]?.path, 'payload.status');
  assert.equal(typeof makeParser(parseJobStatus.schema, 'x'), 'function');
});

test('epoch on the link (issue 9): whole numbers 0..2^53-1 on assignments, undeploys and instance_status; anything else is refused at its path', () => {
  const assignment = { microserviceID: 'm1', job_name: 'clientsrvr.test.server.test', instance_number: 0, service, epoch: 4 };
  const ok = [
    { type: 'deploy', instance: assignment },
    { type: 'sync', instances: [assignment, { ...assignment, instance_number: 1, epoch: 0 }] },
    { type: 'undeploy', job_name: 'a.b.c.d', instance_number: 3, epoch: Number.MAX_SAFE_INTEGER },
  ];
  for (const m of ok) assert.deepEqual(parseRootToCluster(m), m);
  for (const bad of [-1, 1.5, '3', 1e300, Number.MAX_SAFE_INTEGER + 2, null, [1], { n: 1 }]) {
    rejects(() => parseRootToCluster({ type: 'undeploy', job_name: 'a.b.c.d', instance_number: 3, epoch: bad }), 'epoch');
    rejects(() => parseRootToCluster({ type: 'deploy', instance: { ...assignment, epoch: bad } }), 'instance.epoch');
    rejects(() => parseRootToCluster({ type: 'sync', instances: [assignment, { ...assignment, epoch: bad }] }), 'instances[1].epoch');
    rejects(
      () => parseClusterToRoot({ type: 'instance_status', job_name: 'a.b.c.d', instance_number: 0, status: 'RUNNING', status_detail: '', worker_id: null, epoch: bad }),
      'epoch',
    );
  }
  const s = { type: 'instance_status', job_name: 'a.b.c.d', instance_number: 0, status: 'RUNNING', status_detail: '', worker_id: 'w', epoch: 9 };
  assert.deepEqual(parseClusterToRoot(s), s);
});

test('makeParser compiles its schema at the first parse, not when made (an idle program keeps only the checks it used)', async () => {
  const { Kind } = await import('@sinclair/typebox');
  const { makeParser } = await import('../src/wire.ts');
  // a kind TypeCompiler cannot compile: made without error, fails at the first use
  const p = makeParser({ [Kind]: 'NoSuchKind' } as unknown as import('@sinclair/typebox').TSchema, 'odd thing');
  assert.throws(() => p({}), /NoSuchKind|Unknown/i);
});
