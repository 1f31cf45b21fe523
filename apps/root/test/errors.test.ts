/**
 * The error table: bad input of every kind gets the SPEC §3 shape with an honest status and code,
 * never a 500 or a stack trace, and changes nothing in the store.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { InjectOptions } from 'fastify';
import { createApp, sla, snapshot, testRoot, type TestRoot } from './helpers.ts';

interface Case {
  name: string;
  method: InjectOptions['method'];
  url: string | (() => string);
  /** token name: admin, provider, infra, other, orgadmin, or a literal token via () => */
  as?: string | (() => Promise<string> | string);
  headers?: Record<string, string>;
  body?: unknown;
  /** raw payload (sent as is) */
  raw?: string | Buffer;
  status: number;
  code: string;
  check?: (body: { error: { code: string; message: string; path?: string; hint?: string; details?: unknown[] } }) => void;
}

describe('error table', () => {
  let t: TestRoot;
  const tokens: Record<string, string> = {};
  let appId = '';
  let serviceId = '';

  before(async () => {
    t = await testRoot();
    tokens.admin = await t.login('Admin');
    tokens.provider = await t.user('alice', 'orgA', ['Application_Provider']);
    tokens.infra = await t.user('ivan', 'orgA', ['Infrastructure_Provider']);
    tokens.orgadmin = await t.user('olga', 'orgA', ['Organization_Admin']);
    tokens.other = await t.user('bob', 'orgB', ['Application_Provider']);
    const app = await createApp(t, tokens.provider);
    appId = app.applicationID;
    serviceId = app.microservices[0] ?? '';
    const inst = await t.req('POST', `/api/service/${serviceId}/instance`, tokens.provider);
    assert.equal(inst.statusCode, 200);
  });
  after(() => t.close());

  const expiredToken = async (): Promise<string> => {
    const u = await t.store.getUserByName('alice');
    return new SignJWT({ name: 'alice', roles: ['Application_Provider'], org: u?.organization_id, typ: 'access' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(u?.id ?? '')
      .setIssuer('oak-root')
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(t.ctx.auth.jwtSecret);
  };
  const forgedToken = async (): Promise<string> => {
    const u = await t.store.getUserByName('Admin');
    return new SignJWT({ name: 'Admin', roles: ['Admin'], org: u?.organization_id, typ: 'access' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(u?.id ?? '')
      .setIssuer('oak-root')
      .setExpirationTime('1h')
      .sign(randomBytes(32));
  };
  const unsignedToken = async (): Promise<string> => {
    const u = await t.store.getUserByName('Admin');
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: u?.id, name: 'Admin', roles: ['Admin'], org: u?.organization_id, typ: 'access', iss: 'oak-root', exp: Math.floor(Date.now() / 1000) + 3600 })}.`;
  };
  const refreshAsAccess = async (): Promise<string> => {
    const r = await t.req('POST', '/api/auth/login', undefined, { username: 'alice', password: 'password-123' });
    return (r.json() as { refresh_token: string }).refresh_token;
  };

  const big = JSON.stringify({ ...sla('big'), padding: 'x'.repeat(1024 * 1024) });

  const cases: Case[] = [
    // malformed bodies
    { name: 'malformed JSON', method: 'POST', url: '/api/application/', as: 'provider', headers: { 'content-type': 'application/json' }, raw: '{"sla_version": "v2.0", ', status: 400, code: 'OAK_MALFORMED_JSON' },
    { name: 'malformed JSON on login', method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, raw: "{username: 'Admin'}", status: 400, code: 'OAK_MALFORMED_JSON' },
    { name: 'prototype poisoning', method: 'POST', url: '/api/application/', as: 'provider', headers: { 'content-type': 'application/json' }, raw: '{"__proto__": {"admin": true}}', status: 400, code: 'OAK_MALFORMED_JSON' },
    { name: 'wrong content type (text/plain)', method: 'POST', url: '/api/application/', as: 'provider', headers: { 'content-type': 'text/plain' }, raw: JSON.stringify(sla('plain')), status: 415, code: 'OAK_UNSUPPORTED_MEDIA_TYPE' },
    { name: 'wrong content type (form)', method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, raw: 'username=Admin&password=x', status: 415, code: 'OAK_UNSUPPORTED_MEDIA_TYPE' },
    { name: 'oversized body', method: 'POST', url: '/api/application/', as: 'provider', headers: { 'content-type': 'application/json' }, raw: big, status: 413, code: 'OAK_BODY_TOO_LARGE' },
    { name: 'SLA body that is an array', method: 'POST', url: '/api/application/', as: 'provider', body: [1, 2], status: 422, code: 'OAK_INVALID_SLA' },
    {
      name: 'invalid SLA: path, hint and every detail',
      method: 'POST',
      url: '/api/application/',
      as: 'provider',
      body: sla('bad.name', ['server'], { port: 80, memory: -5 }),
      status: 422,
      code: 'OAK_INVALID_SLA',
      check: (b) => {
        assert.ok(b.error.path, 'has a path');
        assert.ok(b.error.hint, 'has a hint');
        const paths = (b.error.details as { path: string }[]).map((d) => d.path);
        assert.ok(paths.includes('applications[0].application_name'), paths.join());
        assert.ok(paths.includes('applications[0].microservices[0].port'), paths.join());
        assert.ok(paths.includes('applications[0].microservices[0].memory'), paths.join());
      },
    },
    { name: 'login body missing password', method: 'POST', url: '/api/auth/login', body: { username: 'Admin' }, status: 422, code: 'OAK_VALIDATION', check: (b) => assert.equal(b.error.path, 'password') },
    { name: 'user with a short password', method: 'POST', url: '/api/user/', as: 'admin', body: { name: 'zed', password: 'short' }, status: 422, code: 'OAK_VALIDATION' },
    { name: 'instance number not a number', method: 'DELETE', url: () => `/api/service/${serviceId}/instance/abc`, as: 'provider', status: 400, code: 'OAK_BAD_REQUEST' },
    { name: 'deploy flag not a boolean', method: 'POST', url: '/api/application/?deploy=perhaps', as: 'provider', body: sla('flag'), status: 400, code: 'OAK_BAD_REQUEST' },
    // unknown ids and routes
    { name: 'unknown application (GET)', method: 'GET', url: '/api/application/ffffffffffffffffffffffff', as: 'provider', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown application (PUT)', method: 'PUT', url: '/api/application/nope', as: 'provider', body: { application_desc: 'x' }, status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown application (DELETE)', method: 'DELETE', url: '/api/application/nope', as: 'admin', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown application (services)', method: 'GET', url: '/api/services/nope', as: 'provider', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown service', method: 'GET', url: '/api/service/nope', as: 'provider', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown service (instance)', method: 'POST', url: '/api/service/nope/instance', as: 'provider', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown instance', method: 'DELETE', url: () => `/api/service/${serviceId}/instance/99`, as: 'provider', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown instance (logs)', method: 'GET', url: () => `/api/service/${serviceId}/instance/99/logs`, as: 'provider', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'service for an unknown application', method: 'POST', url: '/api/service/', as: 'provider', body: { applicationID: 'nope', microservice_name: 'x', microservice_namespace: 'y', virtualization: 'container', code: 'a/b:c' }, status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown cluster', method: 'GET', url: '/api/cluster/nope', as: 'infra', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown user', method: 'GET', url: '/api/user/nobody', as: 'admin', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown organisation', method: 'DELETE', url: '/api/organization/nope', as: 'admin', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'unknown route', method: 'GET', url: '/api/nothing/here', status: 404, code: 'OAK_NOT_FOUND' },
    // tokens
    { name: 'missing JWT', method: 'GET', url: '/api/applications/', status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'missing JWT on a write', method: 'POST', url: '/api/application/', body: sla('anon'), status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'not a bearer header', method: 'GET', url: '/api/applications/', headers: { authorization: 'Basic QWRtaW46eA==' }, status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'garbage JWT', method: 'GET', url: '/api/applications/', as: () => 'not.a.jwt', status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'expired JWT', method: 'DELETE', url: () => `/api/application/${appId}`, as: expiredToken, status: 401, code: 'OAK_TOKEN_EXPIRED' },
    { name: 'forged JWT (other key)', method: 'DELETE', url: () => `/api/application/${appId}`, as: forgedToken, status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'unsigned JWT (alg none)', method: 'DELETE', url: () => `/api/application/${appId}`, as: unsignedToken, status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'refresh token used as access token', method: 'DELETE', url: () => `/api/application/${appId}`, as: refreshAsAccess, status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'access token used as refresh token', method: 'POST', url: '/api/auth/refresh', body: () => ({ refresh_token: tokens.provider }), status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'garbage refresh token', method: 'POST', url: '/api/auth/refresh', body: { refresh_token: 'x' }, status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'refresh without any token', method: 'POST', url: '/api/auth/refresh', status: 401, code: 'OAK_UNAUTHORIZED' },
    { name: 'wrong password', method: 'POST', url: '/api/auth/login', body: { username: 'Admin', password: 'wrong' }, status: 401, code: 'OAK_INVALID_CREDENTIALS' },
    { name: 'unknown user login', method: 'POST', url: '/api/auth/login', body: { username: 'ghost', password: 'whatever' }, status: 401, code: 'OAK_INVALID_CREDENTIALS' },
    // roles
    { name: 'wrong role: infrastructure provider creates an application', method: 'POST', url: '/api/application/', as: 'infra', body: sla('infra'), status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'wrong role: infrastructure provider lists applications', method: 'GET', url: '/api/applications/', as: 'infra', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'wrong role: provider creates a user', method: 'POST', url: '/api/user/', as: 'provider', body: { name: 'mallory', password: 'password-123' }, status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'wrong role: provider lists users', method: 'GET', url: '/api/users/', as: 'provider', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'wrong role: provider creates an organisation', method: 'POST', url: '/api/organization/', as: 'provider', body: { name: 'evil' }, status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'wrong role: org admin grants Admin', method: 'POST', url: '/api/user/', as: 'orgadmin', body: { name: 'mallory', password: 'password-123', roles: ['Admin'] }, status: 403, code: 'OAK_FORBIDDEN' },
    // a user of another organisation is "not found" for an Organization_Admin, like a missing one (no enumeration)
    { name: 'other organisation: org admin deletes the Admin', method: 'DELETE', url: '/api/user/Admin', as: 'orgadmin', status: 404, code: 'OAK_NOT_FOUND' },
    { name: 'wrong role: provider raises its own roles', method: 'PUT', url: '/api/user/alice', as: 'provider', body: { roles: ['Admin'] }, status: 403, code: 'OAK_FORBIDDEN' },
    // other organisation
    { name: 'other organisation: read application', method: 'GET', url: () => `/api/application/${appId}`, as: 'other', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: update application', method: 'PUT', url: () => `/api/application/${appId}`, as: 'other', body: { application_desc: 'mine now' }, status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: delete application', method: 'DELETE', url: () => `/api/application/${appId}`, as: 'other', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: add a service', method: 'POST', url: '/api/service/', as: 'other', body: () => ({ applicationID: appId, microservice_name: 'x', microservice_namespace: 'y', virtualization: 'container', code: 'a/b:c' }), status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: update service', method: 'PUT', url: () => `/api/service/${serviceId}`, as: 'other', body: { memory: 1 }, status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: delete service', method: 'DELETE', url: () => `/api/service/${serviceId}`, as: 'other', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: deploy instance', method: 'POST', url: () => `/api/service/${serviceId}/instance`, as: 'other', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: undeploy instance', method: 'DELETE', url: () => `/api/service/${serviceId}/instance/0`, as: 'other', status: 403, code: 'OAK_FORBIDDEN' },
    { name: 'other organisation: read user', method: 'GET', url: '/api/user/alice', as: 'other', status: 403, code: 'OAK_FORBIDDEN' },
    // conflicts
    { name: 'duplicate application name', method: 'POST', url: '/api/application/', as: 'provider', body: sla('clientsrvr', ['other']), status: 409, code: 'OAK_CONFLICT' },
    { name: 'duplicate application name in one SLA', method: 'POST', url: '/api/application/', as: 'provider', body: () => ({ ...sla('twice'), applications: [...(sla('twice').applications as unknown[]), ...(sla('twice').applications as unknown[])] }), status: 422, code: 'OAK_INVALID_SLA' },
    { name: 'duplicate service name', method: 'POST', url: '/api/service/', as: 'provider', body: () => ({ applicationID: appId, microservice_name: 'server', microservice_namespace: 'test', virtualization: 'container', code: 'a/b:c' }), status: 409, code: 'OAK_CONFLICT' },
    { name: 'duplicate user', method: 'POST', url: '/api/user/', as: 'admin', body: { name: 'alice', password: 'password-123' }, status: 409, code: 'OAK_CONFLICT' },
    { name: 'duplicate organisation', method: 'POST', url: '/api/organization/', as: 'admin', body: { name: 'orgA' }, status: 409, code: 'OAK_CONFLICT' },
    { name: 'delete a non-empty organisation', method: 'DELETE', url: '/api/organization/orgA', as: 'admin', status: 409, code: 'OAK_CONFLICT' },
    { name: 'rename an application with instances', method: 'PUT', url: () => `/api/application/${appId}`, as: 'provider', body: { application_name: 'renamed' }, status: 409, code: 'OAK_CONFLICT' },
    { name: 'own password without old_password', method: 'PUT', url: '/api/user/alice/password', as: 'provider', body: { password: 'new-password-1' }, status: 401, code: 'OAK_INVALID_CREDENTIALS' },
    { name: 'invalid service update', method: 'PUT', url: () => `/api/service/${serviceId}`, as: 'provider', body: { virtualization: 'docker' }, status: 422, code: 'OAK_INVALID_SLA' },
    { name: 'logs without a control plane that has them', method: 'GET', url: () => `/api/service/${serviceId}/instance/0/logs`, as: 'provider', status: 503, code: 'OAK_UNAVAILABLE' },
  ];

  for (const c of cases) {
    test(`${c.name} -> ${c.status} ${c.code}`, async () => {
      const before = await snapshot(t.store);
      const eventsBefore = t.events.length;
      const token = typeof c.as === 'function' ? await c.as() : c.as !== undefined ? tokens[c.as] : undefined;
      const headers: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...c.headers };
      const body = typeof c.body === 'function' ? (c.body as () => unknown)() : c.body;
      const r = await t.app.inject({
        method: c.method,
        url: typeof c.url === 'function' ? c.url() : c.url,
        headers,
        ...(c.raw !== undefined ? { payload: c.raw } : body !== undefined ? { payload: body as InjectOptions['payload'] } : {}),
      });
      assert.equal(r.statusCode, c.status, r.body.slice(0, 500));
      assert.match(String(r.headers['content-type']), /application\/json/);
      const parsed = r.json() as Parameters<NonNullable<Case['check']>>[0];
      assert.equal(parsed.error.code, c.code);
      assert.equal(typeof parsed.error.message, 'string');
      assert.ok(!/\n\s+at /.test(r.body), 'no stack trace');
      c.check?.(parsed);
      assert.equal(await snapshot(t.store), before, 'the store is unchanged');
      assert.equal(t.events.length, eventsBefore, 'no event was published');
    });
  }
});
