import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ipam, IpamError } from '../src/index.ts';
import type { IpamState } from '../src/index.ts';

test('closest IPs: allocated with the service when asked, right after its rr IPs, released with it', () => {
  const ipam = new Ipam({ servicePool: '10.30.0.0/29', servicePoolV6: 'fdff::/125' });
  const s = ipam.allocateService('a', { closest: true });
  assert.deepEqual(s, { rr_ip: '10.30.0.1', rr_ip_v6: 'fdff::1', outsidePool: false, outsidePoolV6: false, closest_ip: '10.30.0.2', closest_ip_v6: 'fdff::2' });
  assert.deepEqual(ipam.allocateService('a', { closest: true }), s, 'idempotent');
  assert.deepEqual(ipam.allocateService('a'), s, 'a later call without the flag keeps them');
  assert.deepEqual(ipam.serviceAddresses('a'), s);
  assert.equal(ipam.ownerOf('10.30.0.2'), 'closest IP of service a');
  assert.equal(ipam.ownerOf('fdff::2'), 'closest IP of service a');
  assert.deepEqual(ipam.allocateInstance('a', 0), { ip: '10.30.0.3', ip_v6: 'fdff::3' });
  assert.throws(() => ipam.allocateService('b', { rr_ip: '10.30.0.2' }), (e) => e instanceof IpamError && e.code === 'conflict' && e.owner === 'closest IP of service a');
  assert.equal(ipam.releaseService('a'), true);
  assert.deepEqual(ipam.stats(), { workers: 0, services: 0, instances: 0, used4: 0, used6: 0 });
  assert.equal(ipam.allocateService('c', { closest: true }).closest_ip, '10.30.0.2', 'released and reused');
});

test('closest IPs: a service without them gets them on the next call; exhaustion changes nothing', () => {
  const ipam = new Ipam({ servicePool: '10.30.0.0/29', servicePoolV6: 'fdff::/125' });
  assert.equal(ipam.allocateService('old').closest_ip, undefined);
  for (let n = 0; n < 4; n++) ipam.allocateInstance('old', n);
  assert.equal(ipam.allocateService('old', { closest: true }).closest_ip, '10.30.0.6');
  const before = ipam.serialize();
  assert.throws(() => ipam.allocateService('new', { closest: true }), (e) => e instanceof IpamError && e.code === 'exhausted');
  assert.deepEqual(ipam.serialize(), before, 'nothing held after a refusal');
  const tight = new Ipam({ servicePool: '10.30.0.0/30', servicePoolV6: 'fdff::/125' });
  tight.allocateService('first');
  assert.throws(() => tight.allocateService('x', { closest: true }), (e) => e instanceof IpamError && e.code === 'exhausted');
  assert.equal(tight.serviceAddresses('x'), undefined);
  assert.equal(tight.allocateService('x').rr_ip, '10.30.0.2');
});

test('closest IPs: serialized, loaded back; an old state without them loads, and load(state, { closest: true }) fills them in', () => {
  const ipam = new Ipam();
  ipam.allocateService('a', { closest: true });
  ipam.allocateService('b');
  ipam.allocateInstance('a', 0);
  const state = JSON.parse(JSON.stringify(ipam.serialize())) as IpamState;
  assert.deepEqual(state.services, [
    { job: 'a', rr_ip: '10.30.0.1', rr_ip_v6: 'fdff::1', closest_ip: '10.30.0.2', closest_ip_v6: 'fdff::2' },
    { job: 'b', rr_ip: '10.30.0.3', rr_ip_v6: 'fdff::3' },
  ]);
  assert.deepEqual(Ipam.load(state).serialize(), state);
  const filled = Ipam.load(state, { closest: true });
  assert.deepEqual(filled.serviceAddresses('b'), { rr_ip: '10.30.0.3', rr_ip_v6: 'fdff::3', outsidePool: false, outsidePoolV6: false, closest_ip: '10.30.0.5', closest_ip_v6: 'fdff::5' });
  assert.equal(filled.serviceAddresses('a')?.closest_ip, '10.30.0.2');
  const old = { ...state, services: state.services.map(({ job, rr_ip, rr_ip_v6 }) => ({ job, rr_ip, rr_ip_v6 })) };
  assert.equal(Ipam.load(old).serviceAddresses('a')?.closest_ip, undefined);
  assert.equal(Ipam.load(old).allocateService('a', { closest: true }).closest_ip, '10.30.0.2');
  const full = new Ipam({ servicePool: '10.30.0.0/30' });
  full.allocateService('x');
  full.allocateService('y');
  assert.equal(Ipam.load(full.serialize(), { closest: true }).serviceAddresses('x')?.closest_ip, undefined, 'a full pool does not refuse the state');
});

test('closest IPs: hostile states are refused with invalid-state', () => {
  const ipam = new Ipam();
  ipam.allocateService('a', { closest: true });
  ipam.allocateService('b', { closest: true });
  ipam.allocateInstance('a', 0);
  const good = ipam.serialize();
  const mutate = (f: (s: IpamState) => void): unknown => {
    const s = JSON.parse(JSON.stringify(good)) as IpamState;
    f(s);
    return s;
  };
  const svc = (s: IpamState, i: number) => s.services[i] as IpamState['services'][number];
  const bad = [
    mutate((s) => { delete svc(s, 0).closest_ip_v6; }),
    mutate((s) => { svc(s, 0).closest_ip = '192.168.1.1'; }),
    mutate((s) => { svc(s, 0).closest_ip = '10.30.0.0'; }),
    mutate((s) => { svc(s, 0).closest_ip_v6 = 'fdff::ffff:ffff:ffff:ffff'; }),
    mutate((s) => { svc(s, 0).closest_ip = svc(s, 1).rr_ip; }),
    mutate((s) => { svc(s, 0).closest_ip = svc(s, 1).closest_ip as string; }),
    mutate((s) => { svc(s, 0).closest_ip = s.instances[0]?.ip as string; }),
    mutate((s) => { svc(s, 0).closest_ip = 'x'.repeat(1 << 16); }),
    mutate((s) => { (svc(s, 0) as unknown as Record<string, unknown>).closest_ip = 42; }),
    mutate((s) => { svc(s, 0).closest_ip_v6 = 'not-v6'; }),
  ];
  for (const s of bad) assert.throws(() => Ipam.load(s), (e) => e instanceof IpamError && e.code === 'invalid-state', JSON.stringify(s).slice(0, 200));
});

test('property: with closest IPs every address has exactly one owner and the state round-trips', () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('svc' as const), job: fc.nat(4), closest: fc.boolean() }),
    fc.record({ k: fc.constant('inst' as const), job: fc.nat(4), n: fc.nat(4) }),
    fc.record({ k: fc.constant('rel' as const), job: fc.nat(4) }),
  );
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
    const ipam = new Ipam({ servicePool: '10.30.0.0/28', servicePoolV6: 'fdff::/124' });
    for (const o of ops) {
      try {
        if (o.k === 'svc') ipam.allocateService(`j${o.job}`, { closest: o.closest });
        else if (o.k === 'inst') ipam.allocateInstance(`j${o.job}`, o.n);
        else ipam.releaseService(`j${o.job}`);
      } catch (e) {
        assert.ok(e instanceof IpamError && ['exhausted', 'unknown-service'].includes(e.code), String(e));
      }
      const s = ipam.serialize();
      const held = [...s.services.flatMap((x) => [x.rr_ip, x.closest_ip].filter((a): a is string => a !== undefined)), ...s.instances.map((x) => x.ip)];
      assert.equal(new Set(held).size, held.length, held.join(' '));
      assert.equal(ipam.stats().used4, held.length);
      for (const a of held) assert.notEqual(ipam.ownerOf(a), undefined);
    }
    const state = ipam.serialize();
    assert.deepEqual(Ipam.load(JSON.parse(JSON.stringify(state))).serialize(), state);
  }), { numRuns: 300 });
});
