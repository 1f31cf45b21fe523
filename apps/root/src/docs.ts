/** Store rows -> API documents (Oakestra field names, SPEC §3). */
import type { ApplicationDoc, ClusterDoc, InstanceDoc, OrganizationDoc, ServiceDoc, ServiceVersionDoc, UserDoc } from '@oak/contracts';
import type { ApplicationRow, ClusterRow, InstanceHistoryRow, InstanceRow, OrganizationRow, ServiceRow, ServiceVersionRow, Store, UserRow } from '@oak/store';

export function organizationDoc(o: OrganizationRow): OrganizationDoc {
  return { _id: o.id, name: o.name, created_at: o.created_at };
}

export function userDoc(u: UserRow, orgName?: string): UserDoc {
  const d: UserDoc = { _id: u.id, name: u.name, roles: [...u.roles], organization_id: u.organization_id, created_at: u.created_at };
  if (u.email !== null && u.email !== '') d.email = u.email;
  if (orgName !== undefined) d.organization = orgName;
  return d;
}

export function applicationDoc(a: ApplicationRow, serviceIds: string[]): ApplicationDoc {
  return {
    applicationID: a.id,
    application_name: a.name,
    application_namespace: a.namespace,
    application_desc: a.description,
    userId: a.user_id,
    organization_id: a.organization_id,
    microservices: serviceIds,
    created_at: a.created_at,
    updated_at: a.updated_at,
  };
}

export function instanceDoc(i: InstanceRow, history?: InstanceHistoryRow[]): InstanceDoc {
  const d: InstanceDoc = {
    instance_number: i.instance_number,
    status: i.status,
    status_detail: i.status_detail,
    cluster_id: i.cluster_id,
    worker_id: i.worker_id,
    publicip: i.publicip,
    instance_ip: i.instance_ip,
    instance_ip_v6: i.instance_ip_v6,
    nsip: i.net?.nsip ?? null,
    nsip_v6: i.net?.nsip_v6 ?? null,
    created_at: i.created_at,
    updated_at: i.updated_at,
    service_version: i.service_version,
    desired: i.desired,
    epoch: i.epoch,
    replaces: i.replaces,
    health: i.health,
    restarts: i.restarts,
  };
  if (history) d.history = history.map((h) => ({ status: h.status, status_detail: h.status_detail, at: h.at }));
  return d;
}

export function serviceDoc(s: ServiceRow, app: ApplicationRow, instances: InstanceDoc[]): ServiceDoc {
  return {
    ...s.sla,
    microserviceID: s.id,
    applicationID: s.application_id,
    job_name: s.job_name,
    microservice_name: s.name,
    microservice_namespace: s.namespace,
    application_name: app.name,
    application_namespace: app.namespace,
    organization_id: s.organization_id,
    userId: s.user_id,
    instance_list: instances,
    service_ip: s.service_ip,
    service_ip_v6: s.service_ip_v6,
    closest_ip: s.closest_ip,
    closest_ip_v6: s.closest_ip_v6,
    app_name: app.name,
    app_ns: app.namespace,
    RR_ip: s.service_ip,
    created_at: s.created_at,
    updated_at: s.updated_at,
    version: s.version,
  };
}

export function serviceVersionDoc(v: ServiceVersionRow, current: number, userName: string | null): ServiceVersionDoc {
  return {
    version: v.version,
    created_at: v.created_at,
    created_by: v.created_by,
    created_by_name: userName,
    reason: v.reason,
    outcome: v.outcome,
    current: v.version === current,
    sla: v.sla,
  };
}

/** Instances the API lists: the ones that should run (a desired=stop row is on its way out). */
export function listed(rows: InstanceRow[]): InstanceRow[] {
  return rows.filter((r) => r.desired !== 'stop');
}

export function clusterDoc(c: ClusterRow): ClusterDoc {
  return {
    _id: c.id,
    cluster_name: c.name,
    cluster_location: c.location,
    status: c.status,
    last_seen: c.last_seen,
    resources: c.resources,
    created_at: c.created_at,
    active: c.status === 'ACTIVE',
    active_nodes: c.resources?.workers ?? 0,
    total_cpu_cores: c.resources?.cpu_cores_total ?? 0,
    memory_in_mb: c.resources?.memory_total_mb ?? 0,
    virtualization: [...(c.resources?.virtualizations ?? [])],
    last_modified_timestamp: c.last_seen !== null ? Math.floor(Date.parse(c.last_seen) / 1000) || 0 : 0,
    version: c.resources?.version ?? null,
  };
}

/** A service with its instances and their history, read from the store. */
export async function loadServiceDoc(store: Store, s: ServiceRow, app: ApplicationRow): Promise<ServiceDoc> {
  const rows = listed(await store.listInstances({ service_id: s.id }));
  rows.sort((a, b) => a.instance_number - b.instance_number);
  const docs = await Promise.all(rows.map(async (r) => instanceDoc(r, await store.instanceHistory(s.id, r.instance_number))));
  return serviceDoc(s, app, docs);
}

export async function loadApplicationDoc(store: Store, a: ApplicationRow): Promise<ApplicationDoc> {
  const services = await store.listServices({ application_id: a.id });
  return applicationDoc(a, services.map((s) => s.id));
}
