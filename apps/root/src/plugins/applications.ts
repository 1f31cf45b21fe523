/**
 * Applications: POST /api/application/ (a full SLA; creates the applications and their services,
 * `?deploy=true` also deploys `replicas` instances of each), list, read, update, delete.
 * Organisation isolation: non-Admins only ever see and change their organisation's applications.
 */
import { Type } from '@sinclair/typebox';
import {
  ConflictError,
  validateApplicationPatch,
  validateSla,
  validationError,
  type ApplicationDoc,
} from '@oak/contracts';
import type { ApplicationRow, ServiceRow } from '@oak/store';
import { APP_ROLES, requireRole } from '../auth/principal.ts';
import { applicationDoc, loadApplicationDoc } from '../docs.ts';
import {
  addressRequest,
  rangeWarnings,
  announceUndeploy,
  unfinished,
  assertJobNamesFree,
  assignServices,
  checkAddresses,
  deployInstances,
  explainConflict,
  loadApp,
  newService,
  orgIndex,
  releaseServices,
  tell,
} from '../ops.ts';
import { ApplicationDocSchema, ApplicationPatchBody, DeletedSchema, DeployQuery, IdParams, SlaBody, errors } from '../schemas.ts';
import { assertPrivilegedAllowed } from '../privileged.ts';
import { sendWarnings, warningsUnder } from '../warnings.ts';
import { who, type RootPlugin } from './types.ts';

export const applicationRoutes: RootPlugin = async (app, { ctx }) => {
  const { store } = ctx;

  app.post(
    '/api/application/',
    {
      schema: {
        tags: ['applications'],
        summary: 'create application(s) and their services from a full SLA (v2.0)',
        description: 'Answers the created applications. `?deploy=true` also deploys `replicas` (default 1) instances of every service. Unknown SLA fields are kept and listed in the `oak-warnings` header.',
        querystring: DeployQuery,
        body: SlaBody,
        response: { 200: Type.Array(ApplicationDocSchema), ...errors(400, 403, 409, 413, 415, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const v = validateSla(req.body);
      if (!v.ok) throw validationError(v);
      v.warnings = rangeWarnings(ctx, v.warnings, req.body);
      v.sla.applications.forEach((a, ai) => assertPrivilegedAllowed(p, a.microservices, (i) => `applications[${ai}].microservices[${i}]`));
      const existing = await store.listApplications({ organization_id: p.orgId });
      v.sla.applications.forEach((a, i) => {
        if (existing.some((e) => e.name === a.application_name && e.namespace === a.application_namespace)) {
          throw new ConflictError(
            `application ${a.application_name} in namespace ${a.application_namespace} already exists (applications[${i}])`,
            'update it with PUT /api/application/{id}, delete it first, or choose another application_name / application_namespace',
          );
        }
      });
      // requested service addresses are checked before anything is written (409 names the owner)
      await checkAddresses(
        ctx,
        v.sla.applications.flatMap((a) => a.microservices.map((ms) => ({ job: newService(a.application_name, a.application_namespace, ms).job_name, request: addressRequest(ms) }))),
      );
      const created: { application: ApplicationRow; services: ServiceRow[] }[] = [];
      try {
        for (const a of v.sla.applications) {
          const c = await store.createApplication(
            { name: a.application_name, namespace: a.application_namespace, description: a.application_desc ?? '', user_id: p.user.id, organization_id: p.orgId },
            a.microservices.map((ms) => newService(a.application_name, a.application_namespace, ms)),
          );
          created.push(c);
          c.services = await assignServices(ctx, c.services);
        }
      } catch (err) {
        // all or nothing: an SLA with several applications must not leave half of them behind
        for (const c of created) await store.deleteApplication(c.application.id).catch(() => undefined);
        await releaseServices(ctx, created.flatMap((c) => c.services.map((s) => s.job_name)));
        throw explainConflict(err);
      }
      const docs: ApplicationDoc[] = [];
      created.forEach(({ application, services }, i) => {
        orgIndex(ctx).set(application.id, application.organization_id);
        ctx.events.publish({ type: 'application', action: 'created', applicationID: application.id });
        for (const s of services) ctx.events.publish({ type: 'service', action: 'created', microserviceID: s.id, applicationID: application.id });
        const doc = applicationDoc(application, services.map((s) => s.id));
        const w = warningsUnder(v.warnings, `applications[${i}]`, i === 0);
        docs.push(w ? { ...doc, warnings: w } : doc);
      });
      if (req.query.deploy === true) {
        for (const { services } of created) for (const s of services) await deployInstances(ctx, s, s.sla.replicas ?? 1);
      }
      req.log.info({ user: p.user.name, applications: docs.map((d) => d.applicationID) }, 'applications created');
      sendWarnings(reply, v.warnings);
      // 200 as Oakestra answers: its clients (Go and Python CLI) take any other code for a failure
      return reply.code(200).send(docs);
    },
  );

  app.get(
    '/api/applications/',
    {
      schema: {
        tags: ['applications'],
        summary: 'applications of your organisation (Admin: all, or ?organization_id=)',
        querystring: Type.Object({ organization_id: Type.Optional(Type.String()) }),
        response: { 200: Type.Array(ApplicationDocSchema), ...errors(403) },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ...APP_ROLES);
      const org = p.isAdmin ? req.query.organization_id : p.orgId;
      const apps = await store.listApplications(org === undefined ? {} : { organization_id: org });
      const services = await store.listServices(org === undefined ? {} : { organization_id: org });
      const byApp = new Map<string, string[]>();
      for (const s of services) byApp.set(s.application_id, [...(byApp.get(s.application_id) ?? []), s.id]);
      return apps.map((a) => applicationDoc(a, byApp.get(a.id) ?? []));
    },
  );

  app.get(
    '/api/application/:id',
    { schema: { tags: ['applications'], summary: 'one application', params: IdParams, response: { 200: ApplicationDocSchema, ...errors(403, 404) } } },
    async (req) => loadApplicationDoc(store, await loadApp(ctx, who(req), req.params.id)),
  );

  app.put(
    '/api/application/:id',
    {
      schema: {
        tags: ['applications'],
        summary: 'update an application',
        description:
          'Body: application fields to change (application_name, application_namespace, application_desc), or an SLA holding exactly this one application. ' +
          '`microservices`, when given, are complete services: one matching an existing service (by microserviceID, else by name and namespace) replaces its SLA, ' +
          'a new one is added; services not listed are kept. Renaming needs the application to have no instances.',
        params: IdParams,
        body: ApplicationPatchBody,
        response: { 200: ApplicationDocSchema, ...errors(400, 403, 404, 409, 415, 422) },
      },
    },
    async (req, reply) => {
      const p = who(req);
      const a = await loadApp(ctx, p, req.params.id);
      const v = validateApplicationPatch(req.body);
      if (!v.ok) throw validationError(v);
      v.warnings = rangeWarnings(ctx, v.warnings, req.body);
      assertPrivilegedAllowed(p, v.patch.microservices ?? [], (i) => `microservices[${i}]`);
      const patch = v.patch;
      const name = patch.application_name ?? a.name;
      const ns = patch.application_namespace ?? a.namespace;
      const services = await store.listServices({ application_id: a.id });
      const renamed = name !== a.name || ns !== a.namespace;
      if (renamed) {
        const instances = unfinished((await Promise.all(services.map((s) => store.listInstances({ service_id: s.id })))).flat());
        if (instances.length > 0) {
          throw new ConflictError('an application with instances cannot be renamed', 'undeploy its instances first (DELETE /api/service/{id}/instance/{n})');
        }
        const clash = (await store.listApplications({ organization_id: a.organization_id })).find((e) => e.id !== a.id && e.name === name && e.namespace === ns);
        if (clash) throw new ConflictError(`application ${name} in namespace ${ns} already exists`, 'choose another application_name / application_namespace');
      }
      // plan the service changes before writing anything
      const updates: { service: ServiceRow; sla: ServiceRow['sla'] }[] = [];
      const additions: ServiceRow['sla'][] = [];
      for (const ms of patch.microservices ?? []) {
        const match = services.find((s) => (ms.microserviceID !== undefined && s.id === ms.microserviceID) || (s.name === ms.microservice_name && s.namespace === ms.microservice_namespace));
        if (match) updates.push({ service: match, sla: ms });
        else additions.push(ms);
      }
      for (const u of updates) {
        if ((u.sla.microservice_name !== u.service.name || u.sla.microservice_namespace !== u.service.namespace) && unfinished(await store.listInstances({ service_id: u.service.id })).length > 0) {
          throw new ConflictError(`service ${u.service.job_name} has instances and cannot be renamed`, 'undeploy its instances first');
        }
      }
      const own = new Set(services.map((s) => s.id));
      const jobNames = [
        ...(renamed ? services.filter((s) => !updates.some((u) => u.service.id === s.id)).map((s) => newService(name, ns, s.sla).job_name) : []),
        ...updates.map((u) => newService(name, ns, u.sla).job_name),
        ...additions.map((ms) => newService(name, ns, ms).job_name),
      ];
      await assertJobNamesFree(ctx, jobNames, own);
      await checkAddresses(ctx, [
        ...updates.map((u) => ({ job: newService(name, ns, u.sla).job_name, request: addressRequest(u.sla), current: u.service.job_name })),
        ...additions.map((ms) => ({ job: newService(name, ns, ms).job_name, request: addressRequest(ms) })),
      ]);
      const appPatch: Partial<Pick<ApplicationRow, 'name' | 'namespace' | 'description'>> = {};
      if (patch.application_name !== undefined) appPatch.name = patch.application_name;
      if (patch.application_namespace !== undefined) appPatch.namespace = patch.application_namespace;
      if (patch.application_desc !== undefined) appPatch.description = patch.application_desc;
      const updated = Object.keys(appPatch).length > 0 ? await store.updateApplication(a.id, appPatch) : a;
      if (renamed) {
        for (const s of services) {
          if (updates.some((u) => u.service.id === s.id)) continue;
          const moved = await store.updateService(s.id, { job_name: newService(name, ns, s.sla).job_name }, { created_by: p.user.id, reason: 'application renamed' });
          await assignServices(ctx, [moved], new Map([[s.id, s.job_name]]));
        }
      }
      for (const u of updates) {
        const ns2 = newService(name, ns, u.sla);
        const stored = await store.updateService(u.service.id, { sla: ns2.sla, job_name: ns2.job_name, name: ns2.name, namespace: ns2.namespace }, { created_by: p.user.id, reason: 'updated' });
        const [row = stored] = await assignServices(ctx, [stored], new Map([[u.service.id, u.service.job_name]]));
        ctx.events.publish({ type: 'service', action: 'updated', microserviceID: row.id, applicationID: a.id });
        tell(ctx, 'serviceUpdated', () => ctx.control.serviceUpdated?.(row));
      }
      for (const ms of additions) {
        const row = await store.createService(a.id, newService(name, ns, ms), { created_by: p.user.id, reason: 'created' });
        await assignServices(ctx, [row]);
        ctx.events.publish({ type: 'service', action: 'created', microserviceID: row.id, applicationID: a.id });
      }
      ctx.events.publish({ type: 'application', action: 'updated', applicationID: a.id });
      sendWarnings(reply, v.warnings);
      const doc = await loadApplicationDoc(store, updated);
      return v.warnings.length > 0 ? { ...doc, warnings: v.warnings } : doc;
    },
  );

  app.delete(
    '/api/application/:id',
    { schema: { tags: ['applications'], summary: 'delete an application: undeploys every instance, deletes its services', params: IdParams, response: { 200: DeletedSchema, ...errors(403, 404) } } },
    async (req) => {
      const p = who(req);
      const a = await loadApp(ctx, p, req.params.id);
      const services = await store.listServices({ application_id: a.id });
      // the rows go with the application; the control plane undeploys them (and any orphan a cluster reports later)
      for (const s of services) announceUndeploy(ctx, s, unfinished(await store.listInstances({ service_id: s.id })).map((r) => ({ ...r, desired: 'stop' as const })));
      await store.deleteApplication(a.id);
      await releaseServices(ctx, services.map((s) => s.job_name));
      for (const s of services) ctx.events.publish({ type: 'service', action: 'deleted', microserviceID: s.id, applicationID: a.id });
      ctx.events.publish({ type: 'application', action: 'deleted', applicationID: a.id });
      req.log.info({ user: p.user.name, application: a.id }, 'application deleted');
      return { deleted: a.id };
    },
  );
};
