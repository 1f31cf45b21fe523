/**
 * Root <-> cluster link (SPEC §6). The cluster dials out to the root (gRPC bidirectional stream on
 * port 50052, JSON messages) and authenticates with a registration token. Both directions are
 * discriminated unions on `type`, defined as TypeBox schemas (and the types of the same names);
 * every message is validated on arrival (parseClusterToRoot / parseRootToCluster in wire.ts).
 */
import { RegistryAuth } from './registry.ts';
import { Type, type Static } from '@sinclair/typebox';
import { ClusterResources, InstanceUsage, MAX_USAGE_READINGS } from './api.ts';
import { HealthState, InstanceState } from './states.ts';
import { Microservice } from './sla.ts';
import { InstanceAddresses, OverlayPeer, ServiceTable } from './net.ts';
import { Sha256Hex, WorkerUpgradeCommand } from './fleet.ts';

export const LINK_SERVICE_PATH = '/oak.ClusterLink/Connect';

const Count = () => Type.Integer({ minimum: 0 });
/** a placement epoch (issue 9): exact integer comparisons, so never above 2^53 - 1 */
const Epoch = () => Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const NullableString = () => Type.Union([Type.String(), Type.Null()]);

/**
 * A connectivity rule the root resolved for an instance (issue 12): the other service's job, the
 * RTT threshold, its rigidness and the workers the other service ran on when the root sent it
 * (the cluster adds the ones it knows itself). See PeerRule in @oak/scheduler.
 */
export const PeerRuleWire = Type.Object({
  target: Type.String({ minLength: 1, maxLength: 512 }),
  threshold_ms: Type.Number({ minimum: 0 }),
  rigidness: Type.Number({ minimum: 0, maximum: 1 }),
  workers: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 1000 }),
});
export type PeerRuleWire = Static<typeof PeerRuleWire>;

/** What a cluster must run: one instance of a service. */
export const InstanceAssignment = Type.Object({
  microserviceID: Type.String({ minLength: 1 }),
  job_name: Type.String({ minLength: 1 }),
  instance_number: Count(),
  service: Microservice,
  /** set when the root already knows the worker (re-sync after a reconnect) */
  worker_id: Type.Optional(NullableString()),
  /** the virtual addresses (root IPAM) of the service and this instance (`service.addresses` stays the SLA's request) */
  overlay: Type.Optional(InstanceAddresses),
  /** the organisation owning the service: the scope of its named volumes on the worker */
  organization_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' })),
  /** the placement's epoch (issue 9): + 1 at every placement of this instance; echoed in instance_status */
  epoch: Type.Optional(Epoch()),
  /** the organisation's login to the image's registry host (private registries): for the deploy, never logged or kept on disk */
  registry_auth: Type.Optional(RegistryAuth),
  /** the service's connectivity rules, resolved by the root (absent without any) */
  peers: Type.Optional(Type.Array(PeerRuleWire, { maxItems: 100 })),
});

const RequestId = () => Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' });

/** where an instance's network namespace is (instance_status.net), from the worker's NetManager */
export const InstanceNet = Type.Object({
  nsip: Type.String({ minLength: 2, maxLength: 64 }),
  nsip_v6: Type.Optional(NullableString()),
  host_ip: Type.String({ minLength: 2, maxLength: 64 }),
  host_port: Type.Integer({ minimum: 1, maximum: 65535 }),
  subnet: Type.String({ minLength: 2, maxLength: 64 }),
  subnet_v6: Type.Optional(NullableString()),
});
export type InstanceNet = Static<typeof InstanceNet>;
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
  Type.Object({
    type: Type.Literal('aggregate'),
    resources: ClusterResources,
    /** the workers' last per-instance readings (issue 11); absent from older clusters */
    usage: Type.Optional(Type.Array(InstanceUsage, { maxItems: MAX_USAGE_READINGS })),
  }),
  Type.Object({
    type: Type.Literal('instance_status'),
    job_name: Type.String({ minLength: 1 }),
    instance_number: Count(),
    status: InstanceState,
    status_detail: Type.String(),
    worker_id: NullableString(),
    publicip: Type.Optional(NullableString()),
    /** the instance's namespace address on its worker, once its NetManager reported it (null: gone) */
    net: Type.Optional(Type.Union([InstanceNet, Type.Null()])),
    /** the epoch of the assignment this copy runs (absent from clusters of before issue 9) */
    epoch: Type.Optional(Epoch()),
    /** the health probe's verdict and the local restarts (issue 10) */
    health: Type.Optional(HealthState),
    restarts: Type.Optional(Count()),
  }),
  /** a worker's overlay subnet (allocated once, persisted, the same again after restarts); answered by subnet_result */
  Type.Object({ type: Type.Literal('subnet_request'), request_id: RequestId(), worker_id: Type.String({ minLength: 1, maxLength: 200 }) }),
  /** a service's table across all clusters, by job name or virtual IP; answered by table_result; registers interest */
  Type.Object({
    type: Type.Literal('table_query'),
    request_id: RequestId(),
    job_name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    ip: Type.Optional(Type.String({ minLength: 2, maxLength: 64 })),
  }),
  /** no worker of this cluster needs this job's table any more: stop sending table_update for it */
  Type.Object({ type: Type.Literal('interest_remove'), job_name: Type.String({ minLength: 1, maxLength: 255 }) }),
  Type.Object({ type: Type.Literal('pong'), t: Type.Number() }),
  /** bytes of a release artifact the root sent a worker_upgrade for (issue 14); answered by artifact_chunk */
  Type.Object({ type: Type.Literal('artifact_request'), request_id: RequestId(), sha256: Sha256Hex(), offset: Count() }),
  /** lines for a `logs` request, in order */
  Type.Object({ type: Type.Literal('logs_data'), request_id: Type.String({ minLength: 1 }), lines: Type.Array(Type.String()) }),
  /** a `logs` request is over (the instance's output ended, it was cancelled, or `error`) */
  Type.Object({
    type: Type.Literal('logs_end'),
    request_id: Type.String({ minLength: 1 }),
    error: Type.Optional(Type.String()),
    /** with `error`: the logs are gone for good (expired, dropped, never kept), not just unreachable now */
    gone: Type.Optional(Type.Boolean()),
  }),
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
  /**
   * Several roots on one PostgreSQL: this root follows; dial the leading root's link at `address`
   * (host:port) instead. The stream ends after it. Clusters follow a bounded number of redirects
   * in a row and go back to their configured root after a failure.
   */
  Type.Object({ type: Type.Literal('redirect'), address: Type.String({ minLength: 1, maxLength: 300 }), reason: Type.Optional(Type.String({ maxLength: 1000 })) }),
  /** the full desired set for this cluster, sent after welcome: anything else must go */
  Type.Object({ type: Type.Literal('sync'), instances: Type.Array(InstanceAssignment) }),
  Type.Object({ type: Type.Literal('deploy'), instance: InstanceAssignment }),
  Type.Object({
    type: Type.Literal('undeploy'),
    job_name: Type.String({ minLength: 1 }),
    instance_number: Count(),
    /** only the copy of this epoch (a stale copy); absent: whatever copy the cluster has */
    epoch: Type.Optional(Epoch()),
  }),
  Type.Object({ type: Type.Literal('ping'), t: Type.Number() }),
  /** fleet upgrade (issue 14): pass this command to the worker (the cluster fetches the artifact first) */
  Type.Object({ type: Type.Literal('worker_upgrade'), worker_id: Type.String({ pattern: '^[^/+#\\s]{1,200}$' }), command: WorkerUpgradeCommand }),
  /** answer to artifact_request: base64 bytes from `offset` (at most ARTIFACT_CHUNK_BYTES), the total size; or `error` */
  Type.Object({
    type: Type.Literal('artifact_chunk'),
    request_id: Type.String({ minLength: 1, maxLength: 128 }),
    sha256: Sha256Hex(),
    offset: Count(),
    total: Count(),
    data: Type.String({ maxLength: 6 * 1024 * 1024 }),
    error: Type.Optional(Type.String({ maxLength: 1000 })),
  }),
  /** send an instance's log lines as logs_data messages, then logs_end */
  Type.Object({
    type: Type.Literal('logs'),
    request_id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
    job_name: Type.String({ minLength: 1 }),
    instance_number: Count(),
    follow: Type.Boolean(),
    tail: Type.Optional(Type.Union([Count(), Type.Null()])),
    /**
     * the instance ended: the worker that ran it (the root remembers it), asked even when the
     * cluster no longer tracks the instance; it answers from the logs it kept
     */
    worker_id: Type.Optional(Type.String({ pattern: '^[^/+#\\s]{1,200}$' })),
  }),
  Type.Object({ type: Type.Literal('logs_cancel'), request_id: Type.String({ minLength: 1 }) }),
  /** answer to subnet_request */
  Type.Object({
    type: Type.Literal('subnet_result'),
    request_id: Type.String({ minLength: 1 }),
    subnet: Type.Optional(Type.String()),
    subnet_v6: Type.Optional(NullableString()),
    /** the root's extra IPv4 service ranges (--extra-service-ranges), passed on to the worker */
    service_ranges: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 15 })),
    error: Type.Optional(Type.String()),
  }),
  /** answer to table_query (`error` when no service has that name or address) */
  Type.Object({
    type: Type.Literal('table_result'),
    request_id: Type.String({ minLength: 1 }),
    table: Type.Optional(ServiceTable),
    error: Type.Optional(Type.String()),
  }),
  /** a job this cluster asked about changed (an instance appeared, died or moved anywhere) */
  Type.Object({ type: Type.Literal('table_update'), table: ServiceTable }),
  /** the overlay workers of the other clusters (full list, sent after welcome and on change) */
  Type.Object({ type: Type.Literal('peers'), peers: Type.Array(OverlayPeer) }),
]);
export type RootToCluster = Static<typeof RootToCluster>;
