/**
 * Oakestra's root API paths that have no twin among ours (issue 12; docs/api.md, "Oakestra
 * compatibility"): an Oakestra client (its CLI, dashboard or scripts) switches without changing a
 * request. Each answers with Oakestra's shape and status code, inside our rules: organisation
 * isolation, roles, input limits, no user enumeration.
 *
 * - POST /api/auth/register: an Admin or Organization_Admin creates a user (Oakestra's form of
 *   POST /api/user/); without a token only when the operator enabled self-registration
 *   (--self-registration / OAK_SELF_REGISTRATION), and then always an Application_Provider of
 *   the configured organisation, rate-limited per address.
 * - GET /api/permission/<username>: `{ roles }` of yourself (Admin: anyone).
 * - GET /api/applications/<userid>: the applications of that user (yourself; Admin: anyone;
 *   Organization_Admin: users of its organisation); anyone else 401 as in Oakestra.
 * - GET /api/services/: every service you may see (Oakestra: Admin only, every service).
 * - GET /api/users/<organization_id>: the users of one organisation.
 * - GET /api/organization/: the organisations you may see (ours: GET /api/organizations/).
 */
import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { ForbiddenError, NotFoundError, OakError, UnauthorizedError } from '@oak/contracts';
import type { ApplicationRow } from '@oak/store';
import { BoundedCounter, LoginLimiter } from '../auth/limiter.ts';
import { APP_ROLES, authenticate, requireRole, type Principal } from '../auth/principal.ts';
import { applicationDoc, loadServiceJson, userDoc } from '../docs.ts';
import { ApplicationDocSchema, RoleSchema, ServiceDocSchema, ServiceDocShellSchema, UserCreateBody, UserDocSchema, errors } from '../schemas.ts';
import { createUser, userInReach } from './users.ts';
import { who, type RootPlugin } from './types.ts';

/** at most this many self-registrations per address and hour */
export const SELF_REGISTRATIONS_PER_HOUR = 5;

const UserIdParams = Type.Object({ userid: Type.String({ minLength: 1, maxLength: 128 }) });
const UsernameParams = Type.Object({ username: Type.String({ minLength: 1, maxLength: 128 }) });
const OrgIdParams = Type.Object({ organization_id: Type.String({ minLength: 1, maxLength: 128 }) });

/** Oakestra's register, a public route: it authenticates by itself when a token comes along. */
export const oakestraPublicRoutes: RootPlugin = async (app, { ctx }) => {
  ctx.loginLimiter ??= new LoginLimiter();
  // self-registrations per address in an hour's window
  const selfLimiter = new BoundedCounter(SELF_REGISTRATIONS_PER_HOUR, 3_600_000, 10_000);
  app.post(
    '/api/auth/register',
    {
      schema: {
        tags: ['auth'],
        summary: "Oakestra's user registration",
        description:
          'With a bearer token of an Admin or Organization_Admin: creates a user like POST /api/user/ (body `name`, `password`, `roles`). ' +
          'Without a token: only when the root runs with --self-registration; the user is an Application_Provider of the configured organisation.',
        body: UserCreateBody,
        response: { 200: UserDocSchema, ...errors(401, 403, 404, 409, 422, 429) },
      },
    },
    async (req, reply) => {
      let p: Principal | null = null;
      if (req.headers.authorization !== undefined) {
        p = await authenticate(req, ctx);
        requireRole(p, 'Organization_Admin');
      } else {
        const org = ctx.selfRegistration;
        if (org === undefined) {
          throw new OakError('OAK_FORBIDDEN', 'self-registration is off on this root', { hint: 'ask an administrator for an account, or log in as one and send the bearer token' });
        }
        const now = Date.now();
        const wait = Math.ceil(selfLimiter.blockedFor(req.ip, now) / 1000);
        if (wait <= 0) selfLimiter.add(req.ip, now);
        if (wait > 0) {
          void reply.header('retry-after', String(wait));
          throw new OakError('OAK_RATE_LIMITED', 'too many registrations from this address: try again later', { hint: `wait ${wait} s (Retry-After)` });
        }
        if (req.body.roles !== undefined && req.body.roles.length > 0) {
          throw new OakError('OAK_FORBIDDEN', 'a self-registered user cannot choose roles', { path: 'roles', hint: 'leave roles out: self-registered users are Application_Providers' });
        }
      }
      const { user, org } = await createUser(ctx, p, req.body, p === null ? ctx.selfRegistration : undefined);
      req.audit = { userId: p?.user.id ?? user.id, userName: p?.user.name ?? user.name };
      req.log.info({ by: p?.user.name ?? '(self-registration)', user: user.name }, 'user registered');
      return userDoc(user, org.name);
    },
  );
};

export const oakestraRoutes: RootPlugin = async (app, { ctx }) => {
  const { store } = ctx;

  app.get(
    '/api/permission/:username',
    {
      schema: {
        tags: ['users'],
        summary: "Oakestra's roles of a user: yours (Admin: anyone's)",
        params: UsernameParams,
        response: { 200: Type.Object({ roles: Type.Array(RoleSchema) }), ...errors(403, 404) },
      },
    },
    async (req) => {
      const p = who(req);
      const name = req.params.username;
      if (name === p.user.name || name === p.user.id) return { roles: [...p.user.roles] };
      if (!p.isAdmin) throw new ForbiddenError('you may read your own roles only');
      const u = (await store.getUserByName(name)) ?? (await store.getUser(name));
      if (u === undefined) throw new NotFoundError('user', name);
      return { roles: [...u.roles] };
    },
  );

  app.get(
    '/api/applications/:userid',
    {
      schema: {
        tags: ['applications'],
        summary: "Oakestra's applications of one user (yourself; Admin: anyone; Organization_Admin: its organisation's users)",
        params: UserIdParams,
        response: { 200: Type.Array(ApplicationDocSchema), ...errors(401, 403) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const u = await userInReach(ctx, p, req.params.userid);
      // Oakestra answers 401 for another user's id; a missing one answers the same (no enumeration)
      if (u === undefined) throw new UnauthorizedError('these are not your applications', 'OAK_UNAUTHORIZED');
      const apps = (await store.listApplications({ organization_id: u.organization_id })).filter((a: ApplicationRow) => a.user_id === u.id);
      const services = await store.listServices({ organization_id: u.organization_id });
      const byApp = new Map<string, string[]>();
      for (const s of services) byApp.set(s.application_id, [...(byApp.get(s.application_id) ?? []), s.id]);
      return apps.map((a) => applicationDoc(a, byApp.get(a.id) ?? []));
    },
  );

  app.get(
    '/api/services/',
    {
      schema: {
        tags: ['services'],
        summary: 'every service of your organisation with its instances (Admin: of every organisation)',
        response: { 200: Type.Array(ServiceDocSchema), ...errors(403) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const filter = p.isAdmin ? {} : { organization_id: p.orgId };
      const [apps, services] = await Promise.all([store.listApplications(filter), store.listServices(filter)]);
      const byId = new Map(apps.map((a) => [a.id, a]));
      const ser = reply.compileSerializationSchema(ServiceDocShellSchema);
      const usage = ctx.usage;
      // streamed a service at a time, as the client reads (10,000 instances are about 120 MB of JSON: one string of it doubled the root's RSS)
      async function* body(): AsyncGenerator<string> {
        let sep = '[';
        for (const s of services) {
          const a = byId.get(s.application_id);
          if (a === undefined) continue;
          yield sep + (await loadServiceJson(ser, store, s, a, usage));
          sep = ',';
        }
        yield sep === '[' ? '[]' : ']';
      }
      return reply.type('application/json; charset=utf-8').send(Readable.from(body()) as never); // text, not the schema's objects
    },
  );

  app.get(
    '/api/users/:organization_id',
    {
      schema: {
        tags: ['users'],
        summary: "Oakestra's users of one organisation, by id or name (Admin; Organization_Admin: its own)",
        params: OrgIdParams,
        response: { 200: Type.Array(UserDocSchema), ...errors(403, 404) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, 'Organization_Admin');
      const ref = req.params.organization_id;
      const o = (await store.getOrganization(ref)) ?? (await store.getOrganizationByName(ref));
      // another organisation answers like a missing one
      if (o === undefined || (!p.isAdmin && o.id !== p.orgId)) throw new NotFoundError('organization', ref);
      return (await store.listUsers({ organization_id: o.id })).map((u) => userDoc(u, o.name));
    },
  );
};
