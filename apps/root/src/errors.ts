/**
 * The one place where failures become HTTP answers in the SPEC §3 shape
 * `{ error: { code, message, path?, hint?, details? } }`. OakErrors keep their code; fastify's
 * own errors (body parsing, limits, content types) are mapped to our catalogue; anything else is
 * a 500 with a generic message (logged with its stack, never sent).
 */
import { OakError, type ErrorCode } from '@oak/contracts';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

function fastifyToOak(err: FastifyError): OakError | undefined {
  const code = err.code;
  switch (code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new OakError('OAK_MALFORMED_JSON', 'the request body is not valid JSON', { hint: 'send a JSON document with Content-Type: application/json' });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new OakError('OAK_BAD_REQUEST', 'the request body is empty but Content-Type is application/json', { hint: 'send a JSON document or no Content-Type' });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OakError('OAK_BODY_TOO_LARGE', 'the request body is too large', { hint: 'bodies are limited to 1 MiB' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new OakError('OAK_UNSUPPORTED_MEDIA_TYPE', `unsupported Content-Type`, { hint: 'send application/json' });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new OakError('OAK_BAD_REQUEST', 'the Content-Length does not match the body');
    default:
      break;
  }
  if (err instanceof SyntaxError && err.statusCode === 400) {
    return new OakError('OAK_MALFORMED_JSON', 'the request body is not valid JSON', { hint: 'send a JSON document with Content-Type: application/json' });
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const byStatus: Record<number, ErrorCode> = {
      401: 'OAK_UNAUTHORIZED',
      403: 'OAK_FORBIDDEN',
      404: 'OAK_NOT_FOUND',
      409: 'OAK_CONFLICT',
      413: 'OAK_BODY_TOO_LARGE',
      415: 'OAK_UNSUPPORTED_MEDIA_TYPE',
      422: 'OAK_VALIDATION',
    };
    return new OakError(byStatus[status] ?? 'OAK_BAD_REQUEST', err.message);
  }
  return undefined;
}

export function toOakError(err: unknown): OakError {
  if (err instanceof OakError) return err;
  if (err instanceof Error) {
    const mapped = fastifyToOak(err as FastifyError);
    if (mapped) return mapped;
  }
  return new OakError('OAK_INTERNAL', 'internal error', { hint: 'the root logged the details' });
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const oak = toOakError(err);
    if (oak.status >= 500) req.log.error({ err }, 'request failed');
    else req.log.debug({ code: oak.code }, oak.message);
    if (reply.sent || reply.raw.headersSent) return;
    void reply.code(oak.status).type('application/json; charset=utf-8').send(oak.toJSON());
  });
  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const e = new OakError('OAK_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`, { hint: 'the API is described at /api/docs' });
    void reply.code(404).send(e.toJSON());
  });
}
