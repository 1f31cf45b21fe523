import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { UnauthorizedError } from '@oak/contracts';
import type { Principal } from '../auth/principal.ts';
import type { RootContext } from '../context.ts';

export interface PluginOpts {
  ctx: RootContext;
}

/** One fastify plugin per concern; each gets the RootContext. */
export type RootPlugin = FastifyPluginAsyncTypebox<PluginOpts>;

/** The caller (routes behind the auth hook always have one). */
export function who(req: FastifyRequest): Principal {
  if (!req.principal) throw new UnauthorizedError();
  return req.principal;
}
