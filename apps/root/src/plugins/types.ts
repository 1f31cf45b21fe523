import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { UnauthorizedError } from '@oak/contracts';
import type { Principal } from '../auth/principal.ts';
import type { RootContext } from '../context.ts';

export interface PluginOpts {
  ctx: RootContext;
  /** caps on streams (defaults in app.ts) */
  limits?: StreamLimits;
}

/** How many long-lived answers one caller, one worker and the root hold open at most. */
export interface StreamLimits {
  /** log answers (follow or not) one user may have open */
  logStreamsPerUser: number;
  /** log answers open for the instances of one worker */
  logStreamsPerWorker: number;
  /** log answers open in all */
  logStreams: number;
  /** comment period of a log follow sent as server-sent events (ms) */
  logHeartbeatMs?: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { logStreamsPerUser: 8, logStreamsPerWorker: 16, logStreams: 256, logHeartbeatMs: 15_000 };

/** One fastify plugin per concern; each gets the RootContext. */
export type RootPlugin = FastifyPluginAsyncTypebox<PluginOpts>;

/** The caller (routes behind the auth hook always have one). */
export function who(req: FastifyRequest): Principal {
  if (!req.principal) throw new UnauthorizedError();
  return req.principal;
}
