/**
 * Access and refresh tokens: HS256 JWTs. Claims: `sub` (user id), `name`, `roles`, `org`
 * (organisation id) and `typ` (`access` | `refresh`), so one kind can never pass for the other, and
 * `ver`, the user's token_version when it was issued: logout, a password change and a role change
 * bump it, which kills every access and refresh token of that user at once (see `checkVersion`).
 */
import { createHmac, timingSafeEqual, webcrypto } from 'node:crypto';
import { SignJWT, UnsecuredJWT, jwtVerify, errors as joseErrors } from 'jose';
import { ROLES, UnauthorizedError, type Role, type TokenPair } from '@oak/contracts';
import type { UserRow } from '@oak/store';
import type { AuthSettings } from '../context.ts';

export const TOKEN_ISSUER = 'oak-root';

export type TokenKind = 'access' | 'refresh';

export interface TokenClaims {
  sub: string;
  name: string;
  roles: Role[];
  org: string;
  typ: TokenKind;
  /** the user's token_version at issue (tokens from before version 3 have none: 0) */
  ver: number;
  /** expiry, seconds since the epoch */
  exp: number;
}

/**
 * The HMAC key of a secret, imported once: jose imports a raw Uint8Array anew at every sign and
 * verify (an extra WebCrypto call, about half of a verify). Keyed by the array and checked
 * against a copy of its bytes, so a secret changed in place is imported again.
 */
const hmacKeys = new WeakMap<Uint8Array, { bytes: Uint8Array; key: Promise<webcrypto.CryptoKey> }>();
function hmacKey(secret: Uint8Array): Promise<webcrypto.CryptoKey> {
  const hit = hmacKeys.get(secret);
  if (hit !== undefined && timingSafeEqualBytes(hit.bytes, secret)) return hit.key;
  const bytes = new Uint8Array(secret);
  const key = webcrypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  const entry = { bytes, key };
  hmacKeys.set(secret, entry);
  key.catch(() => {
    if (hmacKeys.get(secret) === entry) hmacKeys.delete(secret);
  });
  return key;
}

function timingSafeEqualBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

async function sign(user: UserRow, typ: TokenKind, ttlSec: number, secret: Uint8Array): Promise<string> {
  return new SignJWT({ name: user.name, roles: user.roles, org: user.organization_id, typ, ver: user.token_version })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user.id)
    .setIssuer(TOKEN_ISSUER)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec)
    .sign(await hmacKey(secret));
}

export async function issueTokens(user: UserRow, auth: AuthSettings): Promise<TokenPair> {
  return {
    token: await sign(user, 'access', auth.accessTtlSec, auth.jwtSecret),
    refresh_token: await sign(user, 'refresh', auth.refreshTtlSec, auth.jwtSecret),
    expires_in: auth.accessTtlSec,
  };
}

/** the protected header of every token sign() makes, as SignJWT encodes it */
const OWN_HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
const NONE_HEADER = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');

/**
 * jose's verdict on a token of the shape sign() makes, without WebCrypto: jose's HMAC check is
 * a thread-pool job, which under load waited longer than the whole rest of a request's
 * authentication. Only a token with exactly sign()'s header and the canonical signature of this
 * secret is taken here; its claims go through jose's own claim checks (UnsecuredJWT.decode runs
 * the validation jwtVerify runs, with the same options and errors). Anything else answers
 * undefined and goes the jose way, so no token is judged differently.
 */
function verifyOwnShape(token: string, secret: Uint8Array): Record<string, unknown> | undefined {
  const parts = token.split('.');
  // an empty key is refused by WebCrypto (so jose refuses every token); it stays jose's to refuse
  if (secret.length === 0 || parts.length !== 3 || parts[0] !== OWN_HEADER) return undefined;
  const [, payload = '', signature = ''] = parts;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${OWN_HEADER}.${payload}`).digest('base64url'));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  return UnsecuredJWT.decode(`${NONE_HEADER}.${payload}.`, { issuer: TOKEN_ISSUER }).payload;
}

/** Verifies signature, issuer, expiry and kind; throws UnauthorizedError (OAK_TOKEN_EXPIRED when only the time is wrong). */
export async function verifyToken(token: string, kind: TokenKind, secret: Uint8Array): Promise<TokenClaims> {
  let payload: Record<string, unknown>;
  try {
    payload = verifyOwnShape(token, secret) ?? (await jwtVerify(token, await hmacKey(secret), { issuer: TOKEN_ISSUER, algorithms: ['HS256'] })).payload;
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) {
      throw new UnauthorizedError(`the ${kind} token has expired`, 'OAK_TOKEN_EXPIRED');
    }
    throw new UnauthorizedError(`the ${kind} token is not valid`);
  }
  const { sub, name, roles, org, typ, exp } = payload;
  const ver = payload.ver ?? 0;
  if (
    typ !== kind ||
    typeof ver !== 'number' ||
    typeof exp !== 'number' ||
    typeof sub !== 'string' ||
    typeof name !== 'string' ||
    typeof org !== 'string' ||
    !Array.isArray(roles) ||
    !roles.every((r) => (ROLES as readonly unknown[]).includes(r))
  ) {
    throw new UnauthorizedError(`the ${kind} token is not valid`);
  }
  return { sub, name, roles: roles as Role[], org, typ: kind, ver, exp };
}

/** Throws 401 when the token was issued before the user's last logout, password or role change. */
export function checkVersion(claims: TokenClaims, user: UserRow): void {
  if (claims.ver !== user.token_version) {
    throw new UnauthorizedError(`this ${claims.typ} token was revoked (logout, password or role change)`, 'OAK_UNAUTHORIZED');
  }
}
