/** Store rows -> API documents (Oakestra field names, SPEC §3). */
import type { ApplicationDoc, ClusterDoc, InstanceDoc, OrganizationDoc, ServiceDoc, ServiceVersionDoc, UsageSample, UserDoc } from '@oak/contracts';
import type { ApplicationRow, ClusterRow, InstanceHistoryRow, InstanceRow, OrganizationRow, ServiceRow, ServiceVersionRow, Store, UserRow } from '@oak/store';
import { randomBytes } from 'node:crypto';
import { OAKESTRA_HISTORY, round2, usageJsonOf, type UsageJson } from './usage.ts';

export { OAKESTRA_HISTORY };

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

/** What an instance document needs beyond its row for Oakestra's usage and location fields. */
export interface InstanceExtras {
  /** the UsageBook's readings of the instance, oldest first */
  samples: readonly UsageSample[];
  /** the SLA's memory in MB (memory_percent's base), 0/undefined: none */
  memoryMb?: number | undefined;
  /** the location of the instance's cluster */
  clusterLocation?: string | null | undefined;
  /** the usage fields already as JSON text (the UsageBook's prebuilt strings); else built from `samples` */
  usageJson?: UsageJson | undefined;
}

/**
 * Oakestra's instance fields (issue 12 point 2) from what the root has: the readings book for
 * cpu/memory and their histories, the worker's tunnel endpoint (else publicip) for host_ip /
 * host_port, the cluster's location; `disk` and `logs` have no source and keep Oakestra's empty
 * shape (null, "").
 */
export function oakestraInstanceFields(i: InstanceRow, x?: InstanceExtras): Pick<InstanceDoc, 'cpu_percent' | 'memory_percent' | 'disk' | 'cpu_history' | 'memory_history' | 'logs' | 'host_ip' | 'host_port' | 'cluster_location'> {
  const samples = (x?.samples ?? []).slice(-OAKESTRA_HISTORY);
  const mem = x?.memoryMb !== undefined && x.memoryMb > 0 ? x.memoryMb : undefined;
  const memPercent = (mb: number): number | null => (mem === undefined ? null : round2((mb / mem) * 100));
  const last = samples[samples.length - 1];
  const at = (ms: number): string => new Date(ms).toISOString();
  return {
    cpu_percent: last === undefined ? null : round2(last.cpu_percent),
    memory_percent: last === undefined ? null : memPercent(last.memory_mb),
    disk: null,
    cpu_history: samples.map((u) => ({ value: round2(u.cpu_percent), timestamp: at(u.at) })),
    memory_history: mem === undefined ? [] : samples.map((u) => ({ value: memPercent(u.memory_mb) as number, timestamp: at(u.at) })),
    logs: '',
    host_ip: i.net?.host_ip ?? i.publicip,
    host_port: i.net?.host_port ?? null,
    cluster_location: i.cluster_id === null ? null : (x?.clusterLocation ?? null),
  };
}

export function instanceDoc(i: InstanceRow, history?: InstanceHistoryRow[], extras?: InstanceExtras): InstanceDoc {
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
    ...oakestraInstanceFields(i, extras),
  };
  if (history) d.history = history.map((h) => ({ status: h.status, status_detail: h.status_detail, at: h.at }));
  return d;
}

const j = JSON.stringify;
/** `,"key":value` for a value the serializer writes (undefined: left out, as the serializer does) */
const field = (k: string, v: string | number | null | undefined): string => (v === undefined ? '' : `,"${k}":${v === null ? 'null' : j(v)}`);

/**
 * instanceDoc as the JSON text Fastify's serializer of InstanceDocSchema writes for it (the same
 * bytes: the schema's required fields first, then the optional ones, each group in the schema's
 * order, as fast-json-stringify writes them; undefined ones left out), built as a string:
 * the usage histories (Oakestra's 2 x 100 readings, 91% of the bytes) come prebuilt from the
 * UsageBook instead of as 200 objects to build and serialize at every read.
 */
export function instanceJson(i: InstanceRow, history?: InstanceHistoryRow[], x?: InstanceExtras): string {
  const mem = x?.memoryMb !== undefined && x.memoryMb > 0 ? x.memoryMb : undefined;
  const u = x?.usageJson ?? usageJsonOf(x?.samples ?? [], mem);
  let h = '';
  if (history) h = `,"history":[${history.map((e) => `{"status":${j(e.status)},"status_detail":${j(e.status_detail)},"at":${j(e.at)}}`).join(',')}]`;
  return (
    `{"instance_number":${j(i.instance_number)}` +
    field('status', i.status) +
    field('status_detail', i.status_detail) +
    field('cluster_id', i.cluster_id) +
    field('worker_id', i.worker_id) +
    field('publicip', i.publicip) +
    field('created_at', i.created_at) +
    field('updated_at', i.updated_at) +
    field('instance_ip', i.instance_ip) +
    field('instance_ip_v6', i.instance_ip_v6) +
    field('nsip', i.net?.nsip ?? null) +
    field('nsip_v6', i.net?.nsip_v6 ?? null) +
    h +
    field('service_version', i.service_version) +
    field('desired', i.desired) +
    field('epoch', i.epoch) +
    field('replaces', i.replaces) +
    field('health', i.health) +
    field('restarts', i.restarts) +
    `,"cpu_percent":${u.cpu_percent},"memory_percent":${u.memory_percent},"disk":null,"cpu_history":${u.cpu_history},"memory_history":${u.memory_history},"logs":""` +
    field('host_ip', i.net?.host_ip ?? i.publicip) +
    field('host_port', i.net?.host_port ?? null) +
    field('cluster_location', i.cluster_id === null ? null : (x?.clusterLocation ?? null)) +
    '}'
  );
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

/** Where instance documents get their readings (the root's UsageBook) */
export interface UsageSource {
  history(serviceId: string, n: number): UsageSample[];
  /** the usage fields as prebuilt JSON text (instanceJson's fast path) */
  usageJson?(serviceId: string, n: number, memoryMb: number | undefined): UsageJson;
}

/** The extras of instances of one service: readings, the SLA's memory, the clusters' locations (read once per cluster). */
export function extrasLoader(store: Store, s: ServiceRow, usage?: UsageSource, json = false): (r: InstanceRow) => Promise<InstanceExtras> {
  const locations = new Map<string, Promise<string | null>>();
  const memory = typeof s.sla.memory === 'number' ? s.sla.memory : undefined;
  return async (r) => {
    let loc: Promise<string | null> | undefined;
    if (r.cluster_id !== null) {
      loc = locations.get(r.cluster_id);
      if (loc === undefined) locations.set(r.cluster_id, (loc = store.getClusterLocation(r.cluster_id).then((l) => (l ? l : null))));
    }
    const clusterLocation = loc === undefined ? null : await loc;
    if (json && usage?.usageJson) return { samples: [], usageJson: usage.usageJson(s.id, r.instance_number, memory), memoryMb: memory, clusterLocation };
    return { samples: usage?.history(s.id, r.instance_number) ?? [], memoryMb: memory, clusterLocation };
  };
}

/** One instance's document with its history and Oakestra's usage fields. */
export async function loadInstanceDoc(store: Store, s: ServiceRow, r: InstanceRow, usage?: UsageSource): Promise<InstanceDoc> {
  return instanceDoc(r, await store.instanceHistory(s.id, r.instance_number), await extrasLoader(store, s, usage)(r));
}

/** A service with its instances and their history, read from the store (`usage`: the readings for Oakestra's usage fields). */
export async function loadServiceDoc(store: Store, s: ServiceRow, app: ApplicationRow, usage?: UsageSource): Promise<ServiceDoc> {
  const rows = listed(await store.listInstances({ service_id: s.id }));
  rows.sort((a, b) => a.instance_number - b.instance_number);
  const extras = extrasLoader(store, s, usage);
  // every instance's history in one read (a read per instance made a service of a hundred instances a hundred reads)
  const history = await store.serviceHistory(s.id);
  const docs = await Promise.all(rows.map(async (r) => instanceDoc(r, history.get(r.instance_number) ?? [], await extras(r))));
  return serviceDoc(s, app, docs);
}

/** loadInstanceDoc as JSON text (instanceJson) */
export async function loadInstanceJson(store: Store, s: ServiceRow, r: InstanceRow, usage?: UsageSource): Promise<string> {
  return instanceJson(r, await store.instanceHistory(s.id, r.instance_number), await extrasLoader(store, s, usage, true)(r));
}

/** the JSON text of the instances a service document lists, in its order */
export async function loadInstanceJsons(store: Store, s: ServiceRow, usage?: UsageSource): Promise<string[]> {
  const rows = listed(await store.listInstances({ service_id: s.id }));
  rows.sort((a, b) => a.instance_number - b.instance_number);
  const extras = extrasLoader(store, s, usage, true);
  const history = await store.serviceHistory(s.id);
  return Promise.all(rows.map(async (r) => instanceJson(r, history.get(r.instance_number) ?? [], await extras(r))));
}

/** what stands for instance_list in the service shell: random per process, so no stored text can contain it */
const LIST_MARK = `oak-instance-list-${randomBytes(16).toString('hex')}`;

/** a serializer of ServiceDocShellSchema (ServiceDocSchema with instance_list as a string), e.g. reply.compileSerializationSchema's */
export type ShellSerializer = (doc: { [key: string]: unknown }) => string;

/**
 * serviceDoc as JSON text: the service's own fields through the route's serializer (the same
 * bytes as for ServiceDocSchema), the instances' prebuilt text in place of instance_list.
 */
export function serviceJson(ser: ShellSerializer, s: ServiceRow, app: ApplicationRow, instances: readonly string[]): string {
  const text = ser({ ...serviceDoc(s, app, []), instance_list: LIST_MARK });
  const at = text.indexOf(`"${LIST_MARK}"`);
  if (at < 0) throw new Error('service document: the serializer lost instance_list');
  return `${text.slice(0, at)}[${instances.join(',')}]${text.slice(at + LIST_MARK.length + 2)}`;
}

/** loadServiceDoc as JSON text */
export async function loadServiceJson(ser: ShellSerializer, store: Store, s: ServiceRow, app: ApplicationRow, usage?: UsageSource): Promise<string> {
  return serviceJson(ser, s, app, await loadInstanceJsons(store, s, usage));
}

export async function loadApplicationDoc(store: Store, a: ApplicationRow): Promise<ApplicationDoc> {
  const services = await store.listServices({ application_id: a.id });
  return applicationDoc(a, services.map((s) => s.id));
}
