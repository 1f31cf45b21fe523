/**
 * Who is calling, and what they may do. Every protected route gets a Principal from the bearer
 * token (re-read from the store, so a deleted user or a changed role takes effect at once).
 *
 * Roles:
 * - Admin: everything, every organisation.
 * - Organization_Admin: users and applications of its own organisation.
 * - Application_Provider: applications, services and instances of its own organisation.
 * - Infrastructure_Provider: clusters (read).
 * Every authenticated user may read clusters and its own user.
 */
import { ForbiddenError, UnauthorizedError, type Role } from '@oak/contracts';
import type { UserRow } from '@oak/store';
import type { FastifyRequest } from 'fastify';
import type { RootContext } from '../context.ts';
import { checkVersion, verifyToken } from './tokens.ts';

export interface Principal {
  user: UserRow;
  roles: ReadonlySet<Role>;
  orgId: string;
  isAdmin: boolean;
  /** expiry of the access token the request came with (seconds since the epoch), for streams */
  tokenExp?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** accept `?token=` as well as the Authorization header (EventSource cannot set headers) */
    queryToken?: boolean;
    /** no token needed */
    public?: boolean;
  }
}

export function principalOf(user: UserRow): Principal {
  const roles = new Set(user.roles);
  return { user, roles, orgId: user.organization_id, isAdmin: roles.has('Admin') };
}

export function bearerToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    return m?.[1];
  }
  return undefined;
}

export async function authenticate(req: FastifyRequest, ctx: RootContext): Promise<Principal> {
  let token = bearerToken(req);
  if (token === undefined && req.routeOptions.config.queryToken === true) {
    const q = req.query as Record<string, unknown> | undefined;
    if (typeof q?.token === 'string' && q.token !== '') token = q.token;
  }
  if (token === undefined) {
    throw new UnauthorizedError(req.headers.authorization === undefined ? 'a bearer token is required' : 'the Authorization header must be "Bearer <token>"');
  }
  const claims = await verifyToken(token, 'access', ctx.auth.jwtSecret);
  const user = await ctx.store.getUser(claims.sub);
  if (!user) throw new UnauthorizedError('the user of this token no longer exists');
  checkVersion(claims, user);
  return { ...principalOf(user), tokenExp: claims.exp };
}

/** Throws 403 unless the caller is Admin or has one of `roles`. */
export function requireRole(p: Principal, ...roles: Role[]): void {
  if (p.isAdmin) return;
  if (roles.some((r) => p.roles.has(r))) return;
  throw new ForbiddenError(`this needs one of the roles ${['Admin', ...roles].join(', ')}`);
}

/** Throws 403 unless the caller is Admin or belongs to `orgId`. */
export function requireOrg(p: Principal, orgId: string, what = 'this resource'): void {
  if (p.isAdmin || p.orgId === orgId) return;
  throw new ForbiddenError(`${what} is not in your organisation`);
}

/** Roles that work with applications, services and instances. */
export const APP_ROLES: Role[] = ['Organization_Admin', 'Application_Provider'];
