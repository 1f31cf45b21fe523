/**
 * Services and their instances.
 *
 * POST /api/service/ adds services to an existing application. Two body shapes:
 * - one service object with `applicationID` (ours, simplest): answers that ServiceDoc;
 * - Oakestra's SLA shape `{ applications: [ { applicationID | application_name+application_namespace,
 *   microservices: [...] } ] }`: answers the list of created ServiceDocs.
 * POST /api/service/{id}/instance deploys one more instance (stored REQUESTED, then handed to the
 * control plane); DELETE /api/service/{id}/instance/{n} undeploys one: the row gets desired=stop and
 * stays until its cluster confirms (the control plane finishes it); listings leave such rows out.
 * GET /api/service/{id}/history lists the SLA versions; POST /api/service/{id}/rollback stores an
 * earlier one as a new version.
 */
import { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import {
  ConflictError,
  InvalidSlaError,
  NotFoundError,
  OakError,
  instanceName,
  validateMicroservice,
  validateServiceRequest,
  validationError,
  type ServiceDoc,
} from '@oak/contracts';
import type { ApplicationRow, ServiceRow, ServiceVersionRow } from '@oak/store';
import type { FastifyReply } from 'fastify';
import { APP_ROLES, requireOrg, requireRole } from '../auth/principal.ts';
import type { Principal } from '../auth/principal.ts';
import type { RootContext } from '../context.ts';
import { ENDED_INSTANCE_MEMORY_MS } from '../reconcile/logs.ts';
import type { LogTarget } from '../reconcile/logs.ts';
import { assertPrivilegedAllowed } from '../privileged.ts';
import { loadInstanceDoc, loadInstanceJson, loadInstanceJsons, loadServiceDoc, loadServiceJson, serviceVersionDoc } from '../docs.ts';
import {
  addressRequest,
  rangeWarnings,
  assertJobNamesFree,
  assignServices,
  checkAddresses,
  deployInstances,
  explainConflict,
  loadApp,
  loadInstance,
  loadService,
  newService,
  releaseServices,
  removeService,
  stopInstances,
  tell,
  unfinished,
} from '../ops.ts';
import {
  AppIdParams,
  DeletedSchema,
  DeployQuery,
  HISTORY_MAX,
  HistoryQuery,
  IdParams,
  InstanceDocSchema,
  InstanceParams,
  LogsQuery,
  ServiceCreateBody,
  ServiceDocSchema,
  ServiceDocShellSchema,
  RollbackBody,
  ServicePatchBody,
  ServiceVersionDocSchema,
  errors,
} from '../schemas.ts';
import { sendWarnings, warningsUnder } from '../warnings.ts';
import { DEFAULT_STREAM_LIMITS, who, type RootPlugin } from './types.ts';

/** Send JSON text built by docs.ts as it is (Fastify serializes only objects; the text is what its serializer of the route's schema writes) */
function json(reply: FastifyReply, text: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(text);
}

/** Open counts by key; `take` fails when the key's count is at its cap. */
class Counter {
  readonly #n = new Map<string, number>();
  get(k: string): number {
    return this.#n.get(k) ?? 0;
  }
  add(k: string, d: number): void {
    const n = this.get(k) + d;
    if (n <= 0) this.#n.delete(k);
    else this.#n.set(k, n);
  }
}

export const serviceRoutes: RootPlugin = async (app, { ctx, limits = DEFAULT_STREAM_LIMITS }) => {
  const { store } = ctx;
  const logsByUser = new Counter();
  const logsByWorker = new Counter();
  let logsOpen = 0;

  app.post(
    '/api/service/',
    {
      schema: {
        tags: ['services'],
        summary: 'add service(s) to an existing application',
        description:
          'Body: one service object with `applicationID` (answers the ServiceDoc), or Oakestra\'s SLA shape with one application naming the target by `applicationID` ' +
          'or `application_name` + `application_namespace` (answers the list of ServiceDocs). `?deploy=true` also deploys `replicas` (default 1) instances.',
        querystring: DeployQuery,
        body: ServiceCreateBody,
        response: { 200: Type.Union([ServiceDocSchema, Type.Array(ServiceDocSchema)]), ...errors(400, 403, 404, 409, 413, 415, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const v = validateServiceRequest(req.body);
      if (!v.ok) throw validationError(v);
      v.warnings = rangeWarnings(ctx, v.warnings, req.body);
      assertPrivilegedAllowed(p, v.microservices, (i) => (typeof req.body === 'object' && req.body !== null && 'applications' in req.body ? `applications[0].microservices[${i}]` : ''));
      const slaShaped = typeof req.body === 'object' && req.body !== null && 'applications' in req.body;
      let target: ApplicationRow | undefined;
      if (v.target.applicationID !== undefined) {
        target = await loadApp(ctx, p, v.target.applicationID);
      } else if (v.target.application_name !== undefined && v.target.application_namespace !== undefined) {
        const { application_name: n, application_namespace: ns } = v.target;
        target = (await store.listApplications({ organization_id: p.orgId })).find((a) => a.name === n && a.namespace === ns);
        if (!target) throw new NotFoundError('application', `${n}.${ns}`);
      } else {
        throw new OakError('OAK_INVALID_SLA', 'which application do these services join?', {
          path: slaShaped ? 'applications[0].applicationID' : 'applicationID',
          hint: 'give applicationID (from POST /api/application/ or GET /api/applications/)',
        });
      }
      const existing = await store.listServices({ application_id: target.id });
      const seen = new Set(existing.map((s) => `${s.name}.${s.namespace}`));
      v.microservices.forEach((ms, i) => {
        const key = `${ms.microservice_name}.${ms.microservice_namespace}`;
        if (seen.has(key)) {
          throw new ConflictError(
            `service ${ms.microservice_name} in namespace ${ms.microservice_namespace} already exists in this application${slaShaped ? ` (applications[0].microservices[${i}])` : ''}`,
            'update it with PUT /api/service/{id}, or choose another microservice_name / microservice_namespace',
          );
        }
        seen.add(key);
      });
      const app0 = target;
      await checkAddresses(ctx, v.microservices.map((ms) => ({ job: newService(app0.name, app0.namespace, ms).job_name, request: addressRequest(ms) })));
      let created: ServiceRow[] = [];
      try {
        for (const ms of v.microservices) created.push(await store.createService(target.id, newService(target.name, target.namespace, ms), { created_by: p.user.id, reason: 'created' }));
        created = await assignServices(ctx, created);
      } catch (err) {
        for (const s of created) await store.deleteService(s.id).catch(() => undefined);
        await releaseServices(ctx, created.map((s) => s.job_name));
        throw explainConflict(err);
      }
      for (const s of created) ctx.events.publish({ type: 'service', action: 'created', microserviceID: s.id, applicationID: target.id });
      if (req.query.deploy === true) for (const s of created) await deployInstances(ctx, s, s.sla.replicas ?? 1);
      const docs: ServiceDoc[] = [];
      for (const [i, s] of created.entries()) {
        const doc = await loadServiceDoc(store, s, target, ctx.usage);
        const w = slaShaped ? warningsUnder(v.warnings, `applications[0].microservices[${i}]`, i === 0) : warningsUnder(v.warnings, '');
        docs.push(w ? { ...doc, warnings: w } : doc);
      }
      sendWarnings(reply, v.warnings);
      const answer = slaShaped ? docs : docs[0];
      if (answer === undefined) throw new OakError('OAK_INVALID_SLA', 'no service given', { path: 'microservices' });
      // 200 as Oakestra answers (its clients take any other code for a failure)
      return reply.code(200).send(answer);
    },
  );

  app.get(
    '/api/service/:id',
    { schema: { tags: ['services'], summary: 'one service with its instances', params: IdParams, response: { 200: ServiceDocSchema, ...errors(403, 404) } } },
    async (req, reply) => {
      const { service, app: a } = await loadService(ctx, who(req), req.params.id);
      // as text: the instances' usage histories are prebuilt strings (an object per reading made a 20-instance service 4 ms to serialize)
      return json(reply, await loadServiceJson(reply.compileSerializationSchema(ServiceDocShellSchema), store, service, a, ctx.usage));
    },
  );

  app.get(
    '/api/services/:appId',
    { schema: { tags: ['services'], summary: 'the services of an application', params: AppIdParams, response: { 200: Type.Array(ServiceDocSchema), ...errors(403, 404) } } },
    async (req, reply) => {
      const a = await loadApp(ctx, who(req), req.params.appId);
      const services = await store.listServices({ application_id: a.id });
      const ser = reply.compileSerializationSchema(ServiceDocShellSchema);
      return json(reply, `[${(await Promise.all(services.map((s) => loadServiceJson(ser, store, s, a, ctx.usage)))).join(',')}]`);
    },
  );

  app.put(
    '/api/service/:id',
    {
      schema: {
        tags: ['services'],
        summary: 'change a service\'s SLA fields',
        description: 'The given fields replace the stored ones (the others are kept); the result must be a valid service. Renaming needs the service to have no instances.',
        params: IdParams,
        body: ServicePatchBody,
        response: { 200: ServiceDocSchema, ...errors(400, 403, 404, 409, 415, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      const { service, app: a } = await loadService(ctx, p, req.params.id);
      if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body)) {
        throw new InvalidSlaError([{ path: '(root)', message: 'the body must be an object of service fields', hint: '{ "memory": 200 }' }]);
      }
      const merged: Record<string, unknown> = { ...service.sla, ...(req.body as Record<string, unknown>) };
      delete merged.microserviceID;
      delete merged.applicationID;
      const v = validateMicroservice(merged);
      if (!v.ok) throw validationError(v);
      v.warnings = rangeWarnings(ctx, v.warnings, merged);
      assertPrivilegedAllowed(p, [v.microservice], () => '');
      const ms = v.microservice;
      if (ms.microservice_name !== service.name || ms.microservice_namespace !== service.namespace) {
        if (unfinished(await store.listInstances({ service_id: service.id })).length > 0) {
          throw new ConflictError(`service ${service.job_name} has instances and cannot be renamed`, 'undeploy its instances first (and wait until they are UNDEPLOYED)');
        }
        const clash = (await store.listServices({ application_id: a.id })).find((s) => s.id !== service.id && s.name === ms.microservice_name && s.namespace === ms.microservice_namespace);
        if (clash) throw new ConflictError(`service ${ms.microservice_name} in namespace ${ms.microservice_namespace} already exists in this application`);
      }
      const ns = newService(a.name, a.namespace, ms);
      await assertJobNamesFree(ctx, [ns.job_name], new Set([service.id]));
      await checkAddresses(ctx, [{ job: ns.job_name, request: addressRequest(ms), current: service.job_name }]);
      const stored = await store.updateService(service.id, { sla: ns.sla, job_name: ns.job_name, name: ns.name, namespace: ns.namespace }, { created_by: p.user.id, reason: 'updated' });
      const [row = stored] = await assignServices(ctx, [stored], new Map([[service.id, service.job_name]]));
      ctx.events.publish({ type: 'service', action: 'updated', microserviceID: row.id, applicationID: a.id });
      tell(ctx, 'serviceUpdated', () => ctx.control.serviceUpdated?.(row));
      sendWarnings(reply, v.warnings);
      const doc = await loadServiceDoc(store, row, a, ctx.usage);
      return v.warnings.length > 0 ? { ...doc, warnings: v.warnings } : doc;
    },
  );

  app.get(
    '/api/service/:id/history',
    {
      schema: {
        tags: ['services'],
        summary: 'the versions of a service\'s SLA, oldest first',
        description: 'Every change of the SLA (and every rollback) is a new version; `outcome` says how its rollout ended (null while it rolls). At most the newest 1000 (`?limit=N`: the newest N).',
        params: IdParams,
        querystring: HistoryQuery,
        response: { 200: Type.Array(ServiceVersionDocSchema), ...errors(400, 403, 404) },
      },
    },
    async (req) => {
      const { service } = await loadService(ctx, who(req), req.params.id);
      const versions = (await store.listServiceVersions(service.id)).slice(-(req.query.limit ?? HISTORY_MAX));
      const names = new Map<string, string | null>();
      for (const v of versions) {
        if (v.created_by === null || names.has(v.created_by)) continue;
        names.set(v.created_by, (await store.getUser(v.created_by))?.name ?? null);
      }
      return versions.map((v) => serviceVersionDoc(v, service.version, v.created_by === null ? null : (names.get(v.created_by) ?? null)));
    },
  );

  app.post(
    '/api/service/:id/rollback',
    {
      schema: {
        tags: ['services'],
        summary: 'restore an earlier version of a service\'s SLA (as a new version)',
        description:
          'Body `{ "to": N }` (optional). Default: the newest earlier version whose rollout completed, else the newest earlier one, among those that differ from the current SLA. ' +
          'The SLA of that version is stored as a new version (reason `rollback to N`, the service keeps its current name) and rolled out like any change. ' +
          '404: no such version; 409: that version runs what the current one runs, or there is nothing earlier.',
        params: IdParams,
        body: RollbackBody,
        response: { 200: ServiceDocSchema, ...errors(400, 403, 404, 409, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      const { service, app: a } = await loadService(ctx, p, req.params.id);
      const body = (req.body ?? {}) as { to?: number };
      const versions = await store.listServiceVersions(service.id);
      const current = versions.find((v) => v.version === service.version);
      let target: ServiceVersionRow | undefined;
      if (body.to !== undefined) {
        target = versions.find((v) => v.version === body.to);
        if (!target) throw new NotFoundError('version', `${body.to} of ${service.job_name}`);
      } else {
        const earlier = versions.filter((v) => v.version < service.version && v.fingerprint !== current?.fingerprint).sort((x, y) => y.version - x.version);
        target = earlier.find((v) => v.outcome === 'complete') ?? earlier[0];
        if (!target) {
          throw new ConflictError(`${service.job_name} has no earlier version that differs from its current one (version ${service.version})`, 'see GET /api/service/{id}/history; change the SLA with PUT /api/service/{id}');
        }
      }
      if (current !== undefined && target.fingerprint === current.fingerprint) {
        throw new ConflictError(
          target.version === service.version ? `version ${target.version} is the current version of ${service.job_name}` : `version ${target.version} of ${service.job_name} runs the same SLA as the current version ${service.version}`,
          'name another version (see GET /api/service/{id}/history)',
        );
      }
      // the service keeps its current name (a rename is PUT's business, with its own checks)
      const sla: Record<string, unknown> = { ...target.sla, microservice_name: service.name, microservice_namespace: service.namespace };
      delete sla.microserviceID;
      delete sla.applicationID;
      const v = validateMicroservice(sla);
      if (!v.ok) throw validationError(v);
      v.warnings = rangeWarnings(ctx, v.warnings, sla);
      assertPrivilegedAllowed(p, [v.microservice], () => '');
      const ns = newService(a.name, a.namespace, v.microservice);
      await checkAddresses(ctx, [{ job: ns.job_name, request: addressRequest(v.microservice), current: service.job_name }]);
      const stored = await store.updateService(service.id, { sla: ns.sla }, { created_by: p.user.id, reason: `rollback to ${target.version}` });
      const [row = stored] = await assignServices(ctx, [stored], new Map([[service.id, service.job_name]]));
      ctx.events.publish({ type: 'service', action: 'updated', microserviceID: row.id, applicationID: a.id });
      tell(ctx, 'serviceUpdated', () => ctx.control.serviceUpdated?.(row));
      req.log.info({ user: p.user.name, service: row.job_name, to: target.version, version: row.version }, 'service rolled back');
      sendWarnings(reply, v.warnings);
      return loadServiceDoc(store, row, a, ctx.usage);
    },
  );

  app.delete(
    '/api/service/:id',
    { schema: { tags: ['services'], summary: 'delete a service (undeploys its instances)', params: IdParams, response: { 200: DeletedSchema, ...errors(403, 404) } } },
    async (req) => {
      const { service } = await loadService(ctx, who(req), req.params.id);
      await removeService(ctx, service);
      return { deleted: service.id };
    },
  );

  // ---- instances
  app.post(
    '/api/service/:id/instance',
    {
      schema: {
        tags: ['instances'],
        summary: 'deploy one more instance (scale up)',
        description: 'The instance is stored as REQUESTED and handed to the scheduler; follow it on GET /api/events or GET /api/service/{id}.',
        params: IdParams,
        response: { 200: InstanceDocSchema, ...errors(403, 404) },
      },
    },
    async (req, reply) => {
      const { service } = await loadService(ctx, who(req), req.params.id);
      const [row] = await deployInstances(ctx, service, 1);
      if (!row) throw new OakError('OAK_INTERNAL', 'the instance was not stored');
      return reply.code(200).send(await loadInstanceDoc(store, service, row, ctx.usage));
    },
  );

  app.delete(
    '/api/service/:id/instance/:n',
    {
      schema: {
        tags: ['instances'],
        summary: 'undeploy instance n',
        params: InstanceParams,
        response: { 200: InstanceDocSchema, ...errors(400, 403, 404) },
      },
    },
    async (req) => {
      const { service, instance } = await loadInstance(ctx, who(req), req.params.id, req.params.n);
      const [row = instance] = await stopInstances(ctx, service, [instance]);
      return loadInstanceDoc(store, service, row, ctx.usage);
    },
  );

  app.get(
    '/api/service/:id/instances',
    {
      schema: {
        tags: ['instances'],
        summary: 'the instances of a service (the ones on their way out, desired stop, are left out)',
        params: IdParams,
        response: { 200: Type.Array(InstanceDocSchema), ...errors(403, 404) },
      },
    },
    async (req, reply) => {
      const { service } = await loadService(ctx, who(req), req.params.id);
      return json(reply, `[${(await loadInstanceJsons(store, service, ctx.usage)).join(',')}]`);
    },
  );

  app.get(
    '/api/service/:id/instance/:n',
    {
      schema: {
        tags: ['instances'],
        summary: 'one instance with its history (also while it stops: desired stop)',
        params: InstanceParams,
        response: { 200: InstanceDocSchema, ...errors(400, 403, 404) },
      },
    },
    async (req, reply) => {
      const { service, instance } = await loadInstance(ctx, who(req), req.params.id, req.params.n);
      return json(reply, await loadInstanceJson(store, service, instance, ctx.usage));
    },
  );

  app.get(
    '/api/service/:id/instance/:n/logs',
    {
      config: { queryToken: true },
      schema: {
        tags: ['instances'],
        summary: 'log lines of an instance (text/plain, chunked); ?follow=1 keeps streaming',
        params: InstanceParams,
        querystring: LogsQuery,
        response: errors(400, 403, 404, 429, 503),
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const { service, instance } = await logTargetOf(ctx, p, req.params.id, req.params.n);
      const worker = instance.worker_id ?? `cluster:${instance.cluster_id ?? ''}`;
      const tooMany =
        logsByUser.get(p.user.id) >= limits.logStreamsPerUser
          ? `you already have ${logsByUser.get(p.user.id)} log streams open (at most ${limits.logStreamsPerUser})`
          : logsByWorker.get(worker) >= limits.logStreamsPerWorker
            ? `the worker of this instance serves ${logsByWorker.get(worker)} log streams already (at most ${limits.logStreamsPerWorker})`
            : logsOpen >= limits.logStreams
              ? `the root relays ${logsOpen} log streams already (at most ${limits.logStreams})`
              : undefined;
      if (tooMany !== undefined) throw new OakError('OAK_TOO_MANY_STREAMS', tooMany, { hint: 'close another log stream (oak logs -f), then try again' });
      requireOrg(p, service.organization_id);
      const logs = ctx.control.logs;
      if (!logs) {
        throw new OakError('OAK_UNAVAILABLE', 'logs are not available: no cluster is connected to this root', {
          hint: 'logs come from the worker that runs the instance; connect a cluster (oak-cluster) and deploy again',
        });
      }
      const follow = req.query.follow === true || req.query.follow === '1';
      const ac = new AbortController();
      // counted until the connection ends, however it ends
      logsByUser.add(p.user.id, 1);
      logsByWorker.add(worker, 1);
      logsOpen++;
      let released = false;
      // accounts: the stream ends when its token expires or the user is removed, demoted or logged out
      let ended: string | undefined;
      const releaseSession = ctx.streams?.open(p, (reason) => {
        ended = reason;
        ac.abort();
      });
      const socket = req.raw.socket;
      const release = (): void => {
        if (released) return;
        released = true;
        socket.off('close', release);
        releaseSession?.();
        logsByUser.add(p.user.id, -1);
        logsByWorker.add(worker, -1);
        logsOpen--;
        ac.abort();
      };
      reply.raw.once('close', release);
      socket.once('close', release);
      if (socket.destroyed) release();
      const opts = { follow, signal: ac.signal, ...(req.query.tail !== undefined ? { tail: req.query.tail } : {}) };
      let source: AsyncIterable<string>;
      try {
        source = await logs.call(ctx.control, service, instance, opts);
      } catch (err) {
        release();
        throw err;
      }
      // `Accept: text/event-stream` gets the lines as server-sent events with `: ping` comments
      // while the instance is quiet; plain text (the default) is the log as it is
      const sse = /text\/event-stream/.test(String(req.headers.accept ?? ''));
      const heartbeatMs = limits.logHeartbeatMs ?? DEFAULT_STREAM_LIMITS.logHeartbeatMs ?? 15_000;
      const frame = (line: string): string => (sse ? `data: ${line.replace(/\r?\n$/, '').replace(/\r?\n/g, '\ndata: ')}\n\n` : line.endsWith('\n') ? line : `${line}\n`);
      async function* lines(): AsyncGenerator<string> {
        // a first chunk makes node send the status and headers now: a follow on a quiet instance
        // must not leave the client waiting for headers until a line comes
        yield sse ? 'retry: 3000\n: connected\n\n' : '';
        const it = source[Symbol.asyncIterator]();
        try {
          let next = it.next();
          for (;;) {
            let timer: NodeJS.Timeout | undefined;
            const tick = sse && follow ? new Promise<'tick'>((r) => (timer = setTimeout(() => r('tick'), heartbeatMs))) : undefined;
            const r = await (tick ? Promise.race([next, tick]) : next);
            clearTimeout(timer);
            // break, not return: a stream ended by the accounts side still says why (below)
            if (ac.signal.aborted) break;
            if (r === 'tick') {
              yield ': ping\n\n';
              continue;
            }
            if (r.done === true) break;
            yield frame(r.value);
            next = it.next();
          }
        } catch (err) {
          if (!ac.signal.aborted) yield frame(`# log stream ended: ${err instanceof Error ? err.message : String(err)}`);
        } finally {
          release();
          void it.return?.(undefined)?.catch(() => undefined);
        }
        if (ended !== undefined) yield frame(`# log stream ended: ${ended}`);
      }
      // a quiet follow stream may stay silent for long: TCP keep-alive keeps NATs and proxies open
      if (follow && typeof socket.setKeepAlive === 'function') socket.setKeepAlive(true, 15_000);
      return (reply as FastifyReply)
        .type(sse ? 'text/event-stream; charset=utf-8' : 'text/plain; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('x-accel-buffering', 'no')
        .send(Readable.from(lines()));
    },
  );
};

/**
 * The instance of a log request: its row, or, once the row was removed, where it ran (the store's
 * ended_instances). A number the service had but whose record is gone: 410 OAK_LOGS_GONE.
 */
async function logTargetOf(ctx: RootContext, p: Principal, id: string, n: number): Promise<{ service: ServiceRow; instance: LogTarget }> {
  try {
    return await loadInstance(ctx, p, id, n);
  } catch (err) {
    if (!(err instanceof OakError && err.code === 'OAK_NOT_FOUND')) throw err;
    const { service } = await loadService(ctx, p, id);
    const ended = await ctx.store.getEndedInstance(service.id, n);
    if (ended !== undefined) return { service, instance: { ...ended, status_at: ended.ended_at, removed: true } };
    if (n < service.next_instance) {
      throw new OakError('OAK_LOGS_GONE', `${instanceName(service.job_name, n)} was removed and the root no longer knows where it ran, so its logs cannot be asked for`, {
        hint: `the root remembers where removed instances ran for ${Math.round(ENDED_INSTANCE_MEMORY_MS / 86_400_000)} days; instances that were never placed have no logs`,
      });
    }
    throw err;
  }
}
