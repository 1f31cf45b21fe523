/**
 * Access and refresh tokens: HS256 JWTs. Claims: `sub` (user id), `name`, `roles`, `org`
 * (organisation id) and `typ` (`access` | `refresh`), so one kind can never pass for the other, and
 * `ver`, the user's token_version when it was issued: logout, a password change and a role change
 * bump it, which kills every access and refresh token of that user at once (see `checkVersion`).
 */
import { timingSafeEqual, webcrypto } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
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

/** Verifies signature, issuer, expiry and kind; throws UnauthorizedError (OAK_TOKEN_EXPIRED when only the time is wrong). */
export async function verifyToken(token: string, kind: TokenKind, secret: Uint8Array): Promise<TokenClaims> {
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, await hmacKey(secret), { issuer: TOKEN_ISSUER, algorithms: ['HS256'] }));
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
