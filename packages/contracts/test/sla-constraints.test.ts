/**
 * Oakestra's constraint types (issue 12 point 4): clusters, addons, rigidness, convergence_time
 * and connectivity. Valid forms pass; each flaw is reported once, at its exact path, with a hint.
 * The cases are written field for field after Oakestra's test SLAs (not copied).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateMicroservice, validateServiceRequest, validateSla, type FieldIssue } from '../src/index.ts';

type Json = Record<string, unknown>;

const MS = 'applications[0].microservices[0]';

function svc(name: string, extra: Json = {}): Json {
  return { microservice_name: name, microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest', ...extra };
}

function doc(services: Json[]): Json {
  return { sla_version: 'v2.0', customerID: 'Admin', applications: [{ application_name: 'app', application_namespace: 'test', microservices: services }] };
}

function one(extra: Json): Json {
  return doc([svc('front', extra), svc('db')]);
}

function errorsOf(input: unknown): FieldIssue[] {
  const r = validateSla(input);
  assert.equal(r.ok, false, 'expected the SLA to be rejected');
  return r.ok ? [] : r.errors;
}

function issueAt(input: unknown, path: string, message?: RegExp): FieldIssue {
  const errors = errorsOf(input);
  const at = errors.filter((e) => e.path === path);
  assert.equal(at.length, 1, `expected one issue at ${path}, got ${JSON.stringify(errors, null, 1)}`);
  assert.equal(errors.length, 1, `expected no other issue, got ${JSON.stringify(errors, null, 1)}`);
  const issue = at[0] as FieldIssue;
  assert.ok(issue.hint && issue.hint.length > 5, `issue at ${path} needs a hint`);
  if (message) assert.match(issue.message, message);
  return issue;
}

function warningsOf(input: unknown): FieldIssue[] {
  const r = validateSla(input);
  assert.ok(r.ok, `expected valid, got ${JSON.stringify(r.ok ? [] : r.errors, null, 1)}`);
  return r.warnings;
}

test('clusters, addons, and rigidness/convergence_time on every type validate', () => {
  const w = warningsOf(
    one({
      constraints: [
        { type: 'clusters', allowed: ['c1', 'c2'] },
        { type: 'addons', needs: ['image-builder', 'FLOps-learner'] },
        { type: 'direct', cluster: 'c1', rigidness: 1, convergence_time: 300 },
        { type: 'geo', location: '48.1,11.5', threshold: 50, rigidness: 1 },
        { type: 'latency', area: 'munich-1', threshold: 100, rigidness: 1, convergence_time: 300 },
        { type: 'clusters', allowed: ['c1'], rigidness: 0.5 },
      ],
      connectivity: [
        { target_microservice_id: 'db', con_constraints: [] },
        { target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 50, rigidness: 1, convergence_time: 300 }] },
      ],
    }),
  );
  assert.deepEqual(w, []);
});

test('the shapes of Oakestra\'s valid test SLA (soft latency constraints, connectivity by id) validate, with warnings for what is not acted on', () => {
  const w = warningsOf(
    doc([
      svc('a', {
        microserviceID: '4',
        constraints: [
          { type: 'latency', area: 'munich-1', threshold: 100, rigidness: 0.99, convergence_time: 300 },
          { type: 'latency', area: 'berlin-1', threshold: 100, rigidness: 0.99, convergence_time: 300 },
        ],
        connectivity: [
          { target_microservice_id: '1', con_constraints: [] },
          { target_microservice_id: '2', con_constraints: [{ type: 'latency', threshold: 50, rigidness: 0.9, convergence_time: 300 }] },
        ],
      }),
    ]),
  );
  const paths = w.map((i) => i.path).sort();
  assert.deepEqual(paths, [`${MS}.connectivity[1].con_constraints[0].convergence_time`, `${MS}.connectivity[1].target_microservice_id`]);
  for (const i of w) assert.ok(i.hint && i.hint.length > 5);
  assert.match(w.find((i) => i.path.endsWith('target_microservice_id'))?.message ?? '', /"2".*constrains nothing/);
});

test('clusters: allowed is required, a non-empty list of non-empty strings', () => {
  issueAt(one({ constraints: [{ type: 'clusters' }] }), `${MS}.constraints[0].allowed`, /required/);
  issueAt(one({ constraints: [{ type: 'clusters', allowed: [] }] }), `${MS}.constraints[0].allowed`, /at least one/);
  issueAt(one({ constraints: [{ type: 'clusters', allowed: 'c1' }] }), `${MS}.constraints[0].allowed`, /list/);
  issueAt(one({ constraints: [{ type: 'clusters', allowed: ['c1', ''] }] }), `${MS}.constraints[0].allowed[1]`, /empty/);
  issueAt(one({ constraints: [{ type: 'clusters', allowed: ['c1', 7] }] }), `${MS}.constraints[0].allowed[1]`, /string/);
});

test('addons: needs is required, a non-empty list of addon labels', () => {
  issueAt(one({ constraints: [{ type: 'addons' }] }), `${MS}.constraints[0].needs`, /required/);
  issueAt(one({ constraints: [{ type: 'addons', needs: [] }] }), `${MS}.constraints[0].needs`, /at least one/);
  issueAt(one({ constraints: [{ type: 'addons', needs: ['ok', 'not ok'] }] }), `${MS}.constraints[0].needs[1]`, /does not match/);
  issueAt(one({ constraints: [{ type: 'addons', needs: ['x'.repeat(65)] }] }), `${MS}.constraints[0].needs[0]`);
});

test('rigidness is a number in 0..1, convergence_time whole seconds; each error at its path', () => {
  issueAt(one({ constraints: [{ type: 'direct', cluster: 'c1', rigidness: 1.5 }] }), `${MS}.constraints[0].rigidness`, /at most 1/);
  issueAt(one({ constraints: [{ type: 'direct', cluster: 'c1', rigidness: -0.1 }] }), `${MS}.constraints[0].rigidness`, /negative/);
  issueAt(one({ constraints: [{ type: 'geo', location: '1,2', threshold: 1, rigidness: '1' }] }), `${MS}.constraints[0].rigidness`, /number/);
  issueAt(one({ constraints: [{ type: 'latency', area: 'x', threshold: 1, convergence_time: 2.5 }] }), `${MS}.constraints[0].convergence_time`, /whole/);
  issueAt(one({ constraints: [{ type: 'addons', needs: ['a'], convergence_time: -1 }] }), `${MS}.constraints[0].convergence_time`, /negative/);
});

test('rigidness 0 and the convergence_time of a connectivity preference are warned about at their paths', () => {
  const w = warningsOf(
    one({
      constraints: [{ type: 'direct', cluster: 'c1', rigidness: 0 }, { type: 'geo', location: '1,2', threshold: 5, rigidness: 0.5, convergence_time: 60 }],
      connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 5, rigidness: 0.5, convergence_time: 60 }, { type: 'latency', threshold: 5, rigidness: 0 }] }],
    }),
  );
  assert.deepEqual(
    w.map((i) => i.path),
    [`${MS}.constraints[0].rigidness`, `${MS}.connectivity[0].con_constraints[0].convergence_time`, `${MS}.connectivity[0].con_constraints[1].rigidness`],
  );
  assert.match(w[0]?.message ?? '', /no weight/);
  assert.match(w[1]?.message ?? '', /not acted on for connectivity/);
});

test('connectivity: shape errors at their paths', () => {
  issueAt(one({ connectivity: [{ con_constraints: [] }] }), `${MS}.connectivity[0].target_microservice_id`, /required/);
  // Oakestra's flawed SLA writes the id as a number
  issueAt(one({ connectivity: [{ target_microservice_id: 2, con_constraints: [] }] }), `${MS}.connectivity[0].target_microservice_id`, /string/);
  issueAt(one({ connectivity: [{ target_microservice_id: 'db' }] }), `${MS}.connectivity[0].con_constraints`, /required/);
  issueAt(one({ connectivity: [{ target_microservice_id: 'db', con_constraints: [{ threshold: 5 }] }] }), `${MS}.connectivity[0].con_constraints[0].type`, /no "type"/);
  issueAt(one({ connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'jitter', threshold: 5 }] }] }), `${MS}.connectivity[0].con_constraints[0].type`, /unknown/);
  issueAt(one({ connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency' }] }] }), `${MS}.connectivity[0].con_constraints[0].threshold`, /required/);
  issueAt(one({ connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: -1 }] }] }), `${MS}.connectivity[0].con_constraints[0].threshold`, /negative/);
  issueAt(one({ connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 5, rigidness: 2 }] }] }), `${MS}.connectivity[0].con_constraints[0].rigidness`, /at most 1/);
  issueAt(one({ connectivity: ['db'] }), `${MS}.connectivity[0]`, /object/);
});

test('connectivity: bandwidth is refused with its reason; a service may not name itself', () => {
  issueAt(
    one({ connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'bandwidth', threshold: 1000, rigidness: 1, convergence_time: 300 }] }] }),
    `${MS}.connectivity[0].con_constraints[0].type`,
    /bandwidth.*refused/,
  );
  issueAt(one({ connectivity: [{ target_microservice_id: 'front', con_constraints: [] }] }), `${MS}.connectivity[0].target_microservice_id`, /itself/);
  issueAt(one({ microserviceID: '4', connectivity: [{ target_microservice_id: '4', con_constraints: [] }] }), `${MS}.connectivity[0].target_microservice_id`, /itself/);
});

test('a lone service (PUT /api/service) is checked the same, without the sibling lookup', () => {
  const ok = validateMicroservice(svc('front', { connectivity: [{ target_microservice_id: 'elsewhere', con_constraints: [{ type: 'latency', threshold: 5 }] }] }));
  assert.ok(ok.ok);
  assert.deepEqual(ok.warnings, []);
  const bad = validateMicroservice(svc('front', { constraints: [{ type: 'addons', needs: 'gpu' }] }), 'x');
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.deepEqual(bad.errors.map((e) => e.path), ['x.constraints[0].needs']);
});

test('an unknown constraint type still names every known one', () => {
  const i = issueAt(one({ constraints: [{ type: 'zone', allowed: ['a'] }] }), `${MS}.constraints[0].type`, /unknown/);
  for (const t of ['direct', 'geo', 'latency', 'clusters', 'addons']) assert.match(i.hint ?? '', new RegExp(t));
});

test('POST /api/service (services added to a stored application): targets are not looked up among the new ones only', () => {
  const r = validateServiceRequest({ applications: [{ applicationID: 'x', microservices: [svc('front', { connectivity: [{ target_microservice_id: 'stored', con_constraints: [{ type: 'latency', threshold: 5 }] }] })] }] });
  assert.ok(r.ok);
  assert.deepEqual(r.warnings, []);
  const bad = validateServiceRequest({ applications: [{ applicationID: 'x', microservices: [svc('front', { connectivity: [{ target_microservice_id: 'stored', con_constraints: [{ type: 'bandwidth', threshold: 5 }] }] })] }] });
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.deepEqual(bad.errors.map((e) => e.path), ['applications[0].microservices[0].connectivity[0].con_constraints[0].type']);
});
