import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  InvalidSlaError,
  assertValidSla,
  validateApplicationPatch,
  validateMicroservice,
  validateServiceRequest,
  validateSla,
  type FieldIssue,
} from '../src/index.ts';

type Json = Record<string, unknown>;

function fixture(name: string): Json {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8')) as Json;
}

/** The SPEC example with one change applied to its first application / service. */
function sla(change: (doc: Json, app: Json, ms: Json) => void = () => {}): Json {
  const doc = fixture('sla-spec-example');
  const app = (doc['applications'] as Json[])[0] as Json;
  const ms = (app['microservices'] as Json[])[0] as Json;
  change(doc, app, ms);
  return doc;
}

const MS = 'applications[0].microservices[0]';

function errorsOf(input: unknown): FieldIssue[] {
  const r = validateSla(input);
  assert.equal(r.ok, false, 'expected the SLA to be rejected');
  return r.ok ? [] : r.errors;
}

/** Asserts exactly one error at `path` (with a hint), and returns it. */
function issueAt(input: unknown, path: string, message?: RegExp): FieldIssue {
  const errors = errorsOf(input);
  const at = errors.filter((e) => e.path === path);
  assert.equal(at.length, 1, `expected one issue at ${path}, got ${JSON.stringify(errors, null, 1)}`);
  const issue = at[0] as FieldIssue;
  assert.ok(issue.hint && issue.hint.length > 5, `issue at ${path} needs a hint`);
  if (message) assert.match(issue.message, message);
  return issue;
}

function valid(input: unknown): void {
  const r = validateSla(input);
  assert.ok(r.ok, `expected valid, got ${JSON.stringify(r.ok ? [] : r.errors, null, 1)}`);
}

test('the SPEC §2 example and the other good fixtures validate without warnings', () => {
  for (const f of ['sla-spec-example', 'sla-minimal', 'sla-full']) {
    const doc = fixture(f);
    const r = validateSla(doc);
    assert.ok(r.ok, f);
    assert.deepEqual(r.warnings, [], f);
    assert.deepEqual(r.sla, doc);
  }
});

test('sla_version and customerID are required', () => {
  issueAt(sla((d) => delete d['sla_version']), 'sla_version', /required/);
  issueAt(sla((d) => delete d['customerID']), 'customerID', /required/);
  issueAt(sla((d) => (d['customerID'] = '')), 'customerID', /empty/);
  issueAt(sla((d) => (d['sla_version'] = 2)), 'sla_version', /string/);
});

test('another sla_version is a warning, not an error', () => {
  const r = validateSla(sla((d) => (d['sla_version'] = 'v1.0')));
  assert.ok(r.ok);
  assert.equal(r.warnings[0]?.path, 'sla_version');
  assert.ok(r.warnings[0]?.hint);
});

test('applications must be a non-empty list', () => {
  issueAt(sla((d) => (d['applications'] = [])), 'applications', /at least one/);
  issueAt(sla((d) => delete d['applications']), 'applications', /required/);
  const i = issueAt(sla((d) => (d['applications'] = { application_name: 'x' })), 'applications', /must be a list/);
  assert.ok(i.hint);
});

test('a document that is not an object is one clear issue', () => {
  for (const v of [null, 42, 'sla', []]) {
    const e = errorsOf(v);
    assert.equal(e.length, 1);
    assert.equal(e[0]?.path, '');
    assert.ok(e[0]?.hint);
  }
});

test('the four names are required', () => {
  issueAt(sla((_d, a) => delete a['application_namespace']), 'applications[0].application_namespace', /required/);
  issueAt(sla((_d, a) => delete a['application_name']), 'applications[0].application_name', /required/);
  issueAt(sla((_d, _a, m) => delete m['microservice_namespace']), `${MS}.microservice_namespace`, /required/);
  issueAt(sla((_d, _a, m) => delete m['microservice_name']), `${MS}.microservice_name`, /required/);
});

test('names with dots, dashes, spaces or other characters are rejected with the naming hint', () => {
  for (const bad of ['client.srvr', 'client-srvr', 'client srvr', 'clïent', 'a_b', 'x/y']) {
    const i = issueAt(sla((_d, a) => (a['application_name'] = bad)), 'applications[0].application_name', /not allowed/);
    assert.equal(i.hint, 'use 1-30 letters or digits, no dots, dashes or spaces');
  }
  issueAt(sla((_d, _a, m) => (m['microservice_namespace'] = 'te.st')), `${MS}.microservice_namespace`, /"\."/);
  issueAt(sla((_d, a) => (a['application_namespace'] = '')), 'applications[0].application_namespace', /empty/);
});

test('names longer than 30 characters are rejected; 30 is fine', () => {
  issueAt(sla((_d, _a, m) => (m['microservice_name'] = 'a'.repeat(31))), `${MS}.microservice_name`, /31 characters long; at most 30/);
  valid(sla((_d, _a, m) => (m['microservice_name'] = 'a'.repeat(30))));
});

test('a name given as a JSON number is rejected, not coerced', () => {
  const i = issueAt(sla((_d, a) => (a['application_name'] = 123)), 'applications[0].application_name', /must be a string, not the number 123/);
  assert.match(i.hint ?? '', /"123"/);
  valid(sla((_d, a) => (a['application_name'] = '123')));
});

test('virtualization must be one of the five', () => {
  const i = issueAt(sla((_d, _a, m) => (m['virtualization'] = 'docker')), `${MS}.virtualization`, /"docker" is not one of/);
  assert.match(i.hint ?? '', /container, unikernel, microvm, process, wasm/);
  issueAt(sla((_d, _a, m) => delete m['virtualization']), `${MS}.virtualization`, /required/);
  for (const v of ['container', 'unikernel', 'microvm', 'process', 'wasm']) valid(sla((_d, _a, m) => (m['virtualization'] = v)));
});

test('code is required and not empty; an image reference has no spaces', () => {
  issueAt(sla((_d, _a, m) => delete m['code']), `${MS}.code`, /required/);
  issueAt(sla((_d, _a, m) => (m['code'] = '')), `${MS}.code`, /empty/);
  issueAt(sla((_d, _a, m) => (m['code'] = '   ')), `${MS}.code`, /./);
  issueAt(sla((_d, _a, m) => (m['code'] = 'nginx latest')), `${MS}.code`, /not an image reference/);
  valid(sla((_d, _a, m) => ((m['virtualization'] = 'process'), (m['code'] = '/opt/my tools/run'))));
});

test('memory, vcpus, vgpus and storage are non-negative numbers', () => {
  for (const f of ['memory', 'vcpus', 'vgpus', 'storage']) {
    issueAt(sla((_d, _a, m) => (m[f] = -1)), `${MS}.${f}`, /must not be negative, got -1/);
    const i = issueAt(sla((_d, _a, m) => (m[f] = '100')), `${MS}.${f}`, /must be a number/);
    assert.equal(i.hint, 'remove the quotes: 100');
    valid(sla((_d, _a, m) => (m[f] = 0)));
  }
  valid(sla((_d, _a, m) => (m['vcpus'] = 0.5)));
});

test('port given as a number is rejected with a hint to write a string', () => {
  const i = issueAt(sla((_d, _a, m) => (m['port'] = 80)), `${MS}.port`, /must be a string/);
  assert.match(i.hint ?? '', /write it as a string, e\.g\. "80" or "8080:80\/tcp"/);
});

test('bad port strings are rejected, one issue for the field', () => {
  const bad: [string, RegExp][] = [
    ['8080:80/sctp', /protocol "sctp"/],
    ['99999:80', /outside 1-65535/],
    ['0', /outside 1-65535/],
    ['http', /not a number/],
    ['8080:80:90', /not \[host:\]container/],
    ['80;;81', /empty entry/],
    [':80', /host port "" is not a number/],
    ['8080:80;8080:81', /both use port 8080\/tcp/],
    ['80/', /protocol ""/],
  ];
  for (const [port, msg] of bad) {
    const i = issueAt(sla((_d, _a, m) => (m['port'] = port)), `${MS}.port`, msg);
    assert.ok(i.hint);
  }
  for (const port of ['80', '8080:80', '8080:80/tcp;9000/udp', '53/UDP', '', '80;', '8080:80/tcp;8080:80/udp']) valid(sla((_d, _a, m) => (m['port'] = port)));
});

test('a constraint without type gives one issue at .type with the allowed list', () => {
  const errors = errorsOf(sla((_d, _a, m) => (m['constraints'] = [{ cluster: 'c1' }])));
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.path, `${MS}.constraints[0].type`);
  assert.match(errors[0]?.hint ?? '', /direct, geo, latency/);
});

test('an unknown constraint type is rejected with the allowed list', () => {
  const i = issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'nearby', cluster: 'c1' }])), `${MS}.constraints[0].type`, /"nearby" is unknown/);
  assert.match(i.hint ?? '', /direct, geo, latency/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 7 }])), `${MS}.constraints[0].type`, /unknown/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = ['direct'])), `${MS}.constraints[0]`, /must be an object/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = { type: 'direct' })), `${MS}.constraints`, /must be a list/);
});

test('a direct constraint needs cluster and/or node', () => {
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'direct' }])), `${MS}.constraints[0]`, /cluster.*node/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'direct', cluster: '' }])), `${MS}.constraints[0].cluster`, /empty/);
  valid(sla((_d, _a, m) => (m['constraints'] = [{ type: 'direct', node: 'w1' }])));
  valid(sla((_d, _a, m) => (m['constraints'] = [{ type: 'direct', cluster: 'c1' }])));
});

test('a geo constraint needs a valid "lat,long" location and a threshold', () => {
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', threshold: 10 }])), `${MS}.constraints[0].location`, /required/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', location: 'Munich', threshold: 10 }])), `${MS}.constraints[0].location`, /lat,long/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', location: '95,11', threshold: 10 }])), `${MS}.constraints[0].location`, /latitude 95/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', location: '45,200', threshold: 10 }])), `${MS}.constraints[0].location`, /longitude 200/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', location: '48.1,11.5' }])), `${MS}.constraints[0].threshold`, /required/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', location: '48.1,11.5', threshold: -1 }])), `${MS}.constraints[0].threshold`, /negative/);
  valid(sla((_d, _a, m) => (m['constraints'] = [{ type: 'geo', location: '-33.86, 151.2', threshold: 100 }])));
});

test('a latency constraint needs a threshold and an area or a location', () => {
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'latency', threshold: 10 }])), `${MS}.constraints[0]`, /area.*location/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'latency', area: 'munich' }])), `${MS}.constraints[0].threshold`, /required/);
  issueAt(sla((_d, _a, m) => (m['constraints'] = [{ type: 'latency', location: 'x,y', threshold: 5 }])), `${MS}.constraints[0].location`, /lat,long/);
  valid(sla((_d, _a, m) => (m['constraints'] = [{ type: 'latency', area: 'munich', threshold: 5 }])));
  valid(sla((_d, _a, m) => (m['constraints'] = [{ type: 'latency', location: '48.1,11.5', threshold: 5 }])));
});

test('addresses.rr_ip must be an IPv4 address; outside 10.30.0.0/16 it is a warning naming the range', () => {
  for (const rr of ['10.31.0.1', '192.168.1.1']) {
    const r = validateSla(sla((_d, _a, m) => (m['addresses'] = { rr_ip: rr })));
    assert.ok(r.ok, rr);
    const w = r.warnings.filter((x) => x.path === `${MS}.addresses.rr_ip`);
    assert.equal(w.length, 1, rr);
    assert.match(w[0]?.message ?? '', /outside the service range 10\.30\.0\.0\/16: the service gets a free address of 10\.30\.0\.0\/16 instead/);
  }
  issueAt(sla((_d, _a, m) => (m['addresses'] = { rr_ip: '10.30.300.1' })), `${MS}.addresses.rr_ip`, /not an IPv4/);
  issueAt(sla((_d, _a, m) => (m['addresses'] = { rr_ip: 'ten' })), `${MS}.addresses.rr_ip`, /not an IPv4/);
  issueAt(sla((_d, _a, m) => (m['addresses'] = { rr_ip: 10 })), `${MS}.addresses.rr_ip`, /must be a string/);
  issueAt(sla((_d, _a, m) => (m['addresses'] = { rr_ip_v6: 'fdff::zz' })), `${MS}.addresses.rr_ip_v6`, /not an IPv6/);
  valid(sla((_d, _a, m) => (m['addresses'] = { rr_ip: '10.30.255.254', rr_ip_v6: 'fdff::1' })));
});

test('replicas is a whole number >= 0', () => {
  issueAt(sla((_d, _a, m) => (m['replicas'] = 1.5)), `${MS}.replicas`, /whole number/);
  issueAt(sla((_d, _a, m) => (m['replicas'] = -1)), `${MS}.replicas`, /negative/);
  issueAt(sla((_d, _a, m) => (m['replicas'] = '2')), `${MS}.replicas`, /whole number/);
  valid(sla((_d, _a, m) => (m['replicas'] = 0)));
  valid(sla((_d, _a, m) => (m['replicas'] = 5)));
});

test('other typed fields: one_shot, cmd, environment, labels, health', () => {
  const i = issueAt(sla((_d, _a, m) => (m['one_shot'] = 'true')), `${MS}.one_shot`, /true or false/);
  assert.equal(i.hint, 'remove the quotes: true');
  const c = issueAt(sla((_d, _a, m) => (m['cmd'] = 'nginx -g')), `${MS}.cmd`, /must be a list/);
  assert.match(c.hint ?? '', /\[/);
  issueAt(sla((_d, _a, m) => (m['cmd'] = ['nginx', 5])), `${MS}.cmd[1]`, /must be a string/);
  issueAt(sla((_d, _a, m) => (m['labels'] = { team: 5 })), `${MS}.labels.team`, /must be a string/);
  issueAt(sla((_d, _a, m) => (m['labels'] = { 'a.b': 5 })), `${MS}.labels["a.b"]`, /must be a string/);
  issueAt(sla((_d, _a, m) => (m['health'] = { type: 'grpc' })), `${MS}.health.type`, /not one of tcp, http, exec/);
  issueAt(sla((_d, _a, m) => (m['health'] = { type: 'tcp' })), `${MS}.health.port`, /needs a port/);
  issueAt(sla((_d, _a, m) => (m['health'] = { type: 'exec' })), `${MS}.health.command`, /needs a command/);
  issueAt(sla((_d, _a, m) => (m['health'] = { type: 'http', port: 80, path: 'x' })), `${MS}.health.path`, /start with/);
  // probe fields out of range: one error at the exact field
  const tcp = { type: 'tcp', port: 80 };
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, interval_s: 0 })), `${MS}.health.interval_s`);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, interval_s: 1e9 })), `${MS}.health.interval_s`);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, timeout_s: -1 })), `${MS}.health.timeout_s`);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, timeout_s: 301 })), `${MS}.health.timeout_s`);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, failure_threshold: 0 })), `${MS}.health.failure_threshold`);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, failure_threshold: 1.5 })), `${MS}.health.failure_threshold`, /whole number/);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, failure_threshold: 101 })), `${MS}.health.failure_threshold`);
  issueAt(sla((_d, _a, m) => (m['health'] = { ...tcp, port: 70000 })), `${MS}.health.port`);
  issueAt(sla((_d, _a, m) => (m['health'] = { type: 'http', port: 80, path: `/${'a'.repeat(3000)}` })), `${MS}.health.path`);
  issueAt(sla((_d, _a, m) => (m['health'] = { type: 'exec', command: Array.from({ length: 65 }, () => 'x') })), `${MS}.health.command`);
  valid(sla((_d, _a, m) => (m['health'] = { ...tcp, interval_s: 0.5, timeout_s: 0.2, failure_threshold: 100 })));
  // restart policy
  issueAt(sla((_d, _a, m) => (m['restart'] = 'sometimes')), `${MS}.restart`);
  issueAt(sla((_d, _a, m) => (m['restart_max'] = -1)), `${MS}.restart_max`);
  issueAt(sla((_d, _a, m) => (m['restart_max'] = 101)), `${MS}.restart_max`);
  issueAt(sla((_d, _a, m) => (m['restart_max'] = 2.5)), `${MS}.restart_max`, /whole number/);
  for (const r of ['never', 'on-failure', 'always']) valid(sla((_d, _a, m) => { m['restart'] = r; m['restart_max'] = 0; }));
  const w = validateSla(sla((_d, _a, m) => (m['environment'] = ['NOEQUALS'])));
  assert.ok(w.ok);
  assert.equal(w.warnings[0]?.path, `${MS}.environment[0]`);
});

test('duplicate microservice names within one application are rejected', () => {
  const doc = sla((_d, a, m) => (a['microservices'] = [m, { ...m, microservice_namespace: 'other' }]));
  issueAt(doc, 'applications[0].microservices[1].microservice_name', /already used by microservices\[0\]/);
});

test('duplicate application name + namespace within one SLA are rejected; another namespace is fine', () => {
  const dup = sla((d, a) => (d['applications'] = [a, structuredClone(a)]));
  issueAt(dup, 'applications[1].application_name', /already defined by applications\[0\]/);
  valid(sla((d, a) => (d['applications'] = [a, { ...structuredClone(a), application_namespace: 'prod' }])));
});

test('several errors of one document are reported at once, one per field', () => {
  const errors = errorsOf(fixture('sla-invalid-many'));
  assert.deepEqual(
    errors.map((e) => e.path),
    [
      'sla_version',
      'applications[0].application_name',
      `${MS}.microservice_name`,
      `${MS}.virtualization`,
      `${MS}.memory`,
      `${MS}.port`,
      `${MS}.constraints[0].type`,
      `${MS}.constraints[1].type`,
      `${MS}.constraints[2].location`,
      `${MS}.addresses.rr_ip`,
    ],
  );
  for (const e of errors) assert.ok(e.hint, `hint for ${e.path}`);
  assert.equal(new Set(errors.map((e) => e.path)).size, errors.length);
});

test('unknown fields are kept in the result and reported as warnings', () => {
  const doc = fixture('sla-unknown-fields');
  const r = validateSla(doc);
  assert.ok(r.ok);
  assert.equal((r.sla as Json)['future_flag'], true);
  assert.equal(((r.sla.applications[0]?.microservices[0] as Json | undefined) ?? {})['memmory'], 100);
  assert.deepEqual(
    r.warnings.map((w) => w.path),
    ['future_flag', `${MS}.memmory`, `${MS}.favourite_colour`, `${MS}.constraints[0].priority`],
  );
  assert.equal(r.warnings[1]?.hint, 'did you mean "memory"?');
  for (const w of r.warnings) assert.ok(w.hint);
});

test('assertValidSla returns the SLA or throws InvalidSlaError with every issue', () => {
  const { sla: ok, warnings } = assertValidSla(fixture('sla-spec-example'));
  assert.equal(ok.customerID, 'Admin');
  assert.deepEqual(warnings, []);
  assert.throws(
    () => assertValidSla(fixture('sla-invalid-many')),
    (e: unknown) => {
      assert.ok(e instanceof InvalidSlaError);
      assert.equal(e.code, 'OAK_INVALID_SLA');
      assert.equal(e.status, 422);
      assert.equal(e.details?.length, 10);
      assert.equal(e.path, 'sla_version');
      assert.ok(e.hint);
      const body = e.toJSON();
      assert.equal(body.error.details?.length, 10);
      return true;
    },
  );
});

test('validateMicroservice checks one service, with paths under basePath', () => {
  const ms = (sla().applications as Json[])[0] as Json;
  const one = (ms['microservices'] as Json[])[0] as Json;
  const r = validateMicroservice(one);
  assert.ok(r.ok);
  assert.equal(r.microservice.microservice_name, 'server');
  const bad = validateMicroservice({ ...one, port: 80 }, 'applications[0].microservices[3]');
  assert.ok(!bad.ok);
  assert.equal(bad.errors[0]?.path, 'applications[0].microservices[3].port');
  const top = validateMicroservice({ ...one, memory: -1 });
  assert.ok(!top.ok);
  assert.equal(top.errors[0]?.path, 'memory');
  const notObj = validateMicroservice('x');
  assert.ok(!notObj.ok);
  assert.equal(notObj.errors[0]?.path, '');
});

test('validateServiceRequest accepts the SLA shape and a bare service', () => {
  const doc = sla((_d, a) => (a['applicationID'] = 'app1'));
  const r = validateServiceRequest(doc);
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.target.applicationID, 'app1');
  assert.equal(r.target.application_name, 'clientsrvr');
  assert.equal(r.microservices.length, 1);

  const noNames = validateServiceRequest({ applications: [{ applicationID: 'app1', microservices: [{ microservice_name: 's2', microservice_namespace: 'test', virtualization: 'container', code: 'x/y:1' }] }] });
  assert.ok(noNames.ok);

  const bad = validateServiceRequest(sla((_d, _a, m) => (m['port'] = 80)));
  assert.ok(!bad.ok);
  assert.equal(bad.errors[0]?.path, `${MS}.port`);

  const empty = validateServiceRequest({ applications: [{ applicationID: 'a', microservices: [] }] });
  assert.ok(!empty.ok);
  assert.equal(empty.errors[0]?.path, 'applications[0].microservices');

  const two = validateServiceRequest({ applications: [{ applicationID: 'a', microservices: [{}] }, {}] });
  assert.ok(!two.ok);
  assert.ok(two.errors.some((e) => e.path === 'applications'));

  const bare = (sla().applications as Json[])[0] as Json;
  const single = { ...((bare['microservices'] as Json[])[0] as Json), applicationID: 'app9' };
  const s = validateServiceRequest(single);
  assert.ok(s.ok);
  assert.equal(s.target.applicationID, 'app9');
  assert.deepEqual(s.warnings, []);
});

test('validateApplicationPatch checks the given fields only', () => {
  const r = validateApplicationPatch({ application_desc: 'new text' });
  assert.ok(r.ok);
  assert.equal(r.patch.application_desc, 'new text');
  const bad = validateApplicationPatch({ application_name: 'no-dash' });
  assert.ok(!bad.ok);
  assert.equal(bad.errors[0]?.path, 'application_name');
  const wrapped = validateApplicationPatch({ applications: [{ microservices: [{ microservice_name: 'a' }] }] });
  assert.ok(!wrapped.ok);
  assert.ok(wrapped.errors.some((e) => e.path === 'applications[0].microservices[0].code'));
  const many = validateApplicationPatch({ applications: [{}, {}] });
  assert.ok(!many.ok);
  assert.equal(many.errors[0]?.path, 'applications');
});
