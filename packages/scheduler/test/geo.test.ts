import { test } from 'node:test';
import assert from 'node:assert/strict';
import { distanceToAreaKm, estimateRttMs, formatGeoPoint, haversineKm, parseGeoPoint } from '../src/index.ts';

test('haversine: Munich-Berlin is about 504 km, symmetric, zero to itself', () => {
  const m = { lat: 48.137, long: 11.575 };
  const b = { lat: 52.52, long: 13.405 };
  const d = haversineKm(m, b);
  assert.ok(Math.abs(d - 504) < 3, `got ${d}`);
  assert.equal(haversineKm(b, m), d);
  assert.equal(haversineKm(m, m), 0);
  // antipodes: half the circumference
  assert.ok(Math.abs(haversineKm({ lat: 0, long: 0 }, { lat: 0, long: 180 }) - 20015) < 5);
});

test('distance to an area subtracts its radius, never below 0', () => {
  const m = { lat: 48.137, long: 11.575 };
  const b = { lat: 52.52, long: 13.405, radius_km: 100 };
  assert.ok(Math.abs(distanceToAreaKm(m, b) - (haversineKm(m, b) - 100)) < 1e-9);
  assert.equal(distanceToAreaKm(m, { ...m, radius_km: 5 }), 0);
});

test('latency model: 1 ms per 100 km plus 1 ms', () => {
  assert.equal(estimateRttMs(0), 1);
  assert.equal(estimateRttMs(500), 6);
});

test('parseGeoPoint reads lat,long and lat,long,radius; rejects free text and out of range', () => {
  assert.deepEqual(parseGeoPoint('48.1,11.5'), { lat: 48.1, long: 11.5 });
  assert.deepEqual(parseGeoPoint(' -33.9 , 151.2 , 25 '), { lat: -33.9, long: 151.2, radius_km: 25 });
  assert.equal(parseGeoPoint('Munich'), null);
  assert.equal(parseGeoPoint('91,0'), null);
  assert.equal(parseGeoPoint('0,181'), null);
  assert.equal(parseGeoPoint('1,2,-3'), null);
  assert.equal(parseGeoPoint('1,2,3,4'), null);
  assert.equal(parseGeoPoint(''), null);
  assert.equal(parseGeoPoint(null), null);
  assert.equal(formatGeoPoint({ lat: 1, long: 2, radius_km: 3 }), '1,2,3');
});
