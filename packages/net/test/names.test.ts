import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { jobName, serviceDnsName } from '@oak/contracts';
import { parseOverlayName, overlayNameOf, readUpstreams, inZone, MAX_NAME_INSTANCE } from '../src/index.ts';

test('service and instance names parse to the job name and parts', () => {
  assert.deepEqual(parseOverlayName('server.test.clientsrvr.test.oak'), {
    job_name: 'clientsrvr.test.server.test',
    service: { app: 'clientsrvr', appns: 'test', svc: 'server', svcns: 'test' },
  });
  assert.deepEqual(parseOverlayName('3.server.test.clientsrvr.test.oak.'), {
    job_name: 'clientsrvr.test.server.test',
    instance_number: 3,
    service: { app: 'clientsrvr', appns: 'test', svc: 'server', svcns: 'test' },
  });
  // case-insensitive: the result is lower case
  assert.equal(parseOverlayName('SeRvEr.Test.ClientSrvr.TEST.OAK')?.job_name, 'clientsrvr.test.server.test');
  assert.equal(parseOverlayName('0.a.b.c.d.oak')?.instance_number, 0);
  assert.equal(parseOverlayName(`${MAX_NAME_INSTANCE}.a.b.c.d.oak`)?.instance_number, MAX_NAME_INSTANCE);
  // a numeric service label in the 4-label form is a service, not an instance
  assert.equal(parseOverlayName('1.b.c.d.oak')?.job_name, 'c.d.1.b');
  // another zone
  assert.equal(parseOverlayName('a.b.c.d.oak.internal', 'oak.internal')?.job_name, 'c.d.a.b');
  assert.equal(parseOverlayName('a.b.c.d.oak', 'oak.internal'), undefined);
  // the contracts' own naming agrees
  const p = { application_name: 'App1', application_namespace: 'ns', microservice_name: 'Svc', microservice_namespace: 'sns' };
  assert.equal(parseOverlayName(serviceDnsName(p))?.job_name, jobName(p).toLowerCase());
});

test('anything else is not an overlay name', () => {
  const bad: unknown[] = [
    '', '.', 'oak', 'oak.', 'a.oak', 'a.b.c.oak', 'a.b.c.d.e.f.oak', 'x.a.b.c.d.oak', '01.a.b.c.d.oak', '-1.a.b.c.d.oak',
    `${MAX_NAME_INSTANCE + 1}.a.b.c.d.oak`, '99999999.a.b.c.d.oak', '1e3.a.b.c.d.oak', '0x1.a.b.c.d.oak', '1.5.a.b.c.d.oak',
    'a.b.c.d.com', 'a.b.c.d.oak.com', 'a..c.d.oak', '.a.b.c.d.oak', 'a.b.c.d.oak..', 'a b.b.c.d.oak', 'a_b.b.c.d.oak',
    '-a.b.c.d.oak', 'a-.b.c.d.oak', 'ä.b.c.d.oak', 'a.b.c.d.oak\0', 'a\n.b.c.d.oak', 'a.b.c.d.oa k', `${'x'.repeat(64)}.b.c.d.oak`,
    `${'x'.repeat(63)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(63)}.oak`, 'x'.repeat(1_000_000), `${'a.'.repeat(200_000)}oak`,
    undefined, null, 42, {}, ['a', 'b'],
  ];
  for (const b of bad) assert.equal(parseOverlayName(b as string), undefined, String(b).slice(0, 40));
  // at most 253 characters: 63+1+63+1+63+1+57+1+3 = 253 is fine, one more is not
  const ok = `${'x'.repeat(63)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(57)}.oak`;
  assert.equal(ok.length, 253);
  assert.notEqual(parseOverlayName(ok), undefined);
  assert.notEqual(parseOverlayName(`${ok}.`), undefined);
  assert.equal(parseOverlayName(`${'x'.repeat(63)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(58)}.oak`), undefined);
});

test('overlayNameOf is the inverse, and refuses what cannot be a name', () => {
  assert.equal(overlayNameOf('clientsrvr.test.server.test'), 'server.test.clientsrvr.test.oak');
  assert.equal(overlayNameOf('clientsrvr.test.server.test', 2), '2.server.test.clientsrvr.test.oak');
  assert.equal(overlayNameOf('App.Test.Svc.Test', 0), '0.svc.test.app.test.oak');
  for (const [job, n] of [['a.b.c', undefined], ['a.b.c.d.e', undefined], ['a.b.c.d', -1], ['a.b.c.d', 1.5], ['a.b.c.d', MAX_NAME_INSTANCE + 1],
    ['a.b.c.d', Number.NaN], ['a_b.b.c.d', undefined], ['', undefined], ['a.b.c.d.', 0]] as [string, number | undefined][]) {
    assert.equal(overlayNameOf(job, n), undefined, `${job} ${n}`);
  }
  assert.equal(overlayNameOf(`${'x'.repeat(63)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(57)}`, 1), undefined, 'too long with the instance label');
});

const label = fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?$/);

test('property: overlayNameOf then parseOverlayName gives the (lower-cased) job and number back', () => {
  fc.assert(fc.property(label, label, label, label, fc.option(fc.integer({ min: 0, max: MAX_NAME_INSTANCE }), { nil: undefined }), fc.boolean(),
    (app, appns, svc, svcns, n, upper) => {
      const job = `${app}.${appns}.${svc}.${svcns}`;
      const name = overlayNameOf(job, n);
      assert.ok(name);
      const parsed = parseOverlayName(upper ? `${name.toUpperCase()}.` : name);
      assert.ok(parsed);
      assert.equal(parsed.job_name, job.toLowerCase());
      assert.equal(parsed.instance_number, n);
      assert.equal(overlayNameOf(parsed.job_name, parsed.instance_number), name);
    }), { numRuns: 1000 });
});

test('property: parseOverlayName never throws and only accepts what round-trips', () => {
  const chars = fc.constantFrom('a', 'Z', '0', '9', '-', '.', '_', ' ', '\0', 'ä', 'o', 'k', '\\', '%');
  const hostile = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.array(chars, { maxLength: 300 }).map((a) => a.join('')),
    fc.array(chars, { maxLength: 40 }).map((a) => `${a.join('')}.oak`),
    fc.tuple(fc.array(label, { minLength: 0, maxLength: 8 }), fc.constantFrom('oak', 'OAK.', 'oak.x', '')).map(([ls, z]) => [...ls, z].join('.')),
  );
  fc.assert(fc.property(hostile, (s) => {
    const p = parseOverlayName(s);
    if (p === undefined) return true;
    const back = overlayNameOf(p.job_name, p.instance_number);
    return back !== undefined && back === s.toLowerCase().replace(/\.$/, '') && inZone(s);
  }), { numRuns: 3000 });
});

test('inZone', () => {
  assert.equal(inZone('a.oak'), true);
  assert.equal(inZone('OAK.'), true);
  assert.equal(inZone('a.b.Oak.'), true);
  assert.equal(inZone('aoak'), false);
  assert.equal(inZone('a.oak.com'), false);
  assert.equal(inZone('example.com'), false);
  assert.equal(inZone('x.y', ''), true);
});

test('readUpstreams: nameserver lines, canonical, deduplicated, ours and invalid skipped, at most 3', () => {
  const conf = [
    '# generated', '; comment', 'search example.com', 'options ndots:5',
    'nameserver 127.0.0.53', 'nameserver   10.0.0.1  # trailing comment', 'nameserver 10.0.0.1', 'nameserver 2001:DB8:0:0::1',
    'nameserver 10.18.0.65', 'nameserver fe80::1%eth0', 'nameserver 256.1.1.1', 'nameserver 0.0.0.0', 'nameserver ::', 'nameserver 224.0.0.1',
    'nameserver', 'nameserver 1.1.1.1 8.8.8.8', 'nameserver1.1.1.1', '#nameserver 9.9.9.9',
    'nameserver 9.9.9.9', 'nameserver 8.8.8.8',
  ].join('\n');
  assert.deepEqual(readUpstreams(conf, { exclude: ['10.18.0.65'] }), ['127.0.0.53', '10.0.0.1', '2001:db8::1']);
  assert.deepEqual(readUpstreams(conf, { exclude: ['10.18.0.65', '127.0.0.53', '2001:db8::1'] }), ['10.0.0.1', '9.9.9.9', '8.8.8.8']);
  assert.deepEqual(readUpstreams('nameserver 1.2.3.4\r\nnameserver ff02::1\r\n\tnameserver\t5.6.7.8'), ['1.2.3.4', '5.6.7.8']);
  assert.deepEqual(readUpstreams(''), []);
  assert.deepEqual(readUpstreams(undefined as unknown as string), []);
  assert.deepEqual(readUpstreams(`${'x'.repeat(70000)}\nnameserver 1.2.3.4`), [], 'only the first 64 KiB are read');
  assert.deepEqual(readUpstreams('nameserver 1.2.3.4\n'.repeat(100000)), ['1.2.3.4']);
  fc.assert(fc.property(fc.string({ maxLength: 500 }), (s) => {
    const r = readUpstreams(s);
    return Array.isArray(r) && r.length <= 3 && new Set(r).size === r.length;
  }), { numRuns: 500 });
});
