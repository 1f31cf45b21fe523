/**
 * TypeBox schemas of the root API's requests and answers. They validate requests (validation.ts),
 * serialise answers and generate the OpenAPI document at /api/docs: one source.
 */
import {
  ApplicationPatch,
  ClusterResources,
  INSTANCE_STATES,
  Microservice,
  ROLES,
  ServiceRequestSla,
  Sla,
} from '@oak/contracts';
import { Type, type TSchema } from '@sinclair/typebox';
import { handlerValidated, optionalBody } from './validation.ts';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Id = (description: string) => Type.String({ minLength: 1, maxLength: 200, description });

export const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));
export const InstanceStateSchema = Type.Union(INSTANCE_STATES.map((s) => Type.Literal(s)));

export const FieldIssueSchema = Type.Object({ path: Type.String(), message: Type.String(), hint: Type.Optional(Type.String()) });

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'stable code, e.g. OAK_NOT_FOUND' }),
      message: Type.String(),
      path: Type.Optional(Type.String({ description: 'JSON path of the offending field' })),
      hint: Type.Optional(Type.String()),
      details: Type.Optional(Type.Array(FieldIssueSchema)),
    }),
  },
  { description: 'error (SPEC §3 shape)' },
);

/** Error answers every protected route may give. */
export function errors(...codes: number[]): Record<number, typeof ErrorSchema> {
  const out: Record<number, typeof ErrorSchema> = {};
  for (const c of [401, ...codes]) out[c] = ErrorSchema;
  return out;
}

// ---- auth
export const LoginBody = Type.Object(
  { username: Type.String({ minLength: 1, maxLength: 200 }), password: Type.String({ minLength: 1, maxLength: 1024 }) },
  { additionalProperties: true },
);
export const RefreshBody = Type.Object({ refresh_token: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })) }, { additionalProperties: true });
export const TokenPairSchema = Type.Object({
  token: Type.String({ description: 'access token (bearer)' }),
  refresh_token: Type.String(),
  expires_in: Type.Integer({ description: 'seconds until the access token expires' }),
});

// ---- organisations and users
export const OrganizationDocSchema = Type.Object({ _id: Type.String(), name: Type.String(), created_at: Type.String() });
export const OrganizationBody = Type.Object({ name: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' }) }, { additionalProperties: true });

export const UserDocSchema = Type.Object({
  _id: Type.String(),
  name: Type.String(),
  email: Type.Optional(Type.String()),
  roles: Type.Array(RoleSchema),
  organization_id: Type.String(),
  organization: Type.Optional(Type.String()),
  created_at: Type.String(),
});

/** Oakestra sends roles as objects `{ name, description }`; plain names are accepted too. */
const RoleInput = Type.Union([RoleSchema, Type.Object({ name: RoleSchema }, { additionalProperties: true })]);
const UserName = Type.String({ pattern: '^[a-zA-Z0-9_.@-]{1,64}$', description: 'user name' });

export const UserCreateBody = Type.Object(
  {
    name: UserName,
    // the length rule is checked by the handler (checkPassword), which names it in its message
    password: Type.String({ maxLength: 1024, description: 'at least 8 characters' }),
    email: Type.Optional(Type.String({ maxLength: 320 })),
    roles: Type.Optional(Type.Array(RoleInput, { description: 'default: Application_Provider' })),
    organization_id: Type.Optional(Type.String({ description: 'default: the caller\'s organisation' })),
    organization: Type.Optional(Type.String({ description: 'organisation name (instead of organization_id)' })),
  },
  { additionalProperties: true },
);
export const UserUpdateBody = Type.Object(
  {
    email: Type.Optional(Nullable(Type.String({ maxLength: 320 }))),
    roles: Type.Optional(Type.Array(RoleInput)),
  },
  { additionalProperties: true },
);
export const PasswordBody = Type.Object(
  {
    password: Type.String({ maxLength: 1024, description: 'the new password, at least 8 characters' }),
    old_password: Type.Optional(Type.String({ maxLength: 1024, description: 'required when changing your own password' })),
  },
  { additionalProperties: true },
);

// ---- applications, services, instances
export const ApplicationDocSchema = Type.Object({
  applicationID: Type.String(),
  application_name: Type.String(),
  application_namespace: Type.String(),
  application_desc: Type.String(),
  userId: Type.String(),
  organization_id: Type.String(),
  microservices: Type.Array(Type.String(), { description: 'ids of the services' }),
  created_at: Type.String(),
  updated_at: Type.String(),
  warnings: Type.Optional(Type.Array(FieldIssueSchema, { description: 'fields accepted but not used (create/update answers only)' })),
});

const UsagePoint = Type.Object({ value: Type.Number(), timestamp: Type.String() });

export const InstanceDocSchema = Type.Object({
  instance_number: Type.Integer(),
  status: InstanceStateSchema,
  status_detail: Type.String(),
  cluster_id: Nullable(Type.String()),
  cluster_name: Type.Optional(Nullable(Type.String())),
  worker_id: Nullable(Type.String()),
  publicip: Nullable(Type.String()),
  instance_ip: Type.Optional(Nullable(Type.String({ description: 'stable virtual IPv4 of the instance (overlay, root IPAM)' }))),
  instance_ip_v6: Type.Optional(Nullable(Type.String({ description: 'stable virtual IPv6 of the instance' }))),
  nsip: Type.Optional(Nullable(Type.String({ description: "address of the instance's network namespace on its worker (worker subnet), once reported" }))),
  nsip_v6: Type.Optional(Nullable(Type.String())),
  created_at: Type.String(),
  updated_at: Type.String(),
  history: Type.Optional(Type.Array(Type.Object({ status: InstanceStateSchema, status_detail: Type.String(), at: Type.String() }))),
  service_version: Type.Optional(Type.Integer({ description: 'the service version this instance runs or will run' })),
  desired: Type.Optional(Type.Union([Type.Literal('run'), Type.Literal('stop')], { description: "'stop': undeploy asked; the root finishes it once its cluster confirms (listings leave it out)" })),
  epoch: Type.Optional(Type.Integer({ description: '+ 1 at every placement on a cluster (0: never placed)' })),
  replaces: Type.Optional(Nullable(Type.Integer({ description: 'the instance this one replaces (rolling update, lost cluster)' }))),
  health: Type.Optional(Nullable(Type.Union([Type.Literal('starting'), Type.Literal('healthy'), Type.Literal('unhealthy')], { description: "the health probe's verdict on its worker (null: no probe)" }))),
  restarts: Type.Optional(Type.Integer({ minimum: 0, description: 'local restarts of the current copy on its worker' })),
  cpu_percent: Type.Optional(Nullable(Type.Number({ description: "Oakestra's field: the last CPU reading in percent of one core (null before one arrived)" }))),
  memory_percent: Type.Optional(Nullable(Type.Number({ description: "Oakestra's field: the last memory reading in percent of the SLA's memory (null without a reading or without memory in the SLA)" }))),
  disk: Type.Optional(Nullable(Type.Number({ description: "Oakestra's field; no source here: null" }))),
  cpu_history: Type.Optional(Type.Array(UsagePoint, { description: "Oakestra's field: the CPU readings the root holds, oldest first (at most 100)" })),
  memory_history: Type.Optional(Type.Array(UsagePoint, { description: "Oakestra's field: memory_percent of the same readings" })),
  logs: Type.Optional(Type.String({ description: "Oakestra's field: always \"\" here (GET /api/service/{id}/instance/{n}/logs streams the logs)" })),
  host_ip: Type.Optional(Nullable(Type.String({ description: "the worker's public address (NetManager NodePublicAddress), else publicip" }))),
  host_port: Type.Optional(Nullable(Type.Integer({ description: "the worker's public port (NetManager NodePublicPort); null without the overlay" }))),
  cluster_location: Type.Optional(Nullable(Type.String({ description: "the location of the instance's cluster (CLUSTER_LOCATION)" }))),
});

export const ServiceDocSchema = Type.Composite(
  [
    Microservice,
    Type.Object({
      microserviceID: Type.String(),
      applicationID: Type.String(),
      job_name: Type.String({ description: '<app>.<appns>.<svc>.<svcns>' }),
      application_name: Type.String(),
      application_namespace: Type.String(),
      organization_id: Type.String(),
      userId: Type.String(),
      instance_list: Type.Array(InstanceDocSchema),
      service_ip: Type.Optional(Nullable(Type.String({ description: 'round-robin virtual IPv4 (addresses.rr_ip when requested, else from 10.30.0.0/16)' }))),
      service_ip_v6: Type.Optional(Nullable(Type.String({ description: 'round-robin virtual IPv6 (fdff::/64)' }))),
      closest_ip: Type.Optional(Nullable(Type.String({ description: 'virtual IPv4 that reaches the closest instance (lowest RTT, same worker first)' }))),
      closest_ip_v6: Type.Optional(Nullable(Type.String())),
      app_name: Type.Optional(Type.String({ description: "Oakestra's name of application_name on a service" })),
      app_ns: Type.Optional(Type.String({ description: "Oakestra's name of application_namespace on a service" })),
      RR_ip: Type.Optional(Nullable(Type.String({ description: "Oakestra's name of service_ip" }))),
      created_at: Type.String(),
      updated_at: Type.String(),
      version: Type.Optional(Type.Integer({ description: 'the SLA generation: + 1 at every change of the SLA and at every rollback' })),
      warnings: Type.Optional(Type.Array(FieldIssueSchema, { description: 'fields accepted but not used (create/update answers only)' })),
    }),
  ],
  { additionalProperties: true },
);

/** ServiceDocSchema with instance_list as a string: the service's own fields of docs.ts's serviceJson (the instances are spliced in as prebuilt text) */
export const ServiceDocShellSchema = { ...ServiceDocSchema, properties: { ...ServiceDocSchema.properties, instance_list: Type.String() } };

export const ServiceVersionDocSchema = Type.Object({
  version: Type.Integer(),
  created_at: Type.String(),
  created_by: Nullable(Type.String({ description: 'user id; null: the root itself (auto rollback)' })),
  created_by_name: Nullable(Type.String({ description: 'that user\'s name (null: the root, or a removed user)' })),
  reason: Type.String({ description: "'created', 'updated', 'rollback to N', 'auto rollback: ...'" }),
  outcome: Nullable(Type.String({ description: "'complete', 'stopped: ...', 'rolled back: ...', 'superseded'; null while rolling" })),
  current: Type.Boolean({ description: "true for the service's current version" }),
  sla: Type.Composite([Microservice], { additionalProperties: true }),
});

export const HISTORY_MAX = 1000;
export const HistoryQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HISTORY_MAX, description: `only the newest N versions (default and at most ${HISTORY_MAX})` })),
});

/** POST /api/service/{id}/rollback: `{ to? }`, or no body at all */
export const RollbackBody = optionalBody(
  Type.Object(
    { to: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'the version to restore (default: the newest earlier version whose rollout completed, else the previous one)' })) },
    { additionalProperties: false },
  ),
);

export const SlaBody = handlerValidated(Sla);
export const ApplicationPatchBody = handlerValidated(ApplicationPatch);
export const ServiceCreateBody = handlerValidated(
  Type.Union([ServiceRequestSla, Type.Composite([Microservice, Type.Object({ applicationID: Type.String() })], { additionalProperties: true })], {
    description: 'one service with the applicationID it joins, or Oakestra\'s SLA shape naming the application',
  }),
);
export const ServicePatchBody = handlerValidated(Type.Partial(Microservice, { additionalProperties: true }));

export const ClusterDocSchema = Type.Object({
  _id: Type.String(),
  cluster_name: Type.String(),
  cluster_location: Nullable(Type.String()),
  status: Type.Union([Type.Literal('ACTIVE'), Type.Literal('INACTIVE')]),
  last_seen: Nullable(Type.String()),
  resources: Nullable(ClusterResources),
  created_at: Type.String(),
  active: Type.Optional(Type.Boolean({ description: "Oakestra's: status is ACTIVE" })),
  active_nodes: Type.Optional(Type.Integer({ description: "Oakestra's: workers reported" })),
  total_cpu_cores: Type.Optional(Type.Number({ description: "Oakestra's: resources.cpu_cores_total" })),
  memory_in_mb: Type.Optional(Type.Number({ description: "Oakestra's: resources.memory_total_mb" })),
  virtualization: Type.Optional(Type.Array(Type.String(), { description: "Oakestra's: resources.virtualizations" })),
  last_modified_timestamp: Type.Optional(Type.Number({ description: "Oakestra's: last_seen in seconds since the epoch (0: never)" })),
  version: Type.Optional(Nullable(Type.String({ description: "the cluster orchestrator's version (its last aggregate)" }))),
});

// ---- params
export const IdParams = Type.Object({ id: Id('id') });
export const AppIdParams = Type.Object({ appId: Id('application id') });
export const UserParams = Type.Object({ user: Id('user id or name') });
export const InstanceParams = Type.Object({ id: Id('service id'), n: Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'instance number' }) });

export const DeployQuery = Type.Object({ deploy: Type.Optional(Type.Boolean({ description: 'also deploy `replicas` (default 1) instances of every service' })) });
export const LogsQuery = Type.Object({
  follow: Type.Optional(Type.Union([Type.Boolean(), Type.Literal('1'), Type.Literal('0')], { description: 'keep streaming' })),
  tail: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000, description: 'only the last N lines' })),
  token: Type.Optional(Type.String({ description: 'access token, for clients that cannot set headers' })),
});

export const DeletedSchema = Type.Object({ deleted: Type.String({ description: 'id of what was deleted' }) });
