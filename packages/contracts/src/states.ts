/**
 * Instance lifecycle (SPEC §4). A discriminated set of string states, persisted with a
 * timestamp on every transition and published on /api/events.
 */
import { Type } from '@sinclair/typebox';

export const INSTANCE_STATES = [
  'REQUESTED',
  'CLUSTER_SCHEDULED',
  'NODE_SCHEDULED',
  'CREATING',
  'CREATED',
  'RUNNING',
  'COMPLETED',
  'FAILED',
  'DEAD',
  'UNDEPLOYED',
] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];
/** Schema of one instance state. */
export const InstanceState = Type.Union(INSTANCE_STATES.map((s) => Type.Literal(s)));

/** States after which an instance never runs again by itself. */
export const TERMINAL_STATES: ReadonlySet<InstanceState> = new Set(['COMPLETED', 'FAILED', 'UNDEPLOYED']);

/** States in which an instance holds resources on a worker. */
export const ACTIVE_STATES: ReadonlySet<InstanceState> = new Set([
  'NODE_SCHEDULED',
  'CREATING',
  'CREATED',
  'RUNNING',
]);

export function isInstanceState(s: unknown): s is InstanceState {
  return typeof s === 'string' && (INSTANCE_STATES as readonly string[]).includes(s);
}

/** Reasons shown while an instance waits for a place (status_detail). */
export const PENDING_REASONS = [
  'NoActiveClusterWithCapacity',
  'TargetClusterNotActive',
  'NoClusterMatchesConstraints',
  'NO_WORKER_CAPACITY',
  'NoWorkerMatchesConstraints',
  'NoWorkerWithVirtualization',
] as const;
export type PendingReason = (typeof PENDING_REASONS)[number];

/** What an instance's health probe says (issue 10). */
export const HEALTH_STATES = ['starting', 'healthy', 'unhealthy'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];
export const HealthState = Type.Union(HEALTH_STATES.map((s) => Type.Literal(s)));
