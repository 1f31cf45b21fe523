/** An instance's `publicip` (Oakestra's field, issue 12 point 2): which address it is. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { publicAddress } from '../src/cluster.ts';

test("publicip: the NetManager's NodePublicAddress first, else the address the worker registered from", () => {
  assert.equal(publicAddress('192.0.2.7', '10.0.0.9'), '192.0.2.7');
  assert.equal(publicAddress(null, '10.0.0.9'), '10.0.0.9');
  assert.equal(publicAddress(undefined, '::ffff:10.0.0.9'), '10.0.0.9', 'IPv4-mapped IPv6 as IPv4');
  assert.equal(publicAddress('', 'fd00::5'), 'fd00::5');
  assert.equal(publicAddress(null, undefined), undefined, 'unknown: left out, not invented');
  assert.equal(publicAddress(null, ''), undefined);
});
