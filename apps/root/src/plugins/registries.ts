/**
 * Private registries (docs/security.md, docs/api.md): an organisation's logins to container
 * registries. `GET /api/registries` lists them (never a password), `PUT /api/registries/{host}`
 * stores or replaces one, `DELETE /api/registries/{host}` removes it. Reading: Organization_Admin
 * and Application_Provider; changing: Organization_Admin; Admin for any organisation
 * (`?organization=<id or name>`, default its own). Every change is in the audit trail (the hook
 * records method, route and host, never the body).
 */
import { Type } from '@sinclair/typebox';
import {
  ForbiddenError,
  NotFoundError,
  OakError,
  REGISTRY_HOST_MAX,
  REGISTRY_PASSWORD_MAX,
  REGISTRY_USERNAME_MAX,
  registryHostProblem,
  registryLoginProblem,
} from '@oak/contracts';
import type { RegistryCredentialRow } from '@oak/store';
import { APP_ROLES, requireRole, type Principal } from '../auth/principal.ts';
import type { RootContext } from '../context.ts';
import { registryKey, sealPassword } from '../registries.ts';
import { errors } from '../schemas.ts';
import { who, type RootPlugin } from './types.ts';

/** logins one organisation may keep */
export const MAX_REGISTRY_LOGINS = 100;

export const RegistryDocSchema = Type.Object({
  host: Type.String(),
  username: Type.String(),
  organization_id: Type.String(),
  created_at: Type.String(),
  created_by: Type.Union([Type.String(), Type.Null()]),
  updated_at: Type.String(),
});

const RegistryBody = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: REGISTRY_USERNAME_MAX }),
    password: Type.String({ minLength: 1, maxLength: REGISTRY_PASSWORD_MAX, description: 'stored encrypted, never answered' }),
  },
  { additionalProperties: false },
);
const HostParams = Type.Object({ host: Type.String({ minLength: 1, maxLength: REGISTRY_HOST_MAX, description: 'registry host as in image references (127.0.0.1:5000, registry.example.com)' }) });
const OrgQuery = Type.Object({ organization: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Admin only: the organisation (id or name); default the caller\'s own' })) }, { additionalProperties: false });

export function registryDoc(r: RegistryCredentialRow) {
  return { host: r.host, username: r.username, organization_id: r.organization_id, created_at: r.created_at, created_by: r.created_by, updated_at: r.updated_at };
}

function checkHost(host: string): string {
  const problem = registryHostProblem(host);
  if (problem !== undefined) throw new OakError('OAK_VALIDATION', problem, { path: 'host', hint: 'e.g. PUT /api/registries/registry.example.com or /api/registries/127.0.0.1:5000' });
  return host;
}

async function orgOf(ctx: RootContext, p: Principal, wanted: string | undefined): Promise<string> {
  if (wanted === undefined || wanted === p.orgId) return p.orgId;
  if (!p.isAdmin) throw new ForbiddenError('only an Admin may manage the registry logins of another organisation');
  const o = (await ctx.store.getOrganization(wanted)) ?? (await ctx.store.getOrganizationByName(wanted));
  if (!o) throw new NotFoundError('organization', wanted);
  return o.id;
}

export const registryRoutes: RootPlugin = async (app, { ctx }) => {
  const { store } = ctx;

  app.get(
    '/api/registries',
    {
      schema: {
        tags: ['registries'],
        summary: "the organisation's registry logins (host and username; never the password)",
        querystring: OrgQuery,
        response: { 200: Type.Array(RegistryDocSchema), ...errors(403, 404) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const org = await orgOf(ctx, p, req.query.organization);
      return (await store.listRegistryCredentials(org)).map(registryDoc);
    },
  );

  app.get(
    '/api/registries/:host',
    {
      schema: {
        tags: ['registries'],
        summary: 'one registry login (never the password)',
        params: HostParams,
        querystring: OrgQuery,
        response: { 200: RegistryDocSchema, ...errors(403, 404, 422) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const host = checkHost(req.params.host);
      const org = await orgOf(ctx, p, req.query.organization);
      const row = await store.getRegistryCredential(org, host);
      if (!row) throw new NotFoundError('registry login', host, 'store one with `oak registry login <host>` (PUT /api/registries/{host})');
      return registryDoc(row);
    },
  );

  app.put(
    '/api/registries/:host',
    {
      schema: {
        tags: ['registries'],
        summary: 'store (or replace) the login to a registry host; deploys of images on that host pull with it',
        params: HostParams,
        querystring: OrgQuery,
        body: RegistryBody,
        response: { 200: RegistryDocSchema, 201: RegistryDocSchema, ...errors(403, 404, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, 'Organization_Admin');
      const host = checkHost(req.params.host);
      const { username, password } = req.body;
      const problem = registryLoginProblem(username, password);
      if (problem !== undefined) throw new OakError('OAK_VALIDATION', problem, { path: problem.startsWith('password') ? 'password' : 'username' });
      const org = await orgOf(ctx, p, req.query.organization);
      const existing = await store.getRegistryCredential(org, host);
      if (!existing && (await store.listRegistryCredentials(org)).length >= MAX_REGISTRY_LOGINS) {
        throw new OakError('OAK_LIMIT_EXCEEDED', `this organisation already has ${MAX_REGISTRY_LOGINS} registry logins`, { hint: 'remove the ones no longer needed with `oak registry logout <host>`' });
      }
      const secret = sealPassword(await registryKey(store), org, host, username, password);
      const { row, replaced } = await store.putRegistryCredential({ organization_id: org, host, username, secret, created_by: p.user.id });
      req.log.info({ registry: host, organization_id: org, username, replaced }, 'registry login stored');
      reply.code(replaced ? 200 : 201);
      return registryDoc(row);
    },
  );

  app.delete(
    '/api/registries/:host',
    {
      schema: {
        tags: ['registries'],
        summary: 'remove the login to a registry host',
        params: HostParams,
        querystring: OrgQuery,
        response: { 200: RegistryDocSchema, ...errors(403, 404, 422) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, 'Organization_Admin');
      const host = checkHost(req.params.host);
      const org = await orgOf(ctx, p, req.query.organization);
      const row = await store.getRegistryCredential(org, host);
      if (!row || !(await store.deleteRegistryCredential(org, host))) throw new NotFoundError('registry login', host, 'list them with `oak registry ls`');
      req.log.info({ registry: host, organization_id: org }, 'registry login removed');
      return registryDoc(row);
    },
  );
};
