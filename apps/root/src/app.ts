/**
 * The root orchestrator's HTTP API (SPEC §3) as a fastify instance, without listening: tests
 * drive it with inject(), `startRoot` (server.ts) binds it to a port.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { JSON_LIMITS, LimitExceededError, OakError, findLimitViolation, httpServerTimeouts } from '@oak/contracts';
import { AuditLog, registerAudit, type AuditOptions } from './audit.ts';
import { LoginLimiter, type LoginLimitOptions } from './auth/limiter.ts';
import { authenticate } from './auth/principal.ts';
import { LOG_REDACT_QUERY } from './redact.ts';
import { StreamRegistry } from './streams.ts';
import { UsageBook } from './usage.ts';
import type { RootContext } from './context.ts';
import { registerErrorHandling } from './errors.ts';
import { validatorCompiler } from './validation.ts';
import { applicationRoutes } from './plugins/applications.ts';
import { auditRoutes } from './plugins/audit.ts';
import { defaultDashboardDir, registerDashboard } from './plugins/dashboard.ts';
import { authRoutes } from './plugins/auth.ts';
import { clusterRoutes } from './plugins/clusters.ts';
import { fleetRoutes } from './plugins/fleet.ts';
import { eventRoutes } from './plugins/events.ts';
import { healthRoutes } from './plugins/health.ts';
import { metricsPlugin } from './plugins/metrics.ts';
import { oakestraPublicRoutes, oakestraRoutes } from './plugins/oakestra.ts';
import { registryRoutes } from './plugins/registries.ts';
import { serviceRoutes } from './plugins/services.ts';
import { usageRoutes } from './plugins/usage.ts';
import { tokenRoutes } from './plugins/tokens.ts';
import { DEFAULT_STREAM_LIMITS, type PluginOpts, type StreamLimits } from './plugins/types.ts';
import { userRoutes } from './plugins/users.ts';

export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** The longest path parameter (ids, names) the router takes; longer ones get 400. */
export const MAX_PARAM_LENGTH = 200;
export const API_VERSION = '0.1.0';

export interface RootAppOptions {
  /** fastify/pino logger options (default: off), or a ready pino logger in `loggerInstance` */
  logger?: FastifyServerOptions['logger'];
  loggerInstance?: FastifyBaseLogger;
  /** largest accepted request body in bytes (default 1 MiB); larger ones get 413 */
  bodyLimit?: number;
  /** a request (headers + body) must arrive within this time, else 408 and the connection closes (default 30 s) */
  requestTimeoutMs?: number;
  /** SSE heartbeat period (default 15 s) */
  heartbeatMs?: number;
  /** open /api/events streams per user (default 16) and in all (default 1000); more get 429 */
  maxStreamsPerUser?: number;
  maxStreams?: number;
  /** caps on log answers per user, per worker and in all (default DEFAULT_STREAM_LIMITS); more get 429 */
  streamLimits?: Partial<StreamLimits>;
  /** more routes that need a logged-in user (registered behind the auth hook, with `{ ctx }`) */
  protectedPlugins?: FastifyPluginAsync<PluginOpts>[];
  /** more public routes (registered with `{ ctx }`) */
  publicPlugins?: FastifyPluginAsync<PluginOpts>[];
  /** failed-login limits (per user name and per address) */
  loginLimit?: LoginLimitOptions;
  /** audit retention */
  audit?: AuditOptions;
  /** how often open streams re-check their user in the store (default 30 s) */
  streamRecheckMs?: number;
  /** the built dashboard (index.html + assets/) served at `/`; default apps/dashboard/dist when built; false: not served */
  dashboardDir?: string | false;
}

export async function buildRootApp(ctx: RootContext, opts: RootAppOptions = {}): Promise<FastifyInstance> {
  ctx.startedAt ??= Date.now();
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({
    ...(opts.loggerInstance ? { loggerInstance: opts.loggerInstance } : { logger: opts.logger ?? false }),
    bodyLimit,
    // slow or stalled requests (a body that never arrives) are closed
    ...httpServerTimeouts(opts.requestTimeoutMs),
    // close() ends every connection: an idle keep-alive socket of a client that stopped reading a
    // stream would otherwise hold the shutdown for the keep-alive time (72 s)
    forceCloseConnections: true,
    // one line per request, written below, with tokens in query strings redacted
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, ignoreTrailingSlash: true },
    // the router's own refusals (bad URL encoding, over-long path parameters) in our error shape
    frameworkErrors: (err, _req, reply) => {
      const code = (err as { code?: string }).code;
      const e =
        code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new OakError('OAK_BAD_REQUEST', `a path parameter is longer than ${MAX_PARAM_LENGTH} characters (limit max_param_length)`, { hint: 'ids and names are short; check the URL' })
          : new OakError('OAK_BAD_REQUEST', 'the URL is malformed', { hint: 'percent-encode the path as UTF-8' });
      void (reply as unknown as FastifyReply).code(400).type('application/json; charset=utf-8').send(e.toJSON());
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  ctx.log ??= app.log;
  const log = ctx.log;
  const ownStreams = ctx.streams === undefined;
  ctx.streams ??= new StreamRegistry(ctx.store, opts.streamRecheckMs === undefined ? {} : { recheckMs: opts.streamRecheckMs });
  ctx.audit ??= new AuditLog(ctx.store, (err) => log.error({ err }, 'audit write failed'), opts.audit);
  ctx.loginLimiter ??= new LoginLimiter(opts.loginLimit);
  const ownUsage = ctx.usage === undefined;
  ctx.usage ??= new UsageBook(ctx.events);
  const usage = ctx.usage;
  const streams = ctx.streams;
  const audit = ctx.audit;
  void audit.prune();
  app.addHook('onClose', async () => {
    if (ownStreams) streams.close();
    if (ownUsage) usage.close();
    await audit.idle();
  });
  app.setValidatorCompiler(validatorCompiler);
  registerErrorHandling(app);
  app.decorateRequest('principal', null);
  registerAudit(app, audit);
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      { method: req.method, url: req.url.replace(LOG_REDACT_QUERY, '$1***'), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, user: req.principal?.user.name },
      'request',
    );
  });

  // a NUL character is no part of any id, name or value (PostgreSQL's text refuses it: a 500)
  app.addHook('preValidation', async (req) => {
    if (holdsNul(req.params) || holdsNul(req.query)) throw nulError('the URL');
  });

  // JSON only: anything else is 415. An empty JSON body counts as no body.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (req, body, done) => {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) {
      done(null, undefined);
      return;
    }
    json(req, body as string, (err: Error | null, value?: unknown) => {
      if (err) {
        done(err, undefined);
        return;
      }
      // sizes, widths and depth before any handler (or JSON.stringify) recurses into the body
      const over = findLimitViolation(value, JSON_LIMITS);
      if (over) done(new LimitExceededError(over), undefined);
      else if (holdsNul(value)) done(nulError('the body'), undefined);
      else done(null, value);
    });
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'oak root orchestrator API',
        description: 'Oakestra-compatible root API (SPEC §3). Log in with POST /api/auth/login and send `Authorization: Bearer <token>`.',
        version: API_VERSION,
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
      tags: ['auth', 'users', 'organizations', 'applications', 'services', 'instances', 'clusters', 'tokens', 'events', 'audit', 'operations'].map((name) => ({ name })),
    },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });

  const pluginOpts: PluginOpts = {
    ctx,
    limits: { ...DEFAULT_STREAM_LIMITS, ...(opts.heartbeatMs !== undefined ? { logHeartbeatMs: opts.heartbeatMs } : {}), ...opts.streamLimits },
  };
  await app.register(metricsPlugin, pluginOpts);
  await app.register(healthRoutes, pluginOpts);
  await app.register(authRoutes, pluginOpts);
  await app.register(oakestraPublicRoutes, pluginOpts);
  for (const p of opts.publicPlugins ?? []) await app.register(p, pluginOpts);
  if (opts.dashboardDir !== false) await registerDashboard(app, opts.dashboardDir ?? defaultDashboardDir());

  await app.register(async (api) => {
    api.addHook('onRequest', async (req) => {
      req.principal = await authenticate(req, ctx);
    });
    await api.register(userRoutes, pluginOpts);
    await api.register(applicationRoutes, pluginOpts);
    await api.register(serviceRoutes, pluginOpts);
    await api.register(usageRoutes, pluginOpts);
    await api.register(clusterRoutes, pluginOpts);
    await api.register(tokenRoutes, pluginOpts);
    await api.register(registryRoutes, pluginOpts);
    await api.register(fleetRoutes, pluginOpts);
    await api.register(eventRoutes, {
      ...pluginOpts,
      heartbeatMs: opts.heartbeatMs ?? 15_000,
      ...(opts.maxStreamsPerUser !== undefined ? { maxStreamsPerUser: opts.maxStreamsPerUser } : {}),
      ...(opts.maxStreams !== undefined ? { maxStreams: opts.maxStreams } : {}),
    });
    await api.register(auditRoutes, pluginOpts);
    await api.register(oakestraRoutes, pluginOpts);
    for (const p of opts.protectedPlugins ?? []) await api.register(p, pluginOpts);
  });

  await app.ready();
  return app;
}

/** whether a parsed value (bounded by the JSON limits, or params and query) holds a string with a NUL character */
function holdsNul(v: unknown, depth = 0): boolean {
  if (typeof v === 'string') return v.includes('\u0000');
  if (v === null || typeof v !== 'object' || depth > 64) return false;
  if (Array.isArray(v)) return v.some((x) => holdsNul(x, depth + 1));
  for (const [k, x] of Object.entries(v)) if (k.includes('\u0000') || holdsNul(x, depth + 1)) return true;
  return false;
}

function nulError(where: string): OakError {
  return new OakError('OAK_BAD_REQUEST', `${where} holds a NUL character (\\u0000)`, { hint: 'ids, names and values are text without control character 0' });
}
