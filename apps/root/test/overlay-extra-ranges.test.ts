/**
 * The operator's extra service ranges (issue 12 point 3, `--extra-service-ranges`): an rr_ip
 * inside one is given exactly as asked and carries no warning; one outside every range still
 * gets an address of 10.30.0.0/16 with the warning; the setting is checked at start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { createStore } from '@oak/store';
import { testRoot, sla, type TestRoot } from './helpers.ts';
import { overlayFor } from '../src/overlay.ts';
import { configFromArgs } from '../src/main.ts';

type AppAnswer = ApplicationDoc & { warnings?: { path: string; message: string }[] };

describe('extra service ranges', () => {
  let t: TestRoot;
  let admin: string;
  before(async () => {
    const store = await createStore({ sqlitePath: ':memory:' });
    overlayFor(store, ['192.168.178.0/24']);
    t = await testRoot({ store });
    admin = await t.login('Admin');
  });
  after(() => t.close());

  const create = async (name: string, rr: string): Promise<{ app: AppAnswer; svc: ServiceDoc; header: unknown }> => {
    const r = await t.req('POST', '/api/application/', admin, sla(name, ['web'], { addresses: { rr_ip: rr } }));
    assert.equal(r.statusCode, 200, r.body);
    const [app] = r.json() as AppAnswer[];
    assert.ok(app);
    const svc = (await t.req('GET', `/api/service/${app.microservices[0] ?? ''}`, admin)).json() as ServiceDoc;
    return { app, svc, header: r.headers['oak-warnings'] };
  };

  test("Oakestra's 192.168.178.4 inside the widened range is honoured, without the range warning", async () => {
    const { app, svc, header } = await create('wide', '192.168.178.4');
    assert.equal(svc.service_ip, '192.168.178.4');
    assert.equal((app.warnings ?? []).some((w) => w.path.endsWith('addresses.rr_ip')), false, JSON.stringify(app.warnings));
    assert.equal(typeof header === 'string' && header.includes('rr_ip'), false);
    assert.match(svc.closest_ip ?? '', /^10\.30\./, 'closest and instance addresses stay in 10.30.0.0/16');
  });

  test('the same address again is 409 naming the owner; an address outside every range gets one of 10.30.0.0/16 with the warning', async () => {
    const r = await t.req('POST', '/api/application/', admin, sla('wide2', ['web'], { addresses: { rr_ip: '192.168.178.4' } }));
    assert.equal(r.statusCode, 409, r.body);
    assert.match(r.body, /OAK_ADDRESS_CONFLICT/);
    assert.match(r.body, /service wide\.test\.web\.test|wide/);
    const { app, svc } = await create('narrow', '172.16.40.9');
    assert.match(svc.service_ip ?? '', /^10\.30\./);
    const w = (app.warnings ?? []).find((x) => x.path.endsWith('addresses.rr_ip'));
    assert.match(w?.message ?? '', /outside the service range 10\.30\.0\.0\/16.*--extra-service-ranges/);
  });

  test('a PATCH/PUT of a service to an address of the range moves it there', async () => {
    const { svc } = await create('mover', '10.30.77.7');
    const r = await t.req('PUT', `/api/service/${svc.microserviceID}`, admin, { addresses: { rr_ip: '192.168.178.77' } });
    assert.ok(r.statusCode === 200, r.body);
    assert.equal(((await t.req('GET', `/api/service/${svc.microserviceID}`, admin)).json() as ServiceDoc).service_ip, '192.168.178.77');
  });
});

test('--extra-service-ranges / OAK_EXTRA_SERVICE_RANGES: normalised CIDRs; bad, overlapping or too many are refused with the reason', () => {
  const cfg = configFromArgs(['--extra-service-ranges', ' 192.168.178.0/24 , 172.20.0.0/16'], {});
  assert.ok(cfg !== 'help');
  assert.deepEqual(cfg.extraServiceRanges, ['192.168.178.0/24', '172.20.0.0/16']);
  const env = configFromArgs([], { OAK_EXTRA_SERVICE_RANGES: '192.168.178.0/24' });
  assert.ok(env !== 'help');
  assert.deepEqual(env.extraServiceRanges, ['192.168.178.0/24']);
  const none = configFromArgs([], {});
  assert.ok(none !== 'help');
  assert.equal(none.extraServiceRanges, undefined);
  const bad: [string, RegExp][] = [
    ['192.168.178.4', /--extra-service-ranges: .*192\.168\.178\.4/],
    ['10.18.0.0/24', /overlaps the worker pool 10\.18\.0\.0\/16/],
    ['10.30.1.0/24', /overlaps the service pool 10\.30\.0\.0\/16/],
    ['192.168.0.0/16,192.168.178.0/24', /overlaps another extra range/],
    ['127.0.0.0/8', /unusable/],
    [Array.from({ length: 16 }, (_, i) => `172.16.${i}.0/24`).join(','), /at most 15/],
    ['1'.repeat(1001), /longer than 1000/],
    ['192.168.178.0/24; rm -rf /', /--extra-service-ranges/],
  ];
  for (const [v, why] of bad) assert.throws(() => configFromArgs(['--extra-service-ranges', v], {}), why, v.slice(0, 40));
});
