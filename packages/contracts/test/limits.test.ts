/**
 * Input limits and linear validation (issue 7, findings a, b, f): hostile documents are refused
 * at a named limit, deep ones never overflow the stack, and validation cost grows linearly
 * (measured as a ratio between two sizes, never as an absolute time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  JSON_LIMITS,
  LINK_MALFORMED,
  LINK_OVERSIZED,
  LimitExceededError,
  MAX_LINK_MESSAGE_BYTES,
  MAX_MESSAGE_BYTES,
  OakError,
  decodeJson,
  decodeLinkMessage,
  encodeLinkMessage,
  SLA_LIMITS,
  assertValidSla,
  findLimitViolation,
  validateApplicationPatch,
  validateMicroservice,
  validateServiceRequest,
  validateSla,
  validationError,
  type SlaValidation,
} from '../src/index.ts';

const ms = (i: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  microservice_name: `s${i}`,
  microservice_namespace: 'test',
  virtualization: 'container',
  code: 'docker.io/library/nginx:latest',
  ...extra,
});
const app = (j: number, services: Record<string, unknown>[]): Record<string, unknown> => ({ application_name: `a${j}`, application_namespace: 'test', microservices: services });
const doc = (apps: unknown[]): Record<string, unknown> => ({ sla_version: 'v2.0', customerID: 'Admin', applications: apps });

function deep(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = i % 2 === 0 ? [v] : { x: v };
  return v;
}

function refused(r: SlaValidation, limit: string, path: string | RegExp): void {
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.limit?.limit, limit, JSON.stringify(r.errors[0]));
  if (typeof path === 'string') assert.equal(r.limit?.path, path);
  else assert.match(r.limit?.path ?? '', path);
  const e = validationError(r);
  assert.ok(e instanceof LimitExceededError);
  assert.equal(e.code, 'OAK_LIMIT_EXCEEDED');
  assert.equal(e.status, 422);
  assert.match(e.message, new RegExp(limit));
}

/** The fastest of a few runs, in ms (the machine is shared: the minimum is the honest cost). */
function cost(f: () => unknown, runs = 5): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    f();
    best = Math.min(best, performance.now() - t0);
  }
  return Math.max(best, 0.05);
}

test('(a) arrays longer than their limit are refused at once, naming the limit and the path', () => {
  refused(validateSla(doc(Array.from({ length: 8000 }, () => 'x'))), 'max_applications', 'applications');
  refused(validateSla(doc([app(0, Array.from({ length: 4000 }, (_, i) => ms(i)))])), 'max_microservices', 'applications[0].microservices');
  refused(validateSla(doc([app(0, [ms(0, { constraints: Array.from({ length: 4000 }, () => ({ type: 'geo' })) })])])), 'max_constraints', 'applications[0].microservices[0].constraints');
  refused(validateSla(doc([app(0, [ms(0, { environment: Array.from({ length: SLA_LIMITS.environment + 1 }, () => 'A=1') })])])), 'max_environment', 'applications[0].microservices[0].environment');
  refused(validateSla(doc([app(0, [ms(0, { port: Array.from({ length: 300 }, (_, i) => `${i + 1}`).join(';') })])])), 'max_port_entries', 'applications[0].microservices[0].port');
  refused(validateSla(doc([app(0, [ms(0, { code: 'x'.repeat(JSON_LIMITS.stringLength + 1) })])])), 'max_string_length', 'applications[0].microservices[0].code');
  refused(validateSla(doc([app(0, [ms(0, { extra: Array.from({ length: JSON_LIMITS.arrayItems + 1 }, () => 0) })])])), 'max_array_items', 'applications[0].microservices[0].extra');
  // at the limit is fine
  const atLimit = validateSla(doc(Array.from({ length: SLA_LIMITS.applications }, (_, j) => app(j, [ms(0)]))));
  assert.equal(atLimit.ok, true);
  assert.throws(() => assertValidSla(doc(Array.from({ length: 8000 }, () => 'x'))), LimitExceededError);
});

test('(a) validation cost is linear: 10x the input costs less than 30x the time', () => {
  const cases: [string, (n: number) => unknown][] = [
    // every entry wrong: one issue each (the list of issues is capped, the walk is not)
    ['bad services', (n) => doc(Array.from({ length: n }, (_, j) => app(j, Array.from({ length: 200 }, (_, i) => ms(i, { memory: 'lots', port: 7 })))))],
    ['bad environment', (n) => doc(Array.from({ length: n }, (_, j) => app(j, Array.from({ length: 20 }, (_, i) => ms(i, { environment: Array.from({ length: 100 }, () => 1) })))))],
    ['bad constraints', (n) => doc(Array.from({ length: n }, (_, j) => app(j, Array.from({ length: 20 }, (_, i) => ms(i, { constraints: Array.from({ length: 100 }, () => ({ type: 'geo', location: 'nowhere' })) })))))],
    ['duplicate names', (n) => doc(Array.from({ length: n }, (_, j) => app(j, Array.from({ length: 200 }, () => ms(0)))))],
    ['unknown fields', (n) => doc(Array.from({ length: n }, (_, j) => app(j, Array.from({ length: 50 }, (_, i) => ms(i, Object.fromEntries(Array.from({ length: 100 }, (_, k) => [`colour${k}`, k])))))))],
    ['valid', (n) => doc(Array.from({ length: n }, (_, j) => app(j, Array.from({ length: 200 }, (_, i) => ms(i, { port: '80:80;90/udp', environment: ['A=1'], constraints: [{ type: 'geo', location: '48.1,11.5', threshold: 10 }] })))))],
  ];
  for (const [name, make] of cases) {
    const small = make(10);
    const big = make(100);
    validateSla(small); // warm up (compiled checkers)
    const a = cost(() => validateSla(small));
    const b = cost(() => validateSla(big), 3);
    if (process.env.OAK_SHOW_RATIOS) console.log(name, (b / a).toFixed(1), a.toFixed(1), b.toFixed(1));
    assert.ok(b < 30 * a, `${name}: 10x the input took ${(b / a).toFixed(1)}x the time (${a.toFixed(1)} ms -> ${b.toFixed(1)} ms)`);
  }
});

test('(a) issues and warnings are bounded, with a count of what was left out', () => {
  const r = validateSla(doc(Array.from({ length: 100 }, (_, j) => app(j, Array.from({ length: 200 }, (_, i) => ms(i, { memory: -1 }))))));
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.ok(r.errors.length <= 101, `${r.errors.length} issues`);
  assert.match(r.errors[r.errors.length - 1]?.message ?? '', /more problems left out/);
  const w = validateSla(doc([app(0, [ms(0, Object.fromEntries(Array.from({ length: 900 }, (_, k) => [`colour${k}`, k])))])]));
  assert.equal(w.ok, true);
  assert.ok(w.warnings.length <= 101);
  assert.match(w.warnings[w.warnings.length - 1]?.message ?? '', /800 more warnings left out/);
});

test('(b) a value nested 10,000 deep in any service field is refused with its path, never a stack overflow', () => {
  for (const field of ['connectivity', 'volumes', 'health', 'labels', 'futureField', 'cmd']) {
    const value = field === 'health' ? { type: 'tcp', port: 80, extra: deep(10_000) } : [deep(10_000)];
    const r = validateSla(doc([app(0, [ms(0, { [field]: value })])]));
    refused(r, 'max_depth', new RegExp(`^applications\\[0\\]\\.microservices\\[0\\]\\.${field}`));
    const one = validateMicroservice(ms(0, { [field]: value }));
    assert.equal(one.ok, false);
    if (!one.ok) assert.equal(one.limit?.limit, 'max_depth');
  }
  const svc = validateServiceRequest({ applications: [{ applicationID: 'x', microservices: [ms(0, { connectivity: [deep(10_000)] })] }] });
  assert.equal(svc.ok, false);
  if (!svc.ok) assert.equal(svc.limit?.limit, 'max_depth');
  const patch = validateApplicationPatch({ application_desc: 'x', futureField: deep(10_000) });
  assert.equal(patch.ok, false);
  if (!patch.ok) assert.equal(patch.limit?.limit, 'max_depth');
  // the path is cut at the limit, not 10,000 segments long
  const v = findLimitViolation(deep(100_000), JSON_LIMITS);
  assert.equal(v?.limit, 'max_depth');
  assert.ok((v?.path.length ?? 0) < 200);
  // just inside the limit is accepted
  assert.equal(findLimitViolation(deep(JSON_LIMITS.depth - 1), JSON_LIMITS), undefined);
});

test('(f) an unknown field is named once, cut when long; a huge name is refused at max_key_length', () => {
  const name = `x${'y'.repeat(199)}`;
  const r = validateSla(doc([app(0, [ms(0, { [name]: 1 })])]));
  assert.equal(r.ok, true);
  const w = r.warnings[0];
  assert.ok(w);
  const shown = `${w.path} ${w.message} ${w.hint ?? ''}`;
  assert.equal(shown.split('xyyyy').length - 1, 1, shown);
  assert.ok(shown.length < 300, shown);
  refused(validateSla(doc([app(0, [ms(0, { ['k'.repeat(1_000_000)]: 1 })])])), 'max_key_length', /^applications\[0\]\.microservices\[0\]\["k{64}\.\.\."\]$/);
});

test('the codec: payload size and depth caps, and no message that ends a gRPC stream', () => {
  assert.throws(() => decodeJson(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20)), (e: unknown) => e instanceof OakError && e.code === 'OAK_LIMIT_EXCEEDED' && /max_message_bytes/.test(e.message));
  assert.throws(() => decodeJson('['.repeat(10_000) + ']'.repeat(10_000)), (e: unknown) => e instanceof LimitExceededError && e.limit === 'max_depth');
  assert.deepEqual(decodeJson('{"lines":["a"]}'), { lines: ['a'] });
  // grpc-js ends an object stream on a null message: a peer must not be able to send one
  assert.equal(decodeLinkMessage(Buffer.from('null')), LINK_MALFORMED);
  assert.equal(decodeLinkMessage(Buffer.from('['.repeat(100) + ']'.repeat(100))), LINK_OVERSIZED);
  assert.equal(decodeLinkMessage(Buffer.from([0xff, 0xfe])), LINK_MALFORMED);
  assert.throws(() => encodeLinkMessage({ type: 'sync', blob: 'x'.repeat(MAX_LINK_MESSAGE_BYTES) }), LimitExceededError);
});
