/**
 * SLA v2.0 deployment descriptor (SPEC §2). The TypeBox schemas here are the one source for the
 * TypeScript types, runtime validation (see validate.ts) and the OpenAPI document.
 */
import { Type, type Static } from '@sinclair/typebox';

export const NAME_PATTERN = '^[a-zA-Z0-9]{1,30}$';
export const VIRTUALIZATIONS = ['container', 'unikernel', 'microvm', 'process', 'wasm'] as const;
export type Virtualization = (typeof VIRTUALIZATIONS)[number];
/** Schema of one virtualization name. */
export const Virtualization = Type.Union(VIRTUALIZATIONS.map((v) => Type.Literal(v)));

const Name = (description: string) => Type.String({ pattern: NAME_PATTERN, description });
const NonNeg = (description: string) => Type.Number({ minimum: 0, description });

/**
 * Oakestra's `rigidness` and `convergence_time`, on every constraint (docs/sla.md#constraints):
 * rigidness 1 (the default) makes the constraint hard, below 1 a preference weighted by it.
 */
export const CONVERGENCE_TIME_MAX_S = 30 * 86400;
const Rigidness = () => Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: '1 = hard, below 1 = preference' }));
const ConvergenceTime = () => Type.Optional(Type.Integer({ minimum: 0, maximum: CONVERGENCE_TIME_MAX_S, description: 'seconds' }));
/** an addon label a worker or cluster offers (`image-builder`, `FLOps-learner`) */
export const ADDON_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
export const AddonName = Type.String({ pattern: ADDON_PATTERN, description: 'addon label' });
/** the addons a worker (registration) or a cluster (aggregate) declares: at most this many */
export const MAX_ADDONS = 64;
export const AddonList = Type.Array(AddonName, { maxItems: MAX_ADDONS });

export const DirectConstraint = Type.Object(
  {
    type: Type.Literal('direct'),
    cluster: Type.Optional(Type.String({ minLength: 1 })),
    node: Type.Optional(Type.String({ minLength: 1 })),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
export const GeoConstraint = Type.Object(
  {
    type: Type.Literal('geo'),
    location: Type.String({ description: '"lat,long"' }),
    threshold: NonNeg('kilometres'),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
export const LatencyConstraint = Type.Object(
  {
    type: Type.Literal('latency'),
    area: Type.Optional(Type.String()),
    location: Type.Optional(Type.String()),
    threshold: NonNeg('milliseconds'),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
/** Oakestra's `clusters`: only the clusters named (name or id) in `allowed`. */
export const ClustersConstraint = Type.Object(
  {
    type: Type.Literal('clusters'),
    allowed: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { minItems: 1, maxItems: 100 }),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
/** Oakestra's `addons`: only workers offering every addon label in `needs`. */
export const AddonsConstraint = Type.Object(
  {
    type: Type.Literal('addons'),
    needs: Type.Array(AddonName, { minItems: 1, maxItems: 32 }),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
export const Constraint = Type.Union([DirectConstraint, GeoConstraint, LatencyConstraint, ClustersConstraint, AddonsConstraint]);
export type Constraint = Static<typeof Constraint>;
export type DirectConstraint = Static<typeof DirectConstraint>;
export type GeoConstraint = Static<typeof GeoConstraint>;
export type LatencyConstraint = Static<typeof LatencyConstraint>;
export type ClustersConstraint = Static<typeof ClustersConstraint>;
export type AddonsConstraint = Static<typeof AddonsConstraint>;

/** A `con_constraints` entry of `connectivity`: the RTT between the two services' workers. */
export const LatencyConConstraint = Type.Object(
  {
    type: Type.Literal('latency'),
    threshold: NonNeg('milliseconds'),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
/** Oakestra's bandwidth kind: parsed so that it is refused with its reason (nothing measures bandwidth). */
export const BandwidthConConstraint = Type.Object(
  {
    type: Type.Literal('bandwidth'),
    threshold: NonNeg('kbit/s'),
    rigidness: Rigidness(),
    convergence_time: ConvergenceTime(),
  },
  { additionalProperties: true },
);
export const ConConstraint = Type.Union([LatencyConConstraint, BandwidthConConstraint]);
export type ConConstraint = Static<typeof ConConstraint>;
/** One `connectivity` entry: the other service (microserviceID or name) and the rules between both. */
export const Connectivity = Type.Object(
  {
    target_microservice_id: Type.String({ minLength: 1, maxLength: 256 }),
    con_constraints: Type.Array(ConConstraint, { maxItems: 100 }),
  },
  { additionalProperties: true },
);
export type Connectivity = Static<typeof Connectivity>;

/** Bounds of the health probe fields (docs/sla.md). */
export const HEALTH_LIMITS = {
  interval_s: { min: 0.1, max: 3600, default: 10 },
  timeout_s: { min: 0.1, max: 300, default: 2 },
  failure_threshold: { min: 1, max: 100, default: 3 },
  path_max: 2048,
  command_items_max: 64,
  command_item_max: 4096,
} as const;

/** A health probe (ours, issue 10) run by the NodeEngine on the instance. */
export const HealthProbe = Type.Object(
  {
    type: Type.Union([Type.Literal('tcp'), Type.Literal('http'), Type.Literal('exec')]),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    path: Type.Optional(Type.String({ maxLength: HEALTH_LIMITS.path_max })),
    command: Type.Optional(Type.Array(Type.String({ maxLength: HEALTH_LIMITS.command_item_max }), { maxItems: HEALTH_LIMITS.command_items_max })),
    /** seconds between probes (default 10) */
    interval_s: Type.Optional(Type.Number({ minimum: HEALTH_LIMITS.interval_s.min, maximum: HEALTH_LIMITS.interval_s.max, description: 'seconds between probes' })),
    /** a probe that has not answered after this long failed (default 2 s) */
    timeout_s: Type.Optional(Type.Number({ minimum: HEALTH_LIMITS.timeout_s.min, maximum: HEALTH_LIMITS.timeout_s.max, description: 'seconds' })),
    /** consecutive failures that make the instance unhealthy (default 3) */
    failure_threshold: Type.Optional(Type.Integer({ minimum: HEALTH_LIMITS.failure_threshold.min, maximum: HEALTH_LIMITS.failure_threshold.max })),
  },
  { additionalProperties: true },
);
export type HealthProbe = Static<typeof HealthProbe>;

/** When the NodeEngine restarts an instance on its own node (ours, issue 10). */
export const RESTART_POLICIES = ['never', 'on-failure', 'always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];
export const RestartPolicy = Type.Union(RESTART_POLICIES.map((p) => Type.Literal(p)));
/** restart_max: default and bound */
export const RESTART_MAX_DEFAULT = 3;
export const RESTART_MAX_LIMIT = 100;

/**
 * How a changed SLA rolls out (ours, issue 9; docs/sla.md). Defaults: max_surge 1,
 * max_unavailable 0, health_grace_s 0 (RUNNING is enough), progress_deadline_s 120,
 * auto_rollback false.
 */
export const UpdatePolicy = Type.Object(
  {
    /** replacements started before their old instances stop (0..100) */
    max_surge: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    /** old instances that may stop before their replacement is ready (0..100); max_surge + max_unavailable >= 1 */
    max_unavailable: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    /** a replacement counts as ready after it stayed RUNNING (and healthy) this long */
    health_grace_s: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
    /** a replacement not ready this long after it was requested fails the rollout */
    progress_deadline_s: Type.Optional(Type.Integer({ minimum: 1, maximum: 86400 })),
    /** a failed rollout restores the previous version by itself */
    auto_rollback: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type UpdatePolicy = Static<typeof UpdatePolicy>;

/**
 * What happens to the instances of a cluster that goes away (ours, issue 9; anchor: Nomad's
 * `disconnect` block). Defaults: lost_after_s 30, replace true, reconcile best_score.
 */
export const DisconnectPolicy = Type.Object(
  {
    /** an instance whose cluster is away this long is lost */
    lost_after_s: Type.Optional(Type.Integer({ minimum: 1, maximum: 86400 })),
    /** a lost instance is placed again elsewhere (false: it waits for its cluster) */
    replace: Type.Optional(Type.Boolean()),
    /** when the lost copy comes back while its replacement exists: which one stays */
    reconcile: Type.Optional(Type.Union([Type.Literal('keep_original'), Type.Literal('keep_replacement'), Type.Literal('best_score')])),
  },
  { additionalProperties: false },
);
export type DisconnectPolicy = Static<typeof DisconnectPolicy>;

export const Microservice = Type.Object(
  {
    microserviceID: Type.Optional(Type.String()),
    microservice_name: Name('service name, 1-30 letters or digits'),
    microservice_namespace: Name('service namespace, 1-30 letters or digits'),
    virtualization: Virtualization,
    code: Type.String({ minLength: 1, description: 'image reference, kernel URL, executable or .wasm module' }),
    cmd: Type.Optional(Type.Array(Type.String())),
    /** appended to cmd (or to the image's entrypoint + cmd when there is no cmd) */
    args: Type.Optional(Type.Array(Type.String())),
    /** files fetched into the instance: URLs or { url, path, mode } (see workload.ts) */
    added_files: Type.Optional(Type.Array(Type.Unknown())),
    environment: Type.Optional(Type.Array(Type.String())),
    memory: Type.Optional(NonNeg('MB')),
    vcpus: Type.Optional(NonNeg('cores')),
    vgpus: Type.Optional(NonNeg('GPUs')),
    vtpus: Type.Optional(NonNeg('TPUs')),
    bandwidth_in: Type.Optional(NonNeg('kbit/s')),
    bandwidth_out: Type.Optional(NonNeg('kbit/s')),
    storage: Type.Optional(NonNeg('MB')),
    port: Type.Optional(Type.String({ description: '[host:]container[/tcp|udp] entries joined by ";"' })),
    one_shot: Type.Optional(Type.Boolean()),
    privileged: Type.Optional(Type.Boolean()),
    addresses: Type.Optional(
      Type.Object(
        {
          rr_ip: Type.Optional(Type.String()),
          rr_ip_v6: Type.Optional(Type.String()),
          /** Oakestra's: the closest IPs are the root's to give; a requested one is warned about */
          closest_ip: Type.Optional(Type.String()),
          closest_ip_v6: Type.Optional(Type.String()),
          /** Oakestra's per-instance address ranges; warned about, not used */
          instances: Type.Optional(Type.Array(Type.Object({ from: Type.Optional(Type.String()), to: Type.Optional(Type.String()), start: Type.Optional(Type.String()) }, { additionalProperties: true }))),
        },
        { additionalProperties: true },
      ),
    ),
    /** Oakestra's URL of a state file; kept, not fetched (a non-empty one is warned about) */
    state: Type.Optional(Type.String()),
    /** Oakestra's; kept, not used (warned about) */
    sla_violation_strategy: Type.Optional(Type.String()),
    /** Oakestra's; kept, not used for placement (warned about; a direct constraint places on a node) */
    target_node: Type.Optional(Type.String()),
    constraints: Type.Optional(Type.Array(Constraint)),
    connectivity: Type.Optional(Type.Array(Connectivity)),
    volumes: Type.Optional(Type.Array(Type.Unknown())),
    replicas: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
    health: Type.Optional(HealthProbe),
    /** ours: never | on-failure | always (default on-failure for services, never for one_shot) */
    restart: Type.Optional(RestartPolicy),
    /** ours: local restarts before the instance is FAILED on this node (default 3) */
    restart_max: Type.Optional(Type.Integer({ minimum: 0, maximum: RESTART_MAX_LIMIT })),
    update: Type.Optional(UpdatePolicy),
    disconnect: Type.Optional(DisconnectPolicy),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { additionalProperties: true },
);
export type Microservice = Static<typeof Microservice>;

export const Application = Type.Object(
  {
    applicationID: Type.Optional(Type.String()),
    application_name: Name('application name, 1-30 letters or digits'),
    application_namespace: Name('application namespace, 1-30 letters or digits'),
    application_desc: Type.Optional(Type.String()),
    microservices: Type.Array(Microservice),
  },
  { additionalProperties: true },
);
export type Application = Static<typeof Application>;

export const Sla = Type.Object(
  {
    sla_version: Type.String({ minLength: 1 }),
    customerID: Type.String({ minLength: 1 }),
    applications: Type.Array(Application, { minItems: 1 }),
    /** Oakestra's SLA has a top-level `args` too; it is not used (a non-empty one is warned about) */
    args: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: true, $id: 'Sla' },
);
export type Sla = Static<typeof Sla>;

/** One `port` entry after parsing. */
export interface PortMapping {
  hostPort?: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}
