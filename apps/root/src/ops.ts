/**
 * Operations shared by the application and service routes: access checks that load a resource,
 * deploying and undeploying instances (persist first, then tell the control plane, then publish).
 */
import { ConflictError, NotFoundError, instanceName, type FieldIssue, type Microservice } from '@oak/contracts';
import { withoutHonouredAddresses } from './warnings.ts';
import type { ApplicationRow, InstanceRow, NewService, ServiceRow } from '@oak/store';
import { APP_ROLES, requireOrg, requireRole, type Principal } from './auth/principal.ts';
import type { RootContext } from './context.ts';
import { instanceDoc } from './docs.ts';
import { askedAddresses, overlayFor } from './overlay.ts';
import type { AddressRequest } from './overlay.ts';

/** applicationID -> organisation id, for filtering events of applications that are already gone. */
const orgIndexes = new WeakMap<RootContext, Map<string, string>>();
export function orgIndex(ctx: RootContext): Map<string, string> {
  let m = orgIndexes.get(ctx);
  if (!m) orgIndexes.set(ctx, (m = new Map()));
  return m;
}

export async function loadApp(ctx: RootContext, p: Principal, id: string): Promise<ApplicationRow> {
  requireRole(p, ...APP_ROLES);
  const a = await ctx.store.getApplication(id);
  if (!a) throw new NotFoundError('application', id);
  orgIndex(ctx).set(a.id, a.organization_id);
  requireOrg(p, a.organization_id, 'this application');
  return a;
}

export async function loadService(ctx: RootContext, p: Principal, id: string): Promise<{ service: ServiceRow; app: ApplicationRow }> {
  requireRole(p, ...APP_ROLES);
  const s = await ctx.store.getService(id);
  if (!s) throw new NotFoundError('service', id);
  requireOrg(p, s.organization_id, 'this service');
  const app = await ctx.store.getApplication(s.application_id);
  if (!app) throw new NotFoundError('service', id);
  orgIndex(ctx).set(app.id, app.organization_id);
  return { service: s, app };
}

export async function loadInstance(ctx: RootContext, p: Principal, id: string, n: number): Promise<{ service: ServiceRow; app: ApplicationRow; instance: InstanceRow }> {
  const { service, app } = await loadService(ctx, p, id);
  const instance = await ctx.store.getInstance(service.id, n);
  if (!instance) throw new NotFoundError('instance', instanceName(service.job_name, n));
  return { service, app, instance };
}

/** The store's form of one SLA service (its id, if the client sent one, is ignored). */
export function newService(appName: string, appNs: string, ms: Microservice): NewService {
  const sla: Microservice = { ...ms };
  delete sla.microserviceID;
  delete (sla as Record<string, unknown>).applicationID;
  return {
    job_name: `${appName}.${appNs}.${ms.microservice_name}.${ms.microservice_namespace}`,
    name: ms.microservice_name,
    namespace: ms.microservice_namespace,
    sla,
  };
}

/**
 * Tells the control plane about a change that is already persisted. Its failure must not fail the
 * request (the state is stored; the control plane reconciles from the store), so it is logged.
 */
export function tell(ctx: RootContext, what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    ctx.log?.error({ err, what }, 'the control plane failed to take a change; it stays stored');
  }
}

export function publishInstance(ctx: RootContext, s: ServiceRow, i: InstanceRow): void {
  ctx.events.publish({ type: 'instance', microserviceID: s.id, applicationID: s.application_id, job_name: s.job_name, instance: instanceDoc(i) });
}

/**
 * Stores `count` new REQUESTED instances, gives them their overlay addresses, hands them to the
 * control plane and publishes them. An address failure (a full pool) is logged: the control plane
 * tries again before it deploys them.
 */
export async function deployInstances(ctx: RootContext, s: ServiceRow, count: number): Promise<InstanceRow[]> {
  let rows: InstanceRow[] = [];
  for (let k = 0; k < count; k++) rows.push(await ctx.store.addInstance(s.id, 'REQUESTED', 'waiting for a cluster'));
  if (rows.length === 0) return rows;
  try {
    rows = (await overlayFor(ctx.store).assignInstances(s, rows)).rows;
  } catch (err) {
    ctx.log?.warn({ err, service: s.job_name }, 'overlay addresses for new instances failed; they are given before the deploy');
  }
  for (const r of rows) publishInstance(ctx, s, r);
  tell(ctx, 'instancesRequested', () => ctx.control.instancesRequested(s, rows));
  return rows;
}

/** Tells the control plane that these instances go (their rows are deleted with their service), publishes them as UNDEPLOYED. Call before deleting rows. */
export function announceUndeploy(ctx: RootContext, s: ServiceRow, rows: InstanceRow[]): void {
  if (rows.length === 0) return;
  tell(ctx, 'instancesUndeployed', () => ctx.control.instancesUndeployed(s, rows));
  const now = new Date().toISOString();
  for (const r of rows) publishInstance(ctx, s, { ...r, status: 'UNDEPLOYED', status_detail: 'undeployed by the API', updated_at: now });
}

/**
 * Undeploys instances (API DELETE, scale down): each row gets desired=stop and stays until its
 * cluster confirms (the control plane finishes it: UNDEPLOYED, addresses released, purged later).
 * Rows already stopping are answered as they are. Answers the rows after the change.
 */
export async function stopInstances(ctx: RootContext, s: ServiceRow, rows: InstanceRow[]): Promise<InstanceRow[]> {
  const out: InstanceRow[] = [];
  const stopped: InstanceRow[] = [];
  for (const r of rows) {
    if (r.desired === 'stop') {
      out.push(r);
      continue;
    }
    const u = await ctx.store.updateInstance(s.id, r.instance_number, { desired: 'stop' });
    out.push(u);
    stopped.push(u);
  }
  if (stopped.length > 0) {
    tell(ctx, 'instancesUndeployed', () => ctx.control.instancesUndeployed(s, stopped));
    for (const r of stopped) publishInstance(ctx, s, r);
  }
  return out;
}

/** Rows still doing something: to run, or to stop but not yet UNDEPLOYED (a rename waits for them). */
export function unfinished(rows: InstanceRow[]): InstanceRow[] {
  return rows.filter((r) => r.desired !== 'stop' || r.status !== 'UNDEPLOYED');
}

/**
 * Undeploys every instance of a service and deletes it. The service row goes at once (its
 * instance rows with it); the control plane is told to undeploy them, and any report about them
 * later gets an undeploy (the orphans pass of the link).
 */
export async function removeService(ctx: RootContext, s: ServiceRow): Promise<void> {
  const rows = unfinished(await ctx.store.listInstances({ service_id: s.id })).map((r) => ({ ...r, desired: 'stop' as const }));
  announceUndeploy(ctx, s, rows);
  await ctx.store.deleteService(s.id);
  await releaseServices(ctx, [s.job_name]);
  ctx.events.publish({ type: 'service', action: 'deleted', microserviceID: s.id, applicationID: s.application_id });
}

// ---- overlay addresses (overlay.ts)

/** Throws OAK_ADDRESS_CONFLICT / OAK_INVALID_SLA before anything is written if a requested address cannot be had. */
export async function checkAddresses(ctx: RootContext, services: { job: string; request: AddressRequest; current?: string }[]): Promise<void> {
  await overlayFor(ctx.store).check(services);
}

/** `warnings` without those about an rr_ip this root honours (inside its extra service ranges); `doc` is what was validated */
export function rangeWarnings(ctx: RootContext, warnings: FieldIssue[], doc: unknown): FieldIssue[] {
  const overlay = overlayFor(ctx.store);
  return overlay.extraServiceRanges.length === 0 ? warnings : withoutHonouredAddresses(warnings, doc, (ip) => overlay.honours(ip));
}

/** the SLA's requested addresses as written (RootOverlay.check keeps only those inside the root's ranges) */
export const addressRequest = (ms: Pick<Microservice, 'addresses'>): AddressRequest => askedAddresses(ms);

/** Gives stored services their addresses (moved from `previousJob` on a rename); answers the rows with them. */
export async function assignServices(ctx: RootContext, rows: ServiceRow[], previousJob?: ReadonlyMap<string, string>): Promise<ServiceRow[]> {
  const out: ServiceRow[] = [];
  for (const r of rows) out.push({ ...r, ...(await overlayFor(ctx.store).assignService(r, previousJob?.get(r.id))) });
  return out;
}

/** Frees the addresses of deleted services (a failure is logged: the state stays consistent, the addresses stay taken). */
export async function releaseServices(ctx: RootContext, jobs: string[]): Promise<void> {
  for (const j of jobs) {
    try {
      await overlayFor(ctx.store).releaseService(j);
    } catch (err) {
      ctx.log?.error({ err, service: j }, 'releasing the overlay addresses of a deleted service failed');
    }
  }
}

/** Frees the addresses of undeployed instances (after their rows are gone). */
export async function releaseInstances(ctx: RootContext, s: ServiceRow, rows: InstanceRow[]): Promise<void> {
  try {
    await overlayFor(ctx.store).releaseInstances(s.job_name, rows.map((r) => r.instance_number));
  } catch (err) {
    ctx.log?.error({ err, service: s.job_name }, 'releasing the overlay addresses of undeployed instances failed');
  }
}

/** Job names are global (they are also the overlay's DNS names): say so when one is taken. */
export function explainConflict(err: unknown): unknown {
  if (err instanceof ConflictError && /job name/i.test(err.message)) {
    return new ConflictError(err.message, 'job names <app>.<appns>.<svc>.<svcns> are unique across all organisations; choose another application_namespace or microservice_namespace');
  }
  return err;
}

/** Throws 409 (before anything is written) if one of these job names belongs to a service not in `own`. */
export async function assertJobNamesFree(ctx: RootContext, jobNames: string[], own: ReadonlySet<string>): Promise<void> {
  for (const j of jobNames) {
    const holder = await ctx.store.getServiceByJobName(j);
    if (holder && !own.has(holder.id)) throw explainConflict(new ConflictError(`a service with job name ${JSON.stringify(j)} already exists`));
  }
}
