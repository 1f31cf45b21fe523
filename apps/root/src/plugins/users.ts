/**
 * Users and organisations. Admin manages everything; an Organization_Admin manages the users of
 * its own organisation (and can never grant Admin); everyone may read and change their own user
 * (not its roles) and password.
 *
 * No user enumeration: a caller who may not manage users gets the same 403 for every name but
 * their own, whether it exists or not; an Organization_Admin gets the same 404 for a user of
 * another organisation as for a missing one.
 *
 * A password change, a role change and a deletion revoke every token of that user (the store
 * bumps token_version) and end the user's open event and log streams.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { ConflictError, ForbiddenError, NotFoundError, OakError, UnauthorizedError, type Role } from '@oak/contracts';
import type { OrganizationRow, UserRow } from '@oak/store';
import { checkPassword, hashPassword, verifyPassword } from '../auth/passwords.ts';
import { LoginLimiter } from '../auth/limiter.ts';
import { requireOrg, requireRole, type Principal } from '../auth/principal.ts';
import { organizationDoc, userDoc } from '../docs.ts';
import {
  DeletedSchema,
  IdParams,
  OrganizationBody,
  OrganizationDocSchema,
  PasswordBody,
  UserCreateBody,
  UserDocSchema,
  UserParams,
  UserUpdateBody,
  errors,
} from '../schemas.ts';
import type { RootContext } from '../context.ts';
import { ROOT_ORGANIZATION } from '../bootstrap.ts';
import { who, type RootPlugin } from './types.ts';

type RoleInput = Role | { name: Role };
function roleNames(input: RoleInput[]): Role[] {
  return [...new Set(input.map((r) => (typeof r === 'string' ? r : r.name)))];
}

/**
 * The user `idOrName` as `p` may see it: themself; for an Admin anyone; for an Organization_Admin
 * the users of its organisation (others are "not found", like missing ones); for anyone else
 * every other name is the same 403, so nothing tells whether it exists.
 */
/** the user `idOrName` names when `p` may look at it (itself; Organization_Admin: its organisation; Admin: any); undefined otherwise, missing or not allowed alike */
export async function userInReach(ctx: RootContext, p: Principal, idOrName: string): Promise<UserRow | undefined> {
  if (idOrName === p.user.id || idOrName === p.user.name) return p.user;
  if (!p.isAdmin && !p.roles.has('Organization_Admin')) return undefined;
  const u = (await ctx.store.getUser(idOrName)) ?? (await ctx.store.getUserByName(idOrName));
  return u === undefined || (!p.isAdmin && u.organization_id !== p.orgId) ? undefined : u;
}

/** userInReach, or 403 (no role to look at others) / 404 */
async function visibleUser(ctx: RootContext, p: Principal, idOrName: string): Promise<UserRow> {
  if (idOrName !== p.user.id && idOrName !== p.user.name && !p.isAdmin) requireRole(p, 'Organization_Admin');
  const u = await userInReach(ctx, p, idOrName);
  if (!u) throw new NotFoundError('user', idOrName);
  return u;
}

async function findOrganization(ctx: RootContext, idOrName: string): Promise<OrganizationRow> {
  const o = (await ctx.store.getOrganization(idOrName)) ?? (await ctx.store.getOrganizationByName(idOrName));
  if (!o) throw new NotFoundError('organization', idOrName);
  return o;
}

/** May `p` manage (change roles, delete, reset password of) `target`? */
function requireManage(p: Principal, target: UserRow): void {
  if (p.isAdmin) return;
  requireRole(p, 'Organization_Admin');
  requireOrg(p, target.organization_id, 'this user');
  if (target.roles.includes('Admin')) throw new ForbiddenError('only an Admin may manage an Admin');
}

function requireGrantable(p: Principal, roles: Role[]): void {
  if (!p.isAdmin && roles.includes('Admin')) throw new ForbiddenError('only an Admin may grant the Admin role');
}

/** What a new user is made from (POST /api/user/, Oakestra's POST /api/auth/register). */
export interface NewUser {
  name: string;
  password: string;
  email?: string | undefined;
  roles?: RoleInput[] | undefined;
  organization_id?: string | undefined;
  organization?: string | undefined;
}

/**
 * Creates a user as `p` may: in `p`'s organisation unless an Admin names another, with roles `p`
 * may grant (default Application_Provider). `p` null: a self-registration, always an
 * Application_Provider of `selfOrg`.
 */
export async function createUser(ctx: RootContext, p: Principal | null, b: NewUser, selfOrg?: string): Promise<{ user: UserRow; org: OrganizationRow }> {
  checkPassword(b.password);
  let org: OrganizationRow | undefined;
  if (p === null) org = await findOrganization(ctx, selfOrg ?? ROOT_ORGANIZATION);
  else if (b.organization_id !== undefined) org = await findOrganization(ctx, b.organization_id);
  else if (b.organization !== undefined) org = await findOrganization(ctx, b.organization);
  else org = await ctx.store.getOrganization(p.orgId);
  if (!org) throw new NotFoundError('organization', p?.orgId ?? '');
  if (p !== null) requireOrg(p, org.id, 'that organisation');
  const roles = p !== null && b.roles ? roleNames(b.roles) : (['Application_Provider'] as Role[]);
  if (roles.length === 0) throw new OakError('OAK_VALIDATION', 'a user needs at least one role', { path: 'roles' });
  if (p !== null) requireGrantable(p, roles);
  if (await ctx.store.getUserByName(b.name)) throw new ConflictError(`user ${b.name} already exists`, 'pick another name');
  const user = await ctx.store.createUser({
    name: b.name,
    email: b.email ?? null,
    roles,
    organization_id: org.id,
    password_hash: await hashPassword(b.password),
  });
  return { user, org };
}

export const userRoutes: RootPlugin = async (app, { ctx }) => {
  const limiter = (ctx.loginLimiter ??= new LoginLimiter());
  const endStreams = (userId: string, reason: string): void => void ctx.streams?.endUser(userId, reason);
  const orgNames = async (): Promise<Map<string, string>> => new Map((await ctx.store.listOrganizations()).map((o) => [o.id, o.name]));

  // ---- organisations
  // GET /api/organization/ is Oakestra's spelling of the same list
  for (const [path, summary] of [
    ['/api/organizations/', 'organisations (Admin: all; others: their own)'],
    ['/api/organization/', "Oakestra's list of organisations (the same as GET /api/organizations/)"],
  ] as const) {
    app.get(path, { schema: { tags: ['organizations'], summary, response: { 200: Type.Array(OrganizationDocSchema), ...errors() } } }, async (req) => {
      const p = who(req);
      const all = await ctx.store.listOrganizations();
      return all.filter((o) => p.isAdmin || o.id === p.orgId).map(organizationDoc);
    });
  }

  app.post(
    '/api/organization/',
    { schema: { tags: ['organizations'], summary: 'create an organisation (Admin)', body: OrganizationBody, response: { 200: OrganizationDocSchema, ...errors(403, 409, 422) } } },
    async (req, reply) => {
      const p = who(req);
      if (!p.isAdmin) throw new ForbiddenError('only an Admin may create organisations');
      if (await ctx.store.getOrganizationByName(req.body.name)) throw new ConflictError(`organisation ${req.body.name} already exists`);
      const o = await ctx.store.createOrganization(req.body.name);
      return reply.code(200).send(organizationDoc(o));
    },
  );

  app.get(
    '/api/organization/:id',
    { schema: { tags: ['organizations'], summary: 'one organisation (by id or name)', params: IdParams, response: { 200: OrganizationDocSchema, ...errors(403, 404) } } },
    async (req) => {
      const p = who(req);
      const o = await findOrganization(ctx, req.params.id);
      // another organisation answers like a missing one (nothing tells which names exist)
      if (!p.isAdmin && o.id !== p.orgId) throw new NotFoundError('organization', req.params.id);
      return organizationDoc(o);
    },
  );

  app.delete(
    '/api/organization/:id',
    { schema: { tags: ['organizations'], summary: 'delete an empty organisation (Admin)', params: IdParams, response: { 200: DeletedSchema, ...errors(403, 404, 409) } } },
    async (req) => {
      const p = who(req);
      if (!p.isAdmin) throw new ForbiddenError('only an Admin may delete organisations');
      const o = await findOrganization(ctx, req.params.id);
      if (o.id === p.orgId) throw new ConflictError('you cannot delete your own organisation');
      await ctx.store.deleteOrganization(o.id);
      return { deleted: o.id };
    },
  );

  // ---- users
  app.get(
    '/api/users/',
    {
      schema: {
        tags: ['users'],
        summary: 'users (Admin: all, or one organisation; Organization_Admin: its organisation)',
        querystring: Type.Object({ organization_id: Type.Optional(Type.String()) }),
        response: { 200: Type.Array(UserDocSchema), ...errors(403) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, 'Organization_Admin');
      const org = p.isAdmin ? req.query.organization_id : p.orgId;
      const [users, names] = await Promise.all([ctx.store.listUsers(org === undefined ? {} : { organization_id: org }), orgNames()]);
      return users.map((u) => userDoc(u, names.get(u.organization_id)));
    },
  );

  app.post(
    '/api/user/',
    { schema: { tags: ['users'], summary: 'create a user (Admin, Organization_Admin)', body: UserCreateBody, response: { 201: UserDocSchema, ...errors(403, 404, 409, 422) } } },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, 'Organization_Admin');
      const { user: u, org } = await createUser(ctx, p, req.body);
      req.log.info({ by: p.user.name, user: u.name }, 'user created');
      return reply.code(201).send(userDoc(u, org.name));
    },
  );

  app.get(
    '/api/user/:user',
    { schema: { tags: ['users'], summary: 'one user (by id or name): yourself, or as Admin / Organization_Admin', params: UserParams, response: { 200: UserDocSchema, ...errors(403, 404) } } },
    async (req) => {
      const p = who(req);
      const u = await visibleUser(ctx, p, req.params.user);
      return userDoc(u, (await ctx.store.getOrganization(u.organization_id))?.name);
    },
  );

  app.put(
    '/api/user/:user',
    { schema: { tags: ['users'], summary: 'change email (own user) or roles (Admin / Organization_Admin)', params: UserParams, body: UserUpdateBody, response: { 200: UserDocSchema, ...errors(403, 404, 422) } } },
    async (req) => {
      const p = who(req);
      const u = await visibleUser(ctx, p, req.params.user);
      const patch: Partial<Pick<UserRow, 'email' | 'roles'>> = {};
      if (req.body.email !== undefined) patch.email = req.body.email;
      if (req.body.roles !== undefined) {
        const roles = roleNames(req.body.roles);
        if (roles.length === 0) throw new OakError('OAK_VALIDATION', 'a user needs at least one role', { path: 'roles' });
        if (u.id === p.user.id && !p.isAdmin) throw new ForbiddenError('you cannot change your own roles');
        requireManage(p, u);
        requireGrantable(p, roles);
        if (u.id === p.user.id && !roles.includes('Admin')) throw new ConflictError('you cannot remove your own Admin role', 'let another Admin do it');
        patch.roles = roles;
      } else if (u.id !== p.user.id) {
        requireManage(p, u);
      }
      const updated = await ctx.store.updateUser(u.id, patch);
      if (updated.token_version !== u.token_version) endStreams(u.id, 'the roles of this user changed');
      return userDoc(updated, (await ctx.store.getOrganization(updated.organization_id))?.name);
    },
  );

  app.delete(
    '/api/user/:user',
    { schema: { tags: ['users'], summary: 'delete a user (Admin / Organization_Admin)', params: UserParams, response: { 200: DeletedSchema, ...errors(403, 404, 409) } } },
    async (req) => {
      const p = who(req);
      const u = await visibleUser(ctx, p, req.params.user);
      if (u.id === p.user.id) throw new ConflictError('you cannot delete yourself');
      requireManage(p, u);
      await ctx.store.deleteUser(u.id);
      endStreams(u.id, 'the user was removed');
      req.log.info({ by: p.user.name, user: u.name }, 'user deleted');
      return { deleted: u.id };
    },
  );

  // PUT is ours; POST /api/user/<name> with {oldPassword, newPassword} is Oakestra's form of it
  for (const [method, url] of [['PUT', '/api/user/:user/password'], ['POST', '/api/user/:user']] as const) {
    app.route({
      method,
      url,
      schema: {
        tags: ['users'],
        summary: method === 'PUT' ? 'change a password (your own with old_password, or as Admin / Organization_Admin)' : "Oakestra's password change: body {oldPassword, newPassword} (same rules as PUT /api/user/{user}/password)",
        params: UserParams,
        body: PasswordBody,
        response: { 200: Type.Object({ message: Type.String() }), ...errors(403, 404, 422, 429) },
      },
      ...(method === 'POST' ? { preValidation: oakestraPasswordBody } : {}),
      handler: async (req, reply) => {
        const p = who(req);
        const u = await visibleUser(ctx, p, req.params.user);
        checkPassword(req.body.password);
        if (u.id === p.user.id) {
          // the old password is guessed like a login: the same limits
          const wait = limiter.retryAfter(u.name, req.ip);
          if (wait > 0) {
            void reply.header('retry-after', String(wait));
            throw new OakError('OAK_RATE_LIMITED', 'too many wrong passwords: try again later', { hint: `wait ${wait} s (Retry-After)` });
          }
          if (req.body.old_password === undefined || !(await verifyPassword(u.password_hash, req.body.old_password))) {
            limiter.failed(u.name, req.ip);
            throw new UnauthorizedError('old_password is missing or wrong', 'OAK_INVALID_CREDENTIALS');
          }
          limiter.succeeded(u.name);
        } else {
          requireManage(p, u);
        }
        await ctx.store.updateUser(u.id, { password_hash: await hashPassword(req.body.password) });
        endStreams(u.id, 'the password of this user changed');
        return { message: `password of ${u.name} changed: every token of ${u.name} is revoked, log in again` };
      },
    });
  }
};

/** Oakestra's {oldPassword, newPassword} as our {old_password, password} (other bodies as they are) */
async function oakestraPasswordBody(req: FastifyRequest): Promise<void> {
  const b = req.body;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return;
  const o = b as Record<string, unknown>;
  if (o.newPassword !== undefined && o.password === undefined) o.password = o.newPassword;
  if (o.oldPassword !== undefined && o.old_password === undefined) o.old_password = o.oldPassword;
}
