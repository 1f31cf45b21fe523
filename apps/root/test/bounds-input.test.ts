/**
 * Bounded input at the root's routes (issue 7, findings a, b, f, g): hostile SLAs are refused at
 * a named limit while /healthz keeps answering, deep values answer 422 with their path (never
 * 500), the oak-warnings header stays small, integer parameters are strict.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { createApp, sla, snapshot, testRoot, type TestRoot } from './helpers.ts';
import { WARNINGS_HEADER_MAX } from '../src/warnings.ts';

/** JSON text nested `levels` deep (JSON.stringify itself overflows on such values). */
function deepText(levels: number): string {
  let open = '';
  let close = '';
  for (let i = 0; i < levels; i++) {
    if (i % 3 === 0) {
      open += '[';
      close = `]${close}`;
    } else {
      open += '{"k":';
      close = `}${close}`;
    }
  }
  return `${open}1${close}`;
}
const DEEP = '__deep__';
/** The JSON of `v` with every "__deep__" string replaced by a value 10,000 deep. */
function withDeep(v: unknown): string {
  return JSON.stringify(v).split(JSON.stringify(DEEP)).join(deepText(10_000));
}

interface ErrorAnswer {
  error: { code: string; message: string; path?: string };
}

describe('bounded input at the routes', () => {
  let t: TestRoot;
  let tok: string;
  let url: string;
  before(async () => {
    t = await testRoot();
    tok = await t.user('alice', 'acme', ['Application_Provider']);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  });
  after(() => t.close());

  const post = (path: string, body: string): Promise<Response> =>
    fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body });

  test('(a) a hostile SLA is refused at its limit; 10x the input costs less than 30x the time; healthz answers meanwhile', async () => {
    const before = await snapshot(t.store);
    const strings = (n: number): string => JSON.stringify({ sla_version: 'v2.0', customerID: 'x', applications: Array.from({ length: n }, () => 'x') });
    const small = strings(5_000);
    const big = strings(50_000);
    const timed = async (body: string): Promise<number> => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await post('/api/application/', body);
        best = Math.min(best, performance.now() - t0);
        assert.equal(r.status, 422);
        const e = (await r.json()) as ErrorAnswer;
        assert.equal(e.error.code, 'OAK_LIMIT_EXCEEDED');
        assert.equal(e.error.path, 'applications');
        assert.match(e.error.message, /limit max_(applications|array_items)\)/);
      }
      return best;
    };
    await timed(small);
    const a = await timed(small);
    const b = await timed(big);
    assert.ok(b < 30 * a, `10x the input took ${(b / a).toFixed(1)}x the time`);
    // a flood of hostile documents of every kind, with healthz polled in between
    const ms = (extra: Record<string, unknown>) => ({ microservice_name: 's', microservice_namespace: 'test', virtualization: 'container', code: 'x', ...extra });
    const hostile = [
      big,
      JSON.stringify({ sla_version: 'v2.0', customerID: 'x', applications: [{ application_name: 'a', application_namespace: 'b', microservices: Array.from({ length: 4000 }, () => ms({})) }] }),
      JSON.stringify({ sla_version: 'v2.0', customerID: 'x', applications: [{ application_name: 'a', application_namespace: 'b', microservices: [ms({ constraints: Array.from({ length: 4000 }, () => ({ type: 'geo' })) })] }] }),
    ];
    let healthy = 0;
    let flooding = true;
    const poll = (async () => {
      while (flooding) {
        const h = await fetch(`${url}/healthz`);
        assert.equal(h.status, 200);
        await h.arrayBuffer();
        healthy++;
      }
    })();
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => post('/api/application/', hostile[i % hostile.length] as string)));
    flooding = false;
    await poll;
    for (const r of answers) {
      assert.equal(r.status, 422);
      assert.equal(((await r.json()) as ErrorAnswer).error.code, 'OAK_LIMIT_EXCEEDED');
    }
    assert.ok(healthy >= 1, 'healthz answered during the flood');
    assert.equal(await snapshot(t.store), before, 'nothing stored');
  });

  test('(b) a value nested 10,000 deep answers 422 with its path on every route, never 500', async () => {
    const a = await createApp(t, tok, 'deepapp');
    const svc = (await t.req('GET', `/api/services/${a.applicationID}`, tok)).json() as ServiceDoc[];
    const sid = svc[0]?.microserviceID ?? '';
    const before = await snapshot(t.store);
    for (const field of ['connectivity', 'volumes', 'health', 'futureField']) {
      const value = field === 'health' ? { type: 'tcp', port: 80, more: DEEP } : [DEEP];
      const s = sla('deep', ['server'], { [field]: value });
      const attempts: [string, string, unknown][] = [
        ['POST', '/api/application/', s],
        ['PUT', `/api/application/${a.applicationID}`, { microservices: [{ ...(s.applications as { microservices: unknown[] }[])[0]?.microservices[0] as object }] }],
        ['POST', '/api/service/', { applicationID: a.applicationID, ...((s.applications as { microservices: object[] }[])[0]?.microservices[0] ?? {}) }],
        ['PUT', `/api/service/${sid}`, { [field]: value }],
        ['POST', '/api/user/', { name: 'bob', password: 'password-123', roles: [DEEP] }],
      ];
      for (const [method, path, body] of attempts) {
        const r = await t.app.inject({ method: method as 'POST', url: path, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, payload: withDeep(body) });
        assert.equal(r.statusCode, 422, `${method} ${path} ${field}: ${r.body.slice(0, 300)}`);
        const e = r.json() as ErrorAnswer;
        assert.equal(e.error.code, 'OAK_LIMIT_EXCEEDED');
        assert.match(e.error.message, /max_depth/);
        assert.ok((e.error.path ?? '').length > 0 && (e.error.path ?? '').length < 400, e.error.path);
      }
      const r = await t.app.inject({ method: 'POST', url: '/api/application/', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, payload: withDeep(s) });
      assert.match((r.json() as ErrorAnswer).error.path ?? '', new RegExp(`^applications\\[0\\]\\.microservices\\[0\\]\\.${field}`));
    }
    assert.equal(await snapshot(t.store), before, 'nothing changed');
  });

  test('(f) unknown field names are echoed once and cut; the oak-warnings header stays under its cap, the body lists them', async () => {
    const long = `z${'q'.repeat(199)}`;
    const one = await t.req('POST', '/api/application/', tok, sla('warn1', ['server'], { [long]: 1 }));
    assert.equal(one.statusCode, 200, one.body);
    const h = String(one.headers['oak-warnings']);
    assert.equal(h.split('zqqq').length - 1, 1, h);
    assert.ok(h.length < 300, h);
    const [doc] = one.json() as ApplicationDoc[];
    assert.equal(doc?.warnings?.length, 1);
    // a thousand long unknown names: created, the header capped with a count of what was left out
    const many = Object.fromEntries(Array.from({ length: 900 }, (_, i) => [`${i}${'w'.repeat(250)}`, i]));
    const r = await t.req('POST', '/api/application/', tok, sla('warn2', ['server'], many));
    assert.equal(r.statusCode, 200, r.body.slice(0, 300));
    const header = String(r.headers['oak-warnings']);
    assert.ok(Buffer.byteLength(header) <= WARNINGS_HEADER_MAX, `${Buffer.byteLength(header)} bytes`);
    const list = JSON.parse(header) as string[];
    assert.match(list[list.length - 1] ?? '', /^\d+ more warnings left out/);
    const [d2] = r.json() as ApplicationDoc[];
    assert.ok((d2?.warnings?.length ?? 0) > list.length - 1 && (d2?.warnings?.length ?? 0) <= 101, `${d2?.warnings?.length}`);
    assert.match(d2?.warnings?.[d2.warnings.length - 1]?.message ?? '', /800 more warnings left out/);
    // a 1 MB name is refused, not echoed
    const huge = await t.req('POST', '/api/application/', tok, sla('warn3', ['server'], { ['n'.repeat(1_000_000)]: 1 }));
    assert.equal(huge.statusCode, 422);
    assert.equal((huge.json() as ErrorAnswer).error.code, 'OAK_LIMIT_EXCEEDED');
    assert.ok(huge.body.length < 2000, `${huge.body.length} bytes answered`);
    assert.equal(huge.headers['oak-warnings'], undefined);
  });

  test('(g) integer parameters must be canonical decimal integers in range, else 400 naming the parameter', async () => {
    const a = await createApp(t, tok, 'intapp');
    const svc = (await t.req('GET', `/api/services/${a.applicationID}`, tok)).json() as ServiceDoc[];
    const sid = svc[0]?.microserviceID ?? '';
    await t.req('POST', `/api/service/${sid}/instance`, tok);
    const before = await snapshot(t.store);
    const bad: [string, string][] = [
      [`/api/service/${sid}/instance/0/logs?tail=1e9`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=-1`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=1.5`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=%201`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=0x10`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=01`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=1&tail=2`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=100001`, 'tail'],
      [`/api/service/${sid}/instance/0/logs?tail=99999999999999999999`, 'tail'],
      [`/api/service/${sid}/instance/0x0/logs`, 'n'],
      [`/api/service/${sid}/instance/1e0/logs`, 'n'],
      [`/api/service/${sid}/instance/-0/logs`, 'n'],
      [`/api/service/${sid}/instance/%200/logs`, 'n'],
    ];
    for (const [path, param] of bad) {
      const r = await t.req('GET', path, tok);
      assert.equal(r.statusCode, 400, `${path}: ${r.body}`);
      const e = r.json() as ErrorAnswer;
      assert.equal(e.error.code, 'OAK_BAD_REQUEST', path);
      assert.equal(e.error.path, param, `${path}: ${r.body}`);
      assert.match(e.error.message, new RegExp(`parameter ${param}`), path);
    }
    for (const m of ['DELETE'] as const) {
      const r = await t.req(m, `/api/service/${sid}/instance/0x0`, tok);
      assert.equal(r.statusCode, 400, r.body);
      assert.equal((r.json() as ErrorAnswer).error.path, 'n');
    }
    assert.equal(await snapshot(t.store), before, 'nothing undeployed');
    // canonical ones pass validation (no logs here: 503, not 400)
    assert.equal((await t.req('GET', `/api/service/${sid}/instance/0/logs?tail=10`, tok)).statusCode, 503);
    assert.equal((await t.req('GET', `/api/service/${sid}/instance/7/logs?tail=0`, tok)).statusCode, 404);
  });
});

describe('NUL characters (PostgreSQL text refuses them)', () => {
  let t: TestRoot;
  let tok: string;
  let url: string;
  before(async () => {
    t = await testRoot();
    tok = await t.user('nul', 'nulorg', ['Admin']);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  });
  after(() => t.close());

  test('in a path parameter, a query or anywhere in a JSON body: 400 naming it, nothing written', async () => {
    const before = await snapshot(t.store);
    const h = { authorization: `Bearer ${tok}`, 'content-type': 'application/json' };
    const answers = [
      await fetch(`${url}/api/user/%00`, { headers: h }),
      await fetch(`${url}/api/application/a%00b`, { headers: h }),
      await fetch(`${url}/api/applications/?x=%00`, { headers: h }),
      await fetch(`${url}/api/application/`, { method: 'POST', headers: h, body: JSON.stringify({ ...sla('nulapp'), applications: [{ ...(sla('nulapp').applications as object[])[0], application_desc: 'a\u0000b' }] }) }),
      await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'Admin\u0000', password: 'x' }) }),
    ];
    for (const r of answers) {
      const body = (await r.json()) as { error?: { code?: string; message?: string } };
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(body.error?.code, 'OAK_BAD_REQUEST');
      assert.match(body.error?.message ?? '', /NUL/);
    }
    assert.deepEqual(await snapshot(t.store), before);
  });
});
