/**
 * Join tokens (docs/security.md): `POST /api/tokens` creates one and answers it once,
 * `GET /api/tokens` lists them without secrets, `DELETE /api/tokens/{id}` revokes. Admin and
 * Infrastructure_Provider only. Token texts are never logged (the request log has no bodies).
 */
import { Type } from '@sinclair/typebox';
import { JOIN_TOKEN_ID_PATTERN, NotFoundError, OakError } from '@oak/contracts';
import type { JoinTokenRow } from '@oak/store';
import { requireRole } from '../auth/principal.ts';
import { errors } from '../schemas.ts';
import { mintJoinToken, rootTrust, tokenState } from '../trust.ts';
import { who, type RootPlugin } from './types.ts';

/** at most this many tokens that are neither revoked nor expired */
export const MAX_ACTIVE_TOKENS = 1000;
export const MAX_TOKEN_TTL_S = 366 * 24 * 3600;
export const CLUSTER_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';

const ClusterName = (description: string) => Type.String({ pattern: CLUSTER_NAME_PATTERN, description });

export const TokenCreateBody = Type.Object(
  {
    kind: Type.Union([Type.Literal('cluster'), Type.Literal('worker')], { description: 'cluster: joins a cluster to this root; worker: joins workers to a cluster' }),
    name: Type.Optional(ClusterName('cluster tokens: the cluster name to bind it to (else bound at first use)')),
    cluster: Type.Optional(ClusterName('worker tokens: the cluster the workers join (required)')),
    ttl_s: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_TOKEN_TTL_S, description: 'seconds until it expires (default: never)' })),
  },
  { additionalProperties: false },
);

export const TokenDocSchema = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('cluster'), Type.Literal('worker')]),
  name: Type.Union([Type.String(), Type.Null()], { description: 'cluster tokens: the bound cluster name' }),
  cluster: Type.Union([Type.String(), Type.Null()], { description: 'worker tokens: their cluster' }),
  state: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
  created_by: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  expires_at: Type.Union([Type.String(), Type.Null()]),
  revoked_at: Type.Union([Type.String(), Type.Null()]),
  last_used_at: Type.Union([Type.String(), Type.Null()]),
  uses: Type.Integer(),
});

export const TokenCreatedSchema = Type.Composite([
  TokenDocSchema,
  Type.Object({
    token: Type.String({ description: 'the join token; shown only in this answer' }),
    ca_sha256: Type.String({ description: "SHA-256 of the root CA's certificate (also inside the token)" }),
  }),
]);

const TokenParams = Type.Object({ id: Type.String({ pattern: JOIN_TOKEN_ID_PATTERN, description: 'token id (8 characters a-z0-9)' }) });

export function tokenDoc(r: JoinTokenRow, now = Date.now()) {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    cluster: r.cluster,
    state: tokenState(r, now),
    created_by: r.created_by,
    created_at: r.created_at,
    expires_at: r.expires_at,
    revoked_at: r.revoked_at,
    last_used_at: r.last_used_at,
    uses: r.uses,
  };
}

const ROLES_HINT = 'join tokens are managed by Admin and Infrastructure_Provider users';

export const tokenRoutes: RootPlugin = async (app, { ctx }) => {
  const { store } = ctx;

  app.post(
    '/api/tokens',
    {
      schema: {
        tags: ['tokens'],
        summary: 'create a join token (shown once in this answer)',
        body: TokenCreateBody,
        response: { 201: TokenCreatedSchema, ...errors(403, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, 'Infrastructure_Provider');
      const b = req.body;
      if (b.kind === 'worker' && b.cluster === undefined) {
        throw new OakError('OAK_VALIDATION', 'a worker token needs the cluster its workers join', { path: 'cluster', hint: 'send {"kind":"worker","cluster":"<cluster name>"}' });
      }
      if (b.kind === 'worker' && b.name !== undefined) {
        throw new OakError('OAK_VALIDATION', 'name is for cluster tokens; worker tokens take cluster', { path: 'name' });
      }
      if (b.kind === 'cluster' && b.cluster !== undefined) {
        throw new OakError('OAK_VALIDATION', 'cluster is for worker tokens; cluster tokens take name', { path: 'cluster' });
      }
      const now = Date.now();
      const active = (await store.listJoinTokens()).filter((t) => tokenState(t, now) === 'active').length;
      if (active >= MAX_ACTIVE_TOKENS) {
        throw new OakError('OAK_LIMIT_EXCEEDED', `there are already ${active} active join tokens (limit ${MAX_ACTIVE_TOKENS})`, {
          hint: 'revoke the ones no longer needed with DELETE /api/tokens/{id} (oak token revoke <id>)',
        });
      }
      const trust = await rootTrust(ctx);
      const { row, token } = await mintJoinToken(store, trust, {
        kind: b.kind,
        name: b.name ?? null,
        cluster: b.cluster ?? null,
        ttlSec: b.ttl_s ?? null,
        createdBy: p.user.id,
      });
      req.log.info({ token_id: row.id, kind: row.kind, name: row.name, cluster: row.cluster, expires_at: row.expires_at }, 'join token created');
      reply.code(201);
      return { ...tokenDoc(row), token, ca_sha256: trust.caHash };
    },
  );

  app.get(
    '/api/tokens',
    { schema: { tags: ['tokens'], summary: 'every join token, without secrets', response: { 200: Type.Array(TokenDocSchema), ...errors(403) } } },
    async (req) => {
      requireRole(who(req), 'Infrastructure_Provider');
      const now = Date.now();
      return (await store.listJoinTokens()).map((r) => tokenDoc(r, now));
    },
  );

  app.delete(
    '/api/tokens/:id',
    {
      schema: {
        tags: ['tokens'],
        summary: 'revoke a join token (workers that joined with it lose their MQTT credentials at once)',
        params: TokenParams,
        response: { 200: TokenDocSchema, ...errors(403, 404) },
      },
    },
    async (req) => {
      requireRole(who(req), 'Infrastructure_Provider');
      const before = await store.getJoinToken(req.params.id);
      if (!before) throw new NotFoundError('join token', req.params.id, `list them with GET /api/tokens (${ROLES_HINT})`);
      const row = await store.revokeJoinToken(req.params.id);
      if (before.revoked_at === null) {
        req.log.info({ token_id: row.id, kind: row.kind }, 'join token revoked');
        try {
          ctx.tokenRevoked?.(row);
        } catch (err) {
          req.log.error({ err, token_id: row.id }, 'telling the clusters about a revoked token failed');
        }
      }
      return tokenDoc(row);
    },
  );
};
