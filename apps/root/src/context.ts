/**
 * Everything a root API instance works with. Built once by `startRoot` (or by a test) and handed
 * to `buildRootApp`; the plugins read it, nothing in here is global.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { JoinTokenRow, Store } from '@oak/store';
import type { ControlPlane } from './control.ts';
import type { EventHub } from './events.ts';
import type { RootTrust } from './trust.ts';
import type { AuditLog } from './audit.ts';
import type { LoginLimiter } from './auth/limiter.ts';
import type { StreamRegistry } from './streams.ts';
import type { UsageBook } from './usage.ts';

export interface AuthSettings {
  /** HMAC key for HS256 tokens; shared by every replica (store setting `jwt_secret`) */
  jwtSecret: Uint8Array;
  /** lifetime of an access token, seconds */
  accessTtlSec: number;
  /** lifetime of a refresh token, seconds */
  refreshTtlSec: number;
}

export interface RootContext {
  store: Store;
  events: EventHub;
  /** who places instances; `noControlPlane` until clusters are wired in (replaced at start; on PostgreSQL at every change of role, lead/: read it at each call) */
  control: ControlPlane;
  auth: AuthSettings;
  /** when this root started (for /healthz) */
  startedAt?: number;
  /** set by buildRootApp to the app's logger when absent */
  log?: FastifyBaseLogger;
  /** the root CA and MQTT key (trust.ts); loaded from the store on first use when absent */
  trust?: Promise<RootTrust>;
  /** told when a join token is revoked (the link sends revoke_workers to every cluster) */
  tokenRevoked?: (row: JoinTokenRow) => void;
  /** open SSE and log-follow streams per user (set by buildRootApp when absent) */
  streams?: StreamRegistry;
  /** per-instance CPU and memory readings kept in memory (usage.ts; set by buildRootApp when absent) */
  usage?: UsageBook;
  /** the audit trail (set by buildRootApp when absent) */
  audit?: AuditLog;
  /** failed-login counters (set by buildRootApp when absent) */
  loginLimiter?: LoginLimiter;
  /** fleet upgrades (issue 14): the link they use and a step now (set by startRootLink) */
  fleet?: { link: import('./fleet/shell.ts').FleetLink; tick(): Promise<void> };
  /** the largest artifact POST /api/fleet/artifacts takes (default MAX_ARTIFACT_BYTES, 256 MiB) */
  fleetArtifactLimit?: number;
  /** removes workers of a connected cluster (revoke_workers by id); false when it is not connected */
  removeWorkers?: (clusterId: string, workerIds: string[]) => boolean;
  /**
   * the organisation (id or name) self-registered users join (POST /api/auth/register without a
   * token); undefined: self-registration is off (the default)
   */
  selfRegistration?: string | undefined;
}

export const DEFAULT_ACCESS_TTL_SEC = 15 * 60;
export const DEFAULT_REFRESH_TTL_SEC = 7 * 24 * 3600;
