/**
 * The overlay network's messages (issue 8, SPEC §5 and §8): NetManager <-> cluster over MQTT,
 * NodeEngine <-> NetManager over the NetManager's local API (port 6000), and what the root and
 * the cluster exchange about it on the link (link.ts uses the shapes below).
 *
 * Address model (docs/network.md):
 *   - every worker owns a subnet (`subnet`, a /26 of 10.18.0.0/16, and `subnet_v6`, a /64 of
 *     fdff:18::/48), allocated and persisted by the root; the bridge gateway is its first host;
 *   - every instance's network namespace takes an address of its worker's subnet (`nsip`,
 *     `nsip_v6`), chosen by the worker;
 *   - every service has a round-robin IP (`service_ip`, from `addresses.rr_ip` or 10.30.0.0/16),
 *     a closest IP (`closest_ip`), and IPv6 twins; every instance a stable instance IP
 *     (`instance_ip`, `instance_ip_v6`) from the same pools. These are virtual: a worker's
 *     datapath translates them (nftables DNAT) to a `nsip` of the instance chosen.
 *
 * Extra fields are allowed (a newer peer may send more); every message is validated on arrival.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const Count = () => Type.Integer({ minimum: 0 });
const PortNumber = () => Type.Integer({ minimum: 1, maximum: 65535 });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/** an address or CIDR as text (checked with @oak/net where it is used) */
const Addr = () => Type.String({ minLength: 2, maxLength: 64 });
const Job = () => Type.String({ minLength: 1, maxLength: 255 });
const RequestId = () => Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' });
const WorkerId = () => Type.String({ minLength: 1, maxLength: 200 });

/** the default VXLAN network identifier of the overlay (the same on every worker) */
export const DEFAULT_VNI = 18;
/** UDP port of the NetManagers' RTT probes, on overlay (gateway) addresses only */
export const DEFAULT_PROBE_PORT = 50104;

export const netTopics = {
  /** worker -> cluster: SubnetRequest */
  subnet: (id: string) => `nodes/${id}/net/subnet`,
  /** cluster -> worker: SubnetResult */
  subnetResult: (id: string) => `nodes/${id}/net/subnet/result`,
  /** worker -> cluster: TableQueryRequest (also registers the worker's interest in the job) */
  tableQueryRequest: (id: string) => `nodes/${id}/net/tablequery/request`,
  /** cluster -> worker: TableQueryResult */
  tableQueryResult: (id: string) => `nodes/${id}/net/tablequery/result`,
  /** worker -> cluster: ServiceDeployed (an instance's namespace is up on this worker) */
  serviceDeployed: (id: string) => `nodes/${id}/net/service/deployed`,
  /** worker -> cluster: ServiceUndeployed */
  serviceUndeployed: (id: string) => `nodes/${id}/net/service/undeployed`,
  /** worker -> cluster: InterestRemove (no local instance needs this job's table any more) */
  interestRemove: (id: string) => `nodes/${id}/net/interest/remove`,
  /** worker -> cluster: RttReport */
  rtt: (id: string) => `nodes/${id}/net/rtt`,
  /** cluster -> every worker (retained, read-only for workers): PeerList */
  peers: 'net/peers',
  /** cluster -> workers subscribed (read-only for workers): ServiceTable of the job */
  jobUpdates: (jobName: string) => `jobs/${jobName}/updates_available`,
  all: {
    subnet: 'nodes/+/net/subnet',
    tableQueryRequest: 'nodes/+/net/tablequery/request',
    serviceDeployed: 'nodes/+/net/service/deployed',
    serviceUndeployed: 'nodes/+/net/service/undeployed',
    interestRemove: 'nodes/+/net/interest/remove',
    rtt: 'nodes/+/net/rtt',
  },
} as const;

/** A worker's place in the overlay: its subnets and the tunnel endpoint that reaches it. */
export const OverlayPeer = Type.Object({
  worker_id: WorkerId(),
  cluster_id: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  /** e.g. 10.18.0.64/26 */
  subnet: Addr(),
  subnet_v6: Type.Optional(Nullable(Addr())),
  /** the tunnel endpoint: NodePublicAddress and NodePublicPort of the worker's NetManager */
  host_ip: Addr(),
  host_port: PortNumber(),
});
export type OverlayPeer = Static<typeof OverlayPeer>;

/** nodes/{id}/net/subnet */
export const SubnetRequest = Type.Object({
  method: Type.Optional(Type.Literal('get')),
  /** NodePublicAddress / NodePublicPort of this NetManager (the tunnel endpoint) */
  host_ip: Addr(),
  host_port: PortNumber(),
});
export type SubnetRequest = Static<typeof SubnetRequest>;

/** nodes/{id}/net/subnet/result */
export const SubnetResult = Type.Object({
  subnet: Type.Optional(Addr()),
  subnet_v6: Type.Optional(Nullable(Addr())),
  /** the operator's extra IPv4 service ranges (root --extra-service-ranges): the worker traps them like 10.30.0.0/16 */
  service_ranges: Type.Optional(Type.Array(Addr(), { maxItems: 15 })),
  /** set instead of the subnets when none could be given (pool exhausted, root unreachable) */
  error: Type.Optional(Type.String({ maxLength: 1000 })),
});
export type SubnetResult = Static<typeof SubnetResult>;

/** One instance in a service's table: where it is and how to reach it. */
export const TableEntry = Type.Object({
  instance_number: Count(),
  /** the instance's stable virtual addresses */
  instance_ip: Nullable(Addr()),
  instance_ip_v6: Type.Optional(Nullable(Addr())),
  /** the address of its network namespace on its worker */
  nsip: Addr(),
  nsip_v6: Type.Optional(Nullable(Addr())),
  worker_id: WorkerId(),
  cluster_id: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  /** the worker's tunnel endpoint and subnet (the route to nsip) */
  host_ip: Addr(),
  host_port: PortNumber(),
  subnet: Addr(),
  subnet_v6: Type.Optional(Nullable(Addr())),
});
export type TableEntry = Static<typeof TableEntry>;

/** A service's addresses and its healthy (RUNNING, network up) instances. */
export const ServiceTable = Type.Object({
  job_name: Job(),
  service_ip: Nullable(Addr()),
  service_ip_v6: Type.Optional(Nullable(Addr())),
  closest_ip: Type.Optional(Nullable(Addr())),
  closest_ip_v6: Type.Optional(Nullable(Addr())),
  instances: Type.Array(TableEntry, { maxItems: 10000 }),
});
export type ServiceTable = Static<typeof ServiceTable>;

/** nodes/{id}/net/tablequery/request: by job name, or by one of its virtual addresses. */
export const TableQueryRequest = Type.Object({
  request_id: RequestId(),
  job_name: Type.Optional(Job()),
  /** a service, closest or instance IP (v4 or v6) the worker saw traffic to */
  ip: Type.Optional(Addr()),
});
export type TableQueryRequest = Static<typeof TableQueryRequest>;

/** nodes/{id}/net/tablequery/result */
export const TableQueryResult = Type.Object({
  request_id: RequestId(),
  /** absent with `error` (no such service / address) */
  table: Type.Optional(ServiceTable),
  error: Type.Optional(Type.String({ maxLength: 1000 })),
});
export type TableQueryResult = Static<typeof TableQueryResult>;

/** nodes/{id}/net/service/deployed */
export const ServiceDeployed = Type.Object({
  job_name: Job(),
  instance_number: Count(),
  nsip: Addr(),
  nsip_v6: Type.Optional(Nullable(Addr())),
  /** the worker's tunnel endpoint and subnet, so the message stands alone */
  host_ip: Addr(),
  host_port: PortNumber(),
  subnet: Addr(),
  subnet_v6: Type.Optional(Nullable(Addr())),
});
export type ServiceDeployed = Static<typeof ServiceDeployed>;

/** nodes/{id}/net/service/undeployed */
export const ServiceUndeployed = Type.Object({ job_name: Job(), instance_number: Count() });
export type ServiceUndeployed = Static<typeof ServiceUndeployed>;

/** nodes/{id}/net/interest/remove */
export const InterestRemove = Type.Object({ job_name: Job() });
export type InterestRemove = Static<typeof InterestRemove>;

/** net/peers: every worker of the overlay (all clusters), so that replies find their way back. */
export const PeerList = Type.Object({ peers: Type.Array(OverlayPeer, { maxItems: 100000 }) });
export type PeerList = Static<typeof PeerList>;

/** RTT the worker measured over the tunnel to another worker (null: no answer to the last probes). */
export const PeerRtt = Type.Object({ worker_id: WorkerId(), rtt_ms: Nullable(Type.Number({ minimum: 0 })) });
export type PeerRtt = Static<typeof PeerRtt>;

/** nodes/{id}/net/rtt */
export const RttReport = Type.Object({ peers: Type.Array(PeerRtt, { maxItems: 10000 }) });
export type RttReport = Static<typeof RttReport>;

/** What the API shows of a worker's place in the overlay (per-worker summary, `oak node ls`). */
export const WorkerNet = Type.Object({
  subnet: Nullable(Addr()),
  subnet_v6: Type.Optional(Nullable(Addr())),
  host_ip: Type.Optional(Nullable(Addr())),
  host_port: Type.Optional(Nullable(PortNumber())),
  rtt: Type.Optional(Type.Array(PeerRtt, { maxItems: 10000 })),
});
export type WorkerNet = Static<typeof WorkerNet>;

/** The virtual addresses the root gave a service and one instance (in every deploy). */
export const InstanceAddresses = Type.Object({
  service_ip: Nullable(Addr()),
  service_ip_v6: Type.Optional(Nullable(Addr())),
  closest_ip: Type.Optional(Nullable(Addr())),
  closest_ip_v6: Type.Optional(Nullable(Addr())),
  instance_ip: Nullable(Addr()),
  instance_ip_v6: Type.Optional(Nullable(Addr())),
});
export type InstanceAddresses = Static<typeof InstanceAddresses>;

// ------------------------------------------------ NodeEngine <-> NetManager (local API, :6000)
//
// The NetManager listens on 127.0.0.1:<-p>. Every request carries `Authorization: Bearer <key>`,
// the key the NetManager writes at start to `/run/oak/netmanager-<port>.key` (0600, root): only
// root on the worker can drive it. Bodies are JSON, at most 64 KiB.

/** POST /register (NodeEngine -> NetManager, after the NodeEngine registered with its cluster) */
export const NetRegister = Type.Object({
  worker_id: WorkerId(),
  /** the cluster's broker as the NodeEngine reaches it, and the worker's own MQTT identity */
  mqtt_url: Type.String({ minLength: 1, maxLength: 1000 }),
  mqtt_username: Type.Optional(Type.String({ maxLength: 200 })),
  mqtt_password: Type.Optional(Type.String({ maxLength: 1000 })),
  /** PEM of the CA to verify a TLS broker against (the join token's CA) */
  mqtt_ca: Type.Optional(Type.String({ maxLength: 65536 })),
  /** the NodeEngine's --namespace (device names derive from it) */
  namespace: Type.String({ minLength: 1, maxLength: 63 }),
  /** the bridge device the NodeEngine's instances hang on */
  bridge: Type.String({ minLength: 1, maxLength: 15 }),
});
export type NetRegister = Static<typeof NetRegister>;

/** answer to POST /register: what the NodeEngine builds its bridge from */
export const NetRegisterAnswer = Type.Object({
  subnet: Addr(),
  subnet_v6: Nullable(Addr()),
  /** bridge addresses (first host of each subnet): the instances' default routes and resolver */
  gateway: Addr(),
  gateway_v6: Nullable(Addr()),
  /** the VXLAN device the NodeEngine's forward rules accept overlay traffic from */
  tunnel_device: Type.String({ minLength: 1, maxLength: 15 }),
  /** MTU for instance veths (the uplink's minus the encapsulation) */
  mtu: Type.Integer({ minimum: 576, maximum: 65535 }),
  /** the resolver instances use (the gateway, port 53), null when DNS is off */
  dns: Nullable(Addr()),
  /** the NetManager's version (its release's, else the build's; absent from older ones) */
  version: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});
export type NetRegisterAnswer = Static<typeof NetRegisterAnswer>;

/** POST /instance/deploy: an instance's namespace is up (answer 204, or 4xx with an error) */
export const NetInstanceDeploy = Type.Object({
  job_name: Job(),
  instance_number: Count(),
  nsip: Addr(),
  nsip_v6: Type.Optional(Nullable(Addr())),
  /** the virtual addresses from the deploy command (`overlay`), when the root sent them */
  overlay: Type.Optional(InstanceAddresses),
});
export type NetInstanceDeploy = Static<typeof NetInstanceDeploy>;

/** POST /instance/undeploy (answer 204; unknown instances too) */
export const NetInstanceUndeploy = Type.Object({ job_name: Job(), instance_number: Count() });
export type NetInstanceUndeploy = Static<typeof NetInstanceUndeploy>;
