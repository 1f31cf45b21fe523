/**
 * Oakestra's SLA test cases (issue 12 point 3), rewritten field for field as our own fixtures
 * (fixtures/oakestra/): the valid ones validate, every field of Oakestra's schema that is not
 * honoured is warned about at its path with what happens instead; the flawed ones are refused
 * with an error at each flawed field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { validateSla, type FieldIssue } from '../src/index.ts';

const MS = 'applications[0].microservices[0]';

function load(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`./fixtures/oakestra/${name}.json`, import.meta.url), 'utf8')) as unknown;
}

function warningsOf(name: string): FieldIssue[] {
  const r = validateSla(load(name));
  assert.ok(r.ok, `${name} must validate: ${JSON.stringify(r.ok ? [] : r.errors, null, 1)}`);
  for (const w of r.warnings) assert.ok(w.hint !== undefined && w.hint.length > 5, `hint for ${w.path}`);
  return r.warnings;
}

function errorPaths(name: string): string[] {
  const r = validateSla(load(name));
  assert.equal(r.ok, false, `${name} must be refused`);
  if (r.ok) return [];
  for (const e of r.errors) assert.ok(e.hint !== undefined && e.hint.length > 5, `hint for ${e.path}`);
  return r.errors.map((e) => e.path);
}

function warningAt(ws: FieldIssue[], path: string, message: RegExp): void {
  const w = ws.filter((x) => x.path === path);
  assert.equal(w.length, 1, `one warning at ${path}: ${JSON.stringify(ws, null, 1)}`);
  assert.match(w[0]?.message ?? '', message);
}

test("Oakestra's full example: valid, with a warning for each field that is not honoured", () => {
  const ws = warningsOf('valid-full');
  warningAt(ws, `${MS}.addresses.rr_ip`, /^rr_ip 172\.16\.40\.9 is outside the service range 10\.30\.0\.0\/16: the service gets a free address of 10\.30\.0\.0\/16 instead/);
  warningAt(ws, `${MS}.state`, /kept with the service but not fetched or restored/);
  warningAt(ws, `${MS}.bandwidth_in`, /50000 kbit\/s is not honoured/);
  warningAt(ws, `${MS}.bandwidth_out`, /2000 kbit\/s is not honoured/);
  warningAt(ws, `${MS}.storage`, /not enforced for container/);
  warningAt(ws, `${MS}.code`, /is a URL, not an image reference/);
  for (const p of [`${MS}.vtpus`, `${MS}.vgpus`, `${MS}.added_files`, `${MS}.microserviceID`, 'args']) {
    assert.ok(!ws.some((w) => w.path === p), `no warning at ${p} (zero, empty or honoured)`);
  }
  assert.ok(!ws.some((w) => /unknown field/.test(w.message) && /\.(state|vtpus|bandwidth_in|bandwidth_out|addresses)$/.test(w.path)), 'none of them is "unknown"');
});

test("Oakestra's plain and all-zero examples: valid; an empty state, zero resources and empty lists say nothing", () => {
  assert.deepEqual(warningsOf('valid-plain'), []);
  assert.deepEqual(warningsOf('valid-zeros'), []);
  const r = validateSla(load('valid-no-services'));
  assert.ok(r.ok);
  assert.equal(r.sla.applications[0]?.microservices.length, 0);
});

test('the schema fields the examples leave out: each accepted, each not honoured one warned about with the reason', () => {
  const ws = warningsOf('valid-every-field');
  warningAt(ws, `${MS}.vtpus`, /vtpus 2 is not honoured: workers offer no TPUs/);
  warningAt(ws, `${MS}.sla_violation_strategy`, /"redeploy" is kept but not used/);
  warningAt(ws, `${MS}.target_node`, /"edge-box-3" is kept but not used for placement/);
  assert.match(ws.find((w) => w.path === `${MS}.target_node`)?.hint ?? '', /"type": "direct", "node": "edge-box-3"/);
  warningAt(ws, `${MS}.addresses.rr_ip_v6`, /outside the IPv6 service range fdff::\/64/);
  warningAt(ws, `${MS}.addresses.closest_ip`, /is not used: the root gives every service its own closest_ip/);
  warningAt(ws, `${MS}.addresses.closest_ip_v6`, /is not used/);
  warningAt(ws, `${MS}.addresses.instances`, /not used: each instance gets the lowest free address/);
  warningAt(ws, `${MS}.volumes[0]`, /CSI volume "vol-7" \(driver "csi\.example\.org"\) is accepted but not honoured/);
  assert.ok(!ws.some((w) => w.path === `${MS}.addresses.rr_ip`), 'an rr_ip inside the range is honoured');
  for (const p of ['args', 'environment', 'one_shot', 'privileged', 'cmd']) assert.ok(!ws.some((w) => w.path.startsWith(`${MS}.${p}`)), `${p} is honoured`);
  assert.ok(!ws.some((w) => /unknown field/.test(w.message)), JSON.stringify(ws.filter((w) => /unknown/.test(w.message))));
});

test("Oakestra's flawed examples: refused, with an error at each flawed field", () => {
  const A = 'applications[0]';
  const noVersion = errorPaths('flawed-no-version');
  for (const p of ['sla_version', `${A}.application_namespace`, `${A}.application_name`, `${MS}.microservice_namespace`, `${MS}.microservice_name`]) assert.ok(noVersion.includes(p), `${p} in ${noVersion.join(', ')}`);
  const types = errorPaths('flawed-types');
  for (const p of [`${A}.application_namespace`, `${A}.application_name`, `${MS}.microservice_namespace`, `${MS}.microservice_name`, `${MS}.port`]) assert.ok(types.includes(p), `${p} in ${types.join(', ')}`);
  assert.ok(!types.includes('sla_version'));
  assert.deepEqual(errorPaths('flawed-empty'), ['sla_version', 'customerID', 'applications']);
  const con = errorPaths('flawed-con-constraint');
  for (const p of [`${A}.application_name`, `${MS}.microservice_name`, `${MS}.connectivity[0].con_constraints[0].type`]) assert.ok(con.includes(p), `${p} in ${con.join(', ')}`);
  // the connectivity faults are reported at their own paths, not only at the names before them
  for (const p of [`${MS}.connectivity[0].target_microservice_id`, `${MS}.connectivity[1].target_microservice_id`]) assert.ok(noVersion.includes(p), `${p} in ${noVersion.join(', ')}`);
  assert.deepEqual(errorPaths('flawed-connectivity'), [`${MS}.connectivity[0].con_constraints[0].threshold`, `${MS}.connectivity[1].target_microservice_id`]);
  const conn = validateSla(load('flawed-connectivity'));
  assert.ok(!conn.ok);
  assert.match(conn.errors[0]?.message ?? '', /threshold must be a number, not the string "40ms"/);
  assert.match(conn.errors[1]?.message ?? '', /target_microservice_id must be a string, not the number 12/);
  assert.deepEqual(errorPaths('flawed-dotted-name'), [`${MS}.microservice_name`]);
  const r = validateSla(load('flawed-dotted-name'));
  assert.ok(!r.ok && /contains "\."/.test(r.errors[0]?.message ?? ''));
  // the misspelt bandwith_out is not an error but a warning with the right name
  const misspelt = validateSla(load('flawed-types'));
  assert.match(misspelt.warnings.find((w) => w.path === `${MS}.bandwith_out`)?.hint ?? '', /did you mean "bandwidth_out"/);
});

test('hostile values in the Oakestra fields: long strings are shown cut, junk addresses are errors or ignored, never a crash', () => {
  const base = load('valid-plain') as { applications: { microservices: Record<string, unknown>[] }[] };
  const ms = base.applications[0]?.microservices[0] as Record<string, unknown>;
  Object.assign(ms, {
    state: `https://x.example/${'s'.repeat(5000)}`,
    target_node: 'n'.repeat(5000),
    sla_violation_strategy: '\u0000\u001b[31mred',
    addresses: { rr_ip: '999.1.1.1', rr_ip_v6: `${'f'.repeat(40)}::1`, closest_ip: 'not-an-ip', instances: [{ from: 1 }] },
  });
  const r = validateSla(base);
  assert.equal(r.ok, false);
  if (r.ok) return;
  const paths = r.errors.map((e) => e.path);
  assert.ok(paths.includes(`${MS}.addresses.rr_ip`), 'a junk rr_ip is an error');
  assert.ok(paths.includes(`${MS}.addresses.rr_ip_v6`), 'a junk rr_ip_v6 is an error');
  assert.ok(paths.includes(`${MS}.addresses.instances[0].from`), 'instances[].from must be a string');
  for (const w of r.warnings) assert.ok(w.message.length < 600, `${w.path}: ${w.message.length} characters`);
  assert.ok(r.warnings.some((w) => w.path === `${MS}.state` && w.message.includes('...')), 'the long state is shown cut');
  // wrong types: errors at the field, as Oakestra's schema says
  const typed = load('valid-plain') as { applications: { microservices: Record<string, unknown>[] }[] };
  Object.assign(typed.applications[0]?.microservices[0] as Record<string, unknown>, { state: 5, vtpus: -1, bandwidth_in: 'fast', target_node: [], sla_violation_strategy: {} });
  const t = validateSla(typed);
  assert.equal(t.ok, false);
  if (!t.ok) for (const k of ['state', 'vtpus', 'bandwidth_in', 'target_node', 'sla_violation_strategy']) assert.ok(t.errors.some((e) => e.path === `${MS}.${k}`), k);
});
