/**
 * oakd's settings: the root's extra service ranges reach the 1-DOC too (--extra-service-ranges or
 * OAK_EXTRA_SERVICE_RANGES), checked the way oak-root checks them; bad values are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError, parseConfig } from '../src/config.ts';

test('--extra-service-ranges: parsed, normalised by the root\'s check, from the flag or the env', () => {
  const c = parseConfig(['--extra-service-ranges', '192.168.178.0/24, 172.20.0.0/16'], {});
  assert.ok(c !== 'help');
  assert.deepEqual(c.extraServiceRanges, ['192.168.178.0/24', '172.20.0.0/16']);
  const e = parseConfig([], { OAK_EXTRA_SERVICE_RANGES: '192.168.178.0/24' });
  assert.ok(e !== 'help');
  assert.deepEqual(e.extraServiceRanges, ['192.168.178.0/24']);
  const none = parseConfig([], {});
  assert.ok(none !== 'help');
  assert.equal(none.extraServiceRanges, undefined);
});

test('hostile --extra-service-ranges: not a CIDR, overlapping the service range, too long: a usage error naming the flag', () => {
  for (const bad of ['not-a-cidr', '10.30.0.0/24', '192.168.0.0/16,192.168.1.0/24', 'x'.repeat(1001)]) {
    assert.throws(() => parseConfig(['--extra-service-ranges', bad], {}), (err: unknown) => err instanceof UsageError && /--extra-service-ranges/.test(err.message), bad.slice(0, 40));
  }
});
