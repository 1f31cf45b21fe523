import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OakError, formatJoinToken, parseJoinToken, tryParseJoinToken } from '../src/index.ts';

const caHash = 'ab'.repeat(32);
const secret = 'A'.repeat(20) + '-_' + 'z9'.repeat(5);

test('join token: format and parse round trip, kind checked', () => {
  const text = formatJoinToken({ kind: 'worker', id: 'abcd1234', secret, caHash });
  assert.equal(text, `oak1.w.abcd1234.${secret}.${caHash}`);
  assert.deepEqual(parseJoinToken(text, 'worker'), { kind: 'worker', id: 'abcd1234', secret, caHash });
  assert.throws(() => parseJoinToken(text, 'cluster'), (e: unknown) => e instanceof OakError && e.code === 'OAK_VALIDATION' && /worker join token/.test(e.message));
});

test('join token: anything else is refused with a hint', () => {
  for (const bad of ['', 'oak1', `oak1.x.abcd1234.${secret}.${caHash}`, `oak1.c.ABCD1234.${secret}.${caHash}`, `oak1.c.abcd1234.short.${caHash}`, `oak1.c.abcd1234.${secret}.${caHash.slice(2)}`, `oak2.c.abcd1234.${secret}.${caHash}`]) {
    assert.equal(tryParseJoinToken(bad), undefined, bad);
    assert.throws(() => parseJoinToken(bad), (e: unknown) => e instanceof OakError && e.hint !== undefined && /oak token create/.test(e.hint));
  }
});
