/**
 * Root <-> cluster link (SPEC §6). The cluster dials out to the root (gRPC bidirectional stream on
 * port 50052, JSON messages) and authenticates with a registration token. Both directions are
 * discriminated unions on `type`, defined as TypeBox schemas (and the types of the same names);
 * every message is validated on arrival (parseClusterToRoot / parseRootToCluster in wire.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import { ClusterResources } from './api.ts';
import { InstanceState } from './states.ts';
import { Microservice } from './sla.ts';

export const LINK_SERVICE_PATH = '/oak.ClusterLink/Connect';

const Count = () => Type.Integer({ minimum: 0 });
const NullableString = () => Type.Union([Type.String(), Type.Null()]);

/** What a cluster must run: one instance of a service. */
export const InstanceAssignment = Type.Object({
  microserviceID: Type.String({ minLength: 1 }),
  job_name: Type.String({ minLength: 1 }),
  instance_number: Count(),
  service: Microservice,
  /** set when the root already knows the worker (re-sync after a reconnect) */
  worker_id: Type.Optional(NullableString()),
});
export type InstanceAssignment = Static<typeof InstanceAssignment>;

export const ClusterToRoot = Type.Union([
  Type.Object({
    type: Type.Literal('hello'),
    /** the cluster's join token (oak1.c....), see join-token.ts */
    token: Type.String({ maxLength: 512 }),
    cluster_name: Type.String({ minLength: 1, maxLength: 64 }),
    cluster_location: NullableString(),
    version: Type.String({ maxLength: 64 }),
    /** a fresh public key (SPKI PEM) the root certifies in welcome.tls */
    public_key: Type.Optional(Type.String({ maxLength: 4096 })),
  }),
  /** is this worker join token valid for this cluster? answered by token_result */
  Type.Object({
    type: Type.Literal('token_check'),
    request_id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
    token: Type.String({ maxLength: 512 }),
    /** the worker id the token is used for (recorded by the root) */
    worker_id: Type.Optional(Type.String({ maxLength: 200 })),
  }),
  Type.Object({ type: Type.Literal('aggregate'), resources: ClusterResources }),
  Type.Object({
    type: Type.Literal('instance_status'),
    job_name: Type.String({ minLength: 1 }),
    instance_number: Count(),
    status: InstanceState,
    status_detail: Type.String(),
    worker_id: NullableString(),
    publicip: Type.Optional(NullableString()),
  }),
  Type.Object({ type: Type.Literal('pong'), t: Type.Number() }),
  /** lines for a `logs` request, in order */
  Type.Object({ type: Type.Literal('logs_data'), request_id: Type.String({ minLength: 1 }), lines: Type.Array(Type.String()) }),
  /** a `logs` request is over (the instance's output ended, it was cancelled, or `error`) */
  Type.Object({ type: Type.Literal('logs_end'), request_id: Type.String({ minLength: 1 }), error: Type.Optional(Type.String()) }),
]);
export type ClusterToRoot = Static<typeof ClusterToRoot>;

export const RootToCluster = Type.Union([
  Type.Object({
    type: Type.Literal('welcome'),
    cluster_id: Type.String({ minLength: 1 }),
    /** the certificate for hello.public_key (PEM, leaf first, then the CA) and the CA alone */
    tls: Type.Optional(Type.Object({ cert: Type.String(), ca: Type.String() })),
    /** the key the cluster derives its workers' MQTT passwords from (stable per cluster) */
    mqtt_secret: Type.Optional(Type.String({ minLength: 16 })),
  }),
  /** answer to token_check */
  Type.Object({
    type: Type.Literal('token_result'),
    request_id: Type.String({ minLength: 1 }),
    ok: Type.Boolean(),
    /** the token's id (to revoke every worker that joined with it later) */
    token_id: Type.Optional(Type.String()),
    /** why not, for the worker's 401 */
    reason: Type.Optional(Type.String()),
  }),
  /** drop these workers' credentials and disconnect them now (token revoked, node removed) */
  Type.Object({
    type: Type.Literal('revoke_workers'),
    token_id: Type.Optional(Type.String()),
    worker_ids: Type.Optional(Type.Array(Type.String())),
  }),
  Type.Object({ type: Type.Literal('reject'), reason: Type.String() }),
  /** the full desired set for this cluster, sent after welcome: anything else must go */
  Type.Object({ type: Type.Literal('sync'), instances: Type.Array(InstanceAssignment) }),
  Type.Object({ type: Type.Literal('deploy'), instance: InstanceAssignment }),
  Type.Object({ type: Type.Literal('undeploy'), job_name: Type.String({ minLength: 1 }), instance_number: Count() }),
  Type.Object({ type: Type.Literal('ping'), t: Type.Number() }),
  /** send an instance's log lines as logs_data messages, then logs_end */
  Type.Object({
    type: Type.Literal('logs'),
    request_id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
    job_name: Type.String({ minLength: 1 }),
    instance_number: Count(),
    follow: Type.Boolean(),
    tail: Type.Optional(Type.Union([Count(), Type.Null()])),
  }),
  Type.Object({ type: Type.Literal('logs_cancel'), request_id: Type.String({ minLength: 1 }) }),
]);
export type RootToCluster = Static<typeof RootToCluster>;
