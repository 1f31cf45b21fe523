/** POST /api/auth/login and /api/auth/refresh (public routes). */
import { Type } from '@sinclair/typebox';
import { UnauthorizedError } from '@oak/contracts';
import { verifyPassword } from '../auth/passwords.ts';
import { bearerToken } from '../auth/principal.ts';
import { issueTokens, verifyToken } from '../auth/tokens.ts';
import { ErrorSchema, LoginBody, RefreshBody, TokenPairSchema } from '../schemas.ts';
import type { RootPlugin } from './types.ts';

export const authRoutes: RootPlugin = async (app, { ctx }) => {
  app.post(
    '/api/auth/login',
    {
      schema: {
        tags: ['auth'],
        summary: 'log in with user name and password',
        body: LoginBody,
        response: { 200: TokenPairSchema, 401: ErrorSchema, 422: ErrorSchema },
      },
    },
    async (req) => {
      const user = await ctx.store.getUserByName(req.body.username);
      const ok = await verifyPassword(user?.password_hash, req.body.password);
      if (!user || !ok) throw new UnauthorizedError('wrong user name or password', 'OAK_INVALID_CREDENTIALS');
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
      return issueTokens(user, ctx.auth);
    },
  );
};
