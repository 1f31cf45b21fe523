/**
 * Access and refresh tokens: HS256 JWTs. Claims: `sub` (user id), `name`, `roles`, `org`
 * (organisation id) and `typ` (`access` | `refresh`), so one kind can never pass for the other.
 */
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
}

async function sign(user: UserRow, typ: TokenKind, ttlSec: number, secret: Uint8Array): Promise<string> {
  return new SignJWT({ name: user.name, roles: user.roles, org: user.organization_id, typ })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user.id)
    .setIssuer(TOKEN_ISSUER)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec)
    .sign(secret);
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
    ({ payload } = await jwtVerify(token, secret, { issuer: TOKEN_ISSUER, algorithms: ['HS256'] }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) {
      throw new UnauthorizedError(`the ${kind} token has expired`, 'OAK_TOKEN_EXPIRED');
    }
    throw new UnauthorizedError(`the ${kind} token is not valid`);
  }
  const { sub, name, roles, org, typ } = payload;
  if (
    typ !== kind ||
    typeof sub !== 'string' ||
    typeof name !== 'string' ||
    typeof org !== 'string' ||
    !Array.isArray(roles) ||
    !roles.every((r) => (ROLES as readonly unknown[]).includes(r))
  ) {
    throw new UnauthorizedError(`the ${kind} token is not valid`);
  }
  return { sub, name, roles: roles as Role[], org, typ: kind };
}
