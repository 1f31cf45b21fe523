/** IPAM with the operator's extra service ranges (issue 12 point 3: a widened service range). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ipam, IpamError, MAX_EXTRA_POOLS } from '../src/index.ts';
import type { IpamErrorCode } from '../src/index.ts';

const code = (c: IpamErrorCode) => (e: unknown): boolean => e instanceof IpamError && e.code === c;
const EXTRA = { extraServicePools: ['192.168.178.0/24'] };

test('an rr_ip inside an extra range is honoured exactly and not marked outside; one outside every range still is', () => {
  const ipam = new Ipam({}, EXTRA);
  assert.deepEqual(ipam.extraServicePools, ['192.168.178.0/24']);
  const a = ipam.allocateService('app.ns.web.ns', { rr_ip: '192.168.178.4' });
  assert.equal(a.rr_ip, '192.168.178.4');
  assert.equal(a.outsidePool, false);
  assert.equal(a.inExtraPool, true);
  assert.equal(ipam.inServiceRanges('192.168.178.4'), true);
  assert.equal(ipam.inServiceRanges('10.30.9.9'), true);
  assert.equal(ipam.inServiceRanges('172.16.40.9'), false);
  const b = ipam.allocateService('app.ns.api.ns', { rr_ip: '172.16.40.9' });
  assert.equal(b.outsidePool, true);
  assert.equal(b.inExtraPool, undefined);
  // instances still come from the service pool, never from the extra range
  assert.match(ipam.allocateInstance('app.ns.web.ns', 0).ip, /^10\.30\./);
  // nothing is allocated from the extra range on its own
  assert.match(ipam.allocateService('app.ns.db.ns').rr_ip, /^10\.30\./);
});

test('an address of an extra range is held once: a second service asking for it is a conflict naming the owner; release frees it', () => {
  const ipam = new Ipam({}, EXTRA);
  ipam.allocateService('a.ns.one.ns', { rr_ip: '192.168.178.4' });
  assert.throws(() => ipam.allocateService('a.ns.two.ns', { rr_ip: '192.168.178.4' }), (e: unknown) => code('conflict')(e) && (e as IpamError).owner === 'service a.ns.one.ns');
  assert.equal(ipam.ownerOf('192.168.178.4'), 'service a.ns.one.ns');
  assert.equal(ipam.releaseService('a.ns.one.ns'), true);
  assert.equal(ipam.ownerOf('192.168.178.4'), undefined);
  assert.equal(ipam.allocateService('a.ns.two.ns', { rr_ip: '192.168.178.4' }).rr_ip, '192.168.178.4');
});

test('the network and broadcast address of an extra range are refused', () => {
  const ipam = new Ipam({}, EXTRA);
  for (const ip of ['192.168.178.0', '192.168.178.255']) {
    assert.throws(() => ipam.allocateService('x.ns.y.ns', { rr_ip: ip }), (e: unknown) => code('invalid-address')(e) && /extra service range 192\.168\.178\.0\/24/.test((e as Error).message), ip);
  }
  assert.equal(ipam.stats().services, 0);
});

test('bad extra ranges are refused with the reason: not a CIDR, overlapping the pools or each other, unusable, too many', () => {
  const bad: [readonly string[], RegExp][] = [
    [['192.168.178.4'], /not an IPv4 CIDR|CIDR|subnet/i],
    [['192.168.178.1/24'], /host bits|192\.168\.178\.1\/24/],
    [['10.18.5.0/24'], /overlaps the worker pool 10\.18\.0\.0\/16/],
    [['10.0.0.0/8'], /overlaps the worker pool|overlaps the service pool/],
    [['10.30.128.0/17'], /overlaps the service pool 10\.30\.0\.0\/16/],
    [['192.168.0.0/16', '192.168.178.0/24'], /overlaps another extra range 192\.168\.0\.0\/16/],
    [['127.0.0.0/16'], /unusable/],
    [['224.1.0.0/16'], /unusable/],
    [['192.168.178.0/31'], /prefix must be \/8\.\.\/30/],
    [Array.from({ length: MAX_EXTRA_POOLS + 1 }, (_, i) => `172.16.${i}.0/24`), /at most 15/],
  ];
  for (const [pools, why] of bad) {
    assert.throws(() => new Ipam({}, { extraServicePools: pools }), (e: unknown) => code('invalid-pool')(e) && why.test((e as Error).message), pools.join(','));
  }
  assert.throws(() => new Ipam({}, { extraServicePools: 'x' as unknown as string[] }), code('invalid-pool'));
});

test('the extra ranges are a setting, not state: serialize leaves them out, load takes them again and keeps the held address', () => {
  const ipam = new Ipam({}, EXTRA);
  ipam.allocateService('a.ns.web.ns', { rr_ip: '192.168.178.4' });
  const state = ipam.serialize();
  assert.equal(JSON.stringify(state).includes('192.168.178.0/24'), false);
  const again = Ipam.load(state, EXTRA);
  assert.deepEqual(again.serviceAddresses('a.ns.web.ns'), ipam.serviceAddresses('a.ns.web.ns'));
  assert.deepEqual(again.serialize(), state);
  // without the setting the service keeps its address (held, now reported outside the ranges)
  const without = Ipam.load(state);
  assert.equal(without.serviceAddresses('a.ns.web.ns')?.rr_ip, '192.168.178.4');
  assert.equal(without.serviceAddresses('a.ns.web.ns')?.outsidePool, true);
  assert.throws(() => Ipam.load(state, { extraServicePools: ['10.18.0.0/24'] }), code('invalid-state'));
});

test('property: every honoured rr_ip of an extra range is given exactly, never twice, and never collides with pool addresses', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 254 }), fc.boolean()), { maxLength: 60 }), (ops) => {
    const ipam = new Ipam({}, { extraServicePools: ['172.20.7.0/24'] });
    const held = new Map<string, string>();
    ops.forEach(([host, ask], i) => {
      const job = `j${i}`;
      const want = ask ? `172.20.7.${host}` : undefined;
      const taken = want !== undefined && [...held.values()].includes(want);
      try {
        const a = ipam.allocateService(job, want === undefined ? {} : { rr_ip: want });
        assert.equal(taken, false);
        if (want !== undefined) assert.equal(a.rr_ip, want);
        held.set(job, a.rr_ip);
      } catch (e) {
        assert.ok(taken && code('conflict')(e));
      }
    });
    assert.equal(new Set(held.values()).size, held.size);
  }), { numRuns: 200 });
});
