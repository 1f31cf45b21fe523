/**
 * Pure helpers of the rolling update (no I/O): which instances a rollout replaces, what the state
 * of a replacement means for the rollout, and a fingerprint of what a service's instances run.
 *
 * A rollout replaces the placed instances of a service one at a time: a replacement is stored as
 * REQUESTED (so it is placed from the stored, new SLA), and only once it runs is the old instance
 * undeployed. A replacement that fails or does not run in time stops the rollout; the old
 * instances that are left keep running.
 */
import type { InstanceRow, ServiceRow } from '@oak/store';
import { holdsCluster } from '../placement.ts';

export const DEFAULT_ROLLOUT_TIMEOUT_MS = 120_000;

/**
 * The instances a rollout replaces, lowest number first: those placed on a cluster. REQUESTED
 * instances are placed from the stored SLA anyway, and ended ones are not brought back.
 */
export function rolloutTargets(rows: readonly InstanceRow[]): InstanceRow[] {
  return rows.filter((r) => holdsCluster(r.status)).sort((a, b) => a.instance_number - b.instance_number);
}

export type ReplacementVerdict =
  /** it runs (or, one-shot, it completed): the old instance may go */
  | { kind: 'ready' }
  | { kind: 'waiting' }
  /** it ended without running: the rollout stops */
  | { kind: 'failed'; reason: string }
  /** it was removed by someone else (undeployed through the API, service deleted) */
  | { kind: 'gone' };

/**
 * What the stored replacement means for the rollout. `row` is the stored instance with the
 * replacement's number, or undefined; a row created at another time is another instance.
 */
export function judgeReplacement(replacement: Pick<InstanceRow, 'created_at'>, row: InstanceRow | undefined, oneShot: boolean): ReplacementVerdict {
  if (!row || row.created_at !== replacement.created_at) return { kind: 'gone' };
  switch (row.status) {
    case 'RUNNING':
      return { kind: 'ready' };
    case 'COMPLETED':
      return oneShot ? { kind: 'ready' } : { kind: 'failed', reason: `it exited${row.status_detail ? `: ${row.status_detail}` : ''}` };
    case 'FAILED':
    case 'UNDEPLOYED':
      return { kind: 'failed', reason: `it is ${row.status}${row.status_detail ? `: ${row.status_detail}` : ''}` };
    default:
      return { kind: 'waiting' };
  }
}

function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = stable((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** What a service's instances are deployed with (job name and SLA), independent of key order. */
export function serviceFingerprint(s: Pick<ServiceRow, 'job_name' | 'sla'>): string {
  return JSON.stringify([s.job_name, stable(s.sla)]);
}
