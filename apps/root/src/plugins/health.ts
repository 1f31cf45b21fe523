/** GET /healthz: no auth; answers 200 while the store answers, 503 otherwise. */
import { Type } from '@sinclair/typebox';
import { ErrorSchema } from '../schemas.ts';
import type { RootPlugin } from './types.ts';

export const healthRoutes: RootPlugin = async (app, { ctx }) => {
  const started = ctx.startedAt ?? Date.now();
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        summary: 'liveness and store reachability (no auth)',
        response: {
          200: Type.Object({ status: Type.Literal('ok'), store: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]), uptime_s: Type.Number() }),
          503: ErrorSchema,
        },
      },
    },
    async (_req, reply) => {
      try {
        await ctx.store.getSetting('healthz');
      } catch (err) {
        _req.log.error({ err }, 'store check failed');
        return reply.code(503).send({ error: { code: 'OAK_UNAVAILABLE', message: 'the store does not answer', hint: 'check the database (DATABASE_URL) or the data directory' } });
      }
      return { status: 'ok' as const, store: ctx.store.kind, uptime_s: Math.round((Date.now() - started) / 100) / 10 };
    },
  );
};
