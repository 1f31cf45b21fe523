/**
 * The HMAC key cache of auth/tokens.ts: a token verifies with the secret it was signed with and
 * with an equal copy of it, never with another secret, and a secret changed in place is imported
 * again (the cache is keyed by the array but checks its bytes).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { UnauthorizedError } from '@oak/contracts';
import type { UserRow } from '@oak/store';
import { issueTokens, verifyToken } from '../src/auth/tokens.ts';
import type { AuthSettings } from '../src/context.ts';

const user: UserRow = { id: 'u1', name: 'kim', email: null, password_hash: 'x', roles: ['Admin'], organization_id: 'o1', created_at: '2026-01-01T00:00:00.000Z', token_version: 3 };
const settings = (secret: Uint8Array): AuthSettings => ({ jwtSecret: secret, accessTtlSec: 60, refreshTtlSec: 120 });

describe('token signing key', () => {
  test('verifies with the same secret and an equal copy; the kinds stay apart', async () => {
    const secret = new Uint8Array(randomBytes(32));
    const pair = await issueTokens(user, settings(secret));
    const a = await verifyToken(pair.token, 'access', secret);
    assert.deepEqual({ sub: a.sub, name: a.name, roles: a.roles, org: a.org, typ: a.typ, ver: a.ver }, { sub: 'u1', name: 'kim', roles: ['Admin'], org: 'o1', typ: 'access', ver: 3 });
    assert.equal((await verifyToken(pair.refresh_token, 'refresh', new Uint8Array(secret))).typ, 'refresh');
    await assert.rejects(verifyToken(pair.refresh_token, 'access', secret), UnauthorizedError);
  });

  test('another secret, or the same array changed in place, refuses the token', async () => {
    const secret = new Uint8Array(randomBytes(32));
    const pair = await issueTokens(user, settings(secret));
    await verifyToken(pair.token, 'access', secret); // cached now
    await assert.rejects(verifyToken(pair.token, 'access', new Uint8Array(randomBytes(32))), UnauthorizedError);
    secret[0] = (secret[0] ?? 0) ^ 0xff;
    await assert.rejects(verifyToken(pair.token, 'access', secret), UnauthorizedError);
    // tokens signed after the change verify with the changed secret
    const next = await issueTokens(user, settings(secret));
    assert.equal((await verifyToken(next.token, 'access', secret)).sub, 'u1');
  });
});
