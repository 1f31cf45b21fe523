/**
 * Fleet upgrades (issue 14, docs/deployment.md#fleet-upgrade): a NodeEngine/NetManager release
 * artifact uploaded to the root travels root -> cluster (link, in chunks) -> worker (HTTPS from its
 * cluster, with its own credentials), and each worker reports what it did in its reports. The
 * messages and documents of that path, defined once here.
 */
import { Type, type Static } from '@sinclair/typebox';

/** a version x.y.z[-pre] (what scripts/dist.mjs accepts) */
export const VERSION_PATTERN = '^\\d{1,6}\\.\\d{1,6}\\.\\d{1,6}(-[0-9A-Za-z.]{1,40})?$';
export const Sha256Hex = () => Type.String({ pattern: '^[0-9a-f]{64}$' });
const Version = () => Type.String({ pattern: VERSION_PATTERN });
const RolloutId = () => Type.String({ pattern: '^[a-z0-9]{1,40}$' });

/** the largest artifact the root accepts (POST /api/fleet/artifacts) */
export const MAX_ARTIFACT_BYTES = 256 * 1024 * 1024;
/** one artifact_chunk's raw bytes (base64 in the message: 4/3 of it, well under the link's 32 MiB) */
export const ARTIFACT_CHUNK_BYTES = 4 * 1024 * 1024;

/** What a worker is told (link worker_upgrade, then MQTT nodes/{id}/control/upgrade). */
export const WorkerUpgradeCommand = Type.Object({
  rollout_id: RolloutId(),
  action: Type.Union([Type.Literal('upgrade'), Type.Literal('rollback')]),
  /** the version the worker must run afterwards */
  version: Version(),
  /** upgrade: the artifact's SHA-256 (the worker refuses any other bytes) and size */
  sha256: Type.Optional(Sha256Hex()),
  size: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ARTIFACT_BYTES })),
});
export type WorkerUpgradeCommand = Static<typeof WorkerUpgradeCommand>;

export const UPGRADE_PHASES = ['downloading', 'installing', 'restarting', 'done', 'failed', 'refused'] as const;
export type UpgradePhase = (typeof UPGRADE_PHASES)[number];

/** What a worker says about the last upgrade command it got (in its registration and reports). */
export const WorkerUpgradeState = Type.Object({
  rollout_id: RolloutId(),
  action: Type.Union([Type.Literal('upgrade'), Type.Literal('rollback')]),
  version: Version(),
  phase: Type.Union(UPGRADE_PHASES.map((p) => Type.Literal(p))),
  detail: Type.String({ maxLength: 1024 }),
  /** ms since the epoch */
  at: Type.Number({ minimum: 0 }),
});
export type WorkerUpgradeState = Static<typeof WorkerUpgradeState>;

/** What a worker reports about itself for fleet upgrades (NodeRegistration, NodeInformation, WorkerSummary). */
export const WorkerVersionFields = {
  /** the NodeEngine's version (its release's oak-release.json, else the build's) */
  version: Type.Optional(Type.String({ maxLength: 64 })),
  /** the NetManager's version, when it runs one and answers */
  netmanager_version: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
  /** null: the worker can upgrade itself; else why not (not installed by oak install, inside oakd) */
  self_upgrade_blocker: Type.Optional(Type.Union([Type.String({ maxLength: 512 }), Type.Null()])),
  upgrade: Type.Optional(WorkerUpgradeState),
};

// ------------------------------------------------------------------------------ root documents

export const ROLLOUT_STATUSES = ['running', 'succeeded', 'failed'] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];

export const ROLLOUT_WORKER_PHASES = ['pending', 'sent', 'healthy', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed', 'unchanged', 'skipped'] as const;
export type RolloutWorkerPhase = (typeof ROLLOUT_WORKER_PHASES)[number];

export interface RolloutWorker {
  id: string;
  name: string;
  cluster_id: string;
  cluster_name: string;
  /** the version it ran when the rollout started (what a rollback returns to) */
  from_version: string;
  batch: number;
  phase: RolloutWorkerPhase;
  detail: string;
  /** the instances (job_name.instance.N) RUNNING on it when its batch started */
  instances: string[];
  /** its connection nonce when the command was sent: a new one means it restarted */
  conn_before: string | null;
  /** ms since the epoch */
  sent_at: number | null;
  /** the last time the command went out (resent while the worker says nothing about it) */
  last_sent_at: number | null;
  done_at: number | null;
}

export interface ArtifactDoc {
  sha256: string;
  program: string;
  version: string;
  arch: string;
  size: number;
  uploaded_at: string;
  uploaded_by: string | null;
}

export interface RolloutDoc {
  id: string;
  status: RolloutStatus;
  artifact: { sha256: string; version: string; arch: string; size: number };
  cluster: string | null;
  batch_size: number;
  health_timeout_s: number;
  /** the batch being upgraded (1-based), 0 before the first */
  current_batch: number;
  batches: number;
  /** why it failed, or what it did */
  outcome: string | null;
  /** the first failure of the current batch (the rollout is rolling that batch back while set and running) */
  failure: string | null;
  workers: RolloutWorker[];
  created_at: string;
  created_by: string | null;
  updated_at: string;
}
