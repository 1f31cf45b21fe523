/**
 * auth/tokens.ts without WebCrypto on the hot path. The HMAC key cache: a token verifies with the
 * secret it was signed with and with an equal copy of it, never with another secret, and a secret
 * changed in place is imported again (the cache is keyed by the array but checks its bytes). The
 * synchronous check of tokens of sign()'s shape: the same verdict as jose alone on every kind of
 * token, and no WebCrypto call for a good one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes, webcrypto } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { UnauthorizedError } from '@oak/contracts';
import type { UserRow } from '@oak/store';
import { TOKEN_ISSUER, issueTokens, verifyToken } from '../src/auth/tokens.ts';
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

/** what jose alone says about a token (the verdict before the fast path) */
async function joseVerdict(token: string, secret: Uint8Array): Promise<string> {
  try {
    const { payload } = await jwtVerify(token, secret, { issuer: TOKEN_ISSUER, algorithms: ['HS256'] });
    return `ok ${JSON.stringify(payload)}`;
  } catch (err) {
    return err instanceof joseErrors.JWTExpired ? 'expired' : 'invalid';
  }
}

async function ourVerdict(token: string, secret: Uint8Array): Promise<string> {
  try {
    const c = await verifyToken(token, 'access', secret);
    return `ok ${c.sub}`;
  } catch (err) {
    assert.ok(err instanceof UnauthorizedError);
    return err.code === 'OAK_TOKEN_EXPIRED' ? 'expired' : 'invalid';
  }
}

describe('token verification without WebCrypto (the shape sign() makes)', () => {
  const claims = { name: 'kim', roles: ['Admin'], org: 'o1', typ: 'access', ver: 0 };
  const make = async (secret: Uint8Array, edit: (j: SignJWT) => SignJWT = (j) => j, header: { alg: string; typ?: string } = { alg: 'HS256', typ: 'JWT' }) =>
    edit(new SignJWT(claims).setProtectedHeader(header).setSubject('u1').setIssuer(TOKEN_ISSUER).setIssuedAt().setExpirationTime(Math.floor(Date.now() / 1000) + 60)).sign(secret);
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

  test('agrees with jose on good, expired, foreign, tampered and odd tokens, and skips WebCrypto for good ones', async () => {
    const secret = new Uint8Array(randomBytes(32));
    const other = new Uint8Array(randomBytes(32));
    const good = await make(secret);
    const [h, p, sig] = good.split('.') as [string, string, string];
    const cases: [string, string][] = [
      ['good', good],
      ['expired', await make(secret, (j) => j.setExpirationTime(Math.floor(Date.now() / 1000) - 5))],
      ['not yet valid', await make(secret, (j) => j.setNotBefore(Math.floor(Date.now() / 1000) + 300))],
      ['other issuer', await make(secret, (j) => j.setIssuer('someone'))],
      ['other secret', await make(other)],
      ['tampered payload', `${h}.${b64({ ...claims, sub: 'u2', iss: TOKEN_ISSUER, exp: Math.floor(Date.now() / 1000) + 60 })}.${sig}`],
      ['tampered signature', `${h}.${p}.${sig.slice(0, -2)}${sig.endsWith('AA') ? 'BB' : 'AA'}`],
      ['signature with junk', `${h}.${p}.${sig}!`],
      ['header without typ', await make(secret, undefined, { alg: 'HS256' })],
      ['HS512', await make(new Uint8Array(randomBytes(64)), undefined, { alg: 'HS512', typ: 'JWT' })],
      ['alg none', `${b64({ alg: 'none' })}.${p}.`],
      ['payload not JSON', `${h}.${Buffer.from('nope').toString('base64url')}.${createHmac('sha256', secret).update(`${h}.${Buffer.from('nope').toString('base64url')}`).digest('base64url')}`],
      ['exp not a number', await make(secret, (j) => j.setExpirationTime(Math.floor(Date.now() / 1000) + 60)).then(() => {
        const body = b64({ ...claims, sub: 'u1', iss: TOKEN_ISSUER, exp: 'soon' });
        return `${h}.${body}.${createHmac('sha256', secret).update(`${h}.${body}`).digest('base64url')}`;
      })],
      ['two parts', `${h}.${p}`],
    ];
    for (const [what, token] of cases) {
      const want = await joseVerdict(token, secret);
      const got = await ourVerdict(token, secret);
      assert.equal(got.split(' ')[0], want.split(' ')[0], `${what}: jose says ${want}, verifyToken ${got}`);
    }
    assert.equal(await ourVerdict(good, secret), 'ok u1');
    assert.equal(await ourVerdict(await make(secret, (j) => j.setExpirationTime(Math.floor(Date.now() / 1000) - 5)), secret), 'expired');
    // the good token never reaches WebCrypto; one of another shape does (through jose)
    const noTyp = await make(secret, undefined, { alg: 'HS256' });
    const subtle = webcrypto.subtle as unknown as Record<'sign' | 'verify', (...a: unknown[]) => unknown>;
    const orig = { sign: subtle.sign, verify: subtle.verify };
    let calls = 0;
    subtle.sign = (...a) => (calls++, orig.sign.apply(webcrypto.subtle, a));
    subtle.verify = (...a) => (calls++, orig.verify.apply(webcrypto.subtle, a));
    try {
      await verifyToken(good, 'access', secret);
      assert.equal(calls, 0);
      assert.equal(await ourVerdict(noTyp, secret), 'ok u1');
      assert.ok(calls > 0, 'a token of another shape goes the jose way');
    } finally {
      subtle.sign = orig.sign;
      subtle.verify = orig.verify;
    }
  });

  test('an empty secret verifies nothing (as jose)', async () => {
    const empty = new Uint8Array(0);
    const body = Buffer.from(JSON.stringify({ ...claims, sub: 'u1', iss: TOKEN_ISSUER, exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url');
    const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
    const forged = `${h}.${body}.${createHmac('sha256', empty).update(`${h}.${body}`).digest('base64url')}`;
    assert.equal(await ourVerdict(forged, empty), 'invalid');
  });
});
