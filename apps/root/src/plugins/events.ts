/**
 * GET /api/events: server-sent events. Each OakEvent is sent as `event: <type>` + `data: <JSON>`;
 * a comment line every `heartbeatMs` keeps proxies from closing the stream. Non-Admins only get
 * events of their organisation's applications (and cluster events); roles without access to
 * applications get cluster events only. Auth: bearer header, or `?token=` for EventSource.
 */
import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import { OakError, type OakEvent } from '@oak/contracts';
import { APP_ROLES, type Principal } from '../auth/principal.ts';
import { orgIndex } from '../ops.ts';
import { errors } from '../schemas.ts';
import { who, type PluginOpts } from './types.ts';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

export interface EventsOpts extends PluginOpts {
  heartbeatMs: number;
  /** open event streams one user may hold (default DEFAULT_STREAMS_PER_USER) */
  maxStreamsPerUser?: number;
  /** open event streams in all (default DEFAULT_STREAMS_TOTAL) */
  maxStreams?: number;
}

export const DEFAULT_STREAMS_PER_USER = 16;
export const DEFAULT_STREAMS_TOTAL = 1000;

const EVENT_TYPES = ['instance', 'application', 'service', 'cluster'] as const;
/** sent only when asked for by name (`?types=metrics`): a reading per instance every few seconds is noise for `oak events` */
const OPT_IN_TYPES = ['metrics'] as const;
const KNOWN_TYPES = new Set<string>([...EVENT_TYPES, ...OPT_IN_TYPES]);

export const eventRoutes: FastifyPluginAsyncTypebox<EventsOpts> = async (app, { ctx, heartbeatMs, maxStreamsPerUser = DEFAULT_STREAMS_PER_USER, maxStreams = DEFAULT_STREAMS_TOTAL }) => {
  const open = new Set<ServerResponse>();
  /** open streams per user id */
  const perUser = new Map<string, number>();
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });

  async function visible(p: Principal, e: OakEvent): Promise<boolean> {
    if (e.type === 'cluster') return true;
    if (p.isAdmin) return true;
    if (!APP_ROLES.some((r) => p.roles.has(r))) return false;
    const index = orgIndex(ctx);
    let org = index.get(e.applicationID);
    if (org === undefined) {
      org = (await ctx.store.getApplication(e.applicationID))?.organization_id;
      if (org !== undefined) index.set(e.applicationID, org);
    }
    return org === p.orgId;
  }

  app.get(
    '/api/events',
    {
      config: { queryToken: true },
      schema: {
        tags: ['events'],
        summary: 'live events (text/event-stream): instance, application, service and cluster changes; instance readings on request',
        description:
          'Each event: `event: <type>` and `data: <OakEvent JSON>`. `?types=instance,cluster` filters; `metrics` (per-instance CPU and memory, every aggregate) comes only when named. Auth by bearer header or `?token=`.',
        querystring: Type.Object({
          token: Type.Optional(Type.String()),
          types: Type.Optional(Type.String({ maxLength: 200, description: 'comma-separated: instance, application, service, cluster, metrics' })),
        }),
        response: errors(400, 429),
      },
    },
    async (req, reply) => {
      const p = who(req);
      const wanted = new Set(
        (req.query.types ?? EVENT_TYPES.join(','))
          .split(',')
          .map((t) => t.trim())
          .filter((t) => KNOWN_TYPES.has(t)),
      );
      const uid = p.user.id;
      const mine = perUser.get(uid) ?? 0;
      if (mine >= maxStreamsPerUser || open.size >= maxStreams) {
        throw new OakError('OAK_TOO_MANY_STREAMS', mine >= maxStreamsPerUser ? `you already have ${mine} open event streams (at most ${maxStreamsPerUser})` : `the root serves ${open.size} event streams already (at most ${maxStreams})`, {
          hint: 'close another stream (one EventSource per tab is enough), then connect again',
        });
      }
      const socket = req.raw.socket;
      // the client may have gone while it was being authenticated: nothing to serve, nothing to leak
      if (socket.destroyed || req.raw.destroyed) return reply.hijack();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write('retry: 3000\n: connected\n\n');
      open.add(res);
      perUser.set(uid, mine + 1);
      let chain: Promise<void> = Promise.resolve();
      const unsubscribe = ctx.events.subscribe((e) => {
        if (!wanted.has(e.type)) return;
        chain = chain
          .then(async () => {
            if (!res.writableEnded && (await visible(p, e))) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
          })
          .catch((err: unknown) => req.log.warn({ err }, 'event filter failed'));
      });
      const heartbeat = setInterval(() => {
        if (!res.writableEnded) res.write(': ping\n\n');
      }, heartbeatMs);
      heartbeat.unref();
      // accounts: the stream ends when its token expires or the user is removed, demoted or logged out
      const release = ctx.streams?.open(p, (reason) => {
        if (!res.writableEnded) res.end(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
      });
      let ended = false;
      const done = (): void => {
        if (ended) return;
        ended = true;
        socket.off('close', done);
        clearInterval(heartbeat);
        unsubscribe();
        open.delete(res);
        release?.();
        const n = (perUser.get(uid) ?? 1) - 1;
        if (n <= 0) perUser.delete(uid);
        else perUser.set(uid, n);
        if (!res.writableEnded) res.end();
      };
      // the stream ends when the connection does: the socket's close is the one event that always
      // comes (a request body or a client gone within milliseconds made the others unreliable)
      res.once('close', done);
      socket.once('close', done);
      res.once('error', done);
      if (socket.destroyed || res.destroyed) done();
    },
  );
};
