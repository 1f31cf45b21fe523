/**
 * The NodeEngine's table of instances and the pure decisions on it: what a deploy does, which
 * state changes are reported, what re-adoption keeps. No I/O.
 */
import { ACTIVE_STATES, TERMINAL_STATES } from '@oak/contracts';
import type { HealthState, InstanceState, Virtualization } from '@oak/contracts';
import type { InstanceStatus } from '@oak/runtimes';
import { LABEL_RESTARTS, identityOf, parseRestartsLabel } from './spec.ts';
import { LABEL_GPUS, parseGpuLabel } from './gpus.ts';

export interface Entry {
  /** `<job_name>.instance.<n>` */
  id: string;
  job_name: string;
  instance_number: number;
  virtualization: Virtualization;
  /** last state reported to the cluster */
  state: InstanceState;
  detail: string;
  exit_code?: number | undefined;
  /** a delete is under way: exits are expected and not reported */
  deleting: boolean;
  /** indices of the worker's GPUs this instance holds (label `oak.gpus`, see gpus.ts) */
  gpus?: number[] | undefined;
  /** local restarts so far (issue 10) */
  restarts?: number | undefined;
  /** the health probe's verdict; undefined without a probe */
  health?: HealthState | undefined;
  /** a local restart is pending or under way: the old copy's exit is expected and not reported */
  restarting?: boolean | undefined;
  /** epoch ms when it ended (COMPLETED/FAILED seen); its kept logs count their retention from here */
  ended_at?: number | undefined;
}

export type DeployDecision =
  /** nothing there: start it */
  | 'start'
  /** it exists or is starting: no-op, re-report its state */
  | 'report'
  /** it exists but has ended (COMPLETED/FAILED): remove the remains, start again */
  | 'replace';

export function decideDeploy(entry: Entry | undefined): DeployDecision {
  if (entry === undefined) return 'start';
  if (TERMINAL_STATES.has(entry.state)) return 'replace';
  return 'report';
}

/** True when a deploy can be answered at once by re-reporting (no queueing behind other work). */
export function isSettledActive(entry: Entry | undefined): boolean {
  return entry !== undefined && !entry.deleting && ACTIVE_STATES.has(entry.state);
}

/**
 * Applies a new state; returns true when it is a change the cluster must hear about. An ended
 * instance never goes back to running by itself (a driver's late "RUNNING" after its exit was
 * seen is dropped), and repeating a state is not a change.
 */
export function applyState(entry: Entry, state: InstanceState, detail: string, exitCode?: number): boolean {
  if (entry.state === state) return false;
  if (TERMINAL_STATES.has(entry.state) && !TERMINAL_STATES.has(state)) return false;
  entry.state = state;
  entry.detail = detail;
  entry.exit_code = exitCode;
  return true;
}

/** Instances that count as running on this worker (reported in `running_instances`). */
export function runningNames(entries: Iterable<Entry>): string[] {
  const out: string[] = [];
  for (const e of entries) if (!e.deleting && ACTIVE_STATES.has(e.state)) out.push(e.id);
  return out.sort();
}

export interface AdoptionPlan {
  /** still running (or starting): keep watching, report once connected */
  keep: Entry[];
  /** ended while the NodeEngine was away: report the final state, then clean up */
  finished: Entry[];
  /** held by a driver but not recognisable as an oak instance: left alone */
  unknown: InstanceStatus[];
}

/**
 * The GPUs held on this worker, by instance: every instance not ended (deleting ones too: a GPU
 * is free once its instance has stopped).
 */
export function heldGpus(entries: Iterable<Entry>, except?: string): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const e of entries) {
    if (e.id === except || e.gpus === undefined || e.gpus.length === 0 || TERMINAL_STATES.has(e.state)) continue;
    m.set(e.id, e.gpus);
  }
  return m;
}

/** What to do with everything the drivers still hold after a restart. */
export function planAdoption(found: readonly { virtualization: Virtualization; status: InstanceStatus }[]): AdoptionPlan {
  const plan: AdoptionPlan = { keep: [], finished: [], unknown: [] };
  const seen = new Set<string>();
  for (const { virtualization, status } of found) {
    const who = identityOf(status);
    if (who === undefined || seen.has(status.id)) {
      plan.unknown.push(status);
      continue;
    }
    seen.add(status.id);
    const ended = status.state === 'COMPLETED' || status.state === 'FAILED';
    const entry: Entry = {
      ...who,
      virtualization,
      state: ended ? status.state : status.state === 'CREATED' ? 'RUNNING' : status.state,
      detail: ended ? status.detail : status.detail !== '' ? status.detail : 'running (re-adopted)',
      exit_code: ended ? status.exit_code : undefined,
      deleting: false,
      restarts: parseRestartsLabel(status.labels[LABEL_RESTARTS]),
    };
    const gpus = parseGpuLabel(status.labels[LABEL_GPUS]);
    if (gpus.length > 0) entry.gpus = gpus;
    (ended ? plan.finished : plan.keep).push(entry);
  }
  return plan;
}

/** Registration retry delay: doubles from `initial` up to `max`. */
export function backoffDelay(attempt: number, initial: number, max: number): number {
  return Math.min(max, initial * 2 ** Math.min(attempt, 30));
}
