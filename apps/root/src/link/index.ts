/**
 * The root's side of the cluster link. `linkControl(options)` is the factory startRoot takes as
 * `control`: it starts the link listener (port 50052 by default) with the root's store and event
 * hub and returns the control plane that places instances on the connected clusters.
 */
import type { Strategy } from '@oak/scheduler';
import type { RootContext } from '../context.ts';
import { rootTrust } from '../trust.ts';
import { createLinkControlPlane } from './control.ts';
import type { LinkControlPlane, NetLimits } from './control.ts';
import { startLinkServer } from './server.ts';
import { startFleetShell } from '../fleet/shell.ts';
import type { RootLinkServer } from './server.ts';
import type { LinkLog } from './codec.ts';
import type { ReconcilerConfigPatch } from '../reconcile/shell.ts';

export { startLinkServer, tokenMatches, DEFAULT_LINK_PORT, MAX_HELLO_BYTES, MAX_PENDING_STREAMS } from './server.ts';
export { LINK_MAX_RECEIVE_BYTES } from './codec.ts';
export type { LinkListener, LinkServer, LinkServerOptions, RootLinkServer } from './server.ts';
export { IN_PROCESS_PEER, inProcessLinkPair } from './inproc.ts';
export type { InProcessClusterEnd, InProcessDirection, InProcessRootEnd } from './inproc.ts';
export { createLinkControlPlane } from './control.ts';
export type { LinkControlOptions, LinkControlPlane, NetLimits } from './control.ts';
export { encodeMessage, decodeMessage, linkServiceDefinition, silentLinkLog } from './codec.ts';
export type { LinkLog } from './codec.ts';

export interface LinkControlSettings {
  /** default 0.0.0.0 */
  host?: string;
  /** default 50052 */
  port?: number;
  graceMs?: number;
  retryMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  strategy?: Strategy;
  /** the reconciler's deadlines and policy defaults */
  reconcile?: ReconcilerConfigPatch;
  /** bounds of the overlay requests per link */
  netLimits?: NetLimits;
  /** told the address and the CA fingerprint once listening (e.g. to print them) */
  onListening?: (info: { address: string; port: number; caHash: string }) => void;
}

/** The link listener and the control plane on it, started for one root. */
export interface RootLink {
  control: LinkControlPlane;
  /** also `link.connectInProcess()`: the stream a cluster in this process joins through */
  link: RootLinkServer;
  /** the port clusters dial (50052 by default) */
  port: number;
  /** host:port clusters dial */
  address: string;
  /** SHA-256 of the root CA (what join tokens carry) */
  caHash: string;
  /** closes the control plane and the listener */
  close(): Promise<void>;
}

/**
 * Starts the link listener (TLS, root CA) and its control plane with the root's store and event
 * hub. Clusters join with cluster join tokens (POST /api/tokens); revoking a worker token tells
 * every connected cluster (revoke_workers).
 */
export async function startRootLink(ctx: RootContext, settings: LinkControlSettings = {}): Promise<RootLink> {
  // ctx.log is set once the app is built (after the control factory ran): look it up at each call
  const log: LinkLog = {
    debug: (o, m) => ctx.log?.debug(o, m),
    info: (o, m) => ctx.log?.info(o, m),
    warn: (o, m) => ctx.log?.warn(o, m),
    error: (o, m) => ctx.log?.error(o, m),
  };
  const trust = await rootTrust(ctx);
  const link = await startLinkServer({
    store: ctx.store,
    events: ctx.events,
    trust,
    log,
    ...(settings.host !== undefined ? { host: settings.host } : {}),
    ...(settings.port !== undefined ? { port: settings.port } : {}),
    ...(settings.pingIntervalMs !== undefined ? { pingIntervalMs: settings.pingIntervalMs } : {}),
    ...(settings.pingTimeoutMs !== undefined ? { pingTimeoutMs: settings.pingTimeoutMs } : {}),
  });
  const previous = ctx.tokenRevoked;
  ctx.tokenRevoked = (row) => {
    previous?.(row);
    if (row.kind === 'worker') link.revokeWorkers(row.id);
    else link.dropClustersOf(row.id);
  };
  ctx.removeWorkers = (clusterId, workerIds) => link.send(clusterId, { type: 'revoke_workers', worker_ids: workerIds });
  settings.onListening?.({ address: link.address, port: link.port, caHash: trust.caHash });
  const control = createLinkControlPlane({
    link,
    store: ctx.store,
    events: ctx.events,
    log,
    ...(settings.graceMs !== undefined ? { graceMs: settings.graceMs } : {}),
    ...(settings.retryMs !== undefined ? { retryMs: settings.retryMs } : {}),
    ...(settings.strategy !== undefined ? { strategy: settings.strategy } : {}),
    ...(settings.netLimits !== undefined ? { netLimits: settings.netLimits } : {}),
    ...(settings.reconcile !== undefined ? { reconcile: settings.reconcile } : {}),
  });
  // fleet upgrades (issue 14) run where the link runs
  const fleet = startFleetShell({ store: ctx.store, link, log });
  ctx.fleet = { link, tick: () => fleet.tick() };
  const closeControl = control.close.bind(control);
  const close = (): Promise<void> => {
    fleet.close();
    if (ctx.fleet?.link === link) delete ctx.fleet;
    return closeControl();
  };
  // whoever holds only the control plane (startRoot via linkControl, a root losing its lease)
  // stops the fleet shell with it: it must not go on stepping rollouts against a closed store
  // or beside the new leader's
  control.close = close;
  return { control, link, port: link.port, address: link.address, caHash: trust.caHash, close };
}

/** For startRoot({ control: linkControl({...}) }): the control plane of startRootLink. */
export function linkControl(settings: LinkControlSettings = {}): (ctx: RootContext) => Promise<LinkControlPlane> {
  return async (ctx) => (await startRootLink(ctx, settings)).control;
}
