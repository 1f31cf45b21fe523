/**
 * POST /api/auth/login, /api/auth/refresh and /api/auth/logout (public routes: they check the
 * password or the token themselves).
 *
 * Login answers the same 401 (same body, and about the same time: an unknown user's password is
 * verified against a dummy hash) for an unknown user and a wrong password, and 429
 * OAK_RATE_LIMITED with Retry-After after too many failures per user name or per address.
 * Logout revokes every token of the user (the token_version goes up).
 */
import { Type } from '@sinclair/typebox';
import { OakError, UnauthorizedError } from '@oak/contracts';
import { verifyPassword, warmUp } from '../auth/passwords.ts';
import { bearerToken } from '../auth/principal.ts';
import { checkVersion, issueTokens, verifyToken, type TokenClaims } from '../auth/tokens.ts';
import { LoginLimiter } from '../auth/limiter.ts';
import { ErrorSchema, LoginBody, RefreshBody, TokenPairSchema } from '../schemas.ts';
import type { RootPlugin } from './types.ts';

const WRONG = 'wrong user name or password';

export const authRoutes: RootPlugin = async (app, { ctx }) => {
  const limiter = (ctx.loginLimiter ??= new LoginLimiter());
  void warmUp();

  app.post(
    '/api/auth/login',
    {
      schema: {
        tags: ['auth'],
        summary: 'log in with user name and password',
        description: 'Too many failures for one user name or from one address answer 429 OAK_RATE_LIMITED with Retry-After (seconds).',
        body: LoginBody,
        response: { 200: TokenPairSchema, 401: ErrorSchema, 422: ErrorSchema, 429: ErrorSchema },
      },
    },
    async (req, reply) => {
      const name = req.body.username;
      const wait = limiter.retryAfter(name, req.ip);
      if (wait > 0) {
        void reply.header('retry-after', String(wait));
        throw new OakError('OAK_RATE_LIMITED', 'too many failed logins: try again later', { hint: `wait ${wait} s (Retry-After) before the next attempt` });
      }
      const user = await ctx.store.getUserByName(name);
      const ok = await verifyPassword(user?.password_hash, req.body.password);
      req.audit = { userId: user?.id ?? null, userName: name };
      if (!user || !ok) {
        limiter.failed(name, req.ip);
        throw new UnauthorizedError(WRONG, 'OAK_INVALID_CREDENTIALS');
      }
      limiter.succeeded(name);
      req.log.info({ user: user.name }, 'login');
      return issueTokens(user, ctx.auth);
    },
  );

  app.post(
    '/api/auth/refresh',
    {
      schema: {
        tags: ['auth'],
        summary: 'trade a refresh token (body or bearer header) for a new token pair',
        description: 'A refresh token issued before the user logged out, changed the password or had the roles changed is refused (401).',
        body: Type.Union([RefreshBody, Type.Null()]),
        response: { 200: TokenPairSchema, 401: ErrorSchema, 422: ErrorSchema },
      },
    },
    async (req) => {
      const token = req.body?.refresh_token ?? bearerToken(req);
      if (token === undefined) throw new UnauthorizedError('a refresh token is required (body refresh_token or Authorization: Bearer)');
      const claims = await verifyToken(token, 'refresh', ctx.auth.jwtSecret);
      const user = await ctx.store.getUser(claims.sub);
      if (!user) throw new UnauthorizedError('the user of this token no longer exists');
      checkVersion(claims, user);
      return issueTokens(user, ctx.auth);
    },
  );

  app.post(
    '/api/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary: 'log out: revoke every access and refresh token of the user (all sessions)',
        description: 'Send the refresh token in the body (`refresh_token`) or an access token as bearer. Open event and log streams of the user end.',
        body: Type.Union([RefreshBody, Type.Null()]),
        response: { 200: Type.Object({ message: Type.String() }), 401: ErrorSchema, 422: ErrorSchema },
      },
    },
    async (req) => {
      let claims: TokenClaims;
      const refresh = req.body?.refresh_token;
      if (refresh !== undefined) claims = await verifyToken(refresh, 'refresh', ctx.auth.jwtSecret);
      else {
        const bearer = bearerToken(req);
        if (bearer === undefined) throw new UnauthorizedError('a token is required (body refresh_token or Authorization: Bearer)');
        claims = await verifyToken(bearer, 'access', ctx.auth.jwtSecret);
      }
      const user = await ctx.store.getUser(claims.sub);
      if (!user) throw new UnauthorizedError('the user of this token no longer exists');
      checkVersion(claims, user);
      await ctx.store.revokeUserTokens(user.id);
      ctx.streams?.endUser(user.id, 'logged out');
      req.audit = { userId: user.id, userName: user.name };
      req.log.info({ user: user.name }, 'logout');
      return { message: `logged out: every token of ${user.name} is revoked` };
    },
  );
};
