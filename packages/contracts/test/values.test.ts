import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OakError, ipv4InSubnet, isIPv6, parseIPv4, parseLocation, parsePorts } from '../src/index.ts';

test('parsePorts reads [host:]container[/tcp|udp] entries joined by ";"', () => {
  assert.deepEqual(parsePorts('8080:80/tcp;9000:9000/udp'), [
    { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { hostPort: 9000, containerPort: 9000, protocol: 'udp' },
  ]);
  assert.deepEqual(parsePorts('80'), [{ containerPort: 80, protocol: 'tcp' }]);
  assert.deepEqual(parsePorts('9000/udp'), [{ containerPort: 9000, protocol: 'udp' }]);
  assert.deepEqual(parsePorts(' 8080:80 ; 53/UDP ;'), [
    { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    { containerPort: 53, protocol: 'udp' },
  ]);
  assert.deepEqual(parsePorts(''), []);
  assert.deepEqual(parsePorts('1;65535'), [
    { containerPort: 1, protocol: 'tcp' },
    { containerPort: 65535, protocol: 'tcp' },
  ]);
  // the same port on both protocols is fine
  assert.equal(parsePorts('53:53/tcp;53:53/udp').length, 2);
});

test('parsePorts throws OakError with a hint on bad input', () => {
  const bad: [string, RegExp][] = [
    ['0', /outside 1-65535/],
    ['65536', /outside 1-65535/],
    ['80:70000', /container port 70000 is outside/],
    ['http', /not a number/],
    ['-1', /not a number/],
    ['80.5', /not a number/],
    ['8080:80/sctp', /protocol "sctp"/],
    ['a:b:c', /not \[host:\]container/],
    ['80/tcp/udp', /not \[host:\]container/],
    [';80', /empty entry/],
    ['80;80', /both use port 80\/tcp/],
    ['8080:80;8080:81', /both use port 8080\/tcp/],
  ];
  for (const [input, msg] of bad) {
    assert.throws(
      () => parsePorts(input),
      (e: unknown) => e instanceof OakError && e.code === 'OAK_VALIDATION' && msg.test(e.message) && typeof e.hint === 'string' && e.hint.length > 0,
      input,
    );
  }
});

test('parseLocation reads "lat,long" and "lat,long,radius"', () => {
  assert.deepEqual(parseLocation('48.1351,11.5820'), { lat: 48.1351, long: 11.582 });
  assert.deepEqual(parseLocation(' -33.86 , 151.2 , 25 '), { lat: -33.86, long: 151.2, radius_km: 25 });
  assert.deepEqual(parseLocation('0,0,0'), { lat: 0, long: 0, radius_km: 0 });
  assert.deepEqual(parseLocation('90,-180'), { lat: 90, long: -180 });
  for (const s of ['Munich', '', '48.1', '1,2,3,4', '91,0', '0,181', '0,0,-1', 'a,b', '1e3,2', '48.1,', ',11']) {
    assert.equal(parseLocation(s), undefined, s);
  }
});

test('parseIPv4, ipv4InSubnet and isIPv6', () => {
  assert.equal(parseIPv4('10.30.0.1'), 10 * 2 ** 24 + 30 * 2 ** 16 + 1);
  assert.equal(parseIPv4('255.255.255.255'), 2 ** 32 - 1);
  for (const s of ['10.30.0', '10.30.0.256', '10.030.0.1', 'a.b.c.d', '1.2.3.4.5', '']) assert.equal(parseIPv4(s), undefined, s);
  assert.ok(ipv4InSubnet('10.30.55.55', '10.30.0.0/16'));
  assert.ok(ipv4InSubnet('10.30.255.255', '10.30.0.0/16'));
  assert.ok(!ipv4InSubnet('10.31.0.0', '10.30.0.0/16'));
  assert.ok(ipv4InSubnet('10.18.0.63', '10.18.0.0/26'));
  assert.ok(!ipv4InSubnet('10.18.0.64', '10.18.0.0/26'));
  assert.ok(!ipv4InSubnet('x', '10.30.0.0/16'));
  for (const s of ['fdff::1', '::1', '::', 'fdff:2000:0:0:0:0:0:1', '::ffff:10.0.0.1']) assert.ok(isIPv6(s), s);
  for (const s of ['fdff', '1:2:3:4:5:6:7:8:9', 'fdff::1::2', 'g::1', '10.0.0.1', '12345::1']) assert.ok(!isIPv6(s), s);
});
