/** GET /api/audit: the audit trail (Admin), newest first, with filters and paging. */
import { Type } from '@sinclair/typebox';
import { ForbiddenError, OakError } from '@oak/contracts';
import type { AuditFilter } from '@oak/store';
import { errors } from '../schemas.ts';
import { who, type RootPlugin } from './types.ts';

export const AUDIT_LIMIT_MAX = 1000;

const AuditEntrySchema = Type.Object({
  seq: Type.Integer(),
  at: Type.String(),
  user_id: Type.Union([Type.String(), Type.Null()]),
  user_name: Type.Union([Type.String(), Type.Null()]),
  action: Type.String({ description: 'auth.login, auth.login_failed, auth.logout, or "<METHOD> <route pattern>"' }),
  method: Type.String(),
  route: Type.String(),
  target: Type.Union([Type.String(), Type.Null()]),
  status: Type.Integer(),
  error_code: Type.Union([Type.String(), Type.Null()]),
  address: Type.Union([Type.String(), Type.Null()]),
});

const AuditQuery = Type.Object({
  since: Type.Optional(Type.String({ maxLength: 40, description: 'ISO-8601 time: entries at or after' })),
  until: Type.Optional(Type.String({ maxLength: 40, description: 'ISO-8601 time: entries before' })),
  user: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'user name or id' })),
  action: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'substring of the action, case-insensitive (e.g. login, POST /api/application)' })),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `entries per page, 1..${AUDIT_LIMIT_MAX} (default 100)` })),
  before: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'the next page: entries with seq below this (next_before of the last page)' })),
});

function isoTime(v: string, name: string): string {
  const t = /^\d{4}-\d\d-\d\d([T ][\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw new OakError('OAK_BAD_REQUEST', `query parameter ${name}: not an ISO-8601 time: ${JSON.stringify(v.slice(0, 40))}`, { path: name, hint: 'e.g. 2026-12-01T10:00:00Z' });
  return new Date(t).toISOString();
}

export const auditRoutes: RootPlugin = async (app, { ctx }) => {
  app.get(
    '/api/audit',
    {
      schema: {
        tags: ['audit'],
        summary: 'the audit trail (Admin): who changed what, when, from where; newest first',
        description: 'Every change (non-GET request of a logged-in user, whatever its answer), login, failed login and logout. Bodies are never stored.',
        querystring: AuditQuery,
        response: { 200: Type.Object({ entries: Type.Array(AuditEntrySchema), next_before: Type.Union([Type.Integer(), Type.Null()]) }), ...errors(400, 403) },
      },
    },
    async (req) => {
      const p = who(req);
      if (!p.isAdmin) throw new ForbiddenError('only an Admin may read the audit trail');
      const q = req.query;
      const limit = q.limit === undefined ? 100 : Number(q.limit);
      if (limit < 1 || limit > AUDIT_LIMIT_MAX) throw new OakError('OAK_BAD_REQUEST', `query parameter limit: must be 1..${AUDIT_LIMIT_MAX}`, { path: 'limit' });
      const f: AuditFilter = { limit };
      if (q.since !== undefined) f.since = isoTime(q.since, 'since');
      if (q.until !== undefined) f.until = isoTime(q.until, 'until');
      if (q.user !== undefined) f.user = q.user;
      if (q.action !== undefined) f.action = q.action;
      if (q.before !== undefined) f.before = Number(q.before);
      await ctx.audit?.idle();
      const entries = await ctx.store.listAudit(f);
      const last = entries[entries.length - 1];
      return { entries, next_before: entries.length === limit && last !== undefined ? last.seq : null };
    },
  );
};
