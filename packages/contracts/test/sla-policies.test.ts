/** The `update` and `disconnect` blocks of a service (issue 9): checked field by field, closed, with the cross-field rule. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateMicroservice, validateSla, validateServiceRequest, type FieldIssue } from '../src/index.ts';

type Json = Record<string, unknown>;
const base = (): Json => ({ microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/nginx:latest' });

function errors(extra: Json, basePath = ''): FieldIssue[] {
  const r = validateMicroservice({ ...base(), ...extra }, basePath);
  assert.equal(r.ok, false, `expected a rejection of ${JSON.stringify(extra)}`);
  return r.ok ? [] : r.errors;
}

function one(extra: Json, path: string, message?: RegExp): FieldIssue {
  const e = errors(extra);
  const at = e.filter((i) => i.path === path);
  assert.equal(at.length, 1, `expected one issue at ${path}, got ${JSON.stringify(e)}`);
  const issue = at[0] as FieldIssue;
  assert.ok(issue.hint !== undefined && issue.hint.length > 5, 'a hint');
  if (message) assert.match(issue.message, message);
  return issue;
}

function ok(extra: Json): void {
  const r = validateMicroservice({ ...base(), ...extra });
  assert.ok(r.ok, `expected valid: ${JSON.stringify(r.ok ? [] : r.errors)}`);
  assert.deepEqual(r.warnings, [], 'no warnings');
}

test('full and partial update / disconnect blocks are valid without warnings', () => {
  ok({ update: { max_surge: 2, max_unavailable: 1, health_grace_s: 10, progress_deadline_s: 300, auto_rollback: true } });
  ok({ update: {} });
  ok({ update: { max_surge: 0, max_unavailable: 1 } });
  ok({ update: { max_unavailable: 0 } });
  ok({ update: { max_surge: 100, max_unavailable: 100, health_grace_s: 3600, progress_deadline_s: 86400 } });
  ok({ disconnect: { lost_after_s: 60, replace: false, reconcile: 'keep_original' } });
  ok({ disconnect: { reconcile: 'keep_replacement' } });
  ok({ disconnect: { reconcile: 'best_score' } });
  ok({ disconnect: {} });
});

test('max_surge + max_unavailable must be at least 1 (defaults 1 and 0), with a path and a hint', () => {
  const i = one({ update: { max_surge: 0 } }, 'update.max_surge', /max_surge \(0\) \+ max_unavailable \(0\) must be at least 1/);
  assert.match(i.hint ?? '', /max_unavailable/);
  one({ update: { max_surge: 0, max_unavailable: 0 } }, 'update.max_surge', /at least 1/);
  // a wrong type is one issue, not a second one from the rule
  const e = errors({ update: { max_surge: 0, max_unavailable: 'x' } });
  assert.deepEqual(e.map((x) => x.path), ['update.max_unavailable']);
});

test('unknown keys inside update and disconnect are errors (not warnings), at their own path', () => {
  const r = validateMicroservice({ ...base(), update: { max_surge: 1, maxSurge: 2 }, disconnect: { lost_after: 5 } });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.deepEqual(r.errors.map((e) => e.path).sort(), ['disconnect.lost_after', 'update.maxSurge']);
  assert.deepEqual(r.warnings, [], 'a rejected key is not also "kept"');
  // unknown keys of the service itself stay warnings
  const w = validateMicroservice({ ...base(), update: {}, rollout: 1 });
  assert.ok(w.ok);
  assert.deepEqual(w.warnings.map((x) => x.path), ['rollout']);
});

test('hostile numbers: huge, negative, fractional, numeric strings', () => {
  one({ update: { max_surge: 1e12 } }, 'update.max_surge', /at most 100/);
  one({ update: { max_unavailable: -1 } }, 'update.max_unavailable', /negative/);
  one({ update: { health_grace_s: 1.5 } }, 'update.health_grace_s', /whole number/);
  one({ update: { health_grace_s: 3601 } }, 'update.health_grace_s', /at most 3600/);
  one({ update: { progress_deadline_s: 0 } }, 'update.progress_deadline_s', /1 or more/);
  one({ update: { progress_deadline_s: Number.MAX_SAFE_INTEGER * 4 } }, 'update.progress_deadline_s', /at most 86400/);
  one({ update: { max_surge: '2' } }, 'update.max_surge');
  one({ disconnect: { lost_after_s: 0 } }, 'disconnect.lost_after_s', /1 or more/);
  one({ disconnect: { lost_after_s: 1e300 } }, 'disconnect.lost_after_s', /at most 86400/);
  one({ disconnect: { lost_after_s: '30' } }, 'disconnect.lost_after_s');
});

test('hostile types: wrong block types, wrong field types, nested junk', () => {
  for (const v of ['x', 1, true, null, [], [{ max_surge: 1 }]]) {
    one({ update: v }, 'update', /must be an object/);
    one({ disconnect: v }, 'disconnect', /must be an object/);
  }
  one({ update: { auto_rollback: 'yes' } }, 'update.auto_rollback', /true or false/);
  one({ update: { auto_rollback: 1 } }, 'update.auto_rollback');
  one({ disconnect: { replace: 'false' } }, 'disconnect.replace', /true or false/);
  one({ disconnect: { reconcile: 'newest' } }, 'disconnect.reconcile', /keep_original, keep_replacement, best_score/);
  one({ disconnect: { reconcile: ['keep_original'] } }, 'disconnect.reconcile');
  one({ update: { max_surge: { $gt: 0 } } }, 'update.max_surge');
  one({ update: { nested: { deeper: [[{ a: 1 }]] } } }, 'update.nested');
  one({ update: { __proto__: { polluted: 1 }, constructor: 1 } as unknown as Json }, 'update.constructor');
  assert.equal(({} as Json)['polluted'], undefined);
});

test('every problem of both blocks is reported at once', () => {
  const e = errors({ update: { max_surge: -1, max_unavailable: 101, auto_rollback: 'no', x: 1 }, disconnect: { replace: 0, reconcile: 1 } });
  assert.deepEqual(
    e.map((i) => i.path).sort(),
    ['disconnect.reconcile', 'disconnect.replace', 'update.auto_rollback', 'update.max_surge', 'update.max_unavailable', 'update.x'],
  );
});

test('paths are precise inside a full SLA and a service request', () => {
  const ms = { ...base(), update: { max_surge: 0 } };
  const r = validateSla({ sla_version: 'v2.0', customerID: 'Admin', applications: [{ application_name: 'a', application_namespace: 'b', microservices: [{ ...base(), microservice_name: 'other' }, ms] }] });
  assert.equal(r.ok, false);
  if (!r.ok) assert.deepEqual(r.errors.map((e) => e.path), ['applications[0].microservices[1].update.max_surge']);
  const s = validateServiceRequest({ applications: [{ applicationID: 'x', microservices: [{ ...base(), disconnect: { reconcile: 'x' } }] }] });
  assert.equal(s.ok, false);
  if (!s.ok) assert.deepEqual(s.errors.map((e) => e.path), ['applications[0].microservices[0].disconnect.reconcile']);
  const b = errors({ update: { max_surge: 0 } }, 'svc');
  assert.deepEqual(b.map((e) => e.path), ['svc.update.max_surge']);
});
