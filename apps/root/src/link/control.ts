/**
 * The root's control plane over the cluster link. Since issue 9 it is the reconciler
 * (reconcile/shell.ts: passes per service over the persisted desired state, the pure core in
 * reconcile/core.ts); this module keeps the factory that main.ts, startRootLink and the tests
 * call, with its options of before mapped onto the reconciler's:
 * - graceMs → disconnect.lost_after_s default (a cluster away this long loses its instances),
 * - rolloutTimeoutMs → update.progress_deadline_s default,
 * - retryMs → the periodic resync of every service.
 */
import type { Strategy } from '@oak/scheduler';
import type { Store } from '@oak/store';
import type { EventHub } from '../events.ts';
import { createReconciler } from '../reconcile/shell.ts';
import type { Reconciler, ReconcilerConfigPatch } from '../reconcile/shell.ts';
import type { LinkLog } from './codec.ts';
import type { NetLimits } from './net-control.ts';
import type { LinkServer } from './server.ts';

export type { NetLimits } from './net-control.ts';

export interface LinkControlOptions {
  link: LinkServer;
  store: Store;
  events: EventHub;
  /** a cluster away this long loses its instances to other clusters (default: disconnect.lost_after_s, 30 s) */
  graceMs?: number;
  /** every service gets a pass this often, besides on every change (default 5 s) */
  retryMs?: number;
  /** root reservations older than this are counted in a cluster's next aggregate (default 1 s) */
  settleMs?: number;
  strategy?: Strategy;
  /** a replacement not ready this long after it was requested fails its rollout (default: update.progress_deadline_s, 120 s) */
  rolloutTimeoutMs?: number;
  /** ignored since issue 9 (rollouts run from the store, woken by events and deadlines) */
  rolloutPollMs?: number;
  /** everything else of the reconciler (deadlines, policies' defaults, resend and purge times) */
  reconcile?: ReconcilerConfigPatch;
  log?: LinkLog;
  /** bounds of the overlay requests per link (defaults: net.ts) */
  netLimits?: NetLimits;
  /** close() also closes the link server (default true) */
  ownsLink?: boolean;
  /** how long a progress report waits for its copy's next one (reconcile/shell.ts, default 20 ms) */
  progressWaitMs?: number;
}

export type LinkControlPlane = Reconciler;

export function createLinkControlPlane(o: LinkControlOptions): LinkControlPlane {
  const config: ReconcilerConfigPatch = { ...o.reconcile };
  if (o.graceMs !== undefined) config.disconnect = { lost_after_s: o.graceMs / 1000, ...config.disconnect };
  if (o.rolloutTimeoutMs !== undefined) config.update = { progress_deadline_s: o.rolloutTimeoutMs / 1000, ...config.update };
  if (o.strategy !== undefined && config.strategy === undefined) config.strategy = o.strategy;
  return createReconciler({
    link: o.link,
    store: o.store,
    events: o.events,
    config,
    ...(o.log !== undefined ? { log: o.log } : {}),
    ...(o.retryMs !== undefined ? { resyncMs: o.retryMs } : {}),
    ...(o.settleMs !== undefined ? { settleMs: o.settleMs } : {}),
    ...(o.netLimits !== undefined ? { netLimits: o.netLimits } : {}),
    ...(o.ownsLink !== undefined ? { ownsLink: o.ownsLink } : {}),
    ...(o.progressWaitMs !== undefined ? { progressWaitMs: o.progressWaitMs } : {}),
  });
}
