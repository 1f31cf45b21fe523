/**
 * The root's side of the cluster link. `linkControl(options)` is the factory startRoot takes as
 * `control`: it starts the link listener (port 50052 by default) with the root's store and event
 * hub and returns the control plane that places instances on the connected clusters.
 */
import { randomBytes } from 'node:crypto';
import type { Strategy } from '@oak/scheduler';
import type { Store } from '@oak/store';
import type { RootContext } from '../context.ts';
import { createLinkControlPlane } from './control.ts';
import type { LinkControlPlane } from './control.ts';
import { startLinkServer } from './server.ts';
import type { LinkServer } from './server.ts';
import type { LinkLog } from './codec.ts';

export { startLinkServer, tokenMatches, DEFAULT_LINK_PORT } from './server.ts';
export type { LinkListener, LinkServer, LinkServerOptions } from './server.ts';
export { createLinkControlPlane } from './control.ts';
export type { LinkControlOptions, LinkControlPlane } from './control.ts';
export { encodeMessage, decodeMessage, linkServiceDefinition, silentLinkLog } from './codec.ts';
export type { LinkLog } from './codec.ts';

/** The store setting that holds the generated cluster token. */
export const CLUSTER_TOKEN_SETTING = 'cluster_token';

/**
 * The token clusters must present: the given one (OAK_CLUSTER_TOKEN), else the one stored on an
 * earlier start, else a new random one (stored, so that every root replica and restart agrees).
 */
export async function clusterToken(store: Store, given?: string): Promise<string> {
  if (given !== undefined && given !== '') return given;
  return store.setSettingIfAbsent(CLUSTER_TOKEN_SETTING, randomBytes(24).toString('base64url'));
}

export interface LinkControlSettings {
  /** default 0.0.0.0 */
  host?: string;
  /** default 50052 */
  port?: number;
  /** default: clusterToken(store) */
  token?: string;
  graceMs?: number;
  retryMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  strategy?: Strategy;
  /** told the token and the address once listening (e.g. to print them) */
  onListening?: (info: { address: string; port: number; token: string }) => void;
}

/** The link listener and the control plane on it, started for one root. */
export interface RootLink {
  control: LinkControlPlane;
  link: LinkServer;
  /** the port clusters dial (50052 by default) */
  port: number;
  /** host:port clusters dial */
  address: string;
  /** the token clusters must present */
  token: string;
  /** closes the control plane and the listener */
  close(): Promise<void>;
}

/**
 * Starts the link listener and its control plane with the root's store and event hub. The token
 * is settings.token, else OAK_CLUSTER_TOKEN, else the stored (or a new, stored) one.
 */
export async function startRootLink(ctx: RootContext, settings: LinkControlSettings = {}): Promise<RootLink> {
  // ctx.log is set once the app is built (after the control factory ran): look it up at each call
  const log: LinkLog = {
    debug: (o, m) => ctx.log?.debug(o, m),
    info: (o, m) => ctx.log?.info(o, m),
    warn: (o, m) => ctx.log?.warn(o, m),
    error: (o, m) => ctx.log?.error(o, m),
  };
  const token = await clusterToken(ctx.store, settings.token ?? process.env.OAK_CLUSTER_TOKEN);
  const link = await startLinkServer({
    store: ctx.store,
    events: ctx.events,
    token,
    log,
    ...(settings.host !== undefined ? { host: settings.host } : {}),
    ...(settings.port !== undefined ? { port: settings.port } : {}),
    ...(settings.pingIntervalMs !== undefined ? { pingIntervalMs: settings.pingIntervalMs } : {}),
    ...(settings.pingTimeoutMs !== undefined ? { pingTimeoutMs: settings.pingTimeoutMs } : {}),
  });
  settings.onListening?.({ address: link.address, port: link.port, token });
  const control = createLinkControlPlane({
    link,
    store: ctx.store,
    events: ctx.events,
    log,
    ...(settings.graceMs !== undefined ? { graceMs: settings.graceMs } : {}),
    ...(settings.retryMs !== undefined ? { retryMs: settings.retryMs } : {}),
    ...(settings.strategy !== undefined ? { strategy: settings.strategy } : {}),
  });
  return { control, link, port: link.port, address: link.address, token, close: () => control.close() };
}

/** For startRoot({ control: linkControl({...}) }): the control plane of startRootLink. */
export function linkControl(settings: LinkControlSettings = {}): (ctx: RootContext) => Promise<LinkControlPlane> {
  return async (ctx) => (await startRootLink(ctx, settings)).control;
}
